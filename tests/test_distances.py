import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.distances import HammingDistance


def hamming_by_loop(a, b):
    return sum(1 for x, y in zip(a.tolist(), b.tolist(), strict=True) if (x >= 0) != (y >= 0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hamming_distance_matrix_matches_loop(dtype):
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(9, 20, generator=generator, dtype=dtype)
    ref = torch.randn(13, 20, generator=generator, dtype=dtype)
    query[0, :5] = 0.0  # v == 0 is +1
    ref[1, :5] = -0.0
    mat = HammingDistance()(query, ref)
    assert mat.dtype == dtype and mat.shape == (9, 13)
    for i in range(9):
        for j in range(13):
            assert mat[i, j].item() == hamming_by_loop(query[i], ref[j])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hamming_pairwise_distance_matches_loop(dtype):
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(11, 24, generator=generator, dtype=dtype)
    ref = torch.randn(11, 24, generator=generator, dtype=dtype)
    dist = HammingDistance().pairwise_distance(query, ref)
    assert dist.dtype == dtype
    assert dist.tolist() == [hamming_by_loop(query[i], ref[i]) for i in range(11)]


def test_hamming_distance_with_ref_none_is_self_distance():
    emb = torch.randn(6, 8, generator=torch.Generator().manual_seed(2))
    mat = HammingDistance()(emb)
    assert torch.equal(mat, mat.T) and (mat.diagonal() == 0).all()


@settings(max_examples=40, deadline=None)
@given(bits=st.lists(st.booleans(), min_size=1, max_size=64), scale=st.floats(1e-3, 1e3))
def test_hamming_distance_ignores_magnitude_and_normalization(bits, scale):
    code = torch.tensor([1.0 if b else -1.0 for b in bits]).unsqueeze(0)
    flipped = -code
    distance = HammingDistance(normalize_embeddings=True)
    assert distance(code * scale, flipped).item() == len(bits)
    assert distance(code, code * scale).item() == 0


def test_hamming_distance_settings_and_no_gradient():
    distance = HammingDistance()
    assert distance.is_inverted is False and distance.normalize_embeddings is False
    emb = torch.randn(4, 8, requires_grad=True)
    assert not distance(emb).requires_grad
    with pytest.raises(ValueError, match="is_inverted must be False"):
        HammingDistance(is_inverted=True)
    with pytest.raises(ValueError, match="must be finite"):
        distance(torch.full((2, 8), float("nan")))
    with pytest.raises(ValueError, match="ref_emb must have 8 bits like query_emb; got 16"):
        distance(torch.randn(2, 8), torch.randn(2, 16))
