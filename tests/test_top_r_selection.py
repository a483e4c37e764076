"""mAP@R for R < all on binary codes: the selection kernel (distances of packed words, the
cut-off distance that reaches R items, then only the items up to it) against plain references
(the stable-argsort one of test_index_ties_kernel, the mean over every order written here),
and against the chunked faiss path it replaces (``FUSED_KERNEL = False``).

``ties="index"`` must equal a stable-argsort reference bit for bit; ``ties="expected"`` must
equal the exact expectation over every order of the database (tiny cases) and the chunked
path to 1e-12, at code lengths that are and are not multiples of 64, single- and multi-label,
with many ties and with the query excluded.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.evaluation import average_precision_per_query, hamming_ranking
from pml_hashing.evaluation.hamming_ranking import prepare_ranking
from tests.test_index_ties_kernel import stable_reference as plain_index_ap


def chunked(fn, *args, **kwargs):
    """``fn`` on the chunked faiss path (the implementation before the selection kernel)."""
    hamming_ranking.FUSED_KERNEL = False
    try:
        return fn(*args, **kwargs)
    finally:
        hamming_ranking.FUSED_KERNEL = True


def assert_both_tie_rules(q, ql, db, dl, **kwargs):
    """Index ties equal the stable reference bit for bit, expected ties the chunked path."""
    got = average_precision_per_query(q, ql, db, dl, **kwargs)
    np.testing.assert_array_equal(
        got, plain_index_ap(q, ql, db, dl, kwargs["topk"], kwargs.get("exclude_self", False))
    )
    got = average_precision_per_query(q, ql, db, dl, ties="expected", **kwargs)
    ref = chunked(average_precision_per_query, q, ql, db, dl, ties="expected", **kwargs)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def tied_problem(rng, nq, ndb, bits, multi=False, classes=5, flip=0.15, dtype=np.float32):
    """Few prototypes and few flips: distances tie massively, as trained codes do."""
    protos = rng.choice([-1, 1], size=(classes, bits))
    yq, ydb = rng.integers(0, classes, nq), rng.integers(0, classes, ndb)

    def codes(y):
        c = protos[y].copy()
        c[rng.random(c.shape) < flip] *= -1
        return c.astype(dtype)

    q, db = codes(yq), codes(ydb)
    if multi:
        ql = (rng.random((nq, classes)) < 0.35).astype(dtype)
        dl = (rng.random((ndb, classes)) < 0.35).astype(dtype)
        return q, ql, db, dl
    return q, yq, db, ydb


@pytest.mark.parametrize("bits", [16, 24, 32, 48, 64, 100, 128, 200, 300])
@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_index_ties_equal_the_stable_reference_and_expected_the_chunked_path(bits, multi, dtype):
    rng = np.random.default_rng(bits + 7 * multi)
    q, ql, db, dl = tied_problem(rng, 19, 1500, bits, multi=multi, dtype=dtype)
    assert prepare_ranking(q, ql, db, dl).selects
    for topk in (1, 2, 100, 1000, 1499):
        assert_both_tie_rules(q, ql, db, dl, topk=topk)


@pytest.mark.parametrize("multi", [False, True])
def test_excluded_query_is_left_out_of_the_top_r(multi):
    rng = np.random.default_rng(11)
    q, ql, db, dl = tied_problem(rng, 15, 400, 48, multi=multi)
    dbs, dls = np.concatenate([q, db]), np.concatenate([ql, dl])
    for topk in (1, 30, 400):
        assert_both_tie_rules(q, ql, dbs, dls, topk=topk, exclude_self=True)


def test_expected_ties_equal_the_mean_over_every_database_order():
    """Tiny database, every permutation: ties broken by the permuted position is a uniformly
    random order inside every tie group; the mean of index-tie AP over all of them is the
    expectation."""
    rng = np.random.default_rng(5)
    q, ql, db, dl = tied_problem(rng, 4, 7, 16, classes=2, flip=0.3)
    for topk in (1, 3, 5):
        total = np.zeros(len(q))
        perms = list(itertools.permutations(range(len(db))))
        for perm in perms:
            total += plain_index_ap(q, ql, db[list(perm)], dl[list(perm)], topk)
        got = average_precision_per_query(q, ql, db, dl, topk=topk, ties="expected")
        np.testing.assert_allclose(got, total / len(perms), rtol=0, atol=1e-12)


def test_random_ties_equal_the_chunked_path():
    rng = np.random.default_rng(3)
    q, ql, db, dl = tied_problem(rng, 12, 600, 32)
    got = average_precision_per_query(q, ql, db, dl, topk=50, ties="random", seed=4)
    ref = chunked(average_precision_per_query, q, ql, db, dl, topk=50, ties="random", seed=4)
    np.testing.assert_array_equal(got, ref)


def test_what_the_selection_does_not_cover_keeps_the_chunked_path():
    rng = np.random.default_rng(9)
    q, ql, db, dl = tied_problem(rng, 6, 200, 32, multi=True, classes=70)
    assert not prepare_ranking(q, ql, db, dl).selects  # > 64 classes: no uint64 mask
    got = average_precision_per_query(q, ql, db, dl, topk=20)
    np.testing.assert_array_equal(got, plain_index_ap(q, ql, db, dl, 20))
    q[0, 0] = 0  # ternary codes
    assert not prepare_ranking(q, ql, db, dl).selects


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 140),
    nq=st.integers(1, 9),
    ndb=st.integers(2, 90),
    topk=st.integers(1, 100),
    multi=st.booleans(),
    exclude=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_length_depth_and_cut_off_far_from_the_previous_query(
    bits, nq, ndb, topk, multi, exclude, seed
):
    """Databases of any length (not whole words of eight distances), R up to beyond the
    database, and queries whose cut-off distances differ widely from one to the next (the
    search for it starts at the previous query's)."""
    rng = np.random.default_rng(seed)
    q, ql, db, dl = tied_problem(rng, nq, ndb, bits, multi=multi, flip=rng.random())
    q[::2] = -q[::2]  # every other query far from every database item
    if exclude:
        db, dl = np.concatenate([q, db]), np.concatenate([ql, dl])
    assert_both_tie_rules(q, ql, db, dl, topk=topk, exclude_self=exclude)


@pytest.mark.parametrize("bits", [200, 254])
def test_cut_off_distances_beyond_127_on_one_byte_distances(bits):
    """Uniformly random codes: distances around K / 2, so the cut-off passes 127, where the
    eight-at-a-time scan of one-byte distances gives way to the plain one."""
    rng = np.random.default_rng(bits)
    q, ql, db, dl = tied_problem(rng, 8, 700, bits, flip=0.5)
    for topk in (300, 690):
        assert_both_tie_rules(q, ql, db, dl, topk=topk)
