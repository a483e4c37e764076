"""Retrieval protocols: a data set split into train / query / database (and validation)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset


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
