"""Tests of the SH-BDNN / UH-BDNN losses and methods against plain-loop references written here."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pytorch_metric_learning.reducers import SumReducer

from pml_hashing.losses import BDNNReconstructionLoss, BDNNSimilarityLoss
from pml_hashing.methods import EncodedTrainingSet, create_method
from pml_hashing.methods.bdnn import SHBDNNMethod, UHBDNNMethod, coordinate_descent_codes

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-12)}


# ---------------------------------------------------------------- plain-loop references


def loop_similar(labels_a, labels_b, same_set):
    """Whether sample i of a and j of b share a label; a sample is similar to itself."""
    rows = []
    for i in range(len(labels_a)):
        row = []
        for j in range(len(labels_b)):
            if same_set and i == j:
                row.append(True)
            elif labels_a.ndim == 1:
                row.append(int(labels_a[i]) == int(labels_b[j]))
            else:
                shared = any(
                    int(labels_a[i, c]) == 1 and int(labels_b[j, c]) == 1
                    for c in range(labels_a.shape[1])
                )
                row.append(shared)
        rows.append(row)
    return rows


def loop_similarity_loss(h, labels, ref=None, ref_labels=None):
    """(1/m) sum_i sum_j (h_i . r_j / L - S_ij)^2, S = +1 similar, -1 otherwise."""
    same_set = ref is None
    if same_set:
        ref, ref_labels = h, labels
    m, num_bits = h.shape
    similar = loop_similar(labels, ref_labels, same_set)
    total = 0.0
    for i in range(m):
        for j in range(ref.shape[0]):
            inner = 0.0
            for k in range(num_bits):
                inner = inner + h[i, k] * ref[j, k]
            target = 1.0 if similar[i][j] else -1.0
            total = total + (inner / num_bits - target) ** 2
    return total / m


def loop_reconstruction(codes, x, weight, bias, l1):
    """(1/m) sum_i ||x_i - W b_i - c||^2 + l1 sum ||W||^2, W (D, L)."""
    m, d = x.shape
    num_bits = codes.shape[1]
    total = 0.0
    for i in range(m):
        for a in range(d):
            decoded = bias[a]
            for k in range(num_bits):
                decoded = decoded + weight[a, k] * codes[i, k]
            total = total + (x[i, a] - decoded) ** 2
    decay = 0.0
    for a in range(d):
        for k in range(num_bits):
            decay = decay + weight[a, k] ** 2
    return total / m + l1 * decay


def loop_code_objective(code, x, h, weight, bias, l2):
    """||x - W b - c||^2 + l2 ||h - b||^2 for one sample (python floats)."""
    d, num_bits = len(weight), len(code)
    value = 0.0
    for a in range(d):
        decoded = bias[a] + sum(weight[a][k] * code[k] for k in range(num_bits))
        value += (x[a] - decoded) ** 2
    for k in range(num_bits):
        value += l2 * (h[k] - code[k]) ** 2
    return value


def loop_balance(h):
    m, k = h.shape
    return sum(sum(float(h[i, j]) for i in range(m)) ** 2 for j in range(k)) / m


def loop_independence(h):
    m, k = h.shape
    total = 0.0
    for a in range(k):
        for b in range(k):
            moment = sum(float(h[i, a]) * float(h[i, b]) for i in range(m)) / m
            total += (moment - (1.0 if a == b else 0.0)) ** 2
    return total


def loop_quantization_against(h, codes):
    m, k = h.shape
    return sum((float(h[i, j]) - float(codes[i, j])) ** 2 for i in range(m) for j in range(k)) / m


# ---------------------------------------------------------------- BDNNSimilarityLoss


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("multi_hot", [False, True])
def test_similarity_loss_value_and_gradient_match_loop(dtype, multi_hot):
    generator = torch.Generator().manual_seed(5)
    for m, num_bits in ((1, 3), (6, 4), (10, 8)):
        h = torch.randn(m, num_bits, generator=generator, dtype=dtype)
        if multi_hot:
            labels = (torch.rand(m, 4, generator=generator) < 0.3).long()
            labels[0] = 0  # a sample with no label is still similar to itself
        else:
            labels = torch.randint(0, 3, (m,), generator=generator)
        h_impl = h.clone().requires_grad_(True)
        h_ref = h.clone().requires_grad_(True)
        value = BDNNSimilarityLoss()(h_impl, labels)
        expected = loop_similarity_loss(h_ref, labels)
        torch.testing.assert_close(value, expected, **TOLERANCE[dtype])
        value.backward()
        expected.backward()
        torch.testing.assert_close(h_impl.grad, h_ref.grad, **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_similarity_loss_with_reference_set_matches_loop(dtype):
    generator = torch.Generator().manual_seed(6)
    h = torch.randn(5, 8, generator=generator, dtype=dtype)
    ref = torch.randn(7, 8, generator=generator, dtype=dtype)
    labels = torch.randint(0, 3, (5,), generator=generator)
    ref_labels = torch.randint(0, 3, (7,), generator=generator)
    value = BDNNSimilarityLoss()(h, labels, ref_emb=ref, ref_labels=ref_labels)
    expected = loop_similarity_loss(h, labels, ref, ref_labels)
    torch.testing.assert_close(value, expected, **TOLERANCE[dtype])


def test_similarity_loss_hand_worked_cases():
    # h1 = h2 = [1, 1]: inner products all 1. Same class: 0. Different classes: off-diagonal
    # targets -1, so each row sums (1 + 1)^2 = 4 and the mean is 4.
    h = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert float(BDNNSimilarityLoss()(h, torch.tensor([0, 0]))) == 0.0
    assert float(BDNNSimilarityLoss()(h, torch.tensor([0, 1]))) == pytest.approx(4.0)
    # Orthogonal codes [1, 1], [1, -1] (inner 0) are off by 1 from either target.
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    assert float(BDNNSimilarityLoss()(h, torch.tensor([0, 0]))) == pytest.approx(1.0)
    assert float(BDNNSimilarityLoss()(h, torch.tensor([0, 1]))) == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    code=st.lists(st.sampled_from([-1.0, 1.0]), min_size=1, max_size=16),
    labels=st.lists(st.integers(0, 1), min_size=1, max_size=12),
)
def test_similarity_loss_is_zero_for_two_classes_with_opposite_codes(code, labels):
    # Class 0 gets c and class 1 gets -c: inner products / L are exactly +1 or -1 = S.
    code = torch.tensor(code, dtype=torch.float64)
    labels = torch.tensor(labels)
    h = torch.stack([code if int(y) == 0 else -code for y in labels])
    assert float(BDNNSimilarityLoss()(h, labels)) == 0.0
    multi_hot = torch.nn.functional.one_hot(labels, 2)
    assert float(BDNNSimilarityLoss()(h, multi_hot)) == 0.0


def test_similarity_loss_returns_per_sample_element_losses():
    generator = torch.Generator().manual_seed(7)
    h = torch.randn(9, 8, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 3, (9,), generator=generator)
    mean = float(BDNNSimilarityLoss()(h, labels))
    total = float(BDNNSimilarityLoss(reducer=SumReducer())(h, labels))
    assert total == pytest.approx(9 * mean)


def test_similarity_loss_label_errors():
    h = torch.randn(4, 8)
    loss = BDNNSimilarityLoss()
    with pytest.raises(ValueError, match="labels are required"):
        loss(h)
    with pytest.raises(ValueError, match=r"one row per embedding \(4\); got shape \(3,\)"):
        loss(h, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match=r"labels must be integer \(N,\) or multi-hot"):
        loss(h, torch.zeros(4, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="multi-hot labels must contain only 0 and 1"):
        loss(h, torch.full((4, 3), 2))
    with pytest.raises(ValueError, match="must have an integer dtype"):
        loss(h, torch.tensor([0.0, 1.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="ref_labels must be of the same kind"):
        loss(h, torch.tensor([0, 1, 0, 1]), ref_emb=h, ref_labels=torch.ones(4, 2))


def test_similarity_loss_non_finite_embeddings_raise():
    h = torch.randn(4, 8)
    h[1, 1] = float("nan")
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite"):
        BDNNSimilarityLoss()(h, torch.tensor([0, 1, 0, 1]))


# ---------------------------------------------------------------- BDNNReconstructionLoss


@pytest.mark.parametrize("dtype", DTYPES)
def test_reconstruction_loss_value_and_gradients_match_loop(dtype):
    generator = torch.Generator().manual_seed(8)
    loss = BDNNReconstructionLoss(input_dim=5, num_bits=3, l1=0.1, generator=generator).to(dtype)
    codes = torch.where(torch.randn(6, 3, generator=generator) >= 0, 1.0, -1.0).to(dtype)
    x = torch.randn(6, 5, generator=generator, dtype=dtype)
    value = loss(codes, x)
    weight = loss.decoder.weight.detach().clone().requires_grad_(True)
    bias = loss.decoder.bias.detach().clone().requires_grad_(True)
    expected = loop_reconstruction(codes, x, weight, bias, 0.1)
    torch.testing.assert_close(value, expected, **TOLERANCE[dtype])
    value.backward()
    expected.backward()
    torch.testing.assert_close(loss.decoder.weight.grad, weight.grad, **TOLERANCE[dtype])
    torch.testing.assert_close(loss.decoder.bias.grad, bias.grad, **TOLERANCE[dtype])


def test_reconstruction_loss_flattens_image_inputs():
    generator = torch.Generator().manual_seed(9)
    loss = BDNNReconstructionLoss(input_dim=12, num_bits=4, generator=generator)
    codes = torch.where(torch.randn(3, 4, generator=generator) >= 0, 1.0, -1.0)
    images = torch.randn(3, 1, 3, 4, generator=generator)
    torch.testing.assert_close(loss(codes, images), loss(codes, images.reshape(3, 12)))
    with pytest.raises(ValueError, match="inputs must have input_dim = 12 features"):
        loss(codes, torch.randn(3, 10))
    with pytest.raises(ValueError, match="codes must have num_bits = 4 columns; got 2"):
        loss(codes[:, :2], images)


@pytest.mark.parametrize("l1", [0.0, 0.05])
def test_reconstruction_fit_is_the_exact_minimizer(l1):
    generator = torch.Generator().manual_seed(10)
    loss = BDNNReconstructionLoss(input_dim=6, num_bits=4, l1=l1, generator=generator)
    loss = loss.double()
    codes = torch.where(torch.randn(40, 4, generator=generator) >= 0, 1.0, -1.0).double()
    x = torch.randn(40, 6, generator=generator, dtype=torch.float64) + 3.0
    loss.fit(codes, x)
    value = loss(codes, x)
    value.backward()
    # A convex quadratic: zero gradient at the fit means the global minimum.
    assert float(loss.decoder.weight.grad.abs().max()) < 1e-10
    assert float(loss.decoder.bias.grad.abs().max()) < 1e-10


# ---------------------------------------------------------------- UH-BDNN B-step


def all_codes(num_bits):
    return [list(c) for c in itertools.product([-1.0, 1.0], repeat=num_bits)]


def random_code_problem(seed, m, d, num_bits, orthogonal=False):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(d, num_bits, generator=generator, dtype=torch.float64)
    if orthogonal:
        q, _ = torch.linalg.qr(weight)
        weight = q * torch.rand(num_bits, generator=generator, dtype=torch.float64) * 3
    bias = torch.randn(d, generator=generator, dtype=torch.float64)
    x = torch.randn(m, d, generator=generator, dtype=torch.float64) * 2
    h = torch.randn(m, num_bits, generator=generator, dtype=torch.float64)
    start = torch.where(torch.randn(m, num_bits, generator=generator) >= 0, 1.0, -1.0).double()
    return start, x, h, weight, bias


def objectives(codes, x, h, weight, bias, l2):
    w, c = weight.tolist(), bias.tolist()
    return [
        loop_code_objective(codes[i].tolist(), x[i].tolist(), h[i].tolist(), w, c, l2)
        for i in range(len(codes))
    ]


def brute_force_minimum(x_row, h_row, weight, bias, l2, num_bits):
    w, c = weight.tolist(), bias.tolist()
    return min(
        loop_code_objective(code, x_row.tolist(), h_row.tolist(), w, c, l2)
        for code in all_codes(num_bits)
    )


@pytest.mark.parametrize("num_bits", [1, 2, 3, 4])
def test_coordinate_descent_is_exact_when_decoder_columns_are_orthogonal(num_bits):
    # With W^T W diagonal the objective separates over bits: one sweep is the global minimum.
    start, x, h, weight, bias = random_code_problem(11, 12, 6, num_bits, orthogonal=True)
    codes, _ = coordinate_descent_codes(start, x, h, weight, bias, l2=0.3, num_sweeps=1)
    found = objectives(codes, x, h, weight, bias, 0.3)
    for i in range(len(x)):
        best = brute_force_minimum(x[i], h[i], weight, bias, 0.3, num_bits)
        assert found[i] == pytest.approx(best, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("num_bits", [3, 4, 5])
def test_coordinate_descent_reaches_a_single_flip_minimum_above_the_brute_force_one(num_bits):
    start, x, h, weight, bias = random_code_problem(12, 15, 4, num_bits)
    codes, _ = coordinate_descent_codes(start, x, h, weight, bias, l2=0.5, num_sweeps=50)
    found = objectives(codes, x, h, weight, bias, 0.5)
    started = objectives(start, x, h, weight, bias, 0.5)
    exact_hits = 0
    for i in range(len(x)):
        best = brute_force_minimum(x[i], h[i], weight, bias, 0.5, num_bits)
        assert best - 1e-9 <= found[i] <= started[i] + 1e-9
        exact_hits += found[i] <= best + 1e-9
        for k in range(num_bits):
            flipped = codes[i].tolist()
            flipped[k] = -flipped[k]
            neighbour = loop_code_objective(
                flipped, x[i].tolist(), h[i].tolist(), weight.tolist(), bias.tolist(), 0.5
            )
            assert neighbour >= found[i] - 1e-9
    assert exact_hits >= 1  # the searched minimum is not unreachable in practice


def test_coordinate_descent_keeps_the_global_minimum():
    start, x, h, weight, bias = random_code_problem(13, 8, 5, 4)
    w, c = weight.tolist(), bias.tolist()
    best_codes = []
    for i in range(len(x)):
        best_codes.append(
            min(
                all_codes(4),
                key=lambda code, i=i: loop_code_objective(
                    code, x[i].tolist(), h[i].tolist(), w, c, 0.2
                ),
            )
        )
    best_codes = torch.tensor(best_codes, dtype=torch.float64)
    codes, sweeps = coordinate_descent_codes(best_codes, x, h, weight, bias, l2=0.2)
    assert torch.equal(codes, best_codes)
    assert sweeps == 1


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    num_bits=st.integers(1, 6),
    l2=st.floats(0.0, 5.0),
    sweeps=st.integers(1, 4),
)
def test_coordinate_descent_never_increases_the_objective(seed, num_bits, l2, sweeps):
    start, x, h, weight, bias = random_code_problem(seed, 10, 5, num_bits)
    codes, _ = coordinate_descent_codes(start, x, h, weight, bias, l2=l2, num_sweeps=sweeps)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}
    before = objectives(start, x, h, weight, bias, l2)
    after = objectives(codes, x, h, weight, bias, l2)
    for b, a in zip(before, after, strict=True):
        assert a <= b + 1e-9 * max(1.0, abs(b))


# ---------------------------------------------------------------- methods


def encoder_for(outputs, inputs, labels, indices):
    return lambda: EncodedTrainingSet(outputs, inputs, labels, indices)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("full_data_scale", [False, True])
def test_sh_bdnn_loss_matches_loop_objective_with_stored_codes(dtype, full_data_scale):
    generator = torch.Generator().manual_seed(14)
    num_train, num_bits = 20, 8
    method = SHBDNNMethod(
        num_classes=3,
        num_bits=num_bits,
        l2=0.3,
        l3=0.2,
        l4=0.1,
        l5=0.4,
        full_data_scale=full_data_scale,
    )
    # Similarity and balance sum over the batch's partners: M / m estimates the full data.
    factor = num_train / 5 if full_data_scale else 1.0
    train_outputs = torch.randn(num_train, num_bits, generator=generator, dtype=dtype)
    order = torch.randperm(num_train, generator=generator)  # the encoding is in any order
    labels = torch.randint(0, 3, (num_train,), generator=generator)
    method.on_epoch_start(0, encoder_for(train_outputs[order], None, labels[order], order))
    assert torch.equal(method.codes.float(), torch.where(train_outputs >= 0, 1.0, -1.0).float())
    indices = torch.tensor([3, 7, 0, 12, 19])
    h = torch.randn(5, num_bits, generator=generator, dtype=dtype)  # the network moved
    value = method.compute_loss(h, labels[indices], None, indices)
    stored = torch.where(train_outputs[indices] >= 0, 1.0, -1.0)
    expected = 0.5 * (
        0.4 * factor * float(loop_similarity_loss(h, labels[indices]))
        + 0.3 * loop_quantization_against(h, stored)
        + 0.2 * loop_independence(h)
        + 0.1 * factor * loop_balance(h)
    )
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    assert float(value.detach()) == pytest.approx(expected, rel=rel)
    assert value.dtype == dtype


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("full_data_scale", [False, True])
def test_uh_bdnn_loss_matches_loop_objective(dtype, full_data_scale):
    generator = torch.Generator().manual_seed(15)
    num_train, num_bits, d = 16, 4, 6
    method = UHBDNNMethod(
        3, num_bits, input_dim=d, l1=0.01, l2=0.3, l3=0.2, l4=0.1, full_data_scale=full_data_scale
    ).to(dtype)
    factor = num_train / 4 if full_data_scale else 1.0
    x = torch.randn(num_train, 2, 3, generator=generator, dtype=dtype)
    train_outputs = torch.randn(num_train, num_bits, generator=generator, dtype=dtype)
    method.on_epoch_start(0, encoder_for(train_outputs, x, None, torch.arange(num_train)))
    indices = torch.tensor([1, 5, 9, 2])
    h = torch.randn(4, num_bits, generator=generator, dtype=dtype)
    value = method.compute_loss(h, None, x[indices], indices)
    codes = method.codes[indices].to(dtype)
    decoder = method.reconstruction_loss.decoder
    expected = 0.5 * (
        float(
            loop_reconstruction(
                codes,
                x[indices].reshape(4, d),
                decoder.weight.detach(),
                decoder.bias.detach(),
                0.01,
            )
        )
        + 0.3 * loop_quantization_against(h, codes)
        + 0.2 * loop_independence(h)
        + 0.1 * factor * loop_balance(h)
    )
    rel = 1e-5 if dtype == torch.float32 else 1e-10
    assert float(value.detach()) == pytest.approx(expected, rel=rel)


def test_uh_bdnn_code_update_never_increases_the_code_objective():
    generator = torch.Generator().manual_seed(16)
    num_train, num_bits, d = 30, 6, 10
    method = UHBDNNMethod(2, num_bits, input_dim=d, l2=0.5, num_sweeps=2).double()
    x = torch.randn(num_train, d, generator=generator, dtype=torch.float64)
    indices = torch.randperm(num_train, generator=generator)
    for epoch in range(3):
        outputs = torch.randn(num_train, num_bits, generator=generator, dtype=torch.float64)
        decoder = method.reconstruction_loss.decoder
        if epoch > 0:
            w, c = decoder.weight.detach().clone(), decoder.bias.detach().clone()
            old = method.codes[indices].double()
            before = sum(objectives(old, x, outputs, w, c, 0.5))
        method.on_epoch_start(epoch, encoder_for(outputs, x, None, indices))
        stats = method.on_epoch_end(epoch)
        assert stats["bdnn/code_objective_after"] <= stats["bdnn/code_objective_before"] + 1e-12
        if epoch > 0:
            after = sum(objectives(method.codes[indices].double(), x, outputs, w, c, 0.5))
            assert after <= before + 1e-9
            assert stats["bdnn/code_objective_before"] == pytest.approx(before / (2 * num_train))


def test_methods_are_registered_and_round_trip_through_state_dict():
    generator = torch.Generator().manual_seed(17)
    x = torch.randn(12, 5, generator=generator)
    outputs = torch.randn(12, 8, generator=generator)
    labels = torch.randint(0, 3, (12,), generator=generator)
    for name, kwargs in (("sh-bdnn", {}), ("uh-bdnn", {"input_dim": 5})):
        method = create_method(name, 3, 8, **kwargs)
        assert method.needs_training_set_encoding
        method.on_epoch_start(0, encoder_for(outputs, x, labels, torch.arange(12)))
        fresh = create_method(name, 3, 8, **kwargs)
        fresh.load_state_dict(method.state_dict())
        assert torch.equal(fresh.codes, method.codes)
        assert bool(fresh.code_known.all())


def test_methods_fit_a_batch_of_one_without_the_batch_statistics():
    method = SHBDNNMethod(3, 8, l2=0.3, l5=0.4, full_data_scale=False)
    h = torch.randn(1, 8, dtype=torch.float64)
    value = method.compute_loss(h, torch.tensor([1]), None, torch.tensor([0]))
    expected = 0.5 * (
        0.4 * float(loop_similarity_loss(h, torch.tensor([1])))
        + 0.3 * loop_quantization_against(h, torch.where(h >= 0, 1.0, -1.0))
    )
    assert float(value) == pytest.approx(expected)


def test_method_input_errors():
    method = SHBDNNMethod(3, 8, num_train=10)
    h = torch.randn(4, 8)
    with pytest.raises(ValueError, match=r"labels must be in \[0, num_classes\) = \[0, 3\); got 5"):
        method.compute_loss(h, torch.tensor([0, 1, 5, 2]), None, torch.arange(4))
    with pytest.raises(ValueError, match=r"must have shape \(N, num_classes\) = \(N, 3\)"):
        method.compute_loss(h, torch.ones(4, 2, dtype=torch.long), None, torch.arange(4))
    with pytest.raises(ValueError, match="labels must have one row per embedding"):
        method.compute_loss(h, torch.tensor([0, 1]), None, torch.arange(4))
    with pytest.raises(ValueError, match="indices must be < num_train = 10; got 12"):
        method.compute_loss(h, torch.tensor([0, 1, 2, 2]), None, torch.tensor([0, 1, 2, 12]))
    with pytest.raises(ValueError, match="outputs must have num_bits = 8 columns; got 6"):
        method.compute_loss(torch.randn(4, 6), torch.tensor([0, 1, 2, 2]), None, torch.arange(4))
    bad = h.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="outputs contain NaN or infinite"):
        method.compute_loss(bad, torch.tensor([0, 1, 2, 2]), None, torch.arange(4))
    with pytest.raises(ValueError, match="full_data_scale needs the training-set size"):
        SHBDNNMethod(3, 8).compute_loss(h, torch.tensor([0, 1, 2, 2]), None, torch.arange(4))
    with pytest.raises(ValueError, match="input_dim is required"):
        UHBDNNMethod(3, 8)
    uh = UHBDNNMethod(3, 8, input_dim=5, num_train=4)
    with pytest.raises(ValueError, match="inputs must have input_dim = 5 features"):
        uh.compute_loss(h, None, torch.randn(4, 7), torch.arange(4))


@pytest.mark.parametrize("name", ["sh-bdnn", "uh-bdnn"])
def test_bdnn_queues_its_batch_checks_on_a_device_instead_of_reading_them(name):
    # The meta device has no data: any host read of a check (an int() or bool() per step,
    # a device sync on a GPU) would raise here; the checks must only be queued, and B
    # indexed with indices clamped into it.
    method = create_method(
        name, 3, 16, num_train=10, **({"input_dim": 8} if name == "uh-bdnn" else {})
    )
    outputs = torch.randn(4, 16, device="meta")
    indices = method._check_outputs(outputs, torch.tensor([0, 1, 2, 99], device="meta"))
    assert indices.device.type == "meta"
    expected = {
        "outputs contain NaN or infinite values",
        "indices must be non-negative training-set positions",
        "indices must be < num_train = 10",
    }
    if name == "sh-bdnn":  # supervised: its labels too
        method._check_labels(torch.tensor([0, 1, 2, 5], device="meta"))
        expected.add("labels must be in [0, num_classes) = [0, 3)")
    assert set(method.deferred_checks.flags) == expected


def test_bdnn_raises_a_queued_check_at_the_epoch_end():
    method = create_method("sh-bdnn", 3, 16, num_train=10)
    method.deferred_checks.add(torch.tensor(True), "indices must be < num_train = 10")
    with pytest.raises(ValueError, match="indices must be < num_train = 10"):
        method.on_epoch_end(0)
