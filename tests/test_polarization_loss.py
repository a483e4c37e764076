"""Tests of PolarizationLoss against a plain-loop reference, and its fit with PML."""

import importlib.util
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from pytorch_metric_learning import reducers, regularizers
from pytorch_metric_learning.utils.distributed import DistributedLossWrapper

from pml_hashing.losses import PolarizationLoss
from pml_hashing.miners import AdaptiveTargetMiner, HadamardTargetMiner, RandomTargetMiner

DTYPES = (torch.float32, torch.float64)
TOLERANCE = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-12, atol=1e-12)}

# DPN's Algorithm 1 as written: update after every epoch, from the first, no guard.
ALGORITHM_1 = {"warmup_epochs": 0, "update_every": 1, "min_distance_floor": None}


def loop_sample_losses(embeddings, labels, targets, margin):
    """Per-sample L_P: sum over bits of max(m - v_k t_k, 0); multi-hot: sum over labels."""
    targets = targets.tolist()
    losses = []
    for v, y in zip(embeddings.tolist(), labels.tolist(), strict=True):
        classes = [y] if isinstance(y, int) else [c for c, on in enumerate(y) if on]
        total = 0.0
        for c in classes:
            for k in range(len(v)):
                total += max(margin - v[k] * targets[c][k], 0.0)
        losses.append(total)
    return losses


def loop_mean_gradient(embeddings, labels, targets, margin):
    """d(mean_i L_P(v_i)) / dv_ik = -(1/N) sum over the sample's labels of t_ck where active."""
    n = len(embeddings)
    targets = targets.tolist()
    grad = []
    for v, y in zip(embeddings.tolist(), labels.tolist(), strict=True):
        classes = [y] if isinstance(y, int) else [c for c, on in enumerate(y) if on]
        row = [0.0] * len(v)
        for c in classes:
            for k in range(len(v)):
                if margin - v[k] * targets[c][k] > 0:
                    row[k] -= targets[c][k] / n
        grad.append(row)
    return grad


def random_batch(n, num_bits, num_classes, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = 2 * torch.randn(n, num_bits, generator=generator, dtype=dtype)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    return embeddings, labels


def assert_close(actual, expected, dtype):
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=dtype), **TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.5, 1.0, 2.0])
def test_value_and_gradient_match_loop_for_integer_labels(dtype, margin):
    num_classes, num_bits = 7, 16
    loss_fn = PolarizationLoss(margin=margin, num_classes=num_classes, num_bits=num_bits, seed=4)
    embeddings, labels = random_batch(33, num_bits, num_classes, dtype, seed=1)
    embeddings.requires_grad_(True)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    expected = loop_sample_losses(embeddings, labels, loss_fn.targets, margin)
    assert loss.dtype == dtype
    assert_close(loss, sum(expected) / len(expected), dtype)
    assert_close(
        embeddings.grad, loop_mean_gradient(embeddings, labels, loss_fn.targets, margin), dtype
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("margin", [0.5, 1.0, 3.0])
def test_value_and_gradient_match_loop_for_multi_hot_labels(dtype, margin):
    num_classes, num_bits = 6, 8
    miner = RandomTargetMiner(num_classes, num_bits, seed=2)
    loss_fn = PolarizationLoss(margin=margin, target_miner=miner)
    generator = torch.Generator().manual_seed(5)
    embeddings = 2 * torch.randn(20, num_bits, generator=generator, dtype=dtype)
    labels = (torch.rand(20, num_classes, generator=generator) < 0.35).long()
    labels[0] = 0  # no label: contributes 0
    labels[1] = 1  # every label
    embeddings.requires_grad_(True)
    loss = loss_fn(embeddings, labels)
    loss.backward()
    expected = loop_sample_losses(embeddings, labels, miner.targets, margin)
    assert expected[0] == 0.0
    assert_close(loss, sum(expected) / len(expected), dtype)
    assert_close(
        embeddings.grad, loop_mean_gradient(embeddings, labels, miner.targets, margin), dtype
    )
    assert embeddings.grad[0].abs().sum() == 0


def test_boolean_and_float_multi_hot_labels_give_the_same_loss():
    loss_fn = PolarizationLoss(num_classes=4, num_bits=8)
    embeddings = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([[1, 0, 1, 0], [0, 0, 0, 1]] * 3)
    value = loss_fn(embeddings, labels)
    assert torch.equal(loss_fn(embeddings, labels.bool()), value)
    assert torch.equal(loss_fn(embeddings, labels.float()), value)


def test_multi_hot_one_label_equals_integer_label():
    loss_fn = PolarizationLoss(num_classes=5, num_bits=8)
    embeddings, labels = random_batch(12, 8, 5, torch.float64, seed=3)
    one_hot = torch.nn.functional.one_hot(labels, 5)
    torch.testing.assert_close(loss_fn(embeddings, one_hot), loss_fn(embeddings, labels))


def test_hand_worked_value():
    # t = (+1, -1); v = (0.25, 0.5): hinges max(1 - 0.25, 0) + max(1 + 0.5, 0) = 0.75 + 1.5
    miner = RandomTargetMiner(1, 2, seed=0)
    miner.load_state_dict({"targets": torch.tensor([[1.0, -1.0]])})
    loss_fn = PolarizationLoss(margin=1.0, target_miner=miner)
    loss = loss_fn(torch.tensor([[0.25, 0.5], [3.0, -2.0]]), torch.tensor([0, 0]))
    assert loss.item() == pytest.approx((2.25 + 0.0) / 2)


def test_hadamard_targets_as_outputs_with_margin_give_zero_loss():
    miner = HadamardTargetMiner(7, 8)
    loss_fn = PolarizationLoss(margin=1.0, target_miner=miner)
    labels = torch.arange(7)
    assert loss_fn(miner.targets[labels].clone(), labels).item() == 0.0
    assert loss_fn(0.999 * miner.targets[labels], labels).item() > 0.0


# ---------------------------------------------------------------- PML integration


@pytest.mark.parametrize("dtype", DTYPES)
def test_sum_reducer_sums_per_sample_losses(dtype):
    loss_fn = PolarizationLoss(num_classes=5, num_bits=16, reducer=reducers.SumReducer())
    embeddings, labels = random_batch(17, 16, 5, dtype, seed=6)
    expected = loop_sample_losses(embeddings, labels, loss_fn.targets, 1.0)
    assert_close(loss_fn(embeddings, labels), sum(expected), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_non_zero_reducer_ignores_polarized_samples(dtype):
    loss_fn = PolarizationLoss(num_classes=5, num_bits=16, reducer=reducers.AvgNonZeroReducer())
    embeddings, labels = random_batch(16, 16, 5, dtype, seed=7)
    # half the samples are fully polarized (|v| >= m on the target's side): zero loss
    embeddings[::2] = 1.5 * loss_fn.targets[labels[::2]].to(dtype)
    expected = loop_sample_losses(embeddings, labels, loss_fn.targets, 1.0)
    nonzero = [x for x in expected if x > 0]
    assert len(nonzero) == 8
    assert_close(loss_fn(embeddings, labels), sum(nonzero) / len(nonzero), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_regularizer_adds_mean_norm(dtype):
    loss_fn = PolarizationLoss(
        num_classes=5,
        num_bits=8,
        embedding_regularizer=regularizers.LpRegularizer(),
        embedding_reg_weight=0.3,
    )
    embeddings, labels = random_batch(10, 8, 5, dtype, seed=8)
    hinge = loop_sample_losses(embeddings, labels, loss_fn.targets, 1.0)
    norms = [math.sqrt(sum(x * x for x in row)) for row in embeddings.tolist()]
    expected = sum(hinge) / len(hinge) + 0.3 * sum(norms) / len(norms)
    assert_close(loss_fn(embeddings, labels), expected, dtype)


def test_distributed_wrapper_without_process_group_returns_the_loss():
    loss_fn = PolarizationLoss(num_classes=5, num_bits=16)
    embeddings, labels = random_batch(12, 16, 5, torch.float64, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = DistributedLossWrapper(loss_fn)(embeddings, labels)
    torch.testing.assert_close(wrapped, loss_fn(embeddings, labels))


def test_distributed_wrapper_single_process_group_equals_unwrapped(tmp_path):
    assert not dist.is_initialized()
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        loss_fn = PolarizationLoss(num_classes=5, num_bits=16)
        embeddings, labels = random_batch(12, 16, 5, torch.float64, seed=10)
        expected = loop_sample_losses(embeddings, labels, loss_fn.targets, 1.0)
        wrapped = DistributedLossWrapper(loss_fn)(embeddings, labels)
        assert_close(wrapped, sum(expected) / len(expected), torch.float64)
    finally:
        dist.destroy_process_group()


def test_codebook_is_in_the_loss_state_dict():
    loss_fn = PolarizationLoss(num_classes=5, num_bits=16, seed=3)
    other = PolarizationLoss(num_classes=5, num_bits=16, seed=4)
    other.load_state_dict(loss_fn.state_dict())
    assert torch.equal(other.targets, loss_fn.targets)
    assert "target_miner.targets" in loss_fn.state_dict()


def test_default_miner_is_seeded_random():
    loss_fn = PolarizationLoss(num_classes=6, num_bits=16, seed=8)
    assert isinstance(loss_fn.target_miner, RandomTargetMiner)
    assert torch.equal(loss_fn.targets, RandomTargetMiner(6, 16, seed=8).targets)


# ---------------------------------------------------------------- adaptive targets


def test_adaptive_miner_observes_only_outputs_that_require_grad():
    miner = AdaptiveTargetMiner(4, 8, seed=0, **ALGORITHM_1)
    reference = AdaptiveTargetMiner(4, 8, seed=0, **ALGORITHM_1)
    loss_fn = PolarizationLoss(target_miner=miner)
    embeddings, labels = random_batch(30, 8, 4, torch.float32, seed=11)
    embeddings = 0.1 * embeddings + miner.targets[labels]  # mostly correctly coded
    loss_fn(embeddings, labels)  # evaluation: no grad, no observation
    assert miner.voters.sum() == 0 and miner.votes.abs().sum() == 0
    with torch.no_grad():
        loss_fn(embeddings.clone().requires_grad_(True) * 1, labels)
    assert miner.voters.sum() == 0
    loss_fn(embeddings.clone().requires_grad_(True), labels)
    reference.observe(embeddings, labels)
    assert miner.voters.sum() > 0
    assert torch.equal(miner.votes, reference.votes)
    assert torch.equal(miner.voters, reference.voters)


def test_end_epoch_applies_the_adaptive_update():
    miner = AdaptiveTargetMiner(3, 8, seed=0, **ALGORITHM_1)
    # targets pairwise at distance 4, so one flipped bit leaves a sample correctly coded
    hadamard_rows = HadamardTargetMiner(3, 8).targets
    miner.load_state_dict({**miner.state_dict(), "targets": hadamard_rows})
    loss_fn = PolarizationLoss(target_miner=miner)
    labels = torch.tensor([0, 0, 1, 2])
    flipped = miner.targets[labels].clone()
    flipped[:2, 0] *= -1  # class 0's samples agree on a flipped bit 0
    loss_fn(flipped.requires_grad_(True), labels)
    expected = miner.targets.clone()
    expected[0, 0] *= -1
    assert loss_fn.end_epoch() is True
    assert torch.equal(miner.targets, expected)
    loss_fn.end_epoch()  # no observation since: nothing changes
    assert torch.equal(miner.targets, expected)


def test_static_miner_end_epoch_is_false():
    assert PolarizationLoss(num_classes=3, num_bits=8).end_epoch() is False


# ---------------------------------------------------------------- bad inputs


@pytest.fixture
def loss_fn():
    return PolarizationLoss(num_classes=10, num_bits=16)


@pytest.mark.parametrize("bad", [10, 12, -1])
def test_labels_out_of_range_raise(loss_fn, bad):
    labels = torch.tensor([0, bad, 3])
    with pytest.raises(
        ValueError, match=rf"labels must be in \[0, num_classes\) = \[0, 10\); got {bad}"
    ):
        loss_fn(torch.randn(3, 16), labels)


def test_embeddings_with_other_number_of_bits_raise(loss_fn):
    with pytest.raises(ValueError, match=r"embeddings have 32 bits .* target_miner.num_bits is 16"):
        loss_fn(torch.randn(3, 32), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_embeddings_raise(loss_fn, bad):
    embeddings = torch.randn(3, 16)
    embeddings[1, 4] = bad
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        loss_fn(embeddings, torch.tensor([0, 1, 2]))


def test_labels_of_wrong_length_raise(loss_fn):
    with pytest.raises(ValueError, match=r"one row per embedding \(4\); got shape \(3,\)"):
        loss_fn(torch.randn(4, 16), torch.tensor([0, 1, 2]))


def test_multi_hot_labels_of_wrong_width_raise(loss_fn):
    with pytest.raises(
        ValueError, match=r"multi-hot labels must have shape .*\(N, 10\); got \(4, 9\)"
    ):
        loss_fn(torch.randn(4, 16), torch.zeros(4, 9, dtype=torch.long))


def test_missing_labels_raise(loss_fn):
    with pytest.raises(ValueError, match="labels are required"):
        loss_fn(torch.randn(4, 16))


def test_embeddings_not_2d_raise(loss_fn):
    with pytest.raises(
        ValueError, match=r"embeddings must have shape \(N, num_bits\); got \(16,\)"
    ):
        loss_fn(torch.randn(16), torch.tensor([0]))


@pytest.mark.parametrize(
    "margin, match",
    [
        (0.0, "margin must be > 0"),
        (-1.0, "margin must be > 0"),
        (float("nan"), "margin must be a finite real number"),
        (float("inf"), "margin must be a finite real number"),
        (True, "margin must be a finite real number"),
    ],
)
def test_non_positive_or_non_finite_margin_raises(margin, match):
    with pytest.raises(ValueError, match=match):
        PolarizationLoss(margin=margin, num_classes=3, num_bits=8)


def test_missing_target_miner_and_sizes_raise():
    with pytest.raises(ValueError, match="target_miner is required"):
        PolarizationLoss(num_classes=3)


def test_target_miner_of_wrong_type_raises():
    with pytest.raises(ValueError, match="target_miner must be a BaseTargetMiner; got Linear"):
        PolarizationLoss(target_miner=torch.nn.Linear(2, 2))


# ---------------------------------------------------------------- benchmark smoke run


def load_benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_loss.py"
    spec = importlib.util.spec_from_file_location("bench_loss", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_benchmark_pairwise_hamming_baseline_matches_loop():
    bench = load_benchmark()
    embeddings, labels = random_batch(7, 8, 3, torch.float64, seed=12)
    h = torch.tanh(embeddings).tolist()
    total, count = 0.0, 0
    for i in range(7):
        for j in range(7):
            if i != j:
                d = 0.5 * (8 - sum(a * b for a, b in zip(h[i], h[j], strict=True)))
                total += d if labels[i] == labels[j] else max(4.0 - d, 0.0)
                count += 1
    value = bench.PairwiseHammingLoss(8)(embeddings, labels)
    assert_close(value, total / count, torch.float64)


def test_loss_benchmark_quick_run_reports_every_loss_and_batch(capsys):
    bench = load_benchmark()
    rows = bench.main(["--quick"])
    names = {"polarization", "pml-contrastive", "pairwise-hamming"}
    assert {(r["batch"], r["loss"]) for r in rows} == {(b, n) for b in (32, 128) for n in names}
    assert all(r["ratio"] == 1.0 for r in rows if r["loss"] == "polarization")
    assert "x polarization" in capsys.readouterr().out


@pytest.mark.parametrize("label_dtype", [torch.uint8, torch.int16, torch.int32])
def test_small_integer_label_dtypes_give_the_int64_loss(label_dtype):
    # N == num_classes and labels in {0, 1}: a uint8 tensor would index as a boolean mask
    loss_fn = PolarizationLoss(target_miner=AdaptiveTargetMiner(6, 8, seed=1, **ALGORITHM_1))
    embeddings = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 1, 0, 1, 1, 1])
    expected = loop_sample_losses(embeddings, labels, loss_fn.targets, 1.0)
    value = loss_fn(embeddings.requires_grad_(True), labels.to(label_dtype))
    assert_close(value, sum(expected) / len(expected), torch.float32)


# ---------------------------------------------------------------- two processes


def global_batch():
    generator = torch.Generator().manual_seed(21)
    miner = AdaptiveTargetMiner(5, 16, seed=0, **ALGORITHM_1)
    labels = torch.randint(0, 5, (24,), generator=generator)
    flips = torch.rand(24, 16, generator=generator) < 0.2
    embeddings = torch.where(flips, -1.0, 1.0) * miner.targets[labels]
    embeddings = embeddings * (torch.rand(24, 16, generator=generator) + 0.2)
    return embeddings.to(torch.float64), labels


def distributed_worker(rank, world_size, store, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    try:
        embeddings, labels = global_batch()
        shard = slice(rank, None, world_size)
        local = embeddings[shard].clone().requires_grad_(True)
        loss_fn = PolarizationLoss(target_miner=AdaptiveTargetMiner(5, 16, seed=0, **ALGORITHM_1))
        value = DistributedLossWrapper(loss_fn)(local, labels[shard])
        value.backward()
        updated = loss_fn.end_epoch()
        result = {"value": value.detach(), "grad": local.grad, "updated": updated}
        result["targets"] = loss_fn.targets.clone()
        torch.save(result, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_wrapper_value_gradient_and_shared_adaptive_codebook(tmp_path):
    world_size = 2
    torch.multiprocessing.start_processes(
        distributed_worker,
        args=(world_size, str(tmp_path / "store"), str(tmp_path)),
        nprocs=world_size,
        start_method="spawn",  # fork deadlocks once torch threads exist
    )
    embeddings, labels = global_batch()
    reference = AdaptiveTargetMiner(5, 16, seed=0, **ALGORITHM_1)
    expected = loop_sample_losses(embeddings, labels, reference.targets, 1.0)
    reference.observe(embeddings, labels)  # one process seeing the whole batch
    reference.end_epoch()
    assert reference.num_changed_bits > 0  # the update is not a no-op
    for rank in range(world_size):
        result = torch.load(tmp_path / f"rank{rank}.pt")
        # PML's wrapper: the mean over the gathered batch, times the world size
        assert_close(result["value"], world_size * sum(expected) / len(expected), torch.float64)
        shard = slice(rank, None, world_size)
        grad = loop_mean_gradient(
            embeddings[shard], labels[shard], AdaptiveTargetMiner(5, 16).targets, 1.0
        )
        assert_close(result["grad"], grad, torch.float64)
        assert result["updated"] is True
        assert torch.equal(result["targets"], reference.targets)
