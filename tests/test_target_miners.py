"""Tests of the target miners (pml_hashing.miners) against plain-loop references."""

import itertools
import math

import pytest
import torch

from pml_hashing.miners import (
    AdaptiveTargetMiner,
    HadamardTargetMiner,
    MaxHammingDistanceTargetMiner,
    RandomTargetMiner,
    base_target_miner,
)

DTYPES = (torch.float32, torch.float64)

# DPN's Algorithm 1 as written: update after every epoch, from the first, no guard.
ALGORITHM_1 = {"warmup_epochs": 0, "update_every": 1, "min_distance_floor": None}


def loop_hamming(a, b):
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


def loop_pair_distances(codes):
    """All distances D_h(t_x, t_y) over unordered pairs x < y, by a loop."""
    rows = codes.tolist()
    return [loop_hamming(rows[x], rows[y]) for x, y in itertools.combinations(range(len(rows)), 2)]


def make_miner(kind, num_classes=12, num_bits=16, seed=0):
    if kind == "random":
        return RandomTargetMiner(num_classes, num_bits, seed=seed)
    if kind == "hadamard":
        return HadamardTargetMiner(num_classes, num_bits, seed=seed)
    if kind == "max_hamming":
        return MaxHammingDistanceTargetMiner(num_classes, num_bits, seed=seed)
    return AdaptiveTargetMiner(num_classes, num_bits, seed=seed, **ALGORITHM_1)


ALL_KINDS = ("random", "hadamard", "max_hamming", "adaptive")


# ---------------------------------------------------------------- every miner


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_targets_have_shape_and_plus_minus_one_values(kind):
    miner = make_miner(kind, num_classes=12, num_bits=16)
    assert miner.targets.shape == (12, 16)
    assert all(x in (-1.0, 1.0) for x in miner.targets.flatten().tolist())


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_min_and_mean_distance_stats_match_loop_over_pairs(kind):
    miner = make_miner(kind, num_classes=13, num_bits=16, seed=3)
    distances = loop_pair_distances(miner.targets)
    assert miner.min_hamming_distance == min(distances)
    assert miner.mean_hamming_distance == pytest.approx(sum(distances) / len(distances))
    matrix = miner.pairwise_distances()
    pairs = list(itertools.combinations(range(13), 2))
    for (x, y), d in zip(pairs, distances, strict=True):
        assert matrix[x, y] == d and matrix[y, x] == d
    assert all(matrix[c, c] == 0 for c in range(13))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_targets_saved_in_state_dict_and_restored_into_other_seed(kind):
    source = make_miner(kind, seed=1)
    other = make_miner(kind, seed=2)
    assert not torch.equal(source.targets, other.targets)  # the test would be vacuous otherwise
    state = source.state_dict()
    assert "targets" in state
    other.load_state_dict(state)
    assert torch.equal(other.targets, source.targets)
    # the codebook stats describe the loaded codebook, not the one built from seed 2
    distances = loop_pair_distances(other.targets)
    assert other.min_hamming_distance == min(distances)
    assert other.mean_hamming_distance == pytest.approx(sum(distances) / len(distances))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_forward_returns_each_labels_target(kind):
    miner = make_miner(kind)
    labels = torch.tensor([3, 0, 11, 3, 7])
    out = miner(labels)
    for i, label in enumerate(labels.tolist()):
        assert out[i].tolist() == miner.targets[label].tolist()


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("bad", [12, 40, -1])
def test_labels_out_of_range_raise_with_range_in_message(kind, bad):
    miner = make_miner(kind, num_classes=12)
    labels = torch.tensor([0, bad, 5])
    message = rf"labels must be in \[0, num_classes\) = \[0, 12\); got {bad}"
    with pytest.raises(ValueError, match=message):
        miner(labels)
    with pytest.raises(ValueError, match=message):
        miner.check_labels(labels)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_multi_hot_labels_of_wrong_width_raise(kind):
    miner = make_miner(kind, num_classes=12)
    with pytest.raises(
        ValueError, match=r"multi-hot labels must have shape .*\(N, 12\); got \(4, 10\)"
    ):
        miner.check_labels(torch.zeros(4, 10, dtype=torch.long))


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_multi_hot_labels_with_values_other_than_zero_one_raise(kind):
    miner = make_miner(kind, num_classes=12)
    labels = torch.zeros(3, 12, dtype=torch.long)
    labels[1, 4] = 2
    with pytest.raises(ValueError, match="multi-hot labels must contain only 0 and 1"):
        miner.check_labels(labels)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_float_integer_labels_raise(kind):
    miner = make_miner(kind)
    with pytest.raises(ValueError, match="must have an integer dtype; got torch.float32"):
        miner(torch.tensor([0.0, 1.0]))


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_num_classes_raise(kind, bad):
    with pytest.raises(ValueError, match="num_classes must be"):
        make_miner(kind, num_classes=bad)


# ---------------------------------------------------------------- Random


def test_random_targets_are_seeded():
    a = RandomTargetMiner(20, 32, seed=5).targets
    b = RandomTargetMiner(20, 32, seed=5).targets
    c = RandomTargetMiner(20, 32, seed=6).targets
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_random_bit_ratio_close_to_p(p):
    num_classes, num_bits = 1000, 64
    miner = RandomTargetMiner(num_classes, num_bits, p=p, seed=11)
    n = num_classes * num_bits
    positives = sum(1 for x in miner.targets.flatten().tolist() if x == 1)
    # The count of +1 bits is Binomial(n, p): allow 6 standard deviations.
    assert abs(positives / n - p) <= 6 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.7])
def test_random_mean_pairwise_distance_close_to_claim(p):
    num_classes, num_bits = 400, 64
    miner = RandomTargetMiner(num_classes, num_bits, p=p, seed=12)
    expected = 2 * num_bits * p * (1 - p)
    assert miner.expected_hamming_distance() == pytest.approx(expected)
    # Mean over pairs from per-bit counts: a bit with n1 ones separates n1 * (C - n1) pairs.
    rows = miner.targets.tolist()
    separated = 0
    for k in range(num_bits):
        n1 = sum(1 for r in rows if r[k] == 1)
        separated += n1 * (num_classes - n1)
    mean = separated / (num_classes * (num_classes - 1) / 2)
    assert miner.mean_hamming_distance == pytest.approx(mean)
    # The mean is an unbiased estimate of 2Kp(1-p); its standard deviation here is ~0.01.
    assert abs(mean - expected) < 0.2


@pytest.mark.parametrize("kind", [RandomTargetMiner, AdaptiveTargetMiner])
@pytest.mark.parametrize("p", [0, 1, 0.0, 1.0])
def test_p_of_zero_or_one_is_refused_because_every_class_would_share_one_target(kind, p):
    with pytest.raises(ValueError, match="p must be strictly between 0 and 1.*share one target"):
        kind(4, 8, p=p)
    assert kind(1, 8, p=p).targets.shape == (1, 8)  # one class: nothing to share


@pytest.mark.parametrize("kind", [RandomTargetMiner, AdaptiveTargetMiner])
@pytest.mark.parametrize("p", ["0.5", None, [0.5]])
def test_p_of_the_wrong_type_is_refused_naming_p(kind, p):
    with pytest.raises(ValueError, match="^p must be a finite real number"):
        kind(4, 8, p=p)


def test_adaptive_end_epoch_without_votes_reports_no_change():
    miner = AdaptiveTargetMiner(5, 16, seed=0, **ALGORITHM_1)
    before = miner.targets.clone()
    assert miner.end_epoch() is False
    assert torch.equal(miner.targets, before) and miner.num_changed_bits == 0


def test_adaptive_end_epoch_with_votes_confirming_every_bit_reports_no_change():
    miner = AdaptiveTargetMiner(4, 16, seed=1, **ALGORITHM_1)
    labels = torch.tensor([0, 1, 2, 3])
    miner.observe(miner.targets[labels].clone(), labels)  # every sample exactly on its target
    assert miner.voters.sum() == 4
    assert miner.end_epoch() is False


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_random_rejects_p_outside_unit_interval(p):
    with pytest.raises(ValueError, match=rf"p must be a probability in \[0, 1\]; got {p}"):
        RandomTargetMiner(4, 8, p=p)


# ---------------------------------------------------------------- Hadamard


@pytest.mark.parametrize("num_bits", [4, 8, 16, 32])
def test_hadamard_rows_are_at_distance_half_k(num_bits):
    miner = HadamardTargetMiner(num_bits - 1, num_bits, seed=4)
    assert set(loop_pair_distances(miner.targets)) == {num_bits // 2}


@pytest.mark.parametrize(("num_classes", "num_bits"), [(3, 8), (14, 8), (15, 16), (30, 16)])
def test_hadamard_has_no_constant_row_and_rows_are_balanced(num_classes, num_bits):
    miner = HadamardTargetMiner(num_classes, num_bits, seed=1)
    for row in miner.targets.tolist():
        assert sum(1 for x in row if x == 1) == num_bits // 2
        assert row != [1.0] * num_bits and row != [-1.0] * num_bits


@pytest.mark.parametrize("num_bits", [8, 16])
def test_hadamard_uses_negated_rows_beyond_k_minus_one_classes(num_bits):
    num_classes = 2 * num_bits - 2
    miner = HadamardTargetMiner(num_classes, num_bits, seed=2)
    rows = miner.targets.tolist()
    assert len({tuple(r) for r in rows}) == num_classes  # all distinct
    distances = loop_pair_distances(miner.targets)
    assert set(distances) == {num_bits // 2, num_bits}
    # distance K happens exactly between a row and its negation
    for x, y in itertools.combinations(range(num_classes), 2):
        if loop_hamming(rows[x], rows[y]) == num_bits:
            assert rows[y] == [-v for v in rows[x]]


def test_hadamard_seed_changes_class_assignment():
    a = HadamardTargetMiner(7, 8, seed=0).targets
    b = HadamardTargetMiner(7, 8, seed=1).targets
    assert not torch.equal(a, b)
    assert torch.equal(a, HadamardTargetMiner(7, 8, seed=0).targets)


@pytest.mark.parametrize("num_bits", [1, 12, 24, 48])
def test_hadamard_rejects_num_bits_not_power_of_two(num_bits):
    with pytest.raises(ValueError, match=rf"num_bits must be a power of two.*got {num_bits}"):
        HadamardTargetMiner(3, num_bits)


@pytest.mark.parametrize("num_bits", [8, 16])
def test_hadamard_rejects_too_many_classes(num_bits):
    limit = 2 * num_bits - 2
    with pytest.raises(ValueError, match=rf"num_classes must be <= 2 \* num_bits - 2 = {limit}"):
        HadamardTargetMiner(limit + 1, num_bits)


# ---------------------------------------------------------------- MaxHammingDistance


@pytest.mark.parametrize(("num_classes", "num_bits"), [(10, 16), (40, 32), (100, 24)])
def test_max_hamming_min_distance_beats_random_codebooks(num_classes, num_bits):
    greedy = [
        min(
            loop_pair_distances(
                MaxHammingDistanceTargetMiner(num_classes, num_bits, seed=s).targets
            )
        )
        for s in range(3)
    ]
    random = [
        min(loop_pair_distances(RandomTargetMiner(num_classes, num_bits, seed=s).targets))
        for s in range(3)
    ]
    assert sum(greedy) / 3 > sum(random) / 3
    assert min(greedy) >= max(random)


@pytest.mark.parametrize("num_bits", [15, 16, 32])
def test_max_hamming_codes_are_balanced(num_bits):
    miner = MaxHammingDistanceTargetMiner(30, num_bits, seed=0)
    for row in miner.targets.tolist():
        assert sum(1 for x in row if x == 1) in (num_bits // 2, (num_bits + 1) // 2)


def test_max_hamming_codes_are_distinct_when_space_allows():
    miner = MaxHammingDistanceTargetMiner(50, 16, seed=0)
    assert len({tuple(r) for r in miner.targets.tolist()}) == 50


def test_max_hamming_rejects_no_candidates():
    with pytest.raises(ValueError, match="candidates_per_class must be a positive integer; got 0"):
        MaxHammingDistanceTargetMiner(4, 8, candidates_per_class=0)


# ---------------------------------------------------------------- Adaptive (DPN-A)


def loop_observe(targets, votes, voters, embeddings, labels):
    """Algorithm 1 votes, plainly: only correctly coded samples vote for their classes."""
    targets = targets.tolist()
    num_classes = len(targets)
    stats = {"incorrect": 0, "tied": 0}
    for v, y in zip(embeddings.tolist(), labels.tolist(), strict=True):
        b = [1 if x >= 0 else -1 for x in v]
        own = {y} if isinstance(y, int) else {c for c in range(num_classes) if y[c] == 1}
        d = [loop_hamming(b, targets[c]) for c in range(num_classes)]
        nearest = {c for c in range(num_classes) if d[c] == min(d)}
        if len(nearest) > 1:
            stats["tied"] += 1
        if not nearest <= own:
            stats["incorrect"] += 1
            continue
        for c in own:
            voters[c] += 1
            for k in range(len(b)):
                votes[c][k] += b[k]
    return stats


def loop_update(targets, votes):
    new = []
    for old_row, vote_row in zip(targets.tolist(), votes, strict=True):
        new.append(
            [
                1.0 if s > 0 else -1.0 if s < 0 else old
                for old, s in zip(old_row, vote_row, strict=True)
            ]
        )
    return new


def noisy_batch(targets, labels, flip_probability, generator, dtype):
    """Outputs near each label's target, with some signs flipped and some exact zeros."""
    base = targets[labels].to(dtype)
    flips = torch.rand(base.shape, generator=generator) < flip_probability
    magnitude = torch.rand(base.shape, generator=generator, dtype=dtype) + 0.1
    out = torch.where(flips, -base, base) * magnitude
    zeros = torch.rand(base.shape, generator=generator) < 0.05
    return torch.where(zeros, torch.zeros_like(out), out)


def zero_votes(num_classes, num_bits):
    return [[0] * num_bits for _ in range(num_classes)], [0] * num_classes


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_update_matches_loop_reference(dtype):
    num_classes, num_bits = 6, 8
    miner = AdaptiveTargetMiner(num_classes, num_bits, seed=3, **ALGORITHM_1)
    generator = torch.Generator().manual_seed(0)
    votes, voters = zero_votes(num_classes, num_bits)
    before = miner.targets.clone()
    totals = {"incorrect": 0, "tied": 0}
    for _ in range(4):
        # class 5 never appears: it has no voter and must keep its code
        labels = torch.randint(0, num_classes - 1, (25,), generator=generator)
        embeddings = noisy_batch(miner.targets, labels, 0.3, generator, dtype)
        stats = loop_observe(miner.targets, votes, voters, embeddings, labels)
        for key in totals:
            totals[key] += stats[key]
        miner.observe(embeddings, labels)
    # The data must exercise the rules under test.
    assert totals["incorrect"] > 0 and totals["tied"] > 0
    assert any(s == 0 for c in range(5) if voters[c] for s in votes[c])  # a tied vote
    assert voters[5] == 0
    assert miner.voters.tolist() == voters
    assert miner.votes.tolist() == votes
    expected = loop_update(before, votes)
    # end_epoch reports a change exactly when a bit flipped
    assert miner.end_epoch() is (expected != before.tolist())
    assert miner.targets.tolist() == expected
    assert miner.targets[5].tolist() == before[5].tolist()
    assert miner.num_voters == sum(voters)
    assert miner.num_changed_bits == int((miner.targets != before).sum())
    distances = loop_pair_distances(miner.targets)
    assert miner.min_hamming_distance == min(distances)


def test_adaptive_tied_nearest_target_counts_as_incorrect():
    miner = AdaptiveTargetMiner(2, 4, seed=0, **ALGORITHM_1)
    miner.load_state_dict(
        {**miner.state_dict(), "targets": torch.tensor([[1.0, 1, 1, 1], [1.0, 1, -1, -1]])}
    )
    # b = (1, 1, 1, -1) is at distance 1 from both targets: a tie, so no vote
    miner.observe(torch.tensor([[0.5, 0.5, 0.5, -0.5]]), torch.tensor([0]))
    assert miner.voters.tolist() == [0.0, 0.0]
    # b = (1, 1, 1, 1) is nearest to class 0 only: it votes for class 0
    miner.observe(torch.tensor([[0.5, 0.5, 0.0, 0.5]]), torch.tensor([0]))
    assert miner.voters.tolist() == [1.0, 0.0]
    assert miner.votes[0].tolist() == [1.0, 1.0, 1.0, 1.0]


def test_adaptive_tied_vote_keeps_old_bit():
    miner = AdaptiveTargetMiner(2, 4, seed=0, **ALGORITHM_1)
    targets = torch.tensor([[1.0, 1, 1, 1], [-1.0, -1, -1, -1]])
    miner.load_state_dict({**miner.state_dict(), "targets": targets})
    # two correctly coded class-0 samples that disagree on bit 3 and both flip bit 2
    miner.observe(torch.tensor([[1.0, 1, -1, 1], [1.0, 1, -1, -1]]), torch.tensor([0, 0]))
    assert miner.end_epoch()
    assert miner.targets[0].tolist() == [1.0, 1.0, -1.0, 1.0]
    assert miner.targets[1].tolist() == [-1.0, -1.0, -1.0, -1.0]  # no voter: unchanged


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_update_every_two_epochs_and_votes_reset(dtype):
    num_classes, num_bits = 5, 8
    miner = AdaptiveTargetMiner(
        num_classes, num_bits, update_every=2, warmup_epochs=0, min_distance_floor=None, seed=1
    )
    generator = torch.Generator().manual_seed(1)
    votes, voters = zero_votes(num_classes, num_bits)
    for epoch in range(1, 5):
        before = miner.targets.clone()
        labels = torch.randint(0, num_classes, (30,), generator=generator)
        embeddings = noisy_batch(miner.targets, labels, 0.35, generator, dtype)
        loop_observe(miner.targets, votes, voters, embeddings, labels)
        miner.observe(embeddings, labels)
        updated = miner.end_epoch()
        assert updated is (epoch % 2 == 0)
        if updated:
            # votes since the last update (both epochs) decide; then they start again at 0
            assert miner.targets.tolist() == loop_update(before, votes)
            votes, voters = zero_votes(num_classes, num_bits)
            assert miner.votes.abs().sum() == 0 and miner.voters.sum() == 0
        else:
            assert torch.equal(miner.targets, before)


def test_adaptive_votes_after_an_update_ignore_earlier_epochs():
    miner = AdaptiveTargetMiner(2, 4, seed=0, **ALGORITHM_1)
    miner.load_state_dict(
        {**miner.state_dict(), "targets": torch.tensor([[1.0, 1, 1, 1], [-1.0, -1, -1, -1]])}
    )
    miner.observe(torch.tensor([[1.0, 1, 1, -1]] * 3), torch.tensor([0, 0, 0]))
    miner.end_epoch()
    assert miner.targets[0].tolist() == [1.0, 1.0, 1.0, -1.0]
    # one sample voting +1 on bit 3: with stale votes (-3) it would lose, after a reset it wins
    miner.observe(torch.tensor([[1.0, 1, 1, 1]]), torch.tensor([0]))
    miner.end_epoch()
    assert miner.targets[0].tolist() == [1.0, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive_multi_hot_matches_loop_reference(dtype):
    num_classes, num_bits = 5, 8
    miner = AdaptiveTargetMiner(num_classes, num_bits, seed=7, **ALGORITHM_1)
    generator = torch.Generator().manual_seed(2)
    votes, voters = zero_votes(num_classes, num_bits)
    before = miner.targets.clone()
    stats = {"incorrect": 0}
    for _ in range(4):
        labels = (torch.rand(20, num_classes, generator=generator) < 0.3).long()
        labels[0] = 0  # a sample with no label never votes
        first = labels.argmax(dim=1)
        embeddings = noisy_batch(miner.targets, first, 0.25, generator, dtype)
        stats["incorrect"] += loop_observe(miner.targets, votes, voters, embeddings, labels)[
            "incorrect"
        ]
        miner.observe(embeddings, labels)
    assert stats["incorrect"] > 0
    assert any(v >= 2 for v in voters)
    assert miner.voters.tolist() == voters
    assert miner.votes.tolist() == votes
    miner.end_epoch()
    assert miner.targets.tolist() == loop_update(before, votes)


def test_adaptive_state_dict_round_trip_mid_epoch():
    generator = torch.Generator().manual_seed(3)
    miner = AdaptiveTargetMiner(
        6, 16, update_every=2, warmup_epochs=0, min_distance_floor=None, seed=0
    )
    batches = []
    for _ in range(4):
        labels = torch.randint(0, 6, (20,), generator=generator)
        batches.append((noisy_batch(miner.targets, labels, 0.2, generator, torch.float32), labels))
    miner.observe(*batches[0])
    miner.end_epoch()  # epoch 1 of 2: no update, votes kept
    miner.observe(*batches[1])
    restored = AdaptiveTargetMiner(
        6, 16, update_every=2, warmup_epochs=0, min_distance_floor=None, seed=99
    )
    restored.load_state_dict(miner.state_dict())
    changes = []
    for m in (miner, restored):
        m.observe(*batches[2])
        changes.append(m.end_epoch())
        m.observe(*batches[3])
    assert changes[0] == changes[1]
    assert torch.equal(restored.targets, miner.targets)
    assert torch.equal(restored.votes, miner.votes)
    assert int(restored.epochs_seen) == int(miner.epochs_seen) == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_adaptive_rejects_bad_update_every(bad):
    with pytest.raises(ValueError, match="update_every must be a positive integer"):
        AdaptiveTargetMiner(3, 8, update_every=bad)


def test_static_miners_ignore_observations():
    miner = RandomTargetMiner(4, 8)
    before = miner.targets.clone()
    miner.observe(torch.randn(10, 8), torch.randint(0, 4, (10,)))
    assert miner.end_epoch() is False
    assert torch.equal(miner.targets, before)


@pytest.mark.parametrize("bad", [0, -8, 8.0])
def test_bad_num_bits_raise(bad):
    with pytest.raises(ValueError, match=rf"num_bits must be a positive integer; got {bad}"):
        RandomTargetMiner(3, bad)


def test_random_expected_distance_hand_worked():
    # 2 * 8 * 0.25 * 0.75 = 3
    assert RandomTargetMiner(3, 8, p=0.25).expected_hamming_distance() == 3.0


@pytest.mark.parametrize("kind", ALL_KINDS)
@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int16, torch.int32])
def test_small_integer_label_dtypes_index_classes_not_masks(kind, label_dtype):
    # 12 labels for 12 classes: a uint8 tensor would silently act as a boolean mask
    miner = make_miner(kind, num_classes=12)
    labels = torch.tensor([1] * 6 + [0, 1, 0, 1, 1, 11], dtype=label_dtype)
    out = miner(labels)
    for i, label in enumerate(labels.tolist()):
        assert out[i].tolist() == miner.targets[label].tolist()


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int16, torch.int32])
def test_adaptive_observe_accepts_small_integer_label_dtypes(label_dtype):
    miner = AdaptiveTargetMiner(4, 8, seed=0, **ALGORITHM_1)
    reference = AdaptiveTargetMiner(4, 8, seed=0, **ALGORITHM_1)
    generator = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 4, (16,), generator=generator)
    embeddings = noisy_batch(miner.targets, labels, 0.2, generator, torch.float32)
    miner.observe(embeddings, labels.to(label_dtype))
    reference.observe(embeddings, labels)
    assert reference.voters.sum() > 0
    assert torch.equal(miner.votes, reference.votes)


@pytest.mark.parametrize("chunk_rows", [1, 3, 5, 100])
def test_distance_stats_computed_in_row_blocks_match_loop(monkeypatch, chunk_rows):
    monkeypatch.setattr(base_target_miner, "STATS_CHUNK_ROWS", chunk_rows)
    miner = RandomTargetMiner(13, 6, seed=5)  # 6 bits: duplicate codes (distance 0) are likely
    distances = loop_pair_distances(miner.targets)
    assert miner.min_hamming_distance == min(distances)
    assert miner.mean_hamming_distance == pytest.approx(sum(distances) / len(distances))


def test_distance_stats_with_a_duplicated_code_give_min_zero(monkeypatch):
    monkeypatch.setattr(base_target_miner, "STATS_CHUNK_ROWS", 2)
    miner = RandomTargetMiner(5, 8, seed=0)
    targets = miner.targets.clone()
    targets[4] = targets[1]
    miner.load_state_dict({"targets": targets})
    assert miner.min_hamming_distance == 0


# ---------------------------------------------------------------- DPN-A schedule and guard


def loop_min_distance(targets):
    return min(loop_pair_distances(torch.as_tensor(targets)))


def test_adaptive_guard_refuses_a_collapsing_update():
    # Three Hadamard rows, pairwise at distance 4. Class 0's samples all flip one bit in
    # which t_0 and t_1 differ: they are still nearest to t_0 (distance 1 against 3), so they
    # vote, and the voted t_0 would be at distance 3 from t_1.
    hadamard_rows = HadamardTargetMiner(3, 8).targets
    t0, t1 = hadamard_rows[0], hadamard_rows[1]
    bit = int(torch.nonzero(t0 != t1)[0])
    samples = t0.repeat(4, 1)
    samples[:, bit] *= -1
    labels = torch.zeros(4, dtype=torch.long)
    results = {}
    for floor in (None, 4, "initial"):
        miner = AdaptiveTargetMiner(3, 8, warmup_epochs=0, update_every=1, min_distance_floor=floor)
        miner.load_state_dict({**miner.state_dict(), "targets": hadamard_rows})
        miner.floor = 4.0 if floor == "initial" else miner.floor  # the loaded codebook's min
        miner.observe(samples, labels)
        results[floor] = (miner.end_epoch(), miner.targets.clone(), miner)
    updated, targets, miner = results[None]  # Algorithm 1: applied
    assert updated and miner.min_hamming_distance == 3 and miner.num_refused_updates == 0
    assert targets[0].tolist() == samples[0].tolist()
    for floor in (4, "initial"):
        updated, targets, miner = results[floor]
        assert updated is False
        assert torch.equal(targets, hadamard_rows)  # refused whole: nothing changed
        assert miner.num_refused_updates == 1 == int(miner.refused_updates)
        assert miner.proposed_min_hamming_distance == 3
        assert miner.min_hamming_distance == 4
        assert miner.votes.abs().sum() == 0 and miner.voters.sum() == 0  # votes discarded


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("floor", ["initial", -1, 2])
def test_adaptive_guard_decisions_match_loop_reference(dtype, floor):
    num_classes, num_bits = 6, 16
    initial_min = loop_min_distance(AdaptiveTargetMiner(num_classes, num_bits, seed=4).targets)
    # a floor below, at and above the initial codebook's minimum distance
    floor_value = initial_min if floor == "initial" else initial_min + floor
    miner = AdaptiveTargetMiner(
        num_classes,
        num_bits,
        seed=4,
        warmup_epochs=0,
        update_every=1,
        min_distance_floor=floor if floor == "initial" else floor_value,
    )
    generator = torch.Generator().manual_seed(5)
    outcomes = set()
    refused = 0
    for _ in range(12):
        votes, voters = zero_votes(num_classes, num_bits)
        before = miner.targets.clone()
        labels = torch.randint(0, num_classes, (40,), generator=generator)
        # the network "agrees" on a few flipped bits per class, plus per-sample noise
        shared = torch.rand(num_classes, num_bits, generator=generator) < 0.2
        base = torch.where(shared, -miner.targets, miner.targets)[labels].to(dtype)
        noise = torch.rand(base.shape, generator=generator) < 0.1
        embeddings = torch.where(noise, -base, base) * (torch.rand(base.shape, dtype=dtype) + 0.1)
        loop_observe(miner.targets, votes, voters, embeddings, labels)
        miner.observe(embeddings, labels)
        proposal = loop_update(before, votes)
        current_min = loop_min_distance(before.tolist())
        proposed_min = loop_min_distance(proposal)
        expect_refusal = proposed_min < min(floor_value, current_min)
        refused += expect_refusal
        updated = miner.end_epoch()
        assert miner.proposed_min_hamming_distance == proposed_min
        if expect_refusal:
            assert updated is False and torch.equal(miner.targets, before)
        else:
            assert miner.targets.tolist() == proposal
        assert miner.num_refused_updates == refused
        outcomes.add(expect_refusal)
        if not expect_refusal or floor != "initial":
            # the floor holds for every applied codebook (or it never got lower)
            assert loop_min_distance(miner.targets.tolist()) >= min(floor_value, current_min)
    assert outcomes == {True, False}  # the data must exercise both decisions


@pytest.mark.parametrize(("warmup", "every"), [(0, 1), (2, 3), (1, 2), (3, 1)])
def test_adaptive_updates_on_schedule_and_ignores_warmup_votes(warmup, every):
    num_classes, num_bits = 4, 16
    miner = AdaptiveTargetMiner(
        num_classes,
        num_bits,
        seed=2,
        warmup_epochs=warmup,
        update_every=every,
        min_distance_floor=None,
    )
    generator = torch.Generator().manual_seed(3)
    votes, voters = zero_votes(num_classes, num_bits)
    for epoch in range(1, 10):
        before = miner.targets.clone()
        labels = torch.randint(0, num_classes, (30,), generator=generator)
        embeddings = noisy_batch(miner.targets, labels, 0.3, generator, torch.float64)
        if epoch > warmup:  # votes of warm-up epochs never count
            loop_observe(miner.targets, votes, voters, embeddings, labels)
        miner.observe(embeddings, labels)
        should_update = epoch > warmup and (epoch - warmup) % every == 0
        updated = miner.end_epoch()
        assert miner.votes.tolist() == (
            zero_votes(num_classes, num_bits)[0] if should_update else votes
        )
        if should_update:
            assert miner.targets.tolist() == loop_update(before, votes)
            votes, voters = zero_votes(num_classes, num_bits)
        else:
            assert not updated and torch.equal(miner.targets, before)


def test_adaptive_defaults_wait_and_guard():
    miner = AdaptiveTargetMiner(10, 64)
    assert (miner.warmup_epochs, miner.update_every, miner.min_distance_floor) == (
        2,
        3,
        "initial",
    )
    assert miner.floor == miner.min_hamming_distance


def test_adaptive_host_epoch_count_and_refusals_restored_through_a_parent_module():
    miner = AdaptiveTargetMiner(4, 16, seed=0, warmup_epochs=2, update_every=1)
    miner.end_epoch()
    miner.end_epoch()
    miner.refused_updates += 3
    parent = torch.nn.ModuleDict({"miner": miner})
    restored = torch.nn.ModuleDict({"miner": AdaptiveTargetMiner(4, 16, seed=9, warmup_epochs=2)})
    restored.load_state_dict(parent.state_dict())
    child = restored["miner"]
    assert child._epochs_seen == 2 and child.num_refused_updates == 3
    assert child.min_hamming_distance == miner.min_hamming_distance
    labels = torch.tensor([0, 1])
    child.observe(child.targets[labels], labels)  # after the warm-up: counts
    assert child.voters.sum() == 2


def test_adaptive_loads_a_state_dict_without_the_refusal_counter():
    miner = AdaptiveTargetMiner(4, 16, seed=0)
    state = miner.state_dict()
    del state["refused_updates"]  # a checkpoint written before the guard existed
    miner.load_state_dict(state)
    assert miner.num_refused_updates == 0


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_adaptive_rejects_bad_warmup_epochs(bad):
    with pytest.raises(ValueError, match="warmup_epochs must be"):
        AdaptiveTargetMiner(3, 8, warmup_epochs=bad)


@pytest.mark.parametrize("bad", ["largest", -1, 9, True])
def test_adaptive_rejects_bad_min_distance_floor(bad):
    with pytest.raises(ValueError, match="min_distance_floor must be"):
        AdaptiveTargetMiner(3, 8, min_distance_floor=bad)


# ---------------------------------------------------------------- MaxHamming: duplicates, scale


def test_max_hamming_codes_stay_distinct_when_balanced_codes_run_out():
    # C(8, 4) = 70 balanced 8-bit codes for 100 classes: the rest must come from all codes
    miner = MaxHammingDistanceTargetMiner(100, 8, seed=0)
    rows = [tuple(r) for r in miner.targets.tolist()]
    assert len(set(rows)) == 100
    assert min(loop_pair_distances(miner.targets)) == miner.min_hamming_distance >= 1


def test_max_hamming_fills_the_whole_code_space():
    miner = MaxHammingDistanceTargetMiner(16, 4, seed=2)
    assert len({tuple(r) for r in miner.targets.tolist()}) == 16


def test_max_hamming_refuses_more_classes_than_distinct_codes():
    with pytest.raises(ValueError, match=r"num_classes must be <= 2\*\*num_bits = 256.*got 300"):
        MaxHammingDistanceTargetMiner(300, 8)


@pytest.mark.parametrize(("num_classes", "num_bits"), [(600, 16), (1200, 64), (700, 13)])
def test_max_hamming_over_several_blocks_matches_loop_min_distance(num_classes, num_bits):
    # more than one block of classes: the codes picked in later blocks are compared with
    # all earlier ones
    miner = MaxHammingDistanceTargetMiner(num_classes, num_bits, candidates_per_class=3, seed=1)
    codes = miner.targets.tolist()
    assert len({tuple(r) for r in codes}) == num_classes
    # a plain loop over pairs for the smallest distance (on a sample of rows against all)
    smallest = min(
        loop_hamming(codes[i], codes[j])
        for i in range(0, num_classes, 7)
        for j in range(num_classes)
        if i != j
    )
    assert miner.min_hamming_distance <= smallest
    random = RandomTargetMiner(num_classes, num_bits, seed=1).min_hamming_distance
    assert miner.min_hamming_distance > random


# ---------------------------------------------------------------- HashCenter (CSQ)


def test_hash_centers_are_hadamard_rows_then_their_negations_up_to_2k_classes():
    from pml_hashing.miners import HashCenterTargetMiner

    miner = HashCenterTargetMiner(24, 16)
    assert miner.uses_hadamard
    rows = miner.targets.tolist()
    assert rows[16:] == [[-x for x in r] for r in rows[:8]]
    distances = loop_pair_distances(miner.targets[:16])
    assert set(distances) == {8}


@pytest.mark.parametrize(
    ("num_classes", "num_bits", "floor"), [(40, 16, 4), (300, 64, 20), (50, 24, None)]
)
def test_hash_centers_beyond_hadamard_keep_the_minimum_distance(num_classes, num_bits, floor):
    from pml_hashing.miners import HashCenterTargetMiner

    miner = HashCenterTargetMiner(num_classes, num_bits, min_distance=floor, seed=4)
    assert not miner.uses_hadamard
    expected_floor = round(num_bits * 20 / 64) if floor is None else floor
    assert min(loop_pair_distances(miner.targets)) >= expected_floor
    for row in miner.targets.tolist():  # balanced, as the authors draw them
        assert sum(1 for x in row if x == 1) in (num_bits // 2, (num_bits + 1) // 2)


def test_hash_centers_refuse_a_floor_no_draw_reaches_with_the_way_out():
    from pml_hashing.miners import HashCenterTargetMiner

    with pytest.raises(ValueError, match="lower min_distance or use the max-hamming"):
        HashCenterTargetMiner(200, 16, min_distance=8, max_draws_per_class=5)


def test_hash_centers_default_floor_is_lowered_until_the_draws_reach_it():
    from pml_hashing.miners import HashCenterTargetMiner

    miner = HashCenterTargetMiner(100, 16, seed=0)  # the authors' 5 of 16 bits is out of reach
    assert 1 <= miner.min_distance < 5
    assert min(loop_pair_distances(miner.targets)) >= miner.min_distance
