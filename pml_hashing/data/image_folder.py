"""Your own images: one subfolder per class (torchvision's ``ImageFolder`` layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .image_list_dataset import ImageListDataset
from .image_protocol import LoadOptions, finish_image_protocol
from .protocol import (
    Protocol,
    split_per_class,
)
from .protocol_registry import register_protocol

IMAGE_FOLDER = "image-folder"
IMAGE_FOLDER_LAYOUT = (
    "expected layout: ROOT/<class name>/<image file>, one subfolder per class, as for "
    "torchvision.datasets.ImageFolder (image files: "
    "{extensions})"
)


def _layout_hint() -> str:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMAGE_FOLDER_LAYOUT.format(extensions=", ".join(IMG_EXTENSIONS))


def read_image_folder(root) -> tuple[list[str], np.ndarray, list[str]]:
    """The images under ``root/<class>/`` in torchvision's order (classes, then files, sorted).

    Uses ``torchvision.datasets.folder.find_classes`` and ``make_dataset``, so the classes,
    their indices and the accepted file extensions are exactly ``ImageFolder``'s.

    Returns:
        ``(paths, labels, classes)``: the image files, their integer labels ``(N,)`` int64
        and the class names (label ``i`` is ``classes[i]``).
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    if root is None:
        raise ValueError(f"root is required for {IMAGE_FOLDER}; {_layout_hint()}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"root {root} is not a folder; {_layout_hint()}")
    try:
        classes, class_to_idx = find_classes(str(root))
    except FileNotFoundError:
        raise FileNotFoundError(f"{root} has no class subfolder; {_layout_hint()}") from None
    try:
        samples = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
    except FileNotFoundError as error:  # a class folder without a single image
        raise FileNotFoundError(f"{error}; {_layout_hint()}") from None
    paths = [path for path, _ in samples]
    check_image_headers(paths)
    labels = np.asarray([label for _, label in samples], dtype=np.int64)
    return paths, labels, list(classes)


def check_image_headers(paths) -> None:
    """Open every image far enough to read its header (format, size; no pixels): a file
    that is not an image fails here, naming it, before a run is built, not at the first
    training batch that meets it.

    Raises:
        ValueError: naming the first unreadable file.
    """
    from PIL import Image, UnidentifiedImageError

    for path in paths:
        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 (the header is read by open)
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
            raise ValueError(
                f"{path} is not a readable image (a JPEG, PNG or other format PIL opens): "
                f"{type(error).__name__}: {error}; remove or replace it"
            ) from None


def load_image_folder(
    root,
    seed: int = 0,
    query_per_class: int | None = None,
    train_per_class: int | None = None,
    validation_per_class: int = 0,
    topk: int | None = None,
    transform=None,
    image_size: int = 224,
    split_file=None,
    unseen_classes=None,
) -> Protocol:
    """A retrieval protocol over ``root/<class>/<image>``, split per class with a seed.

    As for the bundled data sets and ImageNet-100: ``query_per_class`` images of each class
    are the queries, the rest of each class is the database; ``validation_per_class``
    database images of each class are held out of training, and training is
    ``train_per_class`` of the remaining ones (all of them when None). Source indices (for
    :meth:`Protocol.save_splits`) count the images in torchvision's sorted order, so a saved
    split is reused with ``split_file`` as long as the folder holds the same files.

    Args:
        root: the folder of class subfolders.
        seed: seed of the split.
        query_per_class: queries per class; None: a tenth of the smallest class (at least 1).
        train_per_class: training images per class (None: the whole database minus
            validation).
        validation_per_class: database images per class held out for model selection.
        topk: R of mAP@R (None: the whole database).
        transform: applied to each RGB PIL image; default :func:`default_transform`.
        image_size: side of the default transform's output.
        split_file: a JSON file from :meth:`Protocol.save_splits` to reuse.
        unseen_classes: the unseen-class protocol (an int, ``"auto"`` or class ids; see
            :func:`~pml_hashing.data.load_bundled`): training and validation hold the seen
            classes (re-indexed), queries and database the unseen ones.

    Returns:
        A :class:`Protocol` with integer labels ``(N,)`` int64; ``info["classes"]`` names the
        classes.
    """
    paths, labels, classes = read_image_folder(root)
    if query_per_class is None:
        query_per_class = _default_query_per_class(labels, len(classes))
    fresh = split_per_class(labels, query_per_class, seed, train_per_class, validation_per_class)
    return finish_image_protocol(
        IMAGE_FOLDER,
        lambda target, indices, tr: ImageListDataset(paths, target, indices, transform=tr),
        labels,
        fresh,
        LoadOptions(seed, split_file, unseen_classes, transform, image_size),
        num_classes=len(classes),
        topk=topk,
        multi_label=False,
        info={
            "root": str(Path(root).expanduser()),
            "classes": classes,
            "query_per_class": query_per_class,
        },
    )


def _default_query_per_class(labels: np.ndarray, num_classes: int) -> int:
    """A tenth of the smallest class, at least 1."""
    return max(1, int(np.bincount(labels, minlength=num_classes).min()) // 10)


register_protocol(
    IMAGE_FOLDER, load_image_folder, in_chans=3, needs_root=True, takes_transform=True
)
