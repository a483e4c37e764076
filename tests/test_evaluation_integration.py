"""The evaluation metrics next to the other components: HammingKNN and the benchmark script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_hashing.evaluation import HashingAccuracyCalculator, precision_at_k

ROOT = Path(__file__).resolve().parents[1]


def test_pml_precision_at_1_with_hamming_knn_equals_precision_at_k():
    HammingKNN = pytest.importorskip("pml_hashing.index").HammingKNN
    rng = np.random.default_rng(0)
    # 8 bits and 200 references: many ties, so both must order them by reference position.
    emb = torch.randn(230, 8)
    labels = torch.tensor(rng.integers(0, 3, size=230))
    calc = HashingAccuracyCalculator(
        include=("precision_at_1",), knn_func=HammingKNN(), device=torch.device("cpu")
    )
    result = calc.get_accuracy(emb[:30], labels[:30], emb[30:], labels[30:])
    codes = np.where(emb.numpy() >= 0, 1, -1)
    ours = precision_at_k(codes[:30], labels[:30], codes[30:], labels[30:], k=1, ties="index")
    assert result["precision_at_1"] == pytest.approx(ours)


def test_bench_map_quick_runs():
    out = subprocess.run(
        [sys.executable, "benchmarks/bench_map.py", "--quick", "--skip-large", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| 64 |" in out.stdout
