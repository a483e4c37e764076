"""The GPU path: faiss-gpu flat search and CUDA training (skipped without them).

Run on a GPU machine by benchmarks/gpu_check.sh (``pytest -m gpu``).
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_hashing.index import BinaryIndex, faiss_has_gpu

NEEDS_FAISS_GPU = "needs faiss-gpu and a CUDA GPU"
needs_faiss_gpu = pytest.mark.skipif(not faiss_has_gpu(), reason=NEEDS_FAISS_GPU)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def plain_hamming_knn(database: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The k smallest Hamming distances of each query, by counting differing bits."""
    bits_db = np.unpackbits(database, axis=1)
    rows = []
    for q in np.unpackbits(queries, axis=1):
        distances = sorted(int((q != row).sum()) for row in bits_db)
        rows.append(distances[:k])
    return np.asarray(rows)


@pytest.mark.gpu
@needs_faiss_gpu
def test_auto_device_picks_the_gpu_for_flat_when_faiss_sees_one():
    assert BinaryIndex(64).device == "cuda"
    assert BinaryIndex(64, kind="hnsw").device == "cpu"  # faiss has no GPU binary HNSW


@pytest.mark.gpu
@needs_faiss_gpu
@pytest.mark.parametrize("k", [1, 10, 2048, 2100])  # above 2048 the CPU copy answers
def test_gpu_flat_distances_equal_a_plain_count(k):
    rng = np.random.default_rng(k)
    database = rng.integers(0, 256, (3000, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (5, 8), dtype=np.uint8)
    index = BinaryIndex(64, device="cuda")
    index.add(database)
    distances, ids = index.search(queries, k)
    np.testing.assert_array_equal(distances, plain_hamming_knn(database, queries, k))
    cpu = BinaryIndex(64, device="cpu")
    cpu.add(database)
    np.testing.assert_array_equal(distances, cpu.search(queries, k)[0])
    assert ((ids >= 0) & (ids < 3000)).all()


@pytest.mark.gpu
@needs_faiss_gpu
def test_gpu_index_sees_codes_added_after_a_search():
    rng = np.random.default_rng(0)
    index = BinaryIndex(16, device="cuda")
    index.add(rng.integers(0, 256, (100, 2), dtype=np.uint8))
    index.search(rng.integers(0, 256, (2, 2), dtype=np.uint8), 5)
    new = rng.integers(0, 256, (1, 2), dtype=np.uint8)
    index.add(new)
    distances, ids = index.search(new, 1)
    assert distances[0, 0] == 0 and ids[0, 0] == 100


@pytest.mark.gpu
@needs_cuda
def test_cuda_training_runs_in_bf16(tmp_path):
    from pml_hashing.training import run_experiment

    metrics = run_experiment(
        dict(
            name="cuda", output_dir=str(tmp_path), dataset="digits", bits=16, epochs=1,
            batch_size=64, log_with="none", progress=False, mixed_precision="bf16",
            max_train_steps=5, checkpoint_every=0,
        )
    )  # fmt: skip
    assert 0.0 <= metrics["last_epoch"]["map"] <= 1.0


SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_gpu_check_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_gpu_check_script_runs_its_cpu_parts(tmp_path):
    """CPU_ONLY=1: the smoke run and the speed table on the CPU, with tiny sizes."""
    env = dict(
        os.environ,
        CPU_ONLY="1",
        OUT=str(tmp_path / "out"),
        SMOKE_FLAGS="--dataset digits --bits 16 --epochs 1 --max-train-steps 2 "
        "--backbone-kwargs {widths:[8,16]}",
        BENCH_ARGS="--quick --size 2000 --hnsw-size 500 --queries 20 --repeats 1",
        PYTHON=sys.executable,
    )
    done = subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "gpu-smoke: mAP@all" in (tmp_path / "out" / "train.log").read_text()
    assert "k-NN, k=100" in (tmp_path / "out" / "bench_index.txt").read_text()
    assert "all checks passed" in done.stdout


@pytest.mark.skipif(faiss_has_gpu(), reason="this faiss has GPU support")
def test_gpu_flags_without_a_gpu_say_what_is_needed():
    done = subprocess.run(
        [sys.executable, str(SCRIPT.parent / "bench_index.py"), "--gpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "--gpu needs faiss-gpu and a CUDA GPU" in done.stderr
    with pytest.raises(ValueError, match="device='cuda' needs faiss-gpu and a CUDA GPU"):
        BinaryIndex(16, device="cuda")
