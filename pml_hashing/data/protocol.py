"""Retrieval protocols: a data set split into train / query / database (and validation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._validation import check_split_payload


class TensorImageDataset(Dataset):
    """In-memory images ``(M, C, H, W)`` float32 and labels ``(M,)`` or multi-hot ``(M, C)``.

    ``__getitem__`` returns ``(image, label)``; ``indices`` records which items of the source
    data set these are, so a split can be saved and reused.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices=None, transform=None):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"images and labels must have the same length; got {images.shape[0]} and "
                f"{labels.shape[0]}"
            )
        self.images = images
        self.labels = labels
        self.indices = (
            np.arange(images.shape[0]) if indices is None else np.asarray(indices, dtype=np.int64)
        )
        self.transform = transform

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        image = self.images[i]
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i]


@dataclass
class Protocol:
    """A retrieval protocol: ``train``, ``query`` and ``database`` datasets of (image, label).

    ``validation`` (when not None) is held out of ``train`` for model selection: never select
    on ``query``. ``topk`` is R of mAP@R (None = all of the database). ``multi_label`` says
    whether labels are multi-hot ``(N, C)``.
    """

    name: str
    train: Dataset
    query: Dataset
    database: Dataset
    num_classes: int
    in_chans: int
    image_size: tuple[int, int]
    topk: int | None = None
    multi_label: bool = False
    validation: Dataset | None = None
    seed: int = 0
    info: dict = field(default_factory=dict)

    def split_indices(self) -> dict[str, list[int]]:
        """The source-data indices of each split (for saving beside a run)."""
        splits = {"train": self.train, "query": self.query, "database": self.database}
        if self.validation is not None:
            splits["validation"] = self.validation
        return {k: [int(i) for i in getattr(v, "indices", [])] for k, v in splits.items()}

    def save_splits(self, path) -> Path:
        """Write the split indices as JSON so that the split can be checked and reused."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"name": self.name, "seed": self.seed, "splits": self.split_indices()}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)
        return path


def split_per_class(
    labels: np.ndarray,
    query_per_class: int,
    seed: int,
    train_per_class: int | None = None,
    validation_per_class: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded split of single-label data: queries and validation per class, the rest database.

    Training is drawn from the database (``train_per_class`` per class, or all of it when
    None), as in the HashNet/DPN protocols; validation items are drawn from the database
    too but kept out of training. Returns sorted index arrays.
    """
    rng = np.random.default_rng(seed)
    query, database, train, validation = [], [], [], []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        need = query_per_class + validation_per_class + 1
        if len(members) < need:
            raise ValueError(
                f"class {c} has {len(members)} items; query_per_class + validation_per_class "
                f"+ 1 = {need} are needed"
            )
        query.append(members[:query_per_class])
        rest = members[query_per_class:]
        database.append(rest)
        validation.append(rest[:validation_per_class])
        pool = rest[validation_per_class:]
        train.append(pool if train_per_class is None else pool[:train_per_class])
    return {
        name: np.sort(np.concatenate(parts))
        for name, parts in {
            "query": query,
            "database": database,
            "train": train,
            "validation": validation,
        }.items()
    }


def split_random(
    num_items: int,
    query_size: int,
    seed: int,
    train_size: int | None = None,
    validation_size: int = 0,
) -> dict[str, np.ndarray]:
    """Seeded split of multi-label data: random queries and validation, the rest database.

    The multi-label counterpart of :func:`split_per_class` (a per-class quota is not defined
    when an item has several labels): ``query_size`` random items are the queries, the rest
    the database; ``validation_size`` database items are held out of training, and
    training is ``train_size`` of the remaining database items (all of them when None).
    Returns sorted index arrays.
    """
    train_need = 0 if train_size is None else train_size
    need = query_size + validation_size + max(train_need, 1)
    if num_items < need:
        raise ValueError(
            f"num_items must be at least query_size + validation_size + max(train_size, 1) = "
            f"{need}; got {num_items}"
        )
    order = np.random.default_rng(seed).permutation(num_items)
    rest = order[query_size:]
    pool = rest[validation_size:]
    parts = {
        "query": order[:query_size],
        "database": rest,
        "train": pool if train_size is None else pool[:train_size],
        "validation": rest[:validation_size],
    }
    return {name: np.sort(idx).astype(np.int64) for name, idx in parts.items()}


SPLIT_NAMES = ("query", "database", "train", "validation")


def read_splits(path, name: str, num_items: int, expected_sizes: dict[str, int]):
    """Read a split written by :meth:`Protocol.save_splits` and check it fits the data set.

    Args:
        path: the JSON file.
        name: the protocol name the split must have been saved for.
        num_items: size of the source data set; every index must lie in ``[0, num_items)``.
        expected_sizes: the size each split must have under the current arguments.

    Returns:
        ``(splits, seed)``: sorted int64 index arrays for ``train``, ``query``, ``database``
        and ``validation`` (empty when absent), and the seed the split was drawn with.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"split_file {path} does not exist; write one with Protocol.save_splits(path)"
        )
    try:
        payload = json.loads(path.read_text())
    except (ValueError, OSError) as e:
        raise ValueError(f"split_file {path} is not readable JSON ({e})") from None
    payload = check_split_payload(payload, f"split_file {path}")
    if payload.get("name") != name:
        raise ValueError(
            f"split_file {path} holds a split of {payload.get('name')!r}; expected {name!r}"
        )
    saved = payload["splits"]
    splits = {}
    for key in SPLIT_NAMES:
        idx = np.asarray(saved.get(key, []), dtype=np.int64)  # integers: checked above
        if len(idx) != expected_sizes.get(key, 0):
            raise ValueError(
                f"split_file {path}: split {key!r} must have {expected_sizes.get(key, 0)} items "
                f"with these arguments; got {len(idx)}"
            )
        if len(idx) and (idx.min() < 0 or idx.max() >= num_items):
            bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
            raise ValueError(
                f"split_file {path}: indices must be in [0, num_items) = [0, {num_items}); "
                f"got {bad} in split {key!r}"
            )
        splits[key] = np.sort(idx)
    return splits, payload["seed"]


def reuse_splits(fresh: dict[str, np.ndarray], name: str, num_items: int, seed: int, split_file):
    """The split to use: ``fresh`` when ``split_file`` is None, else the saved one.

    A saved split must have been saved for ``name`` and have the sizes ``fresh`` has (the
    sizes the current arguments ask for). Returns ``(splits, seed)``.
    """
    if split_file is None:
        return fresh, seed
    expected = {key: len(idx) for key, idx in fresh.items()}
    return read_splits(split_file, name, num_items, expected)
