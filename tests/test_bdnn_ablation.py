"""Keeps benchmarks/bdnn_ablation.py runnable (a --quick smoke run; no assertion on numbers)."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bdnn_ablation.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bdnn_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_statistics_match_a_hand_worked_case():
    # Bit 0 balanced, bit 1 at mean 0.5, bit 2 constant; bits 0 and 1 correlate at 1/sqrt(3).
    codes = np.array([[1, 1, 1], [1, 1, 1], [-1, 1, 1], [-1, -1, 1]])
    balance, correlation, constant = load_script().code_statistics(codes)
    assert balance == pytest.approx((0 + 0.5 + 1) / 3)
    assert correlation == pytest.approx(1 / np.sqrt(3))
    assert constant == 1


@pytest.mark.slow
def test_ablation_quick_run_prints_a_table(capsys):
    load_script().main(["--quick"])
    out = capsys.readouterr().out
    assert "mAP" in out and "neither" in out and "full" in out
