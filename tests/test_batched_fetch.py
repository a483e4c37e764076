"""Batched fetching of in-memory data sets gives the per-item DataLoader's batches exactly."""

import pytest
import torch
from torch.utils.data import DataLoader

from pml_hashing.data import TensorImageDataset
from pml_hashing.training import IndexedDataset, encode_dataset
from pml_hashing.training.encoding import indexed_for_loader


def _dataset(dtype, multi_hot=False, transform=None, n=53):
    generator = torch.Generator().manual_seed(3)
    images = torch.randn(n, 1, 6, 5, generator=generator, dtype=dtype)
    if multi_hot:
        labels = (torch.rand(n, 4, generator=generator) < 0.4).to(torch.float32)
    else:
        labels = torch.randint(0, 5, (n,), generator=generator)
    return TensorImageDataset(images, labels, transform=transform)


def _batches(dataset, batched, seed=0, **kwargs):
    # the reference: the public IndexedDataset, one __getitem__ per item, default_collate
    indexed, collate_fn = (
        indexed_for_loader(dataset) if batched else (IndexedDataset(dataset), None)
    )
    loader = DataLoader(
        indexed,
        batch_size=8,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn,
        **kwargs,
    )
    return [batch for _ in range(2) for batch in loader]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("multi_hot", [False, True])
def test_batched_fetch_matches_per_item(dtype, multi_hot):
    dataset = _dataset(dtype, multi_hot)
    expected = _batches(dataset, batched=False)
    got = _batches(dataset, batched=True)
    assert len(got) == len(expected) == 2 * (53 // 8)
    for a, b in zip(got, expected, strict=True):
        assert len(a) == 3
        for x, y in zip(a, b, strict=True):
            assert x.dtype == y.dtype and x.shape == y.shape
            assert torch.equal(x, y)
        # and the batch is what plain tensor indexing of the data set gives
        assert torch.equal(a[0], dataset.images[a[2]])
        assert torch.equal(a[1], dataset.labels[a[2]])


def test_a_transform_keeps_the_per_item_path():
    dataset = _dataset(torch.float32, transform=lambda image: image * 2)
    assert indexed_for_loader(dataset)[1] is None
    got, expected = _batches(dataset, batched=True), _batches(dataset, batched=False)
    for a, b in zip(got, expected, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    assert torch.equal(got[0][0], dataset.images[got[0][2]] * 2)


def test_encode_dataset_order_and_values():
    dataset = _dataset(torch.float64)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(30, 4).double())
    outputs, labels = encode_dataset(model, dataset, batch_size=8)
    with torch.no_grad():
        reference = torch.cat([model(dataset[i][0][None]) for i in range(len(dataset))])
    assert torch.equal(labels, dataset.labels)
    torch.testing.assert_close(outputs, reference.float())
