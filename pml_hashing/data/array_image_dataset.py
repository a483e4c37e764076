"""Images held in memory as a uint8 array, served as PIL images through a transform."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class ArrayImageDataset(Dataset):
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
        self.images = images
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = labels[torch.from_numpy(self.indices)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        from PIL import Image

        image = Image.fromarray(self.images[self.indices[i]])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i]
