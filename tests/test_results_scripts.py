"""Keeps the results page's scripts runnable, and its recipe configs loadable.

The scripts' --quick runs check that every study still produces a table and its plots; the
numbers are only checked for sanity ranges (an mAP in [0, 1]), never for values. The one
piece of arithmetic the results scripts add (both sides of the DPN paper's eq. 7) is
checked against a plain loop.
"""

import re
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.training import ExperimentConfig
from tests.scripts import load_benchmark

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "recipes" / "configs").glob("*.yaml"))
TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-9}


def eq7_by_loops(outputs, labels, targets, margin):
    """Both sides of eq. 7 with explicit loops over every pair of samples."""
    codes = [[1 if x >= 0 else -1 for x in row] for row in outputs.tolist()]
    v = outputs.tolist()
    t = targets.tolist()
    y = labels.tolist()
    classes = sorted(set(y))
    members = {c: [i for i in range(len(y)) if y[i] == c] for c in classes}

    def hamming(a, b):
        return sum(1 for p, q in zip(a, b, strict=True) if p != q)

    def mean_distance(cx, cy):
        total = sum(hamming(codes[i], codes[j]) for i in members[cx] for j in members[cy])
        return total / (len(members[cx]) * len(members[cy]))

    lhs = rhs = 0.0
    for cx in classes:
        lhs += mean_distance(cx, cx)
        losses = sum(
            max(margin - v[i][k] * t[cx][k], 0.0) for i in members[cx] for k in range(len(t[cx]))
        )
        rhs += 2 * len(classes) / len(members[cx]) * losses
        for cy in classes:
            if cy != cx:
                lhs -= mean_distance(cx, cy)
                rhs -= hamming(t[cx], t[cy])
    return lhs, rhs


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_proposition3_sides_match_a_pairwise_loop(dtype, seed):
    results = load_benchmark("results_dpn")
    generator = torch.Generator().manual_seed(seed)
    num_classes, num_bits = 4, 12
    outputs = (torch.randn(30, num_bits, generator=generator) * 1.5).to(dtype)
    labels = torch.randint(0, num_classes, (30,), generator=generator)
    targets = torch.randint(0, 2, (num_classes, num_bits), generator=generator).float() * 2 - 1
    lhs, rhs = results.proposition3_sides(outputs, labels, targets, margin=1.0)
    expected_lhs, expected_rhs = eq7_by_loops(outputs, labels, targets, 1.0)
    assert lhs == pytest.approx(expected_lhs, rel=TOLERANCE[dtype], abs=TOLERANCE[dtype])
    assert rhs == pytest.approx(expected_rhs, rel=TOLERANCE[dtype], abs=TOLERANCE[dtype])


def test_proposition3_sides_hand_worked():
    # Two classes, two bits, targets (+1, +1) and (-1, -1); class 0's outputs (2, 2) and
    # (0.5, -1): codes (+,+) and (+,-); class 1's output (-3, -3): code (-,-).
    # LHS: intra 0 = (0 + 1 + 1 + 0) / 4 = 0.5, intra 1 = 0; inter 0-1 = (2 + 1) / 2 = 1.5,
    # counted for (0, 1) and (1, 0): LHS = 0.5 - 3 = -2.5.
    # RHS: losses with m = 1: class 0: 0 + (0.5 + 2) = 2.5; class 1: 0.
    # 2 L / |C_0| * 2.5 = 2 * 2 / 2 * 2.5 = 5; minus D_h(t_0, t_1) twice = 4: RHS = 1.
    results = load_benchmark("results_dpn")
    outputs = torch.tensor([[2.0, 2.0], [0.5, -1.0], [-3.0, -3.0]])
    labels = torch.tensor([0, 0, 1])
    targets = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    lhs, rhs = results.proposition3_sides(outputs, labels, targets, margin=1.0)
    assert lhs == pytest.approx(-2.5)
    assert rhs == pytest.approx(1.0)


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000), margin=st.floats(1.0, 3.0))
def test_proposition3_lhs_never_exceeds_rhs(seed, margin):
    results = load_benchmark("results_dpn")
    generator = torch.Generator().manual_seed(seed)
    outputs = torch.randn(24, 8, generator=generator, dtype=torch.float64) * 2
    labels = torch.randint(0, 3, (24,), generator=generator)
    targets = torch.randint(0, 2, (3, 8), generator=generator).double() * 2 - 1
    lhs, rhs = results.proposition3_sides(outputs, labels, targets, margin)
    assert lhs <= rhs + 1e-9


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_recipe_config_loads_as_an_experiment_config(path):
    values = yaml.safe_load(path.read_text())
    config = ExperimentConfig.from_dict(values, source=str(path))
    assert config.name == path.stem


def test_recipe_configs_cover_every_reported_table3_cell():
    configs = load_benchmark("results_recipe_configs")
    expected = set()
    for dataset, rows in configs.PAPER_TABLE3.items():
        for variant, row in (("dpn", "DPN"), ("dpn-a", "DPN-A")):
            if rows[row] is not None:
                expected |= {f"{dataset}_{variant}_{bits}.yaml" for bits in configs.BITS}
    present = {p.name for p in CONFIGS}
    assert expected <= present
    assert {"mnist-5k_dpn_64.yaml", "digits_dpn_64.yaml"} <= present


def test_checked_in_recipe_configs_match_their_generator(capsys):
    assert load_benchmark("results_recipe_configs").main(["--check"]) == 0


@pytest.mark.slow
def test_results_quick_run_prints_every_table_and_writes_the_plots(tmp_path, capsys):
    results = load_benchmark("results_dpn")
    tables = results.main(["all", "--quick", "--jobs", "1", "--plot-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(tables) == set(results.STUDIES)
    for name in results.STUDIES:
        assert f"## {name}:" in out
    for table in ("margin", "variants", "targets", "ties"):
        # every mAP cell ("0.640" or "0.640 ± 0.010") lies in [0, 1]
        numbers = [float(x) for x in re.findall(r"\b\d+\.\d{3}\b", tables[table])]
        assert numbers and all(0.0 <= x <= 1.0 for x in numbers)
    for png in ("ratio_of_positive_bits.png", "proposition3.png", "outputs_correct_vs_wrong.png"):
        assert (tmp_path / png).stat().st_size > 0
