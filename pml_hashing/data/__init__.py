"""Data sets and retrieval protocols.

``load_protocol(name, root=None, seed=0)`` returns a :class:`Protocol` with ``.train``,
``.query`` and ``.database`` torch Datasets of ``(image, label)``.
"""

from __future__ import annotations

from .bundled import BUNDLED, load_bundled
from .protocol import Protocol, TensorImageDataset, split_per_class


def load_protocol(name: str, root=None, seed: int = 0, **kwargs) -> Protocol:
    """Load a retrieval protocol by name (bundled: ``mnist-5k``, ``digits``)."""
    if name in BUNDLED:
        return load_bundled(name, seed=seed, **kwargs)
    raise ValueError(f"dataset must be one of {sorted(BUNDLED)}; got {name!r}")


__all__ = ["Protocol", "TensorImageDataset", "load_protocol", "load_bundled", "split_per_class"]
