"""Images held in memory as a uint8 array, served as PIL images through a transform."""

from __future__ import annotations

import numpy as np
import torch

from .source_subset import SourceSubset


class ArrayImageDataset(SourceSubset):
    """A subset of uint8 images ``(M, H, W, 3)`` (e.g. CIFAR-10) with their labels.

    The images array is shared, not copied, between the train / query / database subsets of
    one protocol: ``indices`` selects the items of this subset. ``__getitem__`` converts an
    image to a PIL RGB image, applies ``transform`` (timm and torchvision transforms expect
    PIL input) and returns ``(image, label)``.

    Args:
        images: uint8 array ``(M, H, W, 3)`` of the whole source data set.
        labels: labels of the whole source data set, integer ``(M,)`` or multi-hot ``(M, C)``.
        indices: which source items this subset holds.
        transform: callable applied to each PIL image (None: return the PIL image).

    Attributes:
        labels: the labels of this subset, in ``indices`` order (read them without decoding
            images, e.g. for evaluation).
    """

    def __init__(self, images: np.ndarray, labels: torch.Tensor, indices, transform=None):
        super().__init__(labels, indices, transform)
        self.images = images

    def load_image(self, i: int):
        from PIL import Image

        return Image.fromarray(self.images[self.indices[i]])
