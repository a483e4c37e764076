"""LSH and ITQ against plain numpy references; the fit-only and classifier methods."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.baselines import ITQ, LSH
from pml_hashing.methods import ClassifierMethod, ITQMethod, LSHMethod, create_method

DTYPES = [np.float32, np.float64]


def anisotropic(seed, n=300, dim=20, dtype=np.float64):
    """Gaussian data with clearly decaying variances (a well-defined PCA subspace)."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(5.0, 0.05, dim)
    mixing = np.linalg.qr(rng.normal(size=(dim, dim)))[0]
    return ((rng.normal(size=(n, dim)) * scales) @ mixing.T + rng.normal(size=dim)).astype(dtype)


def sign(values):
    return np.where(values >= 0, 1, -1)


# ---------------------------------------------------------------- LSH


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_bits", [4, 20, 33])
def test_lsh_codes_are_the_sign_of_centred_projections(dtype, num_bits):
    x = anisotropic(0, dtype=dtype)
    lsh = LSH(num_bits, seed=3).fit(x)
    w = lsh.projection.astype(np.float64)
    expected = sign((x.astype(np.float64) - x.astype(np.float64).mean(0)) @ w)
    codes = lsh.encode(x)
    assert codes.dtype == np.int8 and codes.shape == (len(x), num_bits)
    # float32 rounding may flip a projection that is within 1e-4 of 0
    near_zero = np.abs((x - lsh.mean) @ w) < 1e-4
    assert np.array_equal(codes[~near_zero], expected[~near_zero])


def test_lsh_projection_is_orthonormal_and_seeded():
    x = anisotropic(1)
    w = LSH(8, seed=0).fit(x).projection
    assert np.allclose(w.T @ w, np.eye(8), atol=1e-5)
    assert np.array_equal(w, LSH(8, seed=0).fit(x).projection)
    assert not np.allclose(w, LSH(8, seed=1).fit(x).projection)


def test_lsh_without_centring_projects_raw_features():
    x = anisotropic(2) + 10.0
    lsh = LSH(8, center=False).fit(x)
    assert np.array_equal(lsh.encode(x), sign(x @ lsh.projection.astype(np.float64)))


def test_lsh_bits_are_balanced_on_symmetric_data():
    # Centred symmetric data: each random hyperplane through the mean halves it.
    x = np.random.default_rng(0).normal(size=(4000, 16))
    ratios = (LSH(16).fit(x).encode(x) > 0).mean(axis=0)
    assert np.all(np.abs(ratios - 0.5) < 0.05)


# ---------------------------------------------------------------- ITQ


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("num_bits", [2, 6, 12])
def test_itq_codes_are_sign_of_centred_pca_rotation(dtype, num_bits):
    x = anisotropic(3, dtype=dtype)
    itq = ITQ(num_bits, seed=1).fit(x)
    x64 = x.astype(np.float64)
    centred = x64 - x64.mean(0)
    # PCA: the fitted directions span the top-K eigenvectors of the covariance.
    _, vectors = np.linalg.eigh(np.cov(centred.T))
    top = vectors[:, ::-1][:, :num_bits]
    assert np.allclose(itq.pca @ itq.pca.T, top @ top.T, atol=1e-4)
    assert np.allclose(itq.pca.T @ itq.pca, np.eye(num_bits), atol=1e-5)
    # R orthogonal, and the codes are sign((x - mean) P R)
    r = itq.rotation.astype(np.float64)
    assert np.allclose(r.T @ r, np.eye(num_bits), atol=1e-5)
    values = centred @ itq.pca.astype(np.float64) @ r
    near_zero = np.abs(values) < 1e-4
    assert np.array_equal(itq.encode(x)[~near_zero], sign(values)[~near_zero])


def numpy_itq_losses(v, rotation, iterations):
    """Gong and Lazebnik's alternation written plainly."""
    losses = []
    for _ in range(iterations + 1):
        b = sign(v @ rotation)
        losses.append(((b - v @ rotation) ** 2).sum() / len(v))
        u, _, wt = np.linalg.svd(v.T @ b)
        rotation = u @ wt
    return losses


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(2, 10), st.integers(1, 30))
def test_itq_quantization_loss_never_increases(seed, num_bits, iterations):
    x = anisotropic(seed, n=200, dim=12)
    itq = ITQ(num_bits, iterations=iterations, seed=seed).fit(x)
    losses = np.asarray(itq.loss_history)
    assert len(losses) == iterations + 1
    assert np.all(np.diff(losses) <= 1e-6 * losses[0])
    assert itq.quantization_loss(x) == pytest.approx(losses[-1], rel=1e-4)


def test_itq_loss_history_matches_a_plain_numpy_alternation():
    from pml_hashing.baselines.itq import initial_rotation

    x = anisotropic(4)
    itq = ITQ(6, iterations=10, seed=2).fit(x)
    v = (x - x.mean(0)) @ itq.pca.astype(np.float64)
    expected = numpy_itq_losses(v, initial_rotation(6, 2), 10)
    assert np.allclose(itq.loss_history, expected, rtol=1e-4)


def test_itq_lowers_the_loss_of_its_initial_rotation_and_balances_bits():
    x = anisotropic(5, n=3000, dim=24)
    itq = ITQ(8, iterations=50).fit(x)
    assert itq.loss_history[-1] < itq.loss_history[0]
    ratios = (itq.encode(x) > 0).mean(axis=0)
    # PCA directions of centred symmetric data split it evenly, and so do their rotations
    assert np.all(np.abs(ratios - 0.5) < 0.05)


def test_itq_is_seeded():
    x = anisotropic(6)
    assert np.array_equal(ITQ(6, seed=4).fit(x).rotation, ITQ(6, seed=4).fit(x).rotation)


def test_baselines_accept_torch_tensors():
    x = torch.from_numpy(anisotropic(7, dtype=np.float32))
    assert np.array_equal(ITQ(4).fit(x).encode(x), ITQ(4).fit(x.numpy()).encode(x.numpy()))
    assert LSH(4).fit(x).encode(x).shape == (len(x), 4)


@pytest.mark.parametrize(
    "make, call, error",
    [
        (lambda: ITQ(30), lambda m: m.fit(anisotropic(0)), "at most the feature dimension"),
        (lambda: ITQ(0), None, "positive integer"),
        (lambda: LSH(True), None, "positive integer"),
        (lambda: ITQ(4), lambda m: m.encode(anisotropic(0)), "not fitted"),
        (lambda: LSH(4), lambda m: m.fit(np.zeros(5)), "2-D"),
        (lambda: LSH(4), lambda m: m.fit(np.full((3, 2), np.nan)), "finite"),
        (lambda: LSH(4).fit(anisotropic(0)), lambda m: m.encode(np.zeros((2, 3))), "20 features"),
        (lambda: ITQ(4, iterations=-1), None, ">= 0"),
    ],
)
def test_baseline_errors_name_the_problem(make, call, error):
    with pytest.raises((ValueError, RuntimeError, TypeError), match=error):
        model = make()
        if call is not None:
            call(model)


# ---------------------------------------------------------------- methods


@pytest.mark.parametrize("method_class, baseline_class", [(LSHMethod, LSH), (ITQMethod, ITQ)])
def test_fit_only_method_encodes_like_its_baseline(method_class, baseline_class):
    x = anisotropic(8, dtype=np.float32)
    method = method_class(10, 6, seed=3).fit(torch.from_numpy(x).reshape(len(x), 4, 5))
    baseline = baseline_class(6, seed=3).fit(x)
    values = method.retrieval_outputs(torch.from_numpy(x).reshape(len(x), 1, 4, 5))
    assert np.allclose(values.numpy(), baseline.project(x), atol=1e-5)
    fresh = create_method(method_class.name, 10, 6)
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.retrieval_outputs(torch.from_numpy(x)), method.retrieval_outputs(
        torch.from_numpy(x)))  # fmt: skip
    with pytest.raises(RuntimeError, match="fit-only"):
        method.compute_loss(values, None, None, None)


def test_classifier_code_is_sign_of_centred_probabilities_repeated():
    torch.manual_seed(0)
    method = ClassifierMethod(num_classes=3, num_bits=8, seed=1)
    outputs = torch.randn(50, 8, dtype=torch.float64)
    logits = outputs.float() @ method.classifier.weight.T + method.classifier.bias
    p = torch.softmax(logits, dim=1).detach().numpy()
    centred = p - p.mean(axis=1, keepdims=True)
    expected = centred[:, [k % 3 for k in range(8)]]
    assert np.allclose(method.retrieval_outputs(outputs).numpy(), expected, atol=1e-6)


def test_classifier_loss_is_cross_entropy_and_trains_to_one_hot_codes():
    torch.manual_seed(0)
    method = ClassifierMethod(num_classes=4, num_bits=4)
    outputs = torch.randn(40, 4)
    labels = torch.arange(40) % 4
    loss = method.compute_loss(outputs, labels, None, None)
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(method.logits(outputs), labels))
    trainable = torch.nn.Parameter(outputs.clone())
    optimizer = torch.optim.Adam([trainable, *method.parameters()], lr=0.1)
    for _ in range(200):
        optimizer.zero_grad()
        method.compute_loss(trainable, labels, None, None).backward()
        optimizer.step()
    codes = torch.where(method.retrieval_outputs(trainable.detach()) >= 0, 1, -1)
    assert torch.equal(codes, 2 * torch.nn.functional.one_hot(labels, 4) - 1)


def test_classifier_multi_hot_uses_sigmoids_and_remembers_it():
    method = ClassifierMethod(num_classes=3, num_bits=6)
    outputs = torch.randn(10, 6)
    labels = (torch.rand(10, 3) < 0.5).long()
    method.compute_loss(outputs, labels, None, None)
    p = torch.sigmoid(method.logits(outputs)).detach()
    expected = (p - p.mean(1, keepdim=True))[:, [0, 1, 2, 0, 1, 2]]
    assert torch.allclose(method.retrieval_outputs(outputs), expected)
    assert bool(method.state_dict()["multi_label_trained"])


def test_classifier_needs_a_bit_per_class():
    with pytest.raises(ValueError, match="at least num_classes"):
        ClassifierMethod(num_classes=10, num_bits=8)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        ClassifierMethod(3, 4).compute_loss(torch.randn(2, 4), torch.tensor([0, 3]), None, None)


def test_itq_method_through_the_training_loop_matches_a_hand_fitted_itq(tmp_path):
    from pml_hashing.data import load_protocol
    from pml_hashing.evaluation import mean_average_precision
    from pml_hashing.training import parse_config, run_experiment

    config = parse_config(
        [
            "--method",
            "itq",
            "--bits",
            "16",
            "--dataset",
            "digits",
            "--unseen-classes",
            "auto",
            "--output-dir",
            str(tmp_path),
            "--log-with",
            "none",
            "--no-progress",
        ]  # fmt: skip
    )
    metrics = run_experiment(config)
    assert metrics["epochs_trained"] == 0
    protocol = load_protocol("digits", unseen_classes="auto")

    def pixels(dataset):
        return np.stack([dataset[i][0].numpy().ravel() for i in range(len(dataset))])

    itq = ITQ(16).fit(pixels(protocol.train))
    expected = mean_average_precision(
        itq.encode(pixels(protocol.query)), protocol.query.labels,
        itq.encode(pixels(protocol.database)), protocol.database.labels,
    )  # fmt: skip
    assert metrics["last_epoch"]["map"] == pytest.approx(expected, abs=1e-6)


def test_uh_bdnn_itq_init_starts_b_at_the_itq_codes():
    from pml_hashing.methods import EncodedTrainingSet, UHBDNNMethod

    x = torch.from_numpy(anisotropic(9, n=120, dim=16, dtype=np.float32))
    method = UHBDNNMethod(1, 6, input_dim=16, seed=2, init="itq", num_train=120)

    def encode():
        return EncodedTrainingSet(torch.randn(120, 6), x, torch.zeros(120), torch.arange(120))

    method.on_epoch_start(0, encode)
    expected = ITQ(6, seed=2).fit(x.numpy()).encode(x.numpy())
    assert np.array_equal(method.codes.numpy(), expected)
    assert bool(method.code_known.all()) and bool(method.decoder_fitted)
    with pytest.raises(ValueError, match="init must be one of"):
        UHBDNNMethod(1, 6, input_dim=16, init="pca")
