"""Retrieval metrics against plain brute-force references written here with Python loops."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.evaluation import (
    HashingAccuracyCalculator,
    PrecisionRecallCurve,
    average_precision_per_query,
    hamming_ball_statistics,
    mean_average_precision,
    plot_precision_recall,
    precision_at_k,
    precision_recall_by_radius,
    precision_recall_by_rank,
    precision_within_radius,
    recall_at_k,
)

# ---------------------------------------------------------------- brute-force references


def naive_distance(a, b):
    total = 0.0
    for k in range(len(a)):
        total += (1 - float(a[k]) * float(b[k])) / 2
    return total


def naive_relevant(ya, yb):
    if np.ndim(ya) == 0:
        return int(ya) == int(yb)
    for c in range(len(ya)):
        if ya[c] == 1 and yb[c] == 1:
            return True
    return False


def naive_rankings(q, ql, db, dl, exclude_self=False):
    """Per query: the database ranked stably by (distance, index), with relevance flags."""
    out = []
    for a in range(len(q)):
        d = [naive_distance(q[a], db[i]) for i in range(len(db))]
        items = [i for i in range(len(db)) if not (exclude_self and i == a)]
        order = sorted(items, key=lambda i: (d[i], i))
        out.append(([d[i] for i in order], [naive_relevant(ql[a], dl[i]) for i in order]))
    return out


def naive_ap(rels, topk=None):
    top = rels if topk is None else rels[:topk]
    hits, total = 0, 0.0
    for k, r in enumerate(top):
        if r:
            hits += 1
            total += hits / (k + 1)
    return total / hits if hits else 0.0


def naive_ap_all_orders(dists, rels, topk=None):
    """Exact mean of AP over every order of the items inside each tie group."""
    groups = {}
    for d, r in zip(dists, rels, strict=True):
        groups.setdefault(d, []).append(r)
    keys = sorted(groups)
    per_group = [list(itertools.permutations(groups[k])) for k in keys]
    assert math.prod(len(p) for p in per_group) <= 50_000, "test case too large to enumerate"
    total, count = 0.0, 0
    for combo in itertools.product(*per_group):
        order = [r for group in combo for r in group]
        total += naive_ap(order, topk)
        count += 1
    return total / count


def random_problem(rng, nq, ndb, bits, ternary=False, multi=False, classes=3):
    values = [-1, 0, 1] if ternary else [-1, 1]
    q = rng.choice(values, size=(nq, bits))
    db = rng.choice(values, size=(ndb, bits))
    # Copies create ties beyond the ones chance gives.
    db[ndb // 2 :] = db[: ndb - ndb // 2]
    if multi:
        ql = rng.integers(0, 2, size=(nq, classes))
        dl = rng.integers(0, 2, size=(ndb, classes))
    else:
        ql = rng.integers(0, classes, size=nq)
        dl = rng.integers(0, classes, size=ndb)
    return q, ql, db, dl


# ---------------------------------------------------------------- mAP against brute force


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ternary", [False, True])
@pytest.mark.parametrize("topk", [None, 1, 7, 1000])
def test_ap_index_ties_matches_brute_force(dtype, ternary, topk):
    rng = np.random.default_rng(0)
    q, ql, db, dl = random_problem(rng, 6, 40, 12, ternary=ternary)
    got = average_precision_per_query(q.astype(dtype), ql, db.astype(dtype), dl, topk=topk)
    expected = [naive_ap(rels, topk) for _, rels in naive_rankings(q, ql, db, dl)]
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert mean_average_precision(q.astype(dtype), ql, db.astype(dtype), dl, topk=topk) == (
        pytest.approx(np.mean(expected), abs=1e-12)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_inputs_equal_numpy_inputs(dtype):
    rng = np.random.default_rng(1)
    q, ql, db, dl = random_problem(rng, 5, 30, 16)
    from_torch = average_precision_per_query(
        torch.tensor(q, dtype=dtype), torch.tensor(ql), torch.tensor(db, dtype=dtype), dl
    )
    expected = [naive_ap(rels) for _, rels in naive_rankings(q, ql, db, dl)]
    np.testing.assert_allclose(from_torch, expected, rtol=1e-12)


def test_multi_label_relevance_shares_at_least_one_label():
    rng = np.random.default_rng(2)
    q, ql, db, dl = random_problem(rng, 6, 35, 16, multi=True, classes=4)
    got = average_precision_per_query(q, ql, db, dl, topk=10)
    expected = [naive_ap(rels, 10) for _, rels in naive_rankings(q, ql, db, dl)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_index_ties_hand_worked():
    # Three items at distance 0, in database order [other, same, same]: AP = (1/2 + 2/3) / 2.
    q = np.ones((1, 8))
    db = np.ones((3, 8))
    ap = average_precision_per_query(q, [1], db, [0, 1, 1])
    assert ap[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_query_without_relevant_item_counts_zero_in_the_mean():
    q = np.array([[1] * 8, [-1] * 8])
    db = np.array([[1] * 8, [1] * 7 + [-1]])
    ap = average_precision_per_query(q, [0, 5], db, [0, 0])
    np.testing.assert_allclose(ap, [1.0, 0.0])
    assert mean_average_precision(q, [0, 5], db, [0, 0]) == pytest.approx(0.5)


def test_topk_smaller_than_relevant_count_divides_by_retrieved_relevant():
    # Ranking: rel, irrelevant, rel, rel. AP@2 = 1 (only one relevant retrieved, at rank 1);
    # dividing by all 3 relevant items (PML's convention) would give 1/3.
    q = np.ones((1, 8))
    db = np.array([[1] * 8, [1] * 7 + [-1], [1] * 6 + [-1] * 2, [1] * 5 + [-1] * 3])
    assert mean_average_precision(q, [0], db, [0, 1, 0, 0], topk=2) == pytest.approx(1.0)
    assert mean_average_precision(q, [0], db, [0, 1, 0, 0], topk=3) == pytest.approx(
        (1 + 2 / 3) / 2
    )


def test_last_database_item_is_counted():
    # The only relevant item is last in the ranking: AP = 1/N. A [0:-1] slice would give 0.
    n = 6
    q = np.ones((1, 8))
    db = np.array([[1] * (8 - i) + [-1] * i for i in range(n)])
    labels = [0] * (n - 1) + [1]
    assert mean_average_precision(q, [1], db, labels) == pytest.approx(1 / n)


def test_ternary_zero_counts_half():
    q = np.array([[1, 1, 1, 1, 1, 1, 1, 1]])
    db = np.array(
        [
            [1, 1, 1, 1, 1, 1, 1, -1],  # d = 1
            [1, 1, 1, 1, 1, 1, 1, 0],  # d = 1/2
            [0, 0, 1, 1, 1, 1, 1, 1],  # d = 1
            [1, 1, 1, 1, 1, -1, -1, 0],  # d = 2.5
        ]
    )
    stats = hamming_ball_statistics(q, [0], db, [1, 0, 0, 0], radius=0.5)
    assert stats.mean_ball_size == 1 and stats.precision == 1.0
    assert hamming_ball_statistics(q, [0], db, [1, 0, 0, 0], radius=2).mean_ball_size == 3
    assert hamming_ball_statistics(q, [0], db, [1, 0, 0, 0], radius=2.5).mean_ball_size == 4
    # Ranking by (d, index): 1, 0, 2, 3 with item 1 the only irrelevant one.
    assert mean_average_precision(q, [0], db, [0, 1, 0, 0]) == pytest.approx(
        (1 / 2 + 2 / 3 + 3 / 4) / 3
    )


def test_wide_ternary_codes_use_wide_keys():
    # K = 136 ternary: 2K + 1 = 273 half-distances, more than a byte holds.
    rng = np.random.default_rng(3)
    q, ql, db, dl = random_problem(rng, 3, 12, 136, ternary=True)
    rankings = naive_rankings(q, ql, db, dl)
    got = average_precision_per_query(q, ql, db, dl)
    np.testing.assert_allclose(got, [naive_ap(r) for _, r in rankings], rtol=1e-12)
    got = average_precision_per_query(q, ql, db, dl, ties="expected")
    np.testing.assert_allclose(got, [naive_ap_all_orders(d, r) for d, r in rankings], rtol=1e-10)
    stats = hamming_ball_statistics(q, ql, db, dl, radius=60)
    sizes = [naive_ball(d, r, 60, sum(r))[2] for d, r in rankings]
    assert stats.mean_ball_size == pytest.approx(np.mean(sizes))


@pytest.mark.parametrize("ties", ["index", "random", "expected"])
@pytest.mark.parametrize("topk", [None, 9])
def test_chunk_size_does_not_change_results(ties, topk):
    rng = np.random.default_rng(4)
    q, ql, db, dl = random_problem(rng, 11, 50, 8)
    results = [
        average_precision_per_query(q, ql, db, dl, topk=topk, ties=ties, chunk_size=c)
        for c in (1, 3, 7, 11, None)
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_exclude_self_leaves_each_query_out_of_its_ranking():
    rng = np.random.default_rng(5)
    _, _, db, dl = random_problem(rng, 1, 12, 8)
    q, ql = db[:5], dl[:5]
    got = average_precision_per_query(q, ql, db, dl, exclude_self=True)
    rankings = naive_rankings(q, ql, db, dl, exclude_self=True)
    np.testing.assert_allclose(got, [naive_ap(r) for _, r in rankings], rtol=1e-12)
    got_expected = average_precision_per_query(q, ql, db, dl, exclude_self=True, ties="expected")
    np.testing.assert_allclose(
        got_expected, [naive_ap_all_orders(d, r) for d, r in rankings], rtol=1e-10
    )


# ---------------------------------------------------------------- tie rules


@pytest.mark.parametrize("topk", [None, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_expected_ties_equal_mean_over_all_orders(topk, seed):
    rng = np.random.default_rng(seed)
    q, ql, db, dl = random_problem(rng, 3, 8, 8, classes=2)
    db[5] = db[1]
    got = average_precision_per_query(q, ql, db, dl, topk=topk, ties="expected")
    expected = [naive_ap_all_orders(d, r, topk) for d, r in naive_rankings(q, ql, db, dl)]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_expected_ties_with_ternary_and_multi_label():
    rng = np.random.default_rng(6)
    q, ql, db, dl = random_problem(rng, 3, 8, 6, ternary=True, multi=True)
    for topk in (None, 4):
        got = average_precision_per_query(q, ql, db, dl, topk=topk, ties="expected")
        expected = [naive_ap_all_orders(d, r, topk) for d, r in naive_rankings(q, ql, db, dl)]
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_random_ties_repeat_with_seed_and_average_to_expected():
    rng = np.random.default_rng(7)
    # 8 bits and 60 items: large tie groups, so the tie rule matters.
    q, ql, db, dl = random_problem(rng, 10, 60, 8, classes=2)
    first = mean_average_precision(q, ql, db, dl, ties="random", seed=3)
    assert first == mean_average_precision(q, ql, db, dl, ties="random", seed=3)
    draws = [mean_average_precision(q, ql, db, dl, ties="random", seed=s) for s in range(300)]
    expected = mean_average_precision(q, ql, db, dl, ties="expected")
    assert len(set(draws)) > 1
    # The standard error of the mean of 300 draws bounds the deviation.
    assert abs(np.mean(draws) - expected) < 5 * np.std(draws) / math.sqrt(len(draws))


def test_random_ties_match_brute_force_on_the_permuted_database():
    rng = np.random.default_rng(8)
    q, ql, db, dl = random_problem(rng, 4, 25, 8)
    perm = np.random.default_rng(11).permutation(len(db))
    got = average_precision_per_query(q, ql, db, dl, ties="random", seed=11)
    ranked = naive_rankings(q, ql, db[perm], dl[perm])
    np.testing.assert_allclose(got, [naive_ap(r) for _, r in ranked], rtol=1e-12)


def test_random_ties_with_exclude_self_leave_the_query_out():
    rng = np.random.default_rng(15)
    _, _, db, dl = random_problem(rng, 1, 20, 8)
    q, ql = db[:4], dl[:4]
    perm = np.random.default_rng(5).permutation(len(db))
    got = average_precision_per_query(q, ql, db, dl, ties="random", seed=5, exclude_self=True)
    expected = []
    for a in range(len(q)):
        # The query's own item is database item a, found at permuted position perm == a.
        keep = [j for j in range(len(db)) if perm[j] != a]
        ((_, rels),) = naive_rankings(q[a : a + 1], ql[a : a + 1], db[perm][keep], dl[perm][keep])
        expected.append(naive_ap(rels))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([None, 3, 10]))
def test_expected_ap_ignores_database_order(seed, topk):
    rng = np.random.default_rng(seed)
    q, ql, db, dl = random_problem(rng, 3, 20, 8)
    perm = rng.permutation(len(db))
    a = average_precision_per_query(q, ql, db, dl, topk=topk, ties="expected")
    b = average_precision_per_query(q, ql, db[perm], dl[perm], topk=topk, ties="expected")
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    assert np.all((a >= 0) & (a <= 1 + 1e-12))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_without_ties_every_rule_agrees(seed):
    rng = np.random.default_rng(seed)
    # One query, database at pairwise different distances 0..8.
    q = rng.choice([-1, 1], size=(1, 8))
    db = np.repeat(q, 9, axis=0)
    for i in range(9):
        db[i, :i] *= -1
    db = db[rng.permutation(9)]
    ql, dl = [0], rng.integers(0, 2, size=9)
    values = [mean_average_precision(q, ql, db, dl, ties=t) for t in ("index", "random")]
    values.append(mean_average_precision(q, ql, db, dl, ties="expected"))
    assert values[0] == values[1] == pytest.approx(values[2], abs=1e-12)


# ---------------------------------------------------------------- Hamming ball, P@k, curves


def naive_ball(dists, rels, radius, total_relevant):
    inside = [r for d, r in zip(dists, rels, strict=True) if d <= radius]
    precision = sum(inside) / len(inside) if inside else 0.0
    recall = sum(inside) / total_relevant if total_relevant else 0.0
    return precision, recall, len(inside)


@pytest.mark.parametrize("ternary", [False, True])
@pytest.mark.parametrize("radius", [0, 1, 2, 3.5])
def test_hamming_ball_statistics_match_brute_force(ternary, radius):
    rng = np.random.default_rng(9)
    q, ql, db, dl = random_problem(rng, 8, 40, 6, ternary=ternary)
    stats = hamming_ball_statistics(q, ql, db, dl, radius=radius)
    rows = [naive_ball(d, r, radius, sum(r)) for d, r in naive_rankings(q, ql, db, dl)]
    assert stats.precision == pytest.approx(np.mean([p for p, _, _ in rows]), abs=1e-12)
    assert stats.recall == pytest.approx(np.mean([r for _, r, _ in rows]), abs=1e-12)
    assert stats.mean_ball_size == pytest.approx(np.mean([s for _, _, s in rows]))
    assert stats.empty_fraction == pytest.approx(np.mean([s == 0 for _, _, s in rows]))
    assert precision_within_radius(q, ql, db, dl, radius=radius) == stats.precision


def test_empty_ball_counts_zero_precision():
    q = np.array([[1] * 8, [-1] * 8])
    db = np.array([[1] * 8, [1] * 8])
    stats = hamming_ball_statistics(q, [0, 0], db, [0, 0], radius=2)
    assert stats.precision == pytest.approx(0.5)
    assert stats.empty_fraction == pytest.approx(0.5)


def test_precision_recall_by_radius_matches_brute_force():
    rng = np.random.default_rng(10)
    q, ql, db, dl = random_problem(rng, 6, 30, 8, ternary=True)
    curve = precision_recall_by_radius(q, ql, db, dl)
    assert curve.kind == "radius"
    np.testing.assert_array_equal(curve.thresholds, np.arange(9))
    rankings = naive_rankings(q, ql, db, dl)
    for radius in range(9):
        rows = [naive_ball(d, r, radius, sum(r)) for d, r in rankings]
        assert curve.precision[radius] == pytest.approx(np.mean([p for p, _, _ in rows]))
        assert curve.recall[radius] == pytest.approx(np.mean([r for _, r, _ in rows]))


@pytest.mark.parametrize("k", [1, 5, 30])
def test_precision_and_recall_at_k_match_brute_force(k):
    rng = np.random.default_rng(11)
    q, ql, db, dl = random_problem(rng, 7, 30, 8, multi=True)
    rankings = naive_rankings(q, ql, db, dl)
    precision = np.mean([sum(r[:k]) / k for _, r in rankings])
    recall = np.mean([sum(r[:k]) / sum(r) if sum(r) else 0.0 for _, r in rankings])
    assert precision_at_k(q, ql, db, dl, k=k) == pytest.approx(precision, abs=1e-12)
    assert recall_at_k(q, ql, db, dl, k=k) == pytest.approx(recall, abs=1e-12)


def test_expected_precision_at_k_equals_mean_over_all_orders():
    rng = np.random.default_rng(12)
    q, ql, db, dl = random_problem(rng, 3, 7, 4)
    for k in (1, 3, 5):
        expected = []
        for dists, rels in naive_rankings(q, ql, db, dl):
            groups = {}
            for d, r in zip(dists, rels, strict=True):
                groups.setdefault(d, []).append(r)
            orders = itertools.product(*[itertools.permutations(groups[g]) for g in sorted(groups)])
            values = [sum([r for grp in combo for r in grp][:k]) / k for combo in orders]
            expected.append(np.mean(values))
        got = precision_at_k(q, ql, db, dl, k=k, ties="expected")
        assert got == pytest.approx(np.mean(expected), abs=1e-12)


def test_precision_recall_by_rank_matches_brute_force():
    rng = np.random.default_rng(13)
    q, ql, db, dl = random_problem(rng, 5, 25, 8)
    ranks = [1, 4, 10, 25]
    curve = precision_recall_by_rank(q, ql, db, dl, ranks=ranks)
    rankings = naive_rankings(q, ql, db, dl)
    for j, k in enumerate(ranks):
        assert curve.precision[j] == pytest.approx(np.mean([sum(r[:k]) / k for _, r in rankings]))
        recall = [sum(r[:k]) / sum(r) if sum(r) else 0.0 for _, r in rankings]
        assert curve.recall[j] == pytest.approx(np.mean(recall))


def test_plot_precision_recall_writes_png(tmp_path):
    curve = PrecisionRecallCurve(
        thresholds=np.arange(3),
        precision=np.array([1.0, 0.8, 0.5]),
        recall=np.array([0.1, 0.5, 1.0]),
        kind="radius",
    )
    path = plot_precision_recall({"DPN 16 bits": curve}, tmp_path / "pr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="curves"):
        plot_precision_recall({"x": (1, 2)}, tmp_path / "bad.png")


# ---------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(db=np.ones((4, 16))), r"db_codes must have the same number of bits.*\(8\).*16"),
        (dict(dl=[0, 1, 2]), r"db_labels must have one row per code"),
        (dict(ql=[[0, 1]]), r"db_labels must be of the same kind as query_labels"),
        (dict(ql=[[0, 1]], dl=[[0, 1, 1]] * 4), r"db_labels must be of the same kind"),
        (dict(q=np.full((1, 8), np.nan)), r"query_codes must be finite"),
        (dict(db=np.full((4, 8), 2.0)), r"db_codes must contain only -1, 0 and \+1.*got 2"),
        (dict(q=np.full((1, 8), 0.5)), r"query_codes must contain only -1, 0 and \+1"),
        (dict(q=np.ones(8)), r"query_codes must be a 2-D"),
        (dict(q=np.ones((1, 8), dtype=np.uint8)), r"query_codes must hold -1/\+1 codes.*uint8"),
        (dict(q=np.ones((1, 8), dtype=bool)), r"query_codes must hold -1/\+1 codes.*bool"),
        (dict(ql=[0.5]), r"query_labels must hold integers"),
        (dict(topk=0), r"topk must be a positive integer"),
        (dict(topk=-3), r"topk must be a positive integer"),
        (dict(ties="best"), r"ties must be one of"),
        (dict(chunk_size=0), r"chunk_size must be a positive integer"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(change, match):
    args = dict(q=np.ones((1, 8)), ql=[0], db=np.ones((4, 8)), dl=[0, 1, 0, 1])
    kwargs = {k: change.pop(k) for k in ("topk", "ties", "chunk_size") if k in change}
    args.update(change)
    with pytest.raises(ValueError, match=match):
        mean_average_precision(args["q"], args["ql"], args["db"], args["dl"], **kwargs)


def test_bad_radius_k_and_self_exclusion_raise():
    q, db, dl = np.ones((2, 8)), np.ones((4, 8)), [0, 1, 0, 1]
    with pytest.raises(ValueError, match="radius must be a non-negative"):
        hamming_ball_statistics(q, [0, 0], db, dl, radius=-1)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        precision_at_k(q, [0, 0], db, dl, k=0)
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        recall_at_k(q, [0, 0], db, dl, k=5)
    db2 = db.copy()
    db2[0, 0] = -1
    with pytest.raises(ValueError, match="must start with query_codes"):
        mean_average_precision(q, [0, 1], db2, dl, exclude_self=True)


# ---------------------------------------------------------------- PML AccuracyCalculator


def test_accuracy_calculator_matches_function_and_excludes_the_query():
    rng = np.random.default_rng(14)
    emb = torch.randn(40, 16)
    labels = torch.tensor(rng.integers(0, 3, size=40))
    calc = HashingAccuracyCalculator(
        include=("hashing_map", "precision_within_radius_2"), device=torch.device("cpu")
    )
    codes = np.where(emb.numpy() >= 0, 1, -1)
    # reference omitted: PML sets reference = query and ref_includes_query = True.
    result = calc.get_accuracy(emb, labels)
    rankings = naive_rankings(codes, labels.numpy(), codes, labels.numpy(), exclude_self=True)
    assert result["hashing_map"] == pytest.approx(np.mean([naive_ap(r) for _, r in rankings]))
    balls = [naive_ball(d, r, 2, sum(r))[0] for d, r in rankings]
    assert result["precision_within_radius_2"] == pytest.approx(np.mean(balls))

    query, reference = emb[:10], emb[10:]
    result = calc.get_accuracy(query, labels[:10], reference, labels[10:])
    assert result["hashing_map"] == pytest.approx(
        mean_average_precision(codes[:10], labels[:10], codes[10:], labels[10:])
    )


def test_accuracy_calculator_topk_and_pml_metrics_coexist():
    emb = torch.randn(30, 8)
    labels = torch.arange(30) % 3
    calc = HashingAccuracyCalculator(
        include=("hashing_map", "precision_at_1"), hashing_topk=5, device=torch.device("cpu")
    )
    result = calc.get_accuracy(emb[:10], labels[:10], emb[10:], labels[10:])
    codes = np.where(emb.numpy() >= 0, 1, -1)
    assert result["hashing_map"] == pytest.approx(
        mean_average_precision(codes[:10], labels[:10], codes[10:], labels[10:], topk=5)
    )
    assert 0 <= result["precision_at_1"] <= 1
    with pytest.raises(ValueError, match="hashing_topk"):
        HashingAccuracyCalculator(hashing_topk=0)


def test_accuracy_calculator_multi_hot_labels_with_reference_including_query():
    emb = torch.randn(30, 16)
    labels = (torch.rand(30, 4) < 0.4).long()
    calc = HashingAccuracyCalculator(include=("hashing_map",), device=torch.device("cpu"))
    result = calc.get_accuracy(emb[:8], labels[:8], emb, labels, ref_includes_query=True)
    codes = np.where(emb.numpy() >= 0, 1, -1)
    rankings = naive_rankings(codes[:8], labels[:8].numpy(), codes, labels.numpy(), True)
    assert result["hashing_map"] == pytest.approx(np.mean([naive_ap(r) for _, r in rankings]))


def test_zero_one_codes_are_refused_unless_declared_ternary():
    from pml_hashing.evaluation import allow_zero_one_codes

    codes = np.eye(4, 8)
    with pytest.raises(ValueError, match="query_codes holds only 0s and 1s"):
        mean_average_precision(codes, np.arange(4), codes, np.arange(4))
    with allow_zero_one_codes():
        ternary = mean_average_precision(codes, np.arange(4), codes, np.arange(4))
    assert ternary == pytest.approx(1.0)  # each code is nearest to itself (0 = half a bit)


@given(
    size=st.integers(1, 400),
    relevant_fraction=st.floats(0, 1),
    draws_fraction=st.floats(0, 1),
)
def test_hypergeometric_pmf_of_a_straddling_tie_group_matches_counting(
    size, relevant_fraction, draws_fraction
):
    from pml_hashing.evaluation.average_precision import _hypergeometric_pmf

    relevant = round(relevant_fraction * size)
    draws = max(1, round(draws_fraction * size))
    x = np.arange(max(0, draws - (size - relevant)), min(draws, relevant) + 1)
    by_counting = [
        math.comb(relevant, int(t)) * math.comb(size - relevant, draws - int(t)) for t in x
    ]
    expected = np.array(by_counting, dtype=object) / math.comb(size, draws)
    np.testing.assert_allclose(
        _hypergeometric_pmf(x, size, relevant, draws),
        expected.astype(np.float64),
        rtol=1e-12,
        atol=1e-300,
    )
