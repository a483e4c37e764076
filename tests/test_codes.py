"""Tests of pml_hashing.codes against plain-loop references written here."""

import faiss
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.codes import binarize, check_num_bits, pack_bits, ternarize, unpack_bits

TORCH_DTYPES = (torch.float32, torch.float64)
NUMPY_DTYPES = (np.float32, np.float64)


def loop_binarize(values):
    return [1 if v >= 0 else -1 for v in values]


def loop_ternarize(values, margin):
    out = []
    for v in values:
        if v > margin:
            out.append(1)
        elif v < -margin:
            out.append(-1)
        else:
            out.append(0)
    return out


def loop_pack(codes):
    """Bit j of a row lives in byte j // 8 with value 1 << (j % 8), set when the code is +1."""
    n, k = len(codes), len(codes[0])
    packed = np.zeros((n, k // 8), dtype=np.uint8)
    for i in range(n):
        for j in range(k):
            if codes[i][j] == 1:
                packed[i, j // 8] |= 1 << (j % 8)
    return packed


def loop_hamming(a, b):
    return sum(1 for x, y in zip(a, b, strict=True) if x != y)


def random_values(rng, n, dtype):
    # Mix ordinary values with exact zeros, negative zeros and tiny values on both sides.
    values = rng.standard_normal(n).astype(dtype)
    specials = np.array([0.0, -0.0, 1e-30, -1e-30, 1e-45, -1e-45], dtype=dtype)
    values[: len(specials)] = specials
    return values


# ---------------------------------------------------------------- binarize


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_binarize_torch_matches_loop_and_keeps_dtype(dtype):
    rng = np.random.default_rng(0)
    values = random_values(rng, 500, np.float64)
    v = torch.tensor(values, dtype=dtype)
    codes = binarize(v)
    assert isinstance(codes, torch.Tensor)
    assert codes.dtype == dtype
    assert codes.tolist() == loop_binarize(v.tolist())


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_binarize_numpy_matches_loop_and_keeps_dtype(dtype):
    rng = np.random.default_rng(1)
    values = random_values(rng, 500, dtype)
    codes = binarize(values)
    assert isinstance(codes, np.ndarray)
    assert codes.dtype == dtype
    assert codes.tolist() == loop_binarize(values.tolist())


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_binarize_zero_and_negative_zero_map_to_plus_one(dtype):
    v = torch.tensor([0.0, -0.0], dtype=dtype)
    assert torch.signbit(v[1])  # the input really is -0.0
    assert binarize(v).tolist() == [1.0, 1.0]
    assert binarize(v.numpy()).tolist() == [1.0, 1.0]


def test_binarize_keeps_shape_of_2d_input():
    v = torch.randn(7, 16, dtype=torch.float64)
    codes = binarize(v)
    assert codes.shape == (7, 16)
    for i in range(7):
        assert codes[i].tolist() == loop_binarize(v[i].tolist())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("kind", ["torch", "numpy"])
def test_binarize_rejects_nan_and_infinite(bad, kind):
    values = [0.5, bad, -0.5]
    v = torch.tensor(values) if kind == "torch" else np.array(values)
    with pytest.raises(ValueError, match="v must be finite"):
        binarize(v)


# ---------------------------------------------------------------- ternarize


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.5, 1.0, 2.0])
def test_ternarize_torch_matches_loop(dtype, margin):
    rng = np.random.default_rng(2)
    values = rng.uniform(-3, 3, 400)
    values[:6] = [margin, -margin, 0.0, -0.0, margin * 1.0001 + 1e-9, -margin * 1.0001 - 1e-9]
    v = torch.tensor(values, dtype=dtype)
    codes = ternarize(v, margin=margin)
    assert codes.dtype == dtype
    assert codes.tolist() == loop_ternarize(v.tolist(), margin)


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("margin", [0.0, 0.3, 1.0])
def test_ternarize_numpy_matches_loop(dtype, margin):
    rng = np.random.default_rng(3)
    values = rng.uniform(-2, 2, 400).astype(dtype)
    codes = ternarize(values, margin=margin)
    assert codes.dtype == dtype
    assert codes.tolist() == loop_ternarize(values.tolist(), margin)


def test_ternarize_boundary_is_unpolarized_on_both_sides():
    # |v| <= margin -> 0, including both boundaries v = +m and v = -m.
    v = torch.tensor([-1.0, 1.0, -1.5, 1.5, 0.0], dtype=torch.float64)
    assert ternarize(v, margin=1.0).tolist() == [0.0, 0.0, -1.0, 1.0, 0.0]


def test_ternarize_rejects_nan():
    with pytest.raises(ValueError, match="v must be finite"):
        ternarize(torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize("margin", [-0.1, float("nan")])
def test_ternarize_rejects_negative_or_nan_margin(margin):
    with pytest.raises(ValueError, match="margin must be >= 0"):
        ternarize(torch.tensor([0.0]), margin=margin)


# ---------------------------------------------------------------- pack / unpack


@pytest.mark.parametrize("num_bits", [8, 16, 24, 64, 128])
def test_pack_bits_matches_loop(num_bits):
    rng = np.random.default_rng(num_bits)
    codes = rng.choice([-1, 1], size=(20, num_bits)).astype(np.float32)
    expected = loop_pack(codes.tolist())
    np.testing.assert_array_equal(pack_bits(codes), expected)
    np.testing.assert_array_equal(pack_bits(torch.from_numpy(codes).double()), expected)
    np.testing.assert_array_equal(pack_bits(codes == 1), expected)


def test_pack_bits_hand_worked_byte():
    # +1 at bits 0, 3 and 7 of the first byte -> 1 + 8 + 128 = 137; bit 8 -> second byte = 1.
    code = [-1] * 16
    for j in (0, 3, 7, 8):
        code[j] = 1
    assert pack_bits(np.array([code], dtype=np.int8)).tolist() == [[137, 1]]


@pytest.mark.parametrize("num_bits", [8, 32, 64])
def test_faiss_hamming_of_packed_codes_equals_loop_distance(num_bits):
    rng = np.random.default_rng(10 + num_bits)
    database = rng.choice([-1, 1], size=(30, num_bits))
    queries = rng.choice([-1, 1], size=(5, num_bits))
    index = faiss.IndexBinaryFlat(num_bits)
    index.add(pack_bits(database))
    distances, ids = index.search(pack_bits(queries), len(database))
    for q in range(len(queries)):
        for rank in range(len(database)):
            i = ids[q, rank]
            assert distances[q, rank] == loop_hamming(queries[q].tolist(), database[i].tolist())


@settings(max_examples=40, deadline=None)
@given(
    num_bytes=st.integers(min_value=1, max_value=16),
    num_codes=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_pack_unpack_round_trip(num_bytes, num_codes, seed):
    num_bits = 8 * num_bytes
    rng = np.random.default_rng(seed)
    codes = rng.choice([-1, 1], size=(num_codes, num_bits)).astype(np.int8)
    packed = pack_bits(codes)
    assert packed.shape == (num_codes, num_bytes)
    assert packed.dtype == np.uint8
    unpacked = unpack_bits(packed, num_bits)
    assert unpacked.dtype == np.int8
    np.testing.assert_array_equal(unpacked, codes)
    # and the other way: any byte pattern survives unpack -> pack
    raw = rng.integers(0, 256, size=(num_codes, num_bytes), dtype=np.uint8)
    np.testing.assert_array_equal(pack_bits(unpack_bits(raw, num_bits)), raw)


@pytest.mark.parametrize("num_bits", [1, 7, 12, 65])
def test_pack_bits_rejects_bits_not_multiple_of_eight(num_bits):
    codes = np.ones((2, num_bits))
    with pytest.raises(ValueError, match=rf"number of bits.*multiple of 8.*got {num_bits}"):
        pack_bits(codes)


def test_pack_bits_rejects_ternary_zeros():
    codes = np.ones((2, 8))
    codes[1, 3] = 0
    with pytest.raises(ValueError, match="codes must contain only -1 and \\+1"):
        pack_bits(codes)


def test_pack_bits_rejects_values_other_than_plus_minus_one():
    with pytest.raises(ValueError, match="codes must contain only -1 and \\+1"):
        pack_bits(np.full((1, 8), 0.5))


def test_pack_bits_rejects_1d_input():
    with pytest.raises(ValueError, match=r"codes must be a 2-D \(N, num_bits\) array; got shape"):
        pack_bits(np.ones(8))


def test_unpack_bits_rejects_wrong_num_bits():
    packed = pack_bits(np.ones((3, 16)))
    with pytest.raises(ValueError, match=r"packed must have shape \(N, num_bits / 8\) = \(N, 3\)"):
        unpack_bits(packed, 24)
    with pytest.raises(ValueError, match="num_bits must be a positive multiple of 8.*got 12"):
        unpack_bits(packed, 12)


def test_unpack_bits_rejects_non_uint8():
    with pytest.raises(ValueError, match="packed must be a uint8 array; got dtype int64"):
        unpack_bits(np.zeros((2, 1), dtype=np.int64), 8)


@pytest.mark.parametrize("bad", [0, -8, 12, 8.0, True, "8"])
def test_check_num_bits_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="num_bits must be"):
        check_num_bits(bad)


@pytest.mark.parametrize("good", [8, 64, np.int64(128)])
def test_check_num_bits_accepts_multiples_of_eight(good):
    assert check_num_bits(good) == int(good)
