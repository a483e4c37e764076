"""Retrieval protocols: a data set split into train / query / database (and validation)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .._files import write_text_atomic
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
        if self.info.get("unseen_classes") is not None:
            # the class split travels with the item split, so that a reload can check it
            payload["seen_classes"] = list(self.info["seen_classes"])
            payload["unseen_classes"] = list(self.info["unseen_classes"])
        return write_text_atomic(path, json.dumps(payload))


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


def check_train_per_class(train_labels: np.ndarray, train_per_class: int | None, classes) -> None:
    """Refuse a training set without ``train_per_class`` items of each class in ``classes``
    (a class ran out of items after the queries and validation)."""
    if train_per_class is None:
        return
    for c in classes:
        got = int((train_labels == c).sum())
        if got != train_per_class:
            raise ValueError(
                f"train_per_class={train_per_class} but class {c} has only {got} items left "
                "for training after the queries and validation"
            )


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


UNSEEN_AUTO = "auto"


#: Queries and database of one class only: every item is relevant to every query and mAP is
#: 1.0 for any model, so retrieval needs at least two classes (seen or unseen).
MIN_UNSEEN_CLASSES = 2


def unseen_class_count(num_classes: int) -> int:
    """How many classes ``unseen_classes="auto"`` holds out: ``ceil(num_classes / 4)``.

    Sablayrolles et al. (ICASSP 2017) train on 75% of the classes and retrieve the other
    25%. With 10 classes a quarter is 2.5; rounding up (7 seen, 3 unseen) keeps more than
    two classes to retrieve among, where chance mAP is 1/2 and the test says little. At
    least two: with one unseen class every database item is relevant to every query.
    """
    return max(MIN_UNSEEN_CLASSES, math.ceil(num_classes / 4))


def _no_repeats(classes: list[int]) -> list[int]:
    repeated = sorted({c for c in classes if classes.count(c) > 1})
    if repeated:
        raise ValueError(
            f"unseen_classes must not repeat a class (class {repeated[0]}); got {classes}"
        )
    return classes


def parse_unseen_classes(value):
    """Normalize the ``unseen_classes`` argument / config key / flag (no class count needed).

    Accepts None, an int (that many classes drawn by the seed), ``"auto"`` (a quarter of the
    classes, rounded up), a list of class ids, or the text of one of these as a flag gives it
    (``"3"``, ``"auto"``, ``"1,4,7"``, ``"[1, 4, 7]"``). Returns None, an int, ``"auto"`` or
    a list of ints.
    """
    if value is None or isinstance(value, bool):
        if isinstance(value, bool):
            raise TypeError(
                "unseen_classes must be an int, 'auto' or a list of class ids; got a bool"
            )
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, str):
        text = value.strip().strip("[]").strip()
        if text.lower() == UNSEEN_AUTO:
            return UNSEEN_AUTO
        if text.lower() in ("none", "null", ""):
            return None
        try:
            parts = [int(t) for t in text.replace(",", " ").split()]
        except ValueError:
            raise ValueError(
                "unseen_classes must be an int (a count), 'auto' or a list of class ids such "
                f"as '1,4,7'; got {value!r}"
            ) from None
        if "," in value or "[" in value:
            return _no_repeats(parts)
        return parts[0] if len(parts) == 1 else _no_repeats(parts)
    if isinstance(value, (list, tuple, np.ndarray)):
        out = []
        for c in value:
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
                raise TypeError(f"unseen_classes must hold integer class ids; got {c!r}")
            out.append(int(c))
        return _no_repeats(out)
    raise TypeError(
        f"unseen_classes must be an int, 'auto' or a list of class ids; got {type(value).__name__}"
    )


def saved_unseen_classes(split_file) -> list[int] | None:
    """The unseen classes a split file records (None when it records none or is absent)."""
    if split_file is None or not Path(split_file).is_file():
        return None
    saved = json.loads(Path(split_file).read_text()).get("unseen_classes")
    return None if saved is None else [int(c) for c in saved]


def resolve_unseen_classes(
    unseen_classes, num_classes: int, seed: int, split_file=None
) -> list[int] | None:
    """The sorted unseen class ids, or None for the usual (seen-class) protocol.

    An int ``n`` draws ``n`` of the ``num_classes`` classes with ``seed``; ``"auto"`` draws
    :func:`unseen_class_count` of them; a list is taken as given. A ``split_file`` that
    records unseen classes fixes them: with ``unseen_classes`` None they are adopted, and a
    count or list that disagrees with them is an error.
    """
    value = parse_unseen_classes(unseen_classes)
    saved = saved_unseen_classes(split_file)
    if num_classes < 2:
        raise ValueError(
            f"the data set has {num_classes} class: retrieval needs at least 2 classes (with "
            "one, every database item is relevant to every query and mAP is 1.0 for any model)"
        )
    if value is None:
        return saved
    low, high = MIN_UNSEEN_CLASSES, num_classes - 1
    why = (
        "queries and database of one class make every item relevant to every query (mAP "
        "1.0 for any model), and training needs a seen class"
    )
    if high < low:
        raise ValueError(
            f"unseen_classes needs at least {low + 1} classes (at least {low} unseen and one "
            f"seen: {why}); the data set has {num_classes}"
        )
    if value == UNSEEN_AUTO:
        value = unseen_class_count(num_classes)
    if isinstance(value, int):
        if not low <= value <= high:
            raise ValueError(
                f"unseen_classes must be an int in [{low}, {high}] for {num_classes} classes "
                f"({why}); got {value}"
            )
        if saved is not None and len(saved) == value:
            return saved
        classes = np.random.default_rng(seed).choice(num_classes, size=value, replace=False)
        chosen = sorted(int(c) for c in classes)
    else:
        chosen = sorted(value)  # parse_unseen_classes refused repeats
        bad = [c for c in chosen if not 0 <= c < num_classes]
        if bad:
            raise ValueError(
                f"unseen_classes must be class ids in [0, num_classes) = [0, {num_classes}); "
                f"got {bad[0]}"
            )
        if not low <= len(chosen) <= high:
            raise ValueError(
                f"unseen_classes must hold {low} to {high} of the {num_classes} classes "
                f"({why}); got {len(chosen)}: {chosen}"
            )
    if saved is not None and saved != chosen:
        raise ValueError(
            f"split_file {split_file} was saved with unseen_classes={saved}; got {chosen}"
        )
    return chosen


def unseen_item_mask(labels: np.ndarray, unseen: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """``(unseen_items, seen_items)`` boolean masks over ``labels`` (``(M,)`` or ``(M, C)``).

    An item is unseen when it has a label and all its labels are unseen classes; it is seen
    when it has at least one seen label (its unseen labels are dropped from training). A
    multi-label item without any label is neither.
    """
    labels = np.asarray(labels)
    if labels.ndim == 1:
        unseen_items = np.isin(labels, unseen)
        return unseen_items, ~unseen_items
    is_unseen = np.zeros(labels.shape[1], dtype=bool)
    is_unseen[unseen] = True
    positive = labels > 0
    has_seen = (positive & ~is_unseen).any(axis=1)
    has_unseen = (positive & is_unseen).any(axis=1)
    return has_unseen & ~has_seen, has_seen


def apply_unseen_classes(
    splits: dict[str, np.ndarray], labels: np.ndarray, unseen: list[int] | None, num_classes: int
):
    """Restrict a split to the unseen-class protocol of Sablayrolles et al. (ICASSP 2017).

    Training and validation keep their seen items only; queries and database their unseen
    items only. Returns ``(splits, train_labels, seen)``: the restricted split (sorted index
    arrays), the labels of the whole source set re-indexed to the seen classes (``seen[i]``
    becomes label ``i``; unseen classes get -1, or a dropped column when multi-hot) for the
    training and validation subsets, and the sorted seen class ids. With ``unseen`` None the
    inputs come back unchanged (``train_labels`` is ``labels``).
    """
    if unseen is None:
        return splits, labels, list(range(num_classes))
    seen = [c for c in range(num_classes) if c not in set(unseen)]
    unseen_items, seen_items = unseen_item_mask(labels, unseen)
    keep = {"train": seen_items, "validation": seen_items}
    restricted = {
        key: np.sort(idx[keep.get(key, unseen_items)[idx]]).astype(np.int64)
        for key, idx in splits.items()
    }
    for key in ("train", "query", "database"):
        if key in restricted and len(splits[key]) and not len(restricted[key]):
            raise ValueError(
                f"unseen_classes={unseen} leaves the {key} split empty; choose other classes"
            )
    labels = np.asarray(labels)
    if labels.ndim == 1:
        remap = np.full(num_classes, -1, dtype=np.int64)
        remap[seen] = np.arange(len(seen))
        train_labels = remap[labels]
    else:
        train_labels = np.ascontiguousarray(labels[:, seen])
    return restricted, train_labels, seen


def unseen_info(seen: list[int], unseen: list[int] | None) -> dict:
    """The ``Protocol.info`` entries of the class split (empty for the seen-class protocol)."""
    if unseen is None:
        return {}
    return {"seen_classes": list(seen), "unseen_classes": list(unseen)}


class _OriginalClassLabels(Dataset):
    """Items of a seen-class split with their labels mapped back to the source class ids."""

    def __init__(self, dataset: Dataset, seen: list[int], num_classes: int):
        self.dataset = dataset
        self.seen = torch.as_tensor(seen, dtype=torch.long)
        self.num_classes = num_classes
        self.indices = getattr(dataset, "indices", None)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        label = torch.as_tensor(label)
        if label.ndim == 0:
            return image, self.seen[label]
        full = torch.zeros(self.num_classes, dtype=label.dtype)
        full[self.seen] = label
        return image, full


def seen_items_for_unseen_vs_all(protocol: Protocol) -> Dataset | None:
    """The seen-class items that join the unseen database for "unseen vs all" retrieval.

    Under the unseen-class protocol the database holds unseen classes only; the recent
    comparative studies also search unseen-class queries in a database of seen *and*
    unseen items ("unseen@all"). The seen items are the training items, and the
    validation items if any (every seen item the split holds), with their labels mapped
    back to the source class ids (training re-indexes them to the seen classes), so that
    they share no label with an unseen query. ``None`` for the usual (seen-class) protocol.
    """
    seen = protocol.info.get("seen_classes")
    unseen = protocol.info.get("unseen_classes")
    if seen is None or unseen is None:
        return None
    parts = [protocol.train] + ([protocol.validation] if protocol.validation is not None else [])
    total = len(seen) + len(unseen)
    return torch.utils.data.ConcatDataset([_OriginalClassLabels(d, seen, total) for d in parts])
