"""Images listed in a HashNet-style list file, opened lazily with PIL."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .source_subset import SourceSubset


def read_image_list(path, num_classes: int) -> tuple[list[str], np.ndarray]:
    """Parse a HashNet-style list file: ``image/path.jpg 0 1 0 ...`` per line.

    Each line is an image path (no whitespace inside) followed by ``num_classes`` 0/1 label
    columns; blank lines are skipped.

    Args:
        path: the list file.
        num_classes: the number of label columns each line must have.

    Returns:
        ``(paths, labels)``: the listed paths as written, and the multi-hot labels
        ``(N, num_classes)`` int64.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line has the wrong number of label columns, or a label that is not 0
            or 1 (the message names the file and the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image list {path} does not exist")
    paths, rows = [], []
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"image list {path} is not a text file ({e})") from None
    for lineno, line in enumerate(text.split("\n"), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) - 1 != num_classes:
            raise ValueError(
                f"{path}:{lineno}: expected an image path and {num_classes} label columns; "
                f"got {len(parts) - 1} label columns"
            )
        paths.append(parts[0])
        # One short string per line, converted in one numpy pass at the end: a Python
        # int per label (128K lines x 100 columns for ImageNet-100) is slow and large.
        rows.append("".join(parts[1:]))
    flat = np.frombuffer("".join(rows).encode("utf-8"), dtype=np.uint8)
    if len(flat) != len(paths) * num_classes or not ((flat == 48) | (flat == 49)).all():
        _raise_first_bad_label(path)
    labels = (flat == 49).astype(np.int64).reshape(len(paths), num_classes)
    return paths, labels


def _raise_first_bad_label(path: Path):
    """Error path only: find the first label that is not 0 or 1 and name its line."""
    with path.open() as f:
        for lineno, line in enumerate(f, start=1):
            for column, token in enumerate(line.split()[1:], start=2):
                if token not in ("0", "1"):
                    raise ValueError(
                        f"{path}:{lineno}: labels must be 0 or 1; got {token!r} in column {column}"
                    )
    raise AssertionError(f"{path}: the label check failed but every label reads as 0 or 1")


class ImageListDataset(SourceSubset):
    """A subset of the images named by a list file, loaded lazily as RGB with PIL.

    Args:
        paths: the full path of every item of the source data set.
        labels: labels of the whole source data set, integer ``(M,)`` or multi-hot ``(M, C)``.
        indices: which source items this subset holds.
        transform: callable applied to each PIL image (None: return the PIL image).

    Attributes:
        labels: the labels of this subset, in ``indices`` order.
    """

    def __init__(self, paths, labels: torch.Tensor, indices, transform=None):
        super().__init__(labels, indices, transform)
        self.paths = paths

    def path(self, i: int) -> str:
        """The image file of item ``i`` of this subset."""
        return self.paths[self.indices[i]]

    def load_image(self, i: int):
        from PIL import Image

        path = self.path(i)
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"image {path} (item {i}) does not exist; check image_root and strip_prefix"
            ) from None
        except (OSError, ValueError, SyntaxError) as e:  # PIL: unidentified or truncated file
            raise ValueError(
                f"image {path} (item {i}) is not a readable image file (a JPEG, PNG or other "
                f"format PIL opens); {type(e).__name__}: {e}"
            ) from None
        return image
