"""Benchmarks stay runnable (their --quick mode); times are printed, never asserted."""

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_training_throughput_quick_run_compares_both_loops(capsys):
    rows = load("bench_training_throughput").main(["--quick"])
    assert [row["loop"] for row in rows] == ["plain PyTorch", "pml-hashing (Accelerate)"]
    assert all(row["images/s"] > 0 for row in rows)
    assert "polarization loss share" in capsys.readouterr().out
