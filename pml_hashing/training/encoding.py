"""Run a model over a data set: real outputs in data set order, gathered across processes."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, Dataset, default_collate


class _Batch(tuple):
    """A batch already gathered by tensor indexing: :func:`collate` passes it through."""


def collate(data):
    """``default_collate``, except for a batch that a ``__getitems__`` gathered whole."""
    return tuple(data) if isinstance(data, _Batch) else default_collate(data)


def _in_memory(dataset) -> bool:
    # In-memory tensors without a per-item transform: a batch is one indexing operation.
    # Checked by attributes, not by class, so that training/ does not import data/.
    return (
        isinstance(getattr(dataset, "images", None), torch.Tensor)
        and isinstance(getattr(dataset, "labels", None), torch.Tensor)
        and getattr(dataset, "transform", "absent") is None
    )


class IndexedDataset(Dataset):
    """Wraps a ``(image, label)`` data set to return ``(image, label, index)``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image, label = self.dataset[i]
        return image, label, i


class _InMemoryBatches(Dataset):
    """Batches of an in-memory data set by one tensor index each: ``(image, label)``, or
    ``(image, label, index)`` with ``with_index`` (as :class:`IndexedDataset` gives)."""

    def __init__(self, dataset: Dataset, with_index: bool = False):
        self.dataset, self.with_index = dataset, with_index

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        item = self.dataset[i]
        return (*item, i) if self.with_index else item

    def __getitems__(self, indices):
        index = torch.as_tensor(indices, dtype=torch.int64)
        batch = (self.dataset.images[index], self.dataset.labels[index])
        return _Batch((*batch, index) if self.with_index else batch)


def indexed_for_loader(dataset: Dataset):
    """``(IndexedDataset, collate_fn)`` for a DataLoader over ``dataset``.

    Over in-memory tensors without a transform (a
    :class:`~pml_hashing.data.TensorImageDataset`) a batch is fetched with one tensor index
    instead of one ``__getitem__`` per item and a stack: the same batches, in the same
    order, with the same values, several times faster for small images.
    """
    if _in_memory(dataset):
        return _InMemoryBatches(dataset, with_index=True), collate
    return IndexedDataset(dataset), None


def _encoding_loader(dataset, batch_size: int, num_workers: int, accelerator) -> DataLoader:
    """In order, unshuffled; sharded across processes with an accelerator."""
    if _in_memory(dataset):
        dataset, collate_fn = _InMemoryBatches(dataset), collate
    else:
        collate_fn = None
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_fn,
    )
    return loader if accelerator is None else accelerator.prepare_data_loader(loader)


def encode_training_set(model, train, batch_size: int, accelerator):
    """Outputs, flattened inputs and labels of the whole training set, for methods that
    alternate with a discrete step over it (BDNN's update of B)."""
    # here, not at the top: encoding serves export and sharded encoding too, which need no
    # methods (and so no pytorch-metric-learning)
    from ..methods import EncodedTrainingSet

    outputs, labels, inputs = encode_dataset(
        model, train, batch_size, accelerator, with_inputs=True
    )
    return EncodedTrainingSet(outputs, inputs, labels, torch.arange(len(outputs)))


@torch.no_grad()
def encode_dataset(
    model: torch.nn.Module,
    dataset: Dataset,
    batch_size: int = 512,
    accelerator=None,
    num_workers: int = 0,
    with_inputs: bool = False,
):
    """The model's outputs on every item of ``dataset``, in order.

    Args:
        model: maps a batch of images to ``(N, K)`` real outputs (``HashingModel``).
        dataset: yields ``(image, label)``.
        batch_size: per forward pass.
        accelerator: an ``accelerate.Accelerator``: each process encodes its shard and the
            results are gathered with ``gather_for_metrics``, which drops the samples that
            the sampler repeated to even out the last batch, so no item is counted twice.
        num_workers: DataLoader workers.
        with_inputs: also return the flattened inputs (reconstruction methods need them).

    Returns:
        ``(outputs float32 (N, K), labels)`` on the CPU, plus ``inputs (N, D)`` when asked.
    """
    was_training = model.training
    model.eval()
    loader = _encoding_loader(dataset, batch_size, num_workers, accelerator)
    # a module without weights (flattened pixels for LSH / ITQ) runs on the CPU
    weight = next(itertools.chain(model.parameters(), model.buffers()), None)
    device = torch.device("cpu") if weight is None else weight.device
    outputs, labels, inputs = [], [], []
    for images, targets in loader:
        if accelerator is None:
            images = images.to(device)
            out = model(images).float()
        else:
            with accelerator.autocast():
                out = model(images).float()
            out, targets = accelerator.gather_for_metrics((out, targets))
            if with_inputs:
                images = accelerator.gather_for_metrics(images)
        outputs.append(out.cpu())
        labels.append(targets.cpu())
        if with_inputs:
            inputs.append(images.flatten(1).float().cpu())
    model.train(was_training)
    result = (torch.cat(outputs), torch.cat(labels))
    if with_inputs:
        result = result + (torch.cat(inputs),)
    return result


def encode_for_retrieval(
    model: torch.nn.Module,
    method,
    dataset: Dataset,
    batch_size: int = 512,
    accelerator=None,
    num_workers: int = 0,
):
    """The real values whose signs are the retrieval codes, and the labels: the method's
    encoder (the network, or flattened pixels for LSH / ITQ) followed by its
    ``retrieval_outputs`` (the identity for DPN and BDNN)."""
    outputs, labels = encode_dataset(
        method.retrieval_encoder(model), dataset, batch_size, accelerator, num_workers
    )
    return method.retrieval_outputs(outputs), labels
