"""DPN-T's threshold: chosen on the validation split from a grid that includes binary codes."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.data import Dataset

from pml_hashing.codes import ternarize
from pml_hashing.evaluation import (
    ZeroOneCodesWarning,
    mean_average_precision,
    select_ternary_threshold,
    ternary_threshold_grid,
)
from pml_hashing.training import retrieval_report, run_experiment
from pml_hashing.training.config import ExperimentConfig, parse_config

DTYPES = (torch.float32, torch.float64)


# ---------------------------------------------------------------- plain references


def loop_ternary(v, threshold):
    return [[0 if abs(x) <= threshold else (1 if x > 0 else -1) for x in row] for row in v]


def loop_map(query, query_labels, database, database_labels):
    """mAP@all, ties broken by database index, by loops over lists."""
    total = 0.0
    for q, y in zip(query, query_labels, strict=True):
        distances = [sum((1 - a * b) / 2 for a, b in zip(q, d, strict=True)) for d in database]
        order = sorted(range(len(database)), key=lambda i: (distances[i], i))
        hits, precision_sum = 0, 0.0
        for rank, i in enumerate(order, start=1):
            if database_labels[i] == y:
                hits += 1
                precision_sum += hits / rank
        total += precision_sum / hits if hits else 0.0
    return total / len(query)


def clustered_outputs(n, num_bits, num_classes, dtype, seed, spread=1.2):
    generator = torch.Generator().manual_seed(seed)
    centers = torch.where(torch.rand(num_classes, num_bits, generator=generator) < 0.5, 1.0, -1.0)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    noise = torch.randn(n, num_bits, generator=generator) * spread
    return (centers[labels] + noise).to(dtype), labels


# ---------------------------------------------------------------- select_ternary_threshold


def test_default_grid_includes_binary_and_the_margin():
    grid = ternary_threshold_grid(2.0)
    assert grid[0] == 0.0 and 2.0 in grid
    assert list(grid) == sorted(grid) and len(grid) >= 4


@pytest.mark.parametrize("dtype", DTYPES)
def test_selection_scores_match_loop_reference_and_pick_the_best(dtype):
    val, val_labels = clustered_outputs(24, 16, 4, dtype, seed=0)
    db, db_labels = clustered_outputs(60, 16, 4, dtype, seed=1)
    grid = (0.0, 0.3, 0.8, 1.5)
    selection = select_ternary_threshold(val, val_labels, db, db_labels, grid=grid, ties="index")
    expected = {
        t: loop_map(
            loop_ternary(val.tolist(), t),
            val_labels.tolist(),
            loop_ternary(db.tolist(), t),
            db_labels.tolist(),
        )
        for t in grid
    }
    assert list(selection.validation_map) == list(grid)
    for t in grid:
        assert selection.validation_map[t] == pytest.approx(expected[t], abs=1e-9)
    best = max(expected.values())
    assert selection.threshold == min(t for t in grid if expected[t] >= best - 1e-12)
    assert len(set(round(m, 9) for m in expected.values())) > 1  # the grid matters here


def test_selection_tie_keeps_the_smaller_threshold():
    # every output beyond the largest candidate: every threshold gives the same codes
    val, val_labels = clustered_outputs(12, 8, 3, torch.float64, seed=2)
    db, db_labels = clustered_outputs(30, 8, 3, torch.float64, seed=3)
    val, db = torch.sign(val) * 5, torch.sign(db) * 5
    selection = select_ternary_threshold(val, val_labels, db, db_labels, margin=1.0)
    assert len(set(selection.validation_map.values())) == 1
    assert selection.threshold == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_threshold_zero_equals_binary_map(dtype):
    query, query_labels = clustered_outputs(30, 16, 4, dtype, seed=4)
    db, db_labels = clustered_outputs(70, 16, 4, dtype, seed=5)
    for ties in ("index", "expected"):
        report = retrieval_report(
            query, query_labels, db, db_labels, ties=ties, ternary_threshold=0
        )
        assert report["ternary_threshold"] == 0.0 and report["ternary_zero_fraction"] == 0.0
        assert report["map_ternary"] == pytest.approx(report["map"], abs=1e-12)


def test_report_uses_the_threshold_not_the_margin():
    query, query_labels = clustered_outputs(20, 16, 4, torch.float64, seed=6)
    db, db_labels = clustered_outputs(50, 16, 4, torch.float64, seed=7)
    at_margin = retrieval_report(query, query_labels, db, db_labels, ternary_margin=1.0)
    lower = retrieval_report(
        query, query_labels, db, db_labels, ternary_margin=1.0, ternary_threshold=0.5
    )
    assert at_margin["ternary_threshold"] == 1.0 and lower["ternary_threshold"] == 0.5
    assert lower["ternary_margin"] == 1.0
    expected = loop_map(
        loop_ternary(query.tolist(), 0.5),
        query_labels.tolist(),
        loop_ternary(db.tolist(), 0.5),
        db_labels.tolist(),
    )
    assert lower["map_ternary"] == pytest.approx(expected, abs=1e-9)
    assert lower["ternary_zero_fraction"] < at_margin["ternary_zero_fraction"]


@pytest.mark.parametrize("grid", [(), (0.5, -0.1), (0.5, "auto"), (True,)])
def test_bad_grid_raises(grid):
    val, val_labels = clustered_outputs(5, 8, 2, torch.float32, seed=8)
    with pytest.raises(ValueError, match="grid"):
        select_ternary_threshold(val, val_labels, val, val_labels, grid=grid)


def test_selection_agrees_with_mean_average_precision_on_multi_hot_labels():
    val, val_labels = clustered_outputs(15, 16, 4, torch.float32, seed=9)
    db, db_labels = clustered_outputs(40, 16, 4, torch.float32, seed=10)
    hot = torch.nn.functional.one_hot
    selection = select_ternary_threshold(val, hot(val_labels, 4), db, hot(db_labels, 4))
    for t, score in selection.validation_map.items():
        expected = loop_map(
            loop_ternary(val.tolist(), t),
            val_labels.tolist(),
            loop_ternary(db.tolist(), t),
            db_labels.tolist(),
        )
        # ties="expected" vs the loop's index order: equal only up to tie effects
        assert score == pytest.approx(expected, abs=0.05)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ZeroOneCodesWarning)
            direct = mean_average_precision(
                ternarize(val, t), val_labels, ternarize(db, t), db_labels, ties="expected"
            )
        assert score == pytest.approx(direct, abs=1e-12)  # one-hot == integer labels


# ---------------------------------------------------------------- config and training loop


def test_auto_without_a_validation_split_is_an_error_naming_validation_per_class():
    with pytest.raises(ValueError, match="validation_per_class"):
        ExperimentConfig.from_dict({"ternary_threshold": "auto"})
    config = ExperimentConfig.from_dict({"ternary_threshold": "auto", "validation_per_class": 5})
    assert config.ternary_threshold == "auto"


def test_flags_parse_thresholds_and_the_dpn_a_schedule():
    config = parse_config(
        [
            "--ternary-threshold",
            "0.25",
            "--warmup-epochs",
            "0",
            "--update-every",
            "1",
            "--min-distance-floor",
            "0",  # a floor of 0 never refuses: no guard (a flag cannot say None)
        ]
    )
    assert config.ternary_threshold == 0.25
    assert (config.warmup_epochs, config.update_every, config.min_distance_floor) == (0, 1, 0.0)
    assert ExperimentConfig.from_dict({"min_distance_floor": None}).min_distance_floor is None
    # YAML reads `none` as text; the help offers it
    for text in ("none", "None", "null"):
        assert ExperimentConfig.from_dict({"min_distance_floor": text}).min_distance_floor is None
        assert ExperimentConfig.from_dict({"ternary_threshold": text}).ternary_threshold is None
        assert parse_config(["--min-distance-floor", text]).min_distance_floor is None
    config = parse_config(["--ternary-threshold", "auto", "--validation-per-class", "3"])
    assert config.ternary_threshold == "auto"
    assert parse_config(["--min-distance-floor", "12"]).min_distance_floor == 12.0
    assert parse_config([]).ternary_threshold is None  # the paper's default: the margin
    for bad in (["--ternary-threshold", "best"], ["--ternary-threshold", "-1"]):
        with pytest.raises(ValueError, match="ternary_threshold"):
            parse_config(bad)
    with pytest.raises(ValueError, match="min_distance_floor"):
        parse_config(["--min-distance-floor", "largest"])


class _ShuffledLabels(Dataset):
    """The same images with their labels permuted."""

    def __init__(self, dataset, permutation):
        self.dataset, self.permutation = dataset, permutation

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.dataset[i][0], self.dataset[int(self.permutation[i])][1]


def test_auto_threshold_never_looks_at_query_labels():
    from pml_hashing.methods import create_method
    from pml_hashing.models import HashingModel
    from pml_hashing.training import EvaluationSettings, build_protocol, evaluate_retrieval

    config = ExperimentConfig.from_dict(
        dict(dataset="digits", bits=16, validation_per_class=5, ternary_threshold="auto")
    )
    torch.manual_seed(0)
    model = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=[8, 16]).eval()
    method = create_method("dpn", 10, 16, margin=0.05)  # an untrained net has small outputs
    protocol = build_protocol(config)
    settings = EvaluationSettings.of(config)
    first = evaluate_retrieval(model, method, protocol, settings)
    permutation = torch.randperm(len(protocol.query), generator=torch.Generator().manual_seed(1))
    protocol.query = _ShuffledLabels(protocol.query, permutation)
    second = evaluate_retrieval(model, method, protocol, settings)
    assert second["map"] != first["map"]  # the shuffle reached the reported numbers
    assert second["ternary_threshold"] == first["ternary_threshold"]
    assert second["ternary_threshold_selection"] == first["ternary_threshold_selection"]
    scores = first["ternary_threshold_selection"]["validation_map"]
    assert first["ternary_threshold"] in [float(t) for t in scores]
    assert len(set(scores.values())) > 1  # the choice was not a tie across the grid


def test_run_reports_the_threshold_chosen_on_validation(tmp_path, tiny_config):
    metrics = run_experiment(
        tiny_config(
            tmp_path,
            name="auto",
            epochs=1,
            validation_per_class=3,
            ternary_threshold="auto",
            checkpoint_every=0,
        )
    )
    report = metrics["last_epoch"]
    scores = report["ternary_threshold_selection"]["validation_map"]
    assert [float(t) for t in scores] == list(ternary_threshold_grid(1.0))
    best = max(scores.values())
    assert report["ternary_threshold"] == min(float(t) for t, m in scores.items() if m == best)
    assert "method" in metrics["history"][0]  # per-epoch method stats are kept
    # evaluating the checkpoint again uses the threshold the run chose, and gives its numbers
    from pml_hashing.training import evaluate_checkpoint

    again = evaluate_checkpoint(tmp_path / "auto")
    assert again["ternary_threshold"] == report["ternary_threshold"]
    assert again["map_ternary"] == pytest.approx(report["map_ternary"], abs=1e-9)
