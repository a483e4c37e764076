"""What the image subsets of a protocol share: source indices, their labels, a transform."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class SourceSubset(Dataset):
    """The items ``indices`` of a source data set, as ``(image, label)`` pairs.

    The labels of the subset are read without decoding an image (``labels``, in ``indices``
    order). Subclasses give :meth:`load_image`, the PIL image of item ``i`` of the subset;
    ``transform`` (None: none) is applied to it.
    """

    def __init__(self, labels: torch.Tensor, indices, transform=None):
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = labels[torch.from_numpy(self.indices)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.indices)

    def load_image(self, i: int):
        """The PIL image of item ``i`` of this subset, before the transform."""
        raise NotImplementedError

    def __getitem__(self, i):
        image = self.load_image(i)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.labels[i]
