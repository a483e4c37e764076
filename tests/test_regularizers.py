"""Tests of the BDNN regularizers against plain-loop references written here."""

import numpy as np
import pytest
import scipy.linalg
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pytorch_metric_learning.reducers import SumReducer

from pml_hashing.losses import PolarizationLoss
from pml_hashing.regularizers import (
    BitBalanceRegularizer,
    BitIndependenceRegularizer,
    QuantizationRegularizer,
)

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


def loop_quantization(h):
    """(1/m) sum_i sum_k (h_ik - b_ik)^2 with b = +1 where h >= 0 (b held constant)."""
    m, k = h.shape
    total = 0.0
    for i in range(m):
        for j in range(k):
            b = 1.0 if float(h[i, j].detach()) >= 0 else -1.0
            total = total + (h[i, j] - b) ** 2
    return total / m


def loop_balance(h):
    """(1/m) sum_k (sum_i h_ik)^2."""
    m, k = h.shape
    total = 0.0
    for j in range(k):
        column_sum = 0.0
        for i in range(m):
            column_sum = column_sum + h[i, j]
        total = total + column_sum**2
    return total / m


def loop_independence(h):
    """sum_{a,b} (sum_i h_ia h_ib / m - [a == b])^2."""
    m, k = h.shape
    total = 0.0
    for a in range(k):
        for b in range(k):
            moment = 0.0
            for i in range(m):
                moment = moment + h[i, a] * h[i, b]
            total = total + (moment / m - (1.0 if a == b else 0.0)) ** 2
    return total


CASES = [
    (QuantizationRegularizer, loop_quantization),
    (BitBalanceRegularizer, loop_balance),
    (BitIndependenceRegularizer, loop_independence),
]
CASE_IDS = ["quantization", "balance", "independence"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("regularizer_cls", "reference"), CASES, ids=CASE_IDS)
def test_regularizer_value_and_gradient_match_loop(regularizer_cls, reference, dtype):
    generator = torch.Generator().manual_seed(3)
    for m, k in ((2, 1), (7, 5), (12, 8)):
        h = torch.randn(m, k, generator=generator, dtype=dtype) * 1.5
        h_impl = h.clone().requires_grad_(True)
        h_ref = h.clone().requires_grad_(True)
        value = regularizer_cls()(h_impl)
        expected = reference(h_ref)
        torch.testing.assert_close(value, expected, **TOLERANCE[dtype])
        assert value.dtype == dtype
        value.backward()
        expected.backward()
        torch.testing.assert_close(h_impl.grad, h_ref.grad, **TOLERANCE[dtype])


def test_quantization_hand_worked_case():
    # Rows [0.5, -2] and [0, 1]: b = [1, -1], [1, 1]; squared gaps 0.25 + 1 and 1 + 0.
    h = torch.tensor([[0.5, -2.0], [0.0, 1.0]], dtype=torch.float64)
    assert float(QuantizationRegularizer()(h)) == pytest.approx((1.25 + 1.0) / 2)


def test_balance_and_independence_hand_worked_case():
    # Bits [1, 1, 1, -1] and [1, -1, 1, 1]: sums 2 and 2 -> balance (4 + 4) / 4 = 2.
    # Second moments: diag 1, off-diagonal (1 - 1 + 1 - 1) / 4 = 0 -> independence 0.
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    assert float(BitBalanceRegularizer()(h)) == pytest.approx(2.0)
    assert float(BitIndependenceRegularizer()(h)) == pytest.approx(0.0)


def test_quantization_is_element_loss_and_batch_statistics_are_already_reduced():
    # A SumReducer sums element losses (m times the mean) but leaves already-reduced ones alone.
    h = torch.randn(9, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    mean_quantization = QuantizationRegularizer()(h)
    assert float(QuantizationRegularizer(reducer=SumReducer())(h)) == pytest.approx(
        9 * float(mean_quantization)
    )
    for regularizer_cls in (BitBalanceRegularizer, BitIndependenceRegularizer):
        assert float(regularizer_cls(reducer=SumReducer())(h)) == pytest.approx(
            float(regularizer_cls()(h))
        )


@pytest.mark.parametrize(("regularizer_cls", "reference"), CASES, ids=CASE_IDS)
def test_regularizer_works_as_polarization_embedding_regularizer(regularizer_cls, reference):
    generator = torch.Generator().manual_seed(1)
    h = torch.randn(10, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (10,), generator=generator)
    weight = 0.37
    plain = PolarizationLoss(num_classes=3, num_bits=8, seed=0)
    regularized = PolarizationLoss(
        num_classes=3,
        num_bits=8,
        seed=0,
        embedding_regularizer=regularizer_cls(),
        embedding_reg_weight=weight,
    )
    h_grad = h.clone().requires_grad_(True)
    value = regularized(h_grad, labels)
    expected = plain(h, labels) + weight * reference(h)
    torch.testing.assert_close(value, expected)
    value.backward()
    assert h_grad.grad is not None and bool(torch.isfinite(h_grad.grad).all())


def balanced_orthogonal_codes(order_log2, columns, row_order, column_signs):
    """Columns 1.. of the Sylvester Hadamard matrix H_n: each sums to 0 and H^T H = n I."""
    n = 2**order_log2
    hadamard = scipy.linalg.hadamard(n).astype(np.float64)
    codes = hadamard[:, 1:][:, columns] * column_signs
    return torch.from_numpy(codes[row_order])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_hadamard_codes_have_zero_balance_and_independence_penalties(data):
    order_log2 = data.draw(st.integers(1, 5), label="log2 n")
    n = 2**order_log2
    columns = data.draw(
        st.lists(st.integers(0, n - 2), min_size=1, max_size=n - 1, unique=True), label="bits"
    )
    row_order = data.draw(st.permutations(range(n)), label="row order")
    column_signs = np.array(
        data.draw(
            st.lists(st.sampled_from([-1.0, 1.0]), min_size=len(columns), max_size=len(columns)),
            label="column signs",
        )
    )
    repeats = data.draw(st.integers(1, 3), label="copies of the code set")
    codes = balanced_orthogonal_codes(order_log2, columns, list(row_order), column_signs)
    codes = codes.repeat(repeats, 1)
    for dtype in DTYPES:
        h = codes.to(dtype)
        assert float(BitBalanceRegularizer()(h)) == 0.0
        assert float(BitIndependenceRegularizer()(h)) == 0.0
        assert float(QuantizationRegularizer()(h)) == 0.0


def test_unbalanced_or_correlated_codes_are_penalized():
    # The all-ones column of H_4 is constant (unbalanced); a duplicated bit is correlated.
    hadamard = torch.from_numpy(scipy.linalg.hadamard(4).astype(np.float64))
    assert float(BitBalanceRegularizer()(hadamard[:, :2])) == pytest.approx(16 / 4)
    duplicated = hadamard[:, [1, 1]]
    assert float(BitBalanceRegularizer()(duplicated)) == 0.0
    assert float(BitIndependenceRegularizer()(duplicated)) == pytest.approx(2.0)


@settings(max_examples=60, deadline=None)
@given(
    h=arrays(
        np.float64,
        st.tuples(st.integers(2, 12), st.integers(1, 10)),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    ),
    as_codes=st.booleans(),
)
def test_penalties_are_non_negative(h, as_codes):
    h = torch.from_numpy(h)
    if as_codes:
        h = torch.where(h >= 0, 1.0, -1.0).to(torch.float64)
    for regularizer_cls in (
        QuantizationRegularizer,
        BitBalanceRegularizer,
        BitIndependenceRegularizer,
    ):
        assert float(regularizer_cls()(h)) >= 0.0


@pytest.mark.parametrize("regularizer_cls", [BitBalanceRegularizer, BitIndependenceRegularizer])
def test_batch_statistic_of_one_sample_raises(regularizer_cls):
    with pytest.raises(ValueError, match="at least 2 rows"):
        regularizer_cls()(torch.randn(1, 8))


def test_quantization_of_one_sample_is_defined():
    h = torch.tensor([[0.5, -0.25]])
    assert float(QuantizationRegularizer()(h)) == pytest.approx(0.25 + 0.5625)


@pytest.mark.parametrize(
    "regularizer_cls", [QuantizationRegularizer, BitBalanceRegularizer, BitIndependenceRegularizer]
)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_embeddings_raise(regularizer_cls, bad):
    h = torch.randn(4, 8)
    h[2, 3] = bad
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite"):
        regularizer_cls()(h)


@pytest.mark.parametrize(
    "regularizer_cls", [QuantizationRegularizer, BitBalanceRegularizer, BitIndependenceRegularizer]
)
def test_embeddings_of_wrong_shape_or_dtype_raise(regularizer_cls):
    with pytest.raises(ValueError, match=r"embeddings must have shape \(N, num_bits\)"):
        regularizer_cls()(torch.randn(8))
    with pytest.raises(ValueError, match="embeddings must be a floating tensor"):
        regularizer_cls()(torch.ones(4, 8, dtype=torch.int64))
