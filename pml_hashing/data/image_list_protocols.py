"""NUS-WIDE-21 and ImageNet-100 from HashNet-style list files, split by their protocols."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .image_list_dataset import ImageListDataset, read_image_list
from .image_protocol import LoadOptions, finish_image_protocol
from .protocol import (
    Protocol,
    check_train_per_class,
    split_per_class,
    split_random,
)
from .protocol_registry import register_protocol

# Sizes from DESIGN.md section 5 (the HashNet / DPN protocols).
IMAGE_LIST_PROTOCOLS = {
    "nuswide-21": {
        "num_classes": 21,
        "multi_label": True,
        "topk": 5000,
        "query_size": 2100,
        "train_size": 10500,
    },
    "imagenet-100": {
        "num_classes": 100,
        "multi_label": False,
        "topk": 1000,
        "query_per_class": 50,
        "train_per_class": 130,
    },
}
HASHNET_FILES = ("train.txt", "test.txt", "database.txt")


def _layout_hint(name: str, root: Path) -> str:
    spec = IMAGE_LIST_PROTOCOLS[name]
    return (
        f"expected layout: {root}/train.txt, test.txt and database.txt (HashNet's release), "
        f"or a single list {root}/{name}.txt (or list_file=) to split with a seed; each line "
        f"'relative/path.jpg 0 1 0 ...' with {spec['num_classes']} label columns, the paths "
        "relative to image_root (default: root)"
    )


def _find_lists(name: str, root: Path, list_file) -> list[Path]:
    """The three HashNet lists, or the one list to split; errors name the expected path."""
    if list_file is not None:
        list_file = Path(list_file).expanduser()
        if not list_file.is_file():
            raise FileNotFoundError(
                f"list_file {list_file} does not exist; {_layout_hint(name, root)}"
            )
        return [list_file]
    hashnet = [root / f for f in HASHNET_FILES]
    present = [p.is_file() for p in hashnet]
    if all(present):
        return hashnet
    if any(present):
        missing = hashnet[present.index(False)]
        raise FileNotFoundError(f"{missing} does not exist; {_layout_hint(name, root)}")
    single = root / f"{name}.txt"
    if single.is_file():
        return [single]
    raise FileNotFoundError(
        f"{hashnet[0]} (or {single}) does not exist; {_layout_hint(name, root)}"
    )


def _resolve_path(listed: str, image_root: Path, strip_prefix: str | None) -> str:
    if strip_prefix and listed.startswith(strip_prefix):
        listed = listed[len(strip_prefix) :].lstrip("/")
    return listed if os.path.isabs(listed) else str(image_root / listed)


def _single_labels(multi_hot: np.ndarray, list_path: Path) -> np.ndarray:
    """One-hot rows -> integer labels; a row without exactly one 1 is an error."""
    counts = multi_hot.sum(axis=1)
    if (counts != 1).any():
        row = int(np.flatnonzero(counts != 1)[0])
        with list_path.open() as f:
            # Only on the error path: map the item back to its line, blank lines included.
            lines = [n for n, line in enumerate(f, start=1) if line.strip()]
        raise ValueError(
            f"{list_path}:{lines[row]}: {list_path.name} is single-label, so each line must "
            f"have exactly one 1; got {int(counts[row])}"
        )
    return multi_hot.argmax(axis=1).astype(np.int64)


def _database_rows(listed: list[str], n_train: int, start: int) -> np.ndarray:
    """Source indices of ``database.txt``'s lines (from ``start``), one index per image.

    HashNet's database list repeats the training images: a line that lists an image of
    ``train.txt`` gets that image's ``train.txt`` index, so a validation item held out of
    training is also held out of the set it is validated against (each would otherwise
    find its own copy at distance 0) and the split file names each image once.
    """
    first: dict[str, int] = {}
    for i in range(n_train):
        first.setdefault(listed[i], i)
    rows = range(start, len(listed))
    return np.fromiter((first.get(listed[i], i) for i in rows), dtype=np.int64, count=len(rows))


def _read_lists(name: str, root, list_file, image_root):
    """The list files of ``name`` and what they list: ``(root, image_root, lists, listed,
    multi_hot)``, the listed paths and labels of every list concatenated in order."""
    if root is None and list_file is None:
        raise ValueError(f"root is required for {name}; {_layout_hint(name, Path('ROOT'))}")
    root = Path(root if root is not None else Path(list_file).parent).expanduser()
    image_root = root if image_root is None else Path(image_root).expanduser()
    lists = _find_lists(name, root, list_file)
    parsed = [read_image_list(p, IMAGE_LIST_PROTOCOLS[name]["num_classes"]) for p in lists]
    listed = [path for paths, _ in parsed for path in paths]
    return root, image_root, lists, listed, [lab for _, lab in parsed]


def _hashnet_split(listed, sizes: list[int], held: dict, root: Path, sizes_given: bool):
    """HashNet's three lists: train.txt trains (minus the validation ``held`` out of it),
    test.txt holds the queries, database.txt the database."""
    if sizes_given:
        raise ValueError(
            f"{root} holds HashNet's train/test/database lists, which fix the query and "
            "training sets; query/train sizes apply to a single list only"
        )
    n_train, n_test = sizes[0], sizes[1]
    return {
        "train": held["train"],
        "validation": held["validation"],
        "query": np.arange(n_train, n_train + n_test, dtype=np.int64),
        "database": _database_rows(listed, n_train, n_train + n_test),
    }


def _finish(name, root, image_root, lists, listed, labels, fresh, options, strip_prefix):
    """The shared ending (:func:`finish_image_protocol`) with the listed images' paths."""
    spec = IMAGE_LIST_PROTOCOLS[name]
    paths = [_resolve_path(p, image_root, strip_prefix) for p in listed]

    def check_first_images(splits):
        for key in ("query", "train"):
            if len(splits[key]) and not os.path.isfile(paths[splits[key][0]]):
                raise FileNotFoundError(
                    f"image {paths[splits[key][0]]} (listed as {listed[splits[key][0]]!r}) "
                    f"does not exist; {_layout_hint(name, root)}; set image_root= or "
                    "strip_prefix= to match"
                )

    return finish_image_protocol(
        name,
        lambda target, indices, tr: ImageListDataset(paths, target, indices, transform=tr),
        labels,
        fresh,
        options,
        check_first_images,
        num_classes=spec["num_classes"],
        topk=spec["topk"],
        multi_label=spec["multi_label"],
        info={"lists": [str(p) for p in lists], "image_root": str(image_root)},
    )


_COMMON_ARGS = """
        root: folder of the list files.
        seed: seed of the split (and of the validation hold-out).
        image_root: folder the listed relative paths start from (default ``root``).
        list_file: a single list file to split, instead of looking under ``root``.
        strip_prefix: removed from the start of each listed path before joining it to
            ``image_root`` (HashNet's lists carry the authors' absolute paths).
        transform: applied to each PIL image; default :func:`default_transform`.
        image_size: side of the default transform's output.
        split_file: a JSON file from :meth:`Protocol.save_splits` to reuse."""


def load_nuswide21(
    root=None,
    seed: int = 0,
    image_root=None,
    list_file=None,
    strip_prefix: str | None = None,
    query_size: int | None = None,
    train_size: int | None = None,
    validation_size: int = 0,
    transform=None,
    image_size: int = 224,
    split_file=None,
    unseen_classes=None,
) -> Protocol:
    """NUS-WIDE-21 (multi-label, 21 classes, R = 5000) from HashNet-style list files.

    With HashNet's ``train.txt``, ``test.txt`` and ``database.txt`` under ``root``, those are
    the training set, the queries and the database. With a single list (``root/nuswide-21.txt``
    or ``list_file``), ``query_size`` (2,100) random items are the queries, the rest is the
    database, and ``train_size`` (10,500) database items train. ``validation_size`` items are
    held out of training. Source indices (for :meth:`Protocol.save_splits`) count the lines
    of the single list, or of the three lists concatenated in that order; a
    ``database.txt`` line that repeats an image of ``train.txt`` takes that image's index.

    Args:{common}
        query_size, train_size, validation_size: the split sizes.
        unseen_classes: the unseen-class protocol (see :func:`~pml_hashing.data.load_bundled`):
            an item is unseen when all its labels are unseen classes; an item with a seen
            label trains, with its unseen labels dropped.

    Returns:
        A :class:`Protocol` with multi-hot ``(N, 21)`` int64 labels.
    """
    name = "nuswide-21"
    root, image_root, lists, listed, parsed = _read_lists(name, root, list_file, image_root)
    labels = np.concatenate(parsed)
    if len(lists) == 3:
        held = split_random(
            len(parsed[0]), query_size=0, seed=seed, validation_size=validation_size
        )
        sizes = [len(lab) for lab in parsed]
        fresh = _hashnet_split(listed, sizes, held, root, bool(query_size or train_size))
    else:
        spec = IMAGE_LIST_PROTOCOLS[name]
        fresh = split_random(
            len(listed),
            query_size=spec["query_size"] if query_size is None else query_size,
            seed=seed,
            train_size=spec["train_size"] if train_size is None else train_size,
            validation_size=validation_size,
        )
    options = LoadOptions(seed, split_file, unseen_classes, transform, image_size)
    return _finish(name, root, image_root, lists, listed, labels, fresh, options, strip_prefix)


def load_imagenet100(
    root=None,
    seed: int = 0,
    image_root=None,
    list_file=None,
    strip_prefix: str | None = None,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    validation_per_class: int = 0,
    transform=None,
    image_size: int = 224,
    split_file=None,
    unseen_classes=None,
) -> Protocol:
    """ImageNet-100 (single-label, 100 classes, R = 1000) from HashNet-style list files.

    With HashNet's ``train.txt``, ``test.txt`` and ``database.txt`` under ``root``, those are
    the training set, the queries and the database. With a single list
    (``root/imagenet-100.txt`` or ``list_file``), ``query_per_class`` (50) queries and
    ``train_per_class`` (130) training items per class are drawn, the rest is the database.
    ``validation_per_class`` items per class are held out of training. Source indices as
    for :func:`load_nuswide21`.

    Args:{common}
        query_per_class, train_per_class, validation_per_class: the split sizes.
        unseen_classes: the unseen-class protocol (see :func:`~pml_hashing.data.load_bundled`).

    Returns:
        A :class:`Protocol` with integer ``(N,)`` int64 labels.
    """
    name = "imagenet-100"
    root, image_root, lists, listed, parsed = _read_lists(name, root, list_file, image_root)
    labels = np.concatenate([_single_labels(lab, p) for lab, p in zip(parsed, lists, strict=True)])
    if len(lists) == 3:
        n_train = len(parsed[0])
        held = split_per_class(
            labels[:n_train],
            query_per_class=0,
            seed=seed,
            validation_per_class=validation_per_class,
        )
        sizes = [len(lab) for lab in parsed]
        given = bool(query_per_class or train_per_class)
        fresh = _hashnet_split(listed, sizes, held, root, given)
    else:
        spec = IMAGE_LIST_PROTOCOLS[name]
        train_per_class = spec["train_per_class"] if train_per_class is None else train_per_class
        fresh = split_per_class(
            labels,
            query_per_class=spec["query_per_class"] if query_per_class is None else query_per_class,
            seed=seed,
            train_per_class=train_per_class,
            validation_per_class=validation_per_class,
        )
        check_train_per_class(labels[fresh["train"]], train_per_class, range(spec["num_classes"]))
    options = LoadOptions(seed, split_file, unseen_classes, transform, image_size)
    return _finish(name, root, image_root, lists, listed, labels, fresh, options, strip_prefix)


load_nuswide21.__doc__ = load_nuswide21.__doc__.format(common=_COMMON_ARGS)
load_imagenet100.__doc__ = load_imagenet100.__doc__.format(common=_COMMON_ARGS)

LOADERS = {"nuswide-21": load_nuswide21, "imagenet-100": load_imagenet100}


for _name, _loader in LOADERS.items():
    register_protocol(
        _name,
        _loader,
        in_chans=3,
        needs_root=True,
        takes_transform=True,
    )
