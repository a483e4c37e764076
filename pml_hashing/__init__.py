"""pml-hashing: learning to hash as pytorch-metric-learning components.

Import the subpackages the way PML's are imported::

    from pml_hashing import losses, miners, regularizers, evaluation, codes

A trained model's codes in one call: ``pml_hashing.encode(images, checkpoint=path)``;
exports: ``pml_hashing.export_onnx``, ``pml_hashing.export_program`` (see
:mod:`pml_hashing.export`).
"""

__version__ = "0.1.0"

_EXPORTS = ("encode", "export_onnx", "export_program")


def __getattr__(name):
    # Lazy, so that ``import pml_hashing`` stays free of torch and timm.
    if name in _EXPORTS:
        from . import export

        return getattr(export, name)
    raise AttributeError(f"module 'pml_hashing' has no attribute {name!r}")
