from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.index import MISSING_TERNARY_DISTANCE, TernaryFlatIndex


def ternary_codes(rng, n, num_bits, p_zero=0.3):
    signs = np.where(rng.random((n, num_bits)) < 0.5, 1, -1)
    return np.where(rng.random((n, num_bits)) < p_zero, 0, signs)


def ternary_distance_by_loop(a, b):
    # d = sum_k (1 - a_k b_k) / 2: a 0 on either side contributes exactly 1/2.
    total = Fraction(0)
    for x, y in zip(a, b, strict=True):
        total += Fraction(1 - int(x) * int(y), 2)
    return total


def knn_by_loop(query, database, k):
    dists = np.full((len(query), k), np.inf)
    ids = np.full((len(query), k), -1, dtype=np.int64)
    for i in range(len(query)):
        scored = sorted(
            (ternary_distance_by_loop(query[i], database[j]), j) for j in range(len(database))
        )[:k]
        for slot, (d, j) in enumerate(scored):
            dists[i, slot] = float(d)
            ids[i, slot] = j
    return dists, ids


def test_ternary_zero_counts_half():
    from pml_hashing.evaluation import allow_zero_one_codes

    index = TernaryFlatIndex(8)
    database = np.array([[1, 1, 1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0, 0, 0]])
    with pytest.raises(ValueError, match="0/1 bits"):  # no -1 anywhere: bits, unless declared
        index.add(database)
    with allow_zero_one_codes():
        index.add(database)
    distances, ids = index.search(np.array([[1, 1, 1, 1, -1, -1, 0, 0]]), 2)
    # Against all +1: two sign flips (2) + two zeros (1); against all 0: eight halves (4).
    np.testing.assert_array_equal(distances, [[3.0, 4.0]])
    np.testing.assert_array_equal(ids, [[0, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8])
@pytest.mark.parametrize("num_bits", [8, 24, 72])
def test_ternary_search_matches_loop(dtype, num_bits):
    rng = np.random.default_rng(num_bits)
    database = ternary_codes(rng, 90, num_bits).astype(dtype)
    query = ternary_codes(rng, 7, num_bits).astype(dtype)
    # Small chunks so that the merge across query and database blocks is exercised.
    index = TernaryFlatIndex(num_bits, query_chunk=3, database_chunk=16)
    index.add(database)
    distances, ids = index.search(query, 12)
    expected_d, expected_ids = knn_by_loop(query, database, 12)
    assert distances.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(ids, expected_ids)


def test_ternary_k_beyond_ntotal_is_clamped_and_ids_map():
    rng = np.random.default_rng(0)
    database = ternary_codes(rng, 4, 16)
    index = TernaryFlatIndex(16)
    index.add(torch.from_numpy(database[:2]).float(), ids=[40, 41])
    index.add(database[2:])
    distances, ids = index.search(database[:1], 10**9)
    expected_d, expected_positions = knn_by_loop(database[:1], database, 4)
    assert ids.shape == distances.shape == (1, 4)
    assert TernaryFlatIndex(16).search(database[:1], 3)[0].shape == (1, 0)
    assert MISSING_TERNARY_DISTANCE == float("inf")
    np.testing.assert_array_equal(ids[:, :4], np.array([40, 41, 2, 3])[expected_positions])
    np.testing.assert_array_equal(distances[:, :4], expected_d)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_binary_codes_give_plain_hamming_distance(seed):
    rng = np.random.default_rng(seed)
    database = ternary_codes(rng, 20, 16, p_zero=0.0)
    query = ternary_codes(rng, 3, 16, p_zero=0.0)
    index = TernaryFlatIndex(16)
    index.add(database)
    distances, ids = index.search(query, 20)
    for i in range(3):
        for slot in range(20):
            j = ids[i, slot]
            assert distances[i, slot] == sum(query[i] != database[j])


def test_ternary_bad_inputs_are_named():
    index = TernaryFlatIndex(16)
    with pytest.raises(ValueError, match="codes must contain only -1, 0 and \\+1"):
        index.add(np.full((2, 16), 0.5))
    with pytest.raises(ValueError, match=r"codes must have shape \(N, num_bits\) = \(N, 16\)"):
        index.add(np.ones((2, 8)))
    with pytest.raises(ValueError, match="num_bits must be a positive multiple of 8"):
        TernaryFlatIndex(10)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.search(np.ones((1, 16)), 0)
    with pytest.raises(ValueError, match="query_chunk must be a positive integer"):
        TernaryFlatIndex(16, query_chunk=0)
