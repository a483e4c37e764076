"""CIFAR-10 from the official python batches, split by the two hashing protocols."""

from __future__ import annotations

import pickle
from functools import partial
from pathlib import Path

import numpy as np

from .array_image_dataset import ArrayImageDataset
from .image_protocol import LoadOptions, finish_image_protocol
from .protocol import Protocol, check_train_per_class, split_per_class
from .protocol_registry import register_protocol

CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR10_LAYOUT = (
    "expected layout: ROOT/cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch} "
    "(the official 'CIFAR-10 python version'), or root pointing at cifar-10-batches-py itself"
)
NUM_TRAIN_IMAGES = 50_000


def find_cifar10_folder(root) -> Path:
    """The folder that holds the batches: ``root/cifar-10-batches-py`` or ``root`` itself."""
    if root is None:
        raise ValueError(f"root is required for CIFAR-10; {CIFAR10_LAYOUT}")
    root = Path(root).expanduser()
    for folder in (root / "cifar-10-batches-py", root):
        if (folder / CIFAR10_FILES[0]).is_file():
            return folder
    raise FileNotFoundError(
        f"CIFAR-10 not found: {root / 'cifar-10-batches-py' / CIFAR10_FILES[0]} does not "
        f"exist; {CIFAR10_LAYOUT}"
    )


def read_cifar10_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch pickle: images ``(n, 32, 32, 3)`` uint8 and labels ``(n,)`` int64."""
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 batch {path} does not exist; {CIFAR10_LAYOUT}")
    expected = "a CIFAR-10 python batch (a pickled dict with b'data' and b'labels')"
    try:
        # From memory, not from the file: a damaged length field then fails at the end of
        # the bytes instead of asking the file reader for gigabytes.
        batch = pickle.loads(path.read_bytes(), encoding="bytes")
    except Exception as e:  # truncated, empty or not a pickle: name the file, not the frame
        raise ValueError(
            f"{path} is not readable as {expected} ({type(e).__name__}: {e}); {CIFAR10_LAYOUT}"
        ) from None
    if not isinstance(batch, dict):
        raise ValueError(f"{path} must hold {expected}; got a {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path} must hold the keys b'data' and b'labels'; got {list(batch)}")
    try:
        data = np.asarray(data)
        labels = np.asarray(labels)
    except Exception as e:
        raise ValueError(f"{path}: data and labels must be arrays ({e})") from None
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise ValueError(
            f"{path}: labels must be a list of integers; got {labels.dtype} {labels.shape}"
        )
    labels = labels.astype(np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(
            f"{path}: data must be uint8 of shape (n, 3072); got {data.dtype} {data.shape}"
        )
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: labels must have one entry per image ({data.shape[0]}); got {labels.shape[0]}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        bad = int(labels.min()) if labels.min() < 0 else int(labels.max())
        raise ValueError(f"{path}: labels must be in [0, num_classes) = [0, 10); got {bad}")
    # Rows are 1024 red, then green, then blue values of a 32x32 image in row-major order.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def load_cifar10_arrays(root) -> tuple[np.ndarray, np.ndarray, int]:
    """All 60,000 CIFAR-10 images pooled: training batches first, then the test batch.

    Returns:
        ``(images, labels, num_train)``: uint8 ``(M, 32, 32, 3)``, int64 ``(M,)``, and the
        number of items that come from the training batches (the rest are the test batch).
    """
    folder = find_cifar10_folder(root)
    batches = [read_cifar10_batch(folder / name) for name in CIFAR10_FILES]
    images = np.ascontiguousarray(np.concatenate([b[0] for b in batches]))
    labels = np.concatenate([b[1] for b in batches])
    return images, labels, sum(len(b[1]) for b in batches[:-1])


def load_cifar10(
    protocol: int = 1,
    root=None,
    seed: int = 0,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    validation_per_class: int = 0,
    transform=None,
    image_size: int = 224,
    split_file=None,
    unseen_classes=None,
) -> Protocol:
    """CIFAR-10 split by hashing protocol 1 (``cifar10-1``) or 2 (``cifar10-2``); R = all.

    Protocol 1 pools all 60,000 images: ``query_per_class`` (100) per class are the 1,000
    queries, the other 59,000 the database, and ``train_per_class`` (500) per class of the
    database the 5,000 training images. Protocol 2: the 10,000 test images are the
    queries, the 50,000 training images the database and (all of them, or
    ``train_per_class`` per class) the training set. With ``validation_per_class``, that
    many database items per class are held out of training for model selection.

    Args:
        protocol: 1 or 2.
        root: folder holding ``cifar-10-batches-py`` (or that folder itself).
        seed: seed of the split.
        query_per_class: protocol 1 only (default 100).
        train_per_class: training images per class (protocol 1 default 500; protocol 2
            default None = all).
        validation_per_class: validation images per class, never in training.
        transform: applied to each PIL image; default :func:`default_transform`.
        image_size: side of the default transform's output.
        split_file: a JSON file from :meth:`Protocol.save_splits` to reuse instead of
            drawing a split; it must match the name and the split sizes.
        unseen_classes: the unseen-class protocol (an int, ``"auto"`` or class ids; see
            :func:`~pml_hashing.data.load_bundled`): train and validation keep the seen
            classes (re-indexed), queries and database the unseen ones.

    Returns:
        A :class:`Protocol` whose datasets yield ``(image, label)`` with integer labels.
    """
    _check_protocol(protocol, query_per_class)
    images, labels, num_train = load_cifar10_arrays(root)
    fresh = _split_cifar10(
        protocol, labels, num_train, seed, query_per_class, train_per_class, validation_per_class
    )
    return finish_image_protocol(
        f"cifar10-{protocol}",
        lambda target, indices, tr: ArrayImageDataset(images, target, indices, transform=tr),
        labels,
        fresh,
        LoadOptions(seed, split_file, unseen_classes, transform, image_size),
        num_classes=10,
        topk=None,
        multi_label=False,
        info={"root": str(root)},
    )


def _check_protocol(protocol, query_per_class) -> None:
    if protocol not in (1, 2):
        raise ValueError(f"protocol must be 1 or 2; got {protocol!r}")
    if protocol == 2 and query_per_class is not None:
        raise ValueError(
            "query_per_class applies to cifar10-1 only; cifar10-2 uses the 10,000 test "
            f"images as queries; got query_per_class={query_per_class}"
        )


def _split_cifar10(
    protocol, labels, num_train, seed, query_per_class, train_per_class, validation_per_class
) -> dict[str, np.ndarray]:
    """Protocol 1 splits all images per class; protocol 2 splits the training batches (no
    queries drawn) and makes the test batch the queries."""
    pooled = protocol == 1
    if pooled:
        query_per_class = 100 if query_per_class is None else query_per_class
        train_per_class = 500 if train_per_class is None else train_per_class
    fresh = split_per_class(
        labels if pooled else labels[:num_train],
        query_per_class=query_per_class if pooled else 0,
        seed=seed,
        train_per_class=train_per_class,
        validation_per_class=validation_per_class,
    )
    if not pooled:
        fresh["query"] = np.arange(num_train, len(labels), dtype=np.int64)
    check_train_per_class(labels[fresh["train"]], train_per_class, np.unique(labels))
    return fresh


for _protocol in (1, 2):
    register_protocol(
        f"cifar10-{_protocol}",
        partial(load_cifar10, _protocol),
        in_chans=3,
        needs_root=True,
        takes_transform=True,
    )
