"""The losses inside PML's machinery: reducers, trainers, CrossBatchMemory."""

from __future__ import annotations

import pytest
import torch
from pytorch_metric_learning import losses, reducers, trainers

from pml_hashing.losses import BDNNSimilarityLoss, PolarizationLoss
from pml_hashing.miners import AdaptiveTargetMiner, RandomTargetMiner
from pml_hashing.regularizers import BitBalanceRegularizer

TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


def naive_polarization_per_sample(embeddings, labels, targets, margin):
    out = []
    for i in range(embeddings.shape[0]):
        total = 0.0
        for k in range(embeddings.shape[1]):
            total += max(margin - float(embeddings[i, k]) * float(targets[labels[i], k]), 0.0)
        out.append(total)
    return out


def naive_similarity_per_sample(embeddings, labels):
    n, bits = embeddings.shape
    out = []
    for i in range(n):
        total = 0.0
        for j in range(n):
            inner = sum(float(embeddings[i, k]) * float(embeddings[j, k]) for k in range(bits))
            similar = 1.0 if (i == j or labels[i] == labels[j]) else -1.0
            total += (inner / bits - similar) ** 2
        out.append(total)
    return out


def reduce_naively(name, per_sample):
    if name in ("MeanReducer", "DivisorReducer"):
        return sum(per_sample) / len(per_sample)
    nonzero = [x for x in per_sample if x > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


REDUCERS = [reducers.MeanReducer, reducers.DivisorReducer, reducers.AvgNonZeroReducer]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reducer_class", REDUCERS)
def test_polarization_loss_with_pml_reducers_matches_a_naive_reduction(dtype, reducer_class):
    generator = torch.Generator().manual_seed(0)
    miner = RandomTargetMiner(num_classes=4, num_bits=8)
    # Large outputs on half the batch: those samples are polarized (loss 0), which is what
    # AvgNonZeroReducer leaves out.
    embeddings = torch.randn(10, 8, generator=generator, dtype=dtype)
    labels = torch.randint(0, 4, (10,), generator=generator)
    embeddings[:5] = 3 * miner.targets[labels[:5]].to(dtype)
    loss_fn = PolarizationLoss(margin=1.0, target_miner=miner, reducer=reducer_class())
    got = float(loss_fn(embeddings, labels))
    per_sample = naive_polarization_per_sample(embeddings, labels, miner.targets, 1.0)
    assert per_sample[:5] == [0.0] * 5
    expected = reduce_naively(reducer_class.__name__, per_sample)
    assert got == pytest.approx(expected, rel=TOLERANCE[dtype], abs=TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reducer_class", REDUCERS)
def test_bdnn_similarity_loss_with_pml_reducers_matches_a_naive_reduction(dtype, reducer_class):
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.randn(6, 4, generator=generator, dtype=dtype)
    labels = torch.randint(0, 3, (6,), generator=generator)
    got = float(BDNNSimilarityLoss(reducer=reducer_class())(embeddings, labels))
    expected = reduce_naively(
        reducer_class.__name__, naive_similarity_per_sample(embeddings, labels)
    )
    assert got == pytest.approx(expected, rel=10 * TOLERANCE[dtype])


def test_cross_batch_memory_refuses_the_hashing_losses_by_name():
    for loss_fn in (PolarizationLoss(num_classes=3, num_bits=8), BDNNSimilarityLoss()):
        with pytest.raises(Exception, match=f"not supported for {type(loss_fn).__name__}"):
            losses.CrossBatchMemory(loss_fn, embedding_size=8)


def test_cross_batch_memory_with_a_pair_loss_and_a_hashing_regularizer():
    generator = torch.Generator().manual_seed(2)
    regularizer = BitBalanceRegularizer()
    memory = losses.CrossBatchMemory(
        losses.ContrastiveLoss(embedding_regularizer=regularizer, embedding_reg_weight=1.0),
        embedding_size=8,
        memory_size=16,
    )
    embeddings = torch.randn(6, 8, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    loss = memory(embeddings, labels)
    loss.backward()
    assert bool(torch.isfinite(loss.detach())) and embeddings.grad is not None
    plain = losses.ContrastiveLoss()(embeddings.detach(), labels)
    # The same batch twice in memory has the same pairs, plus the regularizer's term.
    expected = float(plain) + float(regularizer(embeddings.detach()))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


class _TinyDataset(torch.utils.data.Dataset):
    def __init__(self, n=48, dim=12, num_classes=3):
        generator = torch.Generator().manual_seed(3)
        self.labels = torch.arange(n) % num_classes
        self.x = torch.randn(n, dim, generator=generator) + 2 * self.labels[:, None]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.x[i], self.labels[i]


def test_metric_loss_only_trainer_with_dpn_a_end_of_epoch_hook():
    torch.manual_seed(0)
    trunk, embedder = torch.nn.Linear(12, 16), torch.nn.Linear(16, 8)
    # Algorithm 1 as the paper writes it: an update after every epoch, no guard
    miner = AdaptiveTargetMiner(
        num_classes=3, num_bits=8, warmup_epochs=0, update_every=1, min_distance_floor=None
    )
    loss_fn = PolarizationLoss(target_miner=miner)
    updates = []
    trainer = trainers.MetricLossOnly(
        models={"trunk": trunk, "embedder": embedder},
        optimizers={
            "trunk_optimizer": torch.optim.SGD(trunk.parameters(), lr=0.1),
            "embedder_optimizer": torch.optim.SGD(embedder.parameters(), lr=0.1),
        },
        batch_size=16,
        loss_funcs={"metric_loss": loss_fn},
        dataset=_TinyDataset(),
        end_of_epoch_hook=lambda trainer: updates.append(loss_fn.end_epoch()),
        dataloader_num_workers=0,
    )
    before = miner.targets.clone()
    trainer.train(num_epochs=2)
    assert updates[0] is True and all(isinstance(u, bool) for u in updates)
    assert not torch.equal(before, miner.targets)  # DPN-A moved its targets
