"""CSQLoss and OrthoHashLoss against plain re-implementations of their authors' formulas.

CSQ: DeepHash-pytorch's CSQ.py / yuanli2333's train.py (u = tanh(v); BCE of (u + 1) / 2 to
(c + 1) / 2 averaged over batch and bits, plus lambda * mean (|u| - 1)^2; multi-label centers
are the sign of the mean of the label centers, ties from one random center). OrthoHash:
kamwoh/orthohash's OrthoHashLoss (m_type 'cos') over its CosSim head.
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.losses import CSQLoss, OrthoHashLoss
from pml_hashing.miners import (
    AdaptiveTargetMiner,
    HadamardTargetMiner,
    HashCenterTargetMiner,
    MaxHammingDistanceTargetMiner,
    RandomTargetMiner,
)

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: dict(rtol=2e-5, atol=2e-6), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def random_batch(n, num_bits, num_classes, dtype, seed, multi_hot=False):
    generator = torch.Generator().manual_seed(seed)
    embeddings = 1.5 * torch.randn(n, num_bits, generator=generator, dtype=dtype)
    if multi_hot:
        labels = (torch.rand(n, num_classes, generator=generator) < 0.3).long()
        labels[0] = 0  # a sample with no label
        labels[1, :3] = 1  # and one with several
    else:
        labels = torch.randint(0, num_classes, (n,), generator=generator)
    return embeddings.requires_grad_(True), labels


# ---------------------------------------------------------------- CSQ, the authors' way


def authors_csq_centers(labels, targets, random_center):
    """Hash_center_multilables, plainly: per sample, the mean of its labels' centers, the
    sign of it, zeros from the random center; integer labels index the centers."""
    centers = []
    for y in labels.tolist():
        if isinstance(y, int):
            centers.append(targets[y].tolist())
            continue
        rows = [targets[c].tolist() for c, on in enumerate(y) if on]
        center = []
        for k in range(targets.shape[1]):
            mean = sum(r[k] for r in rows) / len(rows) if rows else 0.0
            center.append(1.0 if mean > 0 else -1.0 if mean < 0 else random_center[k].item())
        centers.append(center)
    return torch.tensor(centers)


def authors_csq_loss(v, centers, lam):
    """CSQLoss.forward: u = tanh(v); BCELoss(0.5 (u + 1), 0.5 (c + 1)) + lam * Q_loss."""
    u = v.tanh()
    p = 0.5 * (u + 1)
    t = 0.5 * (centers.to(v.dtype) + 1)
    total_bce, total_q, count = 0.0, 0.0, 0
    for i in range(v.shape[0]):
        for k in range(v.shape[1]):
            total_bce = total_bce - (
                t[i, k] * torch.log(p[i, k]) + (1 - t[i, k]) * torch.log(1 - p[i, k])
            )
            total_q = total_q + (u[i, k].abs() - 1.0) ** 2
            count += 1
    return total_bce / count + lam * total_q / count


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("multi_hot", [False, True])
@pytest.mark.parametrize("lam", [1e-4, 0.5])
def test_csq_loss_and_gradient_match_the_authors_formula(dtype, multi_hot, lam):
    num_classes, num_bits = 6, 16
    loss_fn = CSQLoss(num_classes=num_classes, num_bits=num_bits, quantization_weight=lam, seed=3)
    v, labels = random_batch(12, num_bits, num_classes, dtype, seed=1, multi_hot=multi_hot)
    got = loss_fn(v, labels)
    (grad,) = torch.autograd.grad(got, v)
    reference_v = v.detach().clone().requires_grad_(True)
    centers = authors_csq_centers(labels, loss_fn.targets, loss_fn.tie_break_center)
    expected = authors_csq_loss(reference_v, centers, lam)
    (expected_grad,) = torch.autograd.grad(expected, reference_v)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected.to(dtype), **TOLERANCE[dtype])
    torch.testing.assert_close(grad, expected_grad, **TOLERANCE[dtype])


def test_csq_multi_hot_ties_take_the_random_center_bits():
    loss_fn = CSQLoss(HadamardTargetMiner(4, 8, seed=0), seed=5)
    labels = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])
    centers = loss_fn.hash_centers(labels, torch.zeros(2, 8))
    targets = loss_fn.targets
    tied = targets[0] + targets[1] == 0
    assert tied.any() and (~tied).any()  # two Hadamard rows agree on half the bits
    assert torch.equal(centers[0][tied], loss_fn.tie_break_center[tied])
    assert torch.equal(centers[0][~tied], targets[0][~tied])
    assert torch.equal(centers[1], loss_fn.tie_break_center)  # no label: all ties


def test_csq_default_codebook_is_the_authors_hadamard_rows():
    loss_fn = CSQLoss(num_classes=10, num_bits=16)
    assert isinstance(loss_fn.target_miner, HashCenterTargetMiner)
    h = [[1]]
    while len(h) < 16:
        h = [r + r for r in h] + [r + [-x for x in r] for r in h]
    assert loss_fn.targets.tolist() == [[float(x) for x in r] for r in h[:10]]


@settings(max_examples=40, deadline=None)
@given(scale=st.floats(min_value=1.0, max_value=8.0), seed=st.integers(0, 2**16))
def test_csq_center_loss_falls_as_outputs_move_towards_their_center(scale, seed):
    loss_fn = CSQLoss(num_classes=5, num_bits=16, quantization_weight=0.0)
    labels = torch.randint(0, 5, (6,), generator=torch.Generator().manual_seed(seed))
    towards = loss_fn.targets[labels].double()
    assert loss_fn(scale * towards, labels) < loss_fn(0.5 * towards, labels)
    # the authors' Q term is 0 exactly at |tanh(v)| = 1, positive elsewhere
    assert CSQLoss(num_classes=5, num_bits=16, quantization_weight=1.0)(0 * towards, labels) > 0


# ---------------------------------------------------------------- OrthoHash, the authors' way


def authors_orthohash_loss(v, labels, codebook, s, m):
    """CosSim + OrthoHashLoss (m_type 'cos'): single label CE; multiclass label smoothing."""
    total = 0.0
    n, num_classes = v.shape[0], codebook.shape[0]
    for i in range(n):
        vn = v[i] / torch.sqrt((v[i] ** 2).sum())
        logits = []
        y = labels[i].tolist()
        positive = (
            [y == c for c in range(num_classes)] if isinstance(y, int) else [bool(x) for x in y]
        )
        for c in range(num_classes):
            t = codebook[c].to(v.dtype)
            cosine = (vn * (t / math.sqrt(float((t**2).sum())))).sum()
            logits.append(s * (cosine - (m if positive[c] else 0.0)))
        logits = torch.stack(logits)
        log_norm = torch.logsumexp(logits, dim=0)
        count = sum(positive)
        if count:  # the authors divide by zero for a sample with no label: 0 here
            total = (
                total - sum(logits[c] - log_norm for c in range(num_classes) if positive[c]) / count
            )
    return total / n


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("multi_hot", [False, True])
@pytest.mark.parametrize(("scale", "margin"), [(8.0, 0.2), (3.0, 0.0), (16.0, 0.5)])
def test_orthohash_loss_and_gradient_match_the_authors_formula(dtype, multi_hot, scale, margin):
    num_classes, num_bits = 7, 16
    loss_fn = OrthoHashLoss(num_classes=num_classes, num_bits=num_bits, scale=scale, margin=margin)
    v, labels = random_batch(10, num_bits, num_classes, dtype, seed=2, multi_hot=multi_hot)
    got = loss_fn(v, labels)
    (grad,) = torch.autograd.grad(got, v)
    reference_v = v.detach().clone().requires_grad_(True)
    expected = authors_orthohash_loss(reference_v, labels, loss_fn.targets, scale, margin)
    (expected_grad,) = torch.autograd.grad(expected, reference_v)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected.to(dtype), **TOLERANCE[dtype])
    torch.testing.assert_close(grad, expected_grad, **TOLERANCE[dtype])


@settings(max_examples=40, deadline=None)
@given(factor=st.floats(min_value=1e-2, max_value=1e3), seed=st.integers(0, 2**16))
def test_orthohash_loss_ignores_the_length_of_the_outputs(factor, seed):
    loss_fn = OrthoHashLoss(num_classes=5, num_bits=16)
    generator = torch.Generator().manual_seed(seed)
    v = torch.randn(6, 16, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (6,), generator=generator)
    torch.testing.assert_close(loss_fn(factor * v, labels), loss_fn(v, labels))


# ---------------------------------------------------------------- shared behaviour

MINERS = {
    "random": lambda: RandomTargetMiner(6, 16, seed=1),
    "hadamard": lambda: HadamardTargetMiner(6, 16, seed=1),
    "hash-center": lambda: HashCenterTargetMiner(6, 16),
    "max-hamming": lambda: MaxHammingDistanceTargetMiner(6, 16, seed=1),
    "adaptive": lambda: AdaptiveTargetMiner(
        6, 16, seed=1, warmup_epochs=0, update_every=1, min_distance_floor=None
    ),
}


@pytest.mark.parametrize("loss_class", [CSQLoss, OrthoHashLoss])
@pytest.mark.parametrize("kind", sorted(MINERS))
def test_every_target_miner_gives_the_codebook_and_an_adaptive_one_is_updated(loss_class, kind):
    miner = MINERS[kind]()
    loss_fn = loss_class(target_miner=miner)
    assert loss_fn.targets is miner.targets
    labels = torch.arange(6).repeat(3)
    flipped = miner.targets[labels].clone()
    flipped[labels == 0, 0] *= -1  # class 0's samples agree on a flipped bit
    loss_fn(flipped.requires_grad_(True), labels).backward()
    before = miner.targets.clone()
    changed = loss_fn.end_epoch()
    assert changed is (kind == "adaptive")
    if kind == "adaptive":
        assert miner.targets[0, 0] == -before[0, 0]


@pytest.mark.parametrize("loss_class", [CSQLoss, OrthoHashLoss])
def test_outputs_of_the_wrong_width_are_refused(loss_class):
    loss_fn = loss_class(num_classes=4, num_bits=16)
    with pytest.raises(ValueError, match="embeddings have 8 bits"):
        loss_fn(torch.randn(3, 8), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: CSQLoss(num_classes=4, num_bits=16, quantization_weight=-1),
            "quantization_weight",
        ),
        (lambda: OrthoHashLoss(num_classes=4, num_bits=16, scale=0), "scale must be > 0"),
        (lambda: OrthoHashLoss(num_classes=4, num_bits=16, margin="0.2"), "margin must be"),
        (lambda: CSQLoss(target_miner="hadamard"), "target_miner must be a BaseTargetMiner"),
        (lambda: OrthoHashLoss(), "target_miner is required"),
    ],
)
def test_bad_arguments_are_refused_naming_them(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("loss_class", [CSQLoss, OrthoHashLoss])
def test_codebook_and_tie_break_center_travel_in_the_state_dict(loss_class):
    source = loss_class(target_miner=RandomTargetMiner(4, 16, seed=1), seed=1)
    other = loss_class(target_miner=RandomTargetMiner(4, 16, seed=2), seed=2)
    other.load_state_dict(source.state_dict())
    v, labels = random_batch(5, 16, 4, torch.float64, seed=0, multi_hot=True)
    torch.testing.assert_close(other(v, labels), source(v, labels))
