"""mAP with ties="index" (a counting pass per query) against a plain stable-argsort reference.

The reference ranks every query's database with ``np.argsort(kind="stable")`` of the exact
distances and sums the precisions in rank order; the counting pass must give the same numbers
bit for bit, at every code length, with ternary codes, R < all, multi-label, excluded self.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.evaluation import average_precision_per_query, mean_average_precision
from pml_hashing.evaluation._kernels import index_ap_rows, key_histograms


def stable_reference(q, ql, db, dl, topk=None, exclude_self=False):
    q64, db64 = np.asarray(q, np.float64), np.asarray(db, np.float64)
    dist = (q64.shape[1] - q64 @ db64.T) / 2  # exact: halves of small integers
    if np.ndim(ql) == 1:
        rel = np.asarray(ql)[:, None] == np.asarray(dl)[None, :]
    else:
        rel = (np.asarray(ql, np.float64) @ np.asarray(dl, np.float64).T) > 0
    out = np.zeros(len(q))
    for a in range(len(q)):
        order = np.argsort(dist[a], kind="stable")
        if exclude_self:
            order = order[order != a]
        ranked = rel[a, order][: len(order) if topk is None else topk]
        hits, total = 0, 0.0
        for k in np.flatnonzero(ranked):
            hits += 1
            total += hits / (int(k) + 1)
        out[a] = total / hits if hits else 0.0
    return out


def problem(rng, nq, ndb, bits, ternary=False, multi=False, classes=4, dtype=np.float32):
    values = [-1, 0, 1] if ternary else [-1, 1]
    # Few prototypes and few flips: many ties, as trained codes have.
    protos = rng.choice([-1, 1], size=(classes, bits))
    yq, ydb = rng.integers(0, classes, nq), rng.integers(0, classes, ndb)

    def codes(y):
        c = protos[y].copy()
        flip = rng.random(c.shape) < 0.2
        c[flip] = rng.choice(values, size=int(flip.sum()))
        return c.astype(dtype)

    q, db = codes(yq), codes(ydb)
    if multi:
        ql = (rng.random((nq, classes)) < 0.3).astype(np.int64)
        dl = (rng.random((ndb, classes)) < 0.3).astype(np.int64)
        return q, ql, db, dl
    return q, yq, db, ydb


@pytest.mark.parametrize("bits", [1, 7, 16, 32, 64, 128, 200])
@pytest.mark.parametrize("ternary", [False, True])
def test_identical_to_stable_argsort_at_every_code_length(bits, ternary):
    rng = np.random.default_rng(bits + 1000 * ternary)
    q, ql, db, dl = problem(rng, 23, 301, bits, ternary=ternary)
    for topk in (None, 1, 17, 300, 301, 5000):
        got = average_precision_per_query(q, ql, db, dl, topk=topk, chunk_size=5)
        np.testing.assert_array_equal(got, stable_reference(q, ql, db, dl, topk))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("topk", [None, 10])
def test_identical_multi_label_dtypes_and_exclude_self(dtype, multi, topk):
    rng = np.random.default_rng(7)
    q, ql, db, dl = problem(rng, 11, 157, 24, ternary=True, multi=multi, dtype=dtype)
    got = average_precision_per_query(q, ql, db, dl, topk=topk)
    np.testing.assert_array_equal(got, stable_reference(q, ql, db, dl, topk))
    dbs = np.concatenate([q, db])
    dls = np.concatenate([ql, dl])
    got = average_precision_per_query(q, ql, dbs, dls, topk=topk, exclude_self=True)
    np.testing.assert_array_equal(got, stable_reference(q, ql, dbs, dls, topk, exclude_self=True))


@pytest.mark.parametrize("bits, ternary", [(70_000, False), (40_000, True)])
def test_long_codes_whose_distance_keys_pass_65535(bits, ternary):
    # keys are distances (binary) or doubled distances (ternary); past 65,535 they need
    # 32 bits, and the excluded-item marker too
    rng = np.random.default_rng(bits)
    q = rng.choice([-1, 1], size=(3, bits)).astype(np.int8)
    db = np.repeat(q, 8, axis=0)
    for row, fraction in enumerate(np.tile(np.linspace(0, 1, 8), 3)):
        flip = rng.random(bits) < fraction
        db[row, flip] *= -1
        if ternary:
            db[row, rng.random(bits) < 0.1] = 0
    ql, dl = np.arange(3), rng.integers(0, 3, len(db))
    for topk in (None, 5):
        got = average_precision_per_query(q, ql, db, dl, topk=topk)
        np.testing.assert_array_equal(got, stable_reference(q, ql, db, dl, topk))
    dbs, dls = np.concatenate([q, db]), np.concatenate([ql, dl])
    got = average_precision_per_query(q, ql, dbs, dls, exclude_self=True)
    np.testing.assert_array_equal(got, stable_reference(q, ql, dbs, dls, exclude_self=True))


def test_mean_is_the_mean_of_the_reference():
    rng = np.random.default_rng(3)
    q, ql, db, dl = problem(rng, 40, 500, 32)
    assert mean_average_precision(q, ql, db, dl) == stable_reference(q, ql, db, dl).mean()


@pytest.mark.parametrize("key_dtype", [np.uint8, np.uint16])
def test_kernels_on_raw_keys_with_excluded_items(key_dtype):
    """The kernels directly: random keys, the key num_bins (excluded) ranks last."""
    rng = np.random.default_rng(5)
    num_bins = 9 if key_dtype == np.uint8 else 300
    keys = rng.integers(0, num_bins, size=(6, 200)).astype(key_dtype)
    rel = rng.random((6, 200)) < 0.3
    keys[np.arange(6), np.arange(6)] = num_bins
    rel[np.arange(6), np.arange(6)] = False
    for depth in (1, 50, 199):
        ap = np.empty(6)
        index_ap_rows(keys, rel.view(np.uint8), depth, num_bins, ap)
        for i in range(6):
            order = np.argsort(keys[i], kind="stable")[:depth]
            hits, total = 0, 0.0
            for k in np.flatnonzero(rel[i, order]):
                hits += 1
                total += hits / (int(k) + 1)
            assert ap[i] == (total / hits if hits else 0.0)
    n = np.empty((6, num_bins), np.int64)
    r = np.empty((6, num_bins), np.int64)
    key_histograms(keys, rel.view(np.uint8), num_bins, n, r)
    for i in range(6):
        np.testing.assert_array_equal(n[i], np.bincount(keys[i], minlength=num_bins + 1)[:-1])
        np.testing.assert_array_equal(
            r[i], np.bincount(keys[i][rel[i]], minlength=num_bins + 1)[:-1]
        )


@settings(max_examples=60)
@given(
    n=st.integers(1, 41),
    num_bins=st.integers(1, 6),
    depth=st.integers(1, 50),
    seed=st.integers(0, 2**32 - 1),
)
def test_counting_pass_ranks_like_a_stable_sort_for_any_row_length(n, num_bins, depth, seed):
    """Rows of every length (not only multiples of the kernel's four partial counts), few
    keys (long runs of one key, as at 16 bits), excluded items, any depth."""
    rng = np.random.default_rng(seed)
    keys = rng.integers(0, num_bins + 1, size=(3, n)).astype(np.uint8)
    rel = (rng.random((3, n)) < 0.4) & (keys < num_bins)  # an excluded item is not relevant
    ap = np.empty(3)
    index_ap_rows(keys, rel.view(np.uint8), depth, num_bins, ap)
    for i in range(3):
        ranked = sorted(range(n), key=lambda j: (keys[i, j], j))[:depth]
        hits, total = 0, 0.0
        for rank, j in enumerate(ranked):
            if rel[i, j]:
                hits += 1
                total += hits / (rank + 1)
        assert ap[i] == (total / hits if hits else 0.0)
