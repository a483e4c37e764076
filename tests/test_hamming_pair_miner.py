import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss
from pytorch_metric_learning.miners import BaseMiner

from pml_hashing.distances import HammingDistance
from pml_hashing.miners import HammingHardPairMiner


def hamming_by_loop(a, b):
    return sum(1 for x, y in zip(a.tolist(), b.tolist(), strict=True) if (x >= 0) != (y >= 0))


def pairs_by_loop(emb, labels, ref, ref_labels, pos_margin, neg_margin, same_batch):
    positives, negatives = set(), set()
    for i in range(len(emb)):
        for j in range(len(ref)):
            if same_batch and i == j:
                continue
            d = hamming_by_loop(emb[i], ref[j])
            if labels[i] == ref_labels[j] and d > pos_margin:
                positives.add((i, j))
            if labels[i] != ref_labels[j] and d < neg_margin:
                negatives.add((i, j))
    return positives, negatives


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("with_ref", [False, True])
def test_pair_miner_matches_loop(dtype, with_ref):
    generator = torch.Generator().manual_seed(int(with_ref))
    emb = torch.randn(24, 16, generator=generator, dtype=dtype)
    labels = torch.randint(0, 4, (24,), generator=generator)
    ref, ref_labels = emb, labels
    if with_ref:
        ref = torch.randn(30, 16, generator=generator, dtype=dtype)
        ref_labels = torch.randint(0, 4, (30,), generator=generator)
    miner = HammingHardPairMiner(pos_margin=6, neg_margin=8)
    if with_ref:
        a1, p, a2, n = miner(emb, labels, ref, ref_labels)
    else:
        a1, p, a2, n = miner(emb, labels)
    expected_pos, expected_neg = pairs_by_loop(
        emb, labels, ref, ref_labels, 6, 8, same_batch=not with_ref
    )
    got_pos = set(zip(a1.tolist(), p.tolist(), strict=True))
    got_neg = set(zip(a2.tolist(), n.tolist(), strict=True))
    assert len(got_pos) == len(a1) and len(got_neg) == len(a2)
    assert got_pos == expected_pos and got_neg == expected_neg
    assert expected_pos and expected_neg


def test_pair_miner_feeds_contrastive_loss():
    generator = torch.Generator().manual_seed(3)
    emb = torch.randn(32, 16, generator=generator, requires_grad=True)
    labels = torch.randint(0, 4, (32,), generator=generator)
    miner = HammingHardPairMiner(pos_margin=4, neg_margin=6)
    assert isinstance(miner, BaseMiner)
    pairs = miner(emb, labels)
    loss_fn = ContrastiveLoss()
    loss = loss_fn(emb, labels, pairs)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad is not None
    # Only the mined pairs count: the loss with all pairs differs from it.
    assert loss.item() != pytest.approx(loss_fn(emb, labels).item())
    pair_set = set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
    grads = emb.grad.abs().sum(dim=1) > 0
    touched = {i for pair in pair_set for i in pair} | set(pairs[2].tolist() + pairs[3].tolist())
    assert {i for i in range(32) if grads[i]} <= touched


def test_pair_miner_bad_arguments_are_named():
    with pytest.raises(ValueError, match="pos_margin must be >= 0"):
        HammingHardPairMiner(pos_margin=-1)
    with pytest.raises(ValueError, match="distance must be a HammingDistance; got LpDistance"):
        from pytorch_metric_learning.distances import LpDistance

        HammingHardPairMiner(distance=LpDistance())
    miner = HammingHardPairMiner(distance=HammingDistance())
    with pytest.raises(ValueError, match=r"labels must be integer class labels of shape \(N,\)"):
        miner.mine(torch.randn(4, 8), torch.zeros(4, 2), torch.randn(4, 8), torch.zeros(4, 2))
