"""Benchmarks stay runnable (their --quick mode); times are printed, never asserted."""

import pytest

from tests.scripts import load_benchmark


@pytest.mark.slow
def test_training_throughput_quick_run_compares_both_loops(capsys):
    """The recipe runs under accelerate launch, the plain script under python: both report."""
    rows = load_benchmark("bench_training_throughput").main(["--quick"])
    assert [row["loop"].split(",")[0] for row in rows] == ["plain PyTorch", "recipe"]
    assert all(row["steps/s"] > 0 and row["wall"] > 0 and 0 <= row["map"] <= 1 for row in rows)
    # accelerate launch writes OMP_NUM_THREADS=1; the recipe must use the cores anyway
    assert rows[1]["threads"] == rows[0]["threads"]
    assert "recipe / plain" in capsys.readouterr().out


@pytest.mark.slow
def test_startup_benchmark_times_every_command_against_the_torch_import(capsys):
    medians = load_benchmark("bench_startup").main(["--rounds", "1"])
    assert 'python -c "import torch" (anchor)' in medians
    assert "python recipes/train.py --help" in medians and "pml-hashing --help" in medians
    assert all(seconds > 0 for seconds in medians.values())
    assert "minus anchor" in capsys.readouterr().out
