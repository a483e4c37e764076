"""Data sets and retrieval protocols.

``load_protocol(name, root=None, seed=0)`` returns a :class:`Protocol` with ``.train``,
``.query`` and ``.database`` torch Datasets of ``(image, label)`` (and ``.validation`` when
asked for). Bundled (no files needed): ``mnist-5k``, ``digits``. From local files under
``root``: ``cifar10-1``, ``cifar10-2`` (official python batches), ``nuswide-21``,
``imagenet-100`` (HashNet-style list files), ``image-folder`` (your own images, one
subfolder per class). Each protocol registers itself in
:data:`PROTOCOLS` in its own file, with its :class:`ProtocolInfo` (``protocol_info(name)``:
input channels, whether it reads files, whether it takes the backbone's transform).
"""

from __future__ import annotations

from .array_image_dataset import ArrayImageDataset
from .bundled import load_bundled, load_bundled_protocol
from .cifar10 import load_cifar10, load_cifar10_arrays
from .image_folder import load_image_folder, read_image_folder
from .image_list_dataset import ImageListDataset, read_image_list
from .image_list_protocols import load_imagenet100, load_nuswide21
from .image_size import resize_protocol
from .protocol import (
    Protocol,
    TensorImageDataset,
    read_splits,
    split_per_class,
    split_random,
)
from .protocol_registry import PROTOCOLS, ProtocolInfo, protocol_info, register_protocol
from .transforms import default_transform

# The built-in protocols (registered by the imports above), for flags' choices and docs.
PROTOCOL_NAMES = tuple(PROTOCOLS)
FILE_PROTOCOLS = tuple(name for name in PROTOCOLS if protocol_info(name).needs_root)


def load_protocol(name: str, root=None, seed: int = 0, split_file=None, **kwargs) -> Protocol:
    """Load a retrieval protocol by name.

    Args:
        name: a name in :data:`PROTOCOLS`: ``mnist-5k``, ``digits`` (bundled),
            ``cifar10-1``, ``cifar10-2``, ``nuswide-21``, ``imagenet-100``, ``image-folder``
            (from files under ``root``), or one registered with :func:`register_protocol`.
        root: the data folder of a file-based protocol (unused by the bundled ones).
        seed: seed of the split.
        split_file: a JSON file written by :meth:`Protocol.save_splits`; the split it holds
            is reused instead of drawn (it must match the name and the split sizes).
        **kwargs: protocol sizes and loading options, passed to :func:`load_bundled`,
            :func:`load_cifar10`, :func:`load_nuswide21`, :func:`load_imagenet100` or
            :func:`load_image_folder` (e.g.
            ``validation_per_class=``, ``validation_size=``, ``transform=``,
            ``unseen_classes=``: the unseen-class protocol, see :func:`load_bundled`).

    Returns:
        The :class:`Protocol`.
    """
    loader = PROTOCOLS.get_or_raise(name)
    _check_arguments(name, loader, kwargs)
    if protocol_info(name).needs_root:
        kwargs["root"] = root
    return loader(seed=seed, split_file=split_file, **kwargs)


def _check_arguments(name: str, loader, kwargs: dict) -> None:
    """An argument the data set's loader does not take is a ValueError naming it (not a
    TypeError from deep inside the call)."""
    import inspect

    parameters = inspect.signature(loader).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return
    taken = {p.name for p in parameters} - {"root", "seed", "split_file"}
    for key in kwargs:
        if key not in taken:
            raise ValueError(f"{key} does not apply to {name}; it takes {', '.join(sorted(taken))}")


__all__ = [
    "ArrayImageDataset",
    "ImageListDataset",
    "FILE_PROTOCOLS",
    "PROTOCOLS",
    "PROTOCOL_NAMES",
    "Protocol",
    "ProtocolInfo",
    "TensorImageDataset",
    "default_transform",
    "load_bundled",
    "load_bundled_protocol",
    "load_cifar10",
    "load_cifar10_arrays",
    "load_image_folder",
    "load_imagenet100",
    "load_nuswide21",
    "load_protocol",
    "protocol_info",
    "read_image_folder",
    "resize_protocol",
    "read_image_list",
    "read_splits",
    "register_protocol",
    "split_per_class",
    "split_random",
]
