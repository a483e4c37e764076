"""The DPN paper's bounds (Lemma 1, Propositions 1 to 3) as hypothesis properties.

Codes come from ``pml_hashing.codes.binarize`` and losses from ``PolarizationLoss``; Hamming
distances and the sums of the bounds are written out with plain loops here.
"""

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pytorch_metric_learning import reducers

from pml_hashing.codes import binarize
from pml_hashing.losses import PolarizationLoss
from pml_hashing.miners import RandomTargetMiner

DTYPES = (torch.float32, torch.float64)
# Slack on the side of the bound only, for rounding in the float sums of the losses.
SLACK = {torch.float32: 1e-4, torch.float64: 1e-9}


def hamming(a, b):
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


def per_sample_losses(embeddings, labels, targets, margin):
    """L_P(v_i, t_{y_i}) for each sample, from PolarizationLoss with targets ``targets``."""
    miner = RandomTargetMiner(targets.shape[0], targets.shape[1])
    miner.load_state_dict({"targets": targets.to(torch.float32)})
    loss_fn = PolarizationLoss(
        margin=margin, target_miner=miner, reducer=reducers.DoNothingReducer()
    )
    return loss_fn(embeddings, labels)["loss"]["losses"].tolist()


def codes_of(embeddings):
    return [[int(x) for x in row] for row in binarize(embeddings).tolist()]


# Outputs that stress the sign convention: exact zeros, -0.0, tiny values, values at +-m.
def output_values(width):
    return st.one_of(
        st.floats(min_value=-4, max_value=4, allow_nan=False, width=width),
        st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0]),
    )


@st.composite
def lemma_case(draw):
    num_bits = draw(st.integers(min_value=1, max_value=24))
    width = draw(st.sampled_from([32, 64]))
    v = draw(st.lists(output_values(width), min_size=num_bits, max_size=num_bits))
    t = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=num_bits, max_size=num_bits))
    margin = draw(st.floats(min_value=1.0, max_value=4.0))
    return v, t, margin, torch.float32 if width == 32 else torch.float64


# ---------------------------------------------------------------- Lemma 1


@settings(max_examples=150, deadline=None)
@given(lemma_case())
@example(([0.0, -0.0, -1e-30], [-1.0, -1.0, 1.0], 1.0, torch.float64))
def test_lemma1_hamming_to_target_bounded_by_loss(case):
    v, t, margin, dtype = case
    embeddings = torch.tensor([v], dtype=dtype)
    targets = torch.tensor([t])
    loss = per_sample_losses(embeddings, torch.tensor([0]), targets, margin)[0]
    distance = hamming(codes_of(embeddings)[0], [int(x) for x in t])
    assert distance <= loss


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=50, deadline=None)
@given(margin=st.floats(min_value=1e-3, max_value=0.999))
def test_lemma1_premise_m_at_least_one_is_needed(dtype, margin):
    # v = 0 codes as +1, against t = -1: one wrong bit, but the hinge is only m < 1.
    embeddings = torch.tensor([[0.0, 2.0]], dtype=dtype)
    targets = torch.tensor([[-1.0, 1.0]])
    loss = per_sample_losses(embeddings, torch.tensor([0]), targets, margin)[0]
    distance = hamming(codes_of(embeddings)[0], [-1, 1])
    assert distance == 1
    assert loss < distance


def test_lemma1_fails_below_m_one_on_slightly_wrong_outputs():
    # A slightly negative output against t = +1: hinge m + 0.01 < 1 although the bit is wrong.
    embeddings = torch.tensor([[-0.01, -0.01, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 1.0, 1.0]])
    loss = per_sample_losses(embeddings, torch.tensor([0]), targets, 0.4)[0]
    assert hamming(codes_of(embeddings)[0], [1, 1, 1]) == 2
    assert loss == pytest.approx(0.82)


# ---------------------------------------------------------------- Propositions 1 to 3


@st.composite
def multi_class_case(draw, max_classes=5):
    num_classes = draw(st.integers(min_value=1, max_value=max_classes))
    num_bits = draw(st.integers(min_value=1, max_value=16))
    sizes = draw(st.lists(st.integers(1, 5), min_size=num_classes, max_size=num_classes))
    margin = draw(st.floats(min_value=1.0, max_value=3.0))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    noise = draw(st.sampled_from([0.0, 0.3, 1.0, 3.0]))
    rng = np.random.default_rng(seed)
    targets = rng.choice([-1.0, 1.0], size=(num_classes, num_bits))
    labels = np.repeat(np.arange(num_classes), sizes)
    # outputs around their class's target (tight cases at noise 0), with exact zeros mixed in
    scale = rng.uniform(0, 2 * margin, size=(len(labels), 1))
    v = targets[labels] * scale + noise * rng.standard_normal((len(labels), num_bits))
    v[rng.random(v.shape) < 0.1] = 0.0
    return (
        torch.tensor(v, dtype=dtype),
        torch.tensor(labels),
        torch.tensor(targets),
        margin,
        dtype,
    )


def split_by_class(embeddings, labels, targets, margin):
    """Per class: its binary codes and its polarization losses."""
    losses = per_sample_losses(embeddings, labels, targets, margin)
    codes = codes_of(embeddings)
    by_class = []
    for c in range(targets.shape[0]):
        members = [i for i, y in enumerate(labels.tolist()) if y == c]
        by_class.append(([codes[i] for i in members], [losses[i] for i in members]))
    return by_class


def mean_cross_distance(codes_x, codes_y):
    total = 0
    for b in codes_x:
        for b2 in codes_y:
            total += hamming(b, b2)
    return total / (len(codes_x) * len(codes_y))


@settings(max_examples=100, deadline=None)
@given(multi_class_case(max_classes=1))
def test_proposition1_intra_class_distance_bounded_by_loss(case):
    embeddings, labels, targets, margin, dtype = case
    ((codes, losses),) = split_by_class(embeddings, labels, targets, margin)
    n = len(codes)
    left = mean_cross_distance(codes, codes)  # (1/|C|^2) sum_{i,j} D_h(b_i, b_j)
    right = 2 / n * sum(losses)
    assert left <= right + SLACK[dtype] * max(1.0, right)


@settings(max_examples=100, deadline=None)
@given(multi_class_case())
def test_proposition2_inter_class_distance_bound(case):
    embeddings, labels, targets, margin, dtype = case
    by_class = split_by_class(embeddings, labels, targets, margin)
    num_classes = len(by_class)
    t = [[int(x) for x in row] for row in targets.tolist()]
    left = 0.0
    for x in range(num_classes):
        for y in range(num_classes):
            if x != y:
                left += hamming(t[x], t[y]) - mean_cross_distance(by_class[x][0], by_class[y][0])
    right = 0.0
    for codes, losses in by_class:
        right += 2 * (num_classes - 1) / len(codes) * sum(losses)
    assert left <= right + SLACK[dtype] * max(1.0, abs(right))


@settings(max_examples=100, deadline=None)
@given(multi_class_case())
def test_proposition3_intra_minus_inter_bound(case):
    embeddings, labels, targets, margin, dtype = case
    by_class = split_by_class(embeddings, labels, targets, margin)
    num_classes = len(by_class)
    t = [[int(x) for x in row] for row in targets.tolist()]
    left = 0.0
    right = 0.0
    for x in range(num_classes):
        codes, losses = by_class[x]
        left += mean_cross_distance(codes, codes)
        right += 2 * num_classes / len(codes) * sum(losses)
        for y in range(num_classes):
            if x != y:
                left -= mean_cross_distance(codes, by_class[y][0])
                right -= hamming(t[x], t[y])
    assert left <= right + SLACK[dtype] * max(1.0, abs(right))


def test_proposition3_is_tight_for_outputs_exactly_at_their_targets():
    # v = m t: zero loss, codes equal their targets, so both sides equal -sum D_h(t_x, t_y).
    targets = torch.tensor([[1.0, 1, -1, -1], [1.0, -1, 1, -1], [-1.0, -1, -1, 1]])
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    embeddings = 1.5 * targets[labels].to(torch.float64)
    by_class = split_by_class(embeddings, labels, targets, 1.5)
    assert all(loss == 0 for _, losses in by_class for loss in losses)
    inter = sum(
        mean_cross_distance(by_class[x][0], by_class[y][0])
        for x in range(3)
        for y in range(3)
        if x != y
    )
    assert inter == 2 * (2 + 3 + 3)  # D_h(t_0, t_1) = 2, D_h(t_0, t_2) = 3, D_h(t_1, t_2) = 3
