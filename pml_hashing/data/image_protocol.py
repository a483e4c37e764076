"""Assemble a Protocol of RGB image subsets (the file-based data sets share this)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .protocol import (
    Protocol,
    apply_unseen_classes,
    resolve_unseen_classes,
    reuse_splits,
    unseen_info,
)
from .transforms import default_transform, probe_image_size


class LoadOptions(NamedTuple):
    """The arguments every file-based loader takes besides its split sizes."""

    seed: int
    split_file: object
    unseen_classes: object
    transform: Callable | None
    image_size: int


def finish_image_protocol(
    name: str,
    make_subset: Callable[[torch.Tensor, np.ndarray, Callable], Dataset],
    labels: np.ndarray,
    fresh: dict[str, np.ndarray],
    options: LoadOptions,
    check_splits: Callable[[dict[str, np.ndarray]], None] | None = None,
    **fields,
) -> Protocol:
    """The ending every file-based loader shares: the unseen-class protocol applied to the
    freshly drawn split ``fresh``, a saved split reused (``options.split_file``), the subsets
    built by ``make_subset(labels, indices, transform)``.

    ``check_splits(splits)`` may refuse the final split before any subset is built (e.g. a
    listed image that is not there). ``fields``: ``num_classes`` (of the whole data set),
    ``topk``, ``multi_label`` and ``info``, which gains ``split_file`` and the class split.
    """
    seed, split_file = options.seed, options.split_file
    num_classes, info = fields.pop("num_classes"), fields.pop("info")
    unseen = resolve_unseen_classes(options.unseen_classes, num_classes, seed, split_file)
    fresh, train_labels, seen = apply_unseen_classes(fresh, labels, unseen, num_classes)
    splits, seed = reuse_splits(fresh, name, len(labels), seed, split_file)
    if check_splits is not None:
        check_splits(splits)
    info = {**info, "split_file": None if split_file is None else str(split_file)}
    return build_image_protocol(
        name, make_subset, labels, splits, options.transform, options.image_size, seed,
        train_labels=train_labels, num_classes=len(seen),
        info={**info, **unseen_info(seen, unseen)}, **fields,
    )  # fmt: skip


def build_image_protocol(
    name: str,
    make_subset: Callable[[torch.Tensor, np.ndarray, Callable], Dataset],
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    transform,
    image_size: int,
    seed: int,
    train_labels: np.ndarray | None = None,
    **fields,
) -> Protocol:
    """A :class:`Protocol` whose splits are ``make_subset(labels, indices, transform)``.

    Without a ``transform`` the default one (resize to ``image_size``, ImageNet
    normalization) is used; with one, ``image_size`` is measured on a transformed query.
    ``fields`` are the remaining Protocol fields (``num_classes``, ``topk``, ...).
    ``train_labels`` (default ``labels``) label the train and validation subsets: the
    unseen-class protocol re-indexes them to the seen classes
    (:func:`~pml_hashing.data.protocol.apply_unseen_classes`).
    """
    custom_transform = transform is not None
    transform = transform if custom_transform else default_transform(image_size)
    target = torch.from_numpy(labels)
    train_target = target if train_labels is None else torch.from_numpy(train_labels)

    def subset(key):
        labels_of_split = train_target if key in ("train", "validation") else target
        return make_subset(labels_of_split, splits[key], transform)

    result = Protocol(
        name=name,
        train=subset("train"),
        query=subset("query"),
        database=subset("database"),
        validation=subset("validation") if len(splits["validation"]) else None,
        in_chans=3,
        image_size=(image_size, image_size),
        seed=seed,
        **fields,
    )
    if custom_transform:
        result.image_size = probe_image_size(result.query)
    return result
