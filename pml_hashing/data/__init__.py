"""Data sets and retrieval protocols.

``load_protocol(name, root=None, seed=0)`` returns a :class:`Protocol` with ``.train``,
``.query`` and ``.database`` torch Datasets of ``(image, label)`` (and ``.validation`` when
asked for). Bundled (no files needed): ``mnist-5k``, ``digits``. From local files under
``root``: ``cifar10-1``, ``cifar10-2`` (official python batches), ``nuswide-21``,
``imagenet-100`` (HashNet-style list files).
"""

from __future__ import annotations

import numpy as np

from .array_image_dataset import ArrayImageDataset
from .bundled import BUNDLED, load_bundled
from .cifar10 import load_cifar10, load_cifar10_arrays
from .image_list_dataset import ImageListDataset, read_image_list
from .image_list_protocols import IMAGE_LIST_PROTOCOLS, load_image_list_protocol
from .protocol import (
    Protocol,
    TensorImageDataset,
    read_splits,
    split_per_class,
    split_random,
)
from .transforms import default_transform

FILE_PROTOCOLS = ("cifar10-1", "cifar10-2", *IMAGE_LIST_PROTOCOLS)
PROTOCOL_NAMES = (*BUNDLED, *FILE_PROTOCOLS)


def load_protocol(name: str, root=None, seed: int = 0, split_file=None, **kwargs) -> Protocol:
    """Load a retrieval protocol by name.

    Args:
        name: one of ``mnist-5k``, ``digits`` (bundled), ``cifar10-1``, ``cifar10-2``,
            ``nuswide-21``, ``imagenet-100`` (from files under ``root``).
        root: the data folder of a file-based protocol (unused by the bundled ones).
        seed: seed of the split.
        split_file: a JSON file written by :meth:`Protocol.save_splits`; the split it holds
            is reused instead of drawn (it must match the name and the split sizes).
        **kwargs: protocol sizes and loading options, passed to :func:`load_bundled`,
            :func:`load_cifar10` or :func:`load_image_list_protocol` (e.g.
            ``validation_per_class=``, ``validation_size=``, ``transform=``,
            ``unseen_classes=``: the unseen-class protocol, see :func:`load_bundled`).

    Returns:
        The :class:`Protocol`.
    """
    if name in BUNDLED:
        return load_bundled_protocol(name, seed=seed, split_file=split_file, **kwargs)
    if name in ("cifar10-1", "cifar10-2"):
        return load_cifar10(int(name[-1]), root=root, seed=seed, split_file=split_file, **kwargs)
    if name in IMAGE_LIST_PROTOCOLS:
        return load_image_list_protocol(name, root=root, seed=seed, split_file=split_file, **kwargs)
    raise ValueError(f"dataset must be one of {list(PROTOCOL_NAMES)}; got {name!r}")


def load_bundled_protocol(name: str, seed: int = 0, split_file=None, **kwargs) -> Protocol:
    """A bundled protocol; with ``split_file``, redraw the saved split and check it is the same.

    A bundled split is a pure function of the seed and the sizes, so it is redrawn from the
    saved seed (which also recomputes the training mean and standard deviation); a saved
    split that the current code and arguments do not reproduce is an error, not a silent
    different split.
    """
    kwargs["split_file"] = split_file  # load_bundled reads the unseen classes it records
    if split_file is None:
        return load_bundled(name, seed=seed, **kwargs)
    fresh = load_bundled(name, seed=seed, **kwargs)
    expected = {key: len(idx) for key, idx in fresh.split_indices().items()}
    # Queries and database partition a bundled data set.
    num_items = fresh.info.get("num_items", len(fresh.query) + len(fresh.database))
    saved, saved_seed = read_splits(split_file, name, num_items, expected)
    protocol = fresh if saved_seed == seed else load_bundled(name, seed=saved_seed, **kwargs)
    for key, idx in protocol.split_indices().items():
        if not np.array_equal(np.sort(idx), saved[key]):
            raise ValueError(
                f"split_file {split_file}: split {key!r} differs from the split that seed "
                f"{saved_seed} draws for {name} with these arguments"
            )
    return protocol


__all__ = [
    "ArrayImageDataset",
    "ImageListDataset",
    "PROTOCOL_NAMES",
    "Protocol",
    "TensorImageDataset",
    "default_transform",
    "load_bundled",
    "load_bundled_protocol",
    "load_cifar10",
    "load_cifar10_arrays",
    "load_image_list_protocol",
    "load_protocol",
    "read_image_list",
    "read_splits",
    "split_per_class",
    "split_random",
]
