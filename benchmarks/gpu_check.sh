#!/usr/bin/env bash
# Check the GPU path on a machine with a CUDA GPU, in one run:
#   1. swap faiss-cpu for faiss-gpu (both install the module `faiss`: one must go first),
#   2. the GPU tests (pytest -m gpu: GPU flat search against a plain count, the automatic
#      device choice, CUDA training in bf16); none may be skipped,
#   3. a CUDA training smoke run of the recipe with --mixed-precision bf16,
#   4. the index speed table with a GPU flat index beside the CPU ones.
#
# Usage, from anywhere:   bash benchmarks/gpu_check.sh
#   PYTHON=...       the interpreter of the environment to check (default: python)
#   FAISS_GPU=...    the faiss GPU package (default: faiss-gpu, CUDA 12 wheels; or
#                    faiss-gpu-cu12, faiss-gpu-cuvs)
#   SKIP_INSTALL=1   keep the installed faiss (already a GPU build)
#   OUT=...          folder for the logs and the run (default: gpu_check_out)
#   SMOKE_FLAGS=...  recipe flags of the smoke run (default: 1 epoch of DPN on mnist-5k)
#   BENCH_ARGS=...   more bench_index.py arguments (e.g. --quick)
#   CPU_ONLY=1       check this script on a machine without a GPU: no install, no GPU
#                    asserts, the smoke run and the table on the CPU (what the tests run)
# Exit status 0 only if every step passed. Back to the CPU build afterwards:
#   pip uninstall -y faiss-gpu && pip install faiss-cpu
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
FAISS_GPU="${FAISS_GPU:-faiss-gpu}"
OUT="${OUT:-gpu_check_out}"
SMOKE_FLAGS="${SMOKE_FLAGS:---dataset mnist-5k --bits 64 --epochs 1}"
CPU_ONLY="${CPU_ONLY:-0}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg

step() { printf '\n== %s\n' "$*"; }

if [[ "$CPU_ONLY" != 1 ]]; then
    step "CUDA GPU seen by torch"
    "$PYTHON" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA GPU'; \
print(torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"

    if [[ "${SKIP_INSTALL:-0}" != 1 ]]; then
        step "faiss-cpu -> $FAISS_GPU"
        "$PYTHON" -m pip uninstall -y faiss-cpu || true
        "$PYTHON" -m pip install "$FAISS_GPU"
    fi
    "$PYTHON" -c "import faiss; n = faiss.get_num_gpus(); \
assert hasattr(faiss, 'GpuIndexBinaryFlat') and n > 0, 'this faiss has no GPU support or sees no GPU'; \
print('faiss', faiss.__version__, 'GPUs:', n)"

    step "GPU tests (pytest -m gpu)"
    "$PYTHON" -m pytest -q -m gpu -rs tests/test_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
    if grep -q "SKIPPED" "$OUT/pytest_gpu.log"; then
        echo "a GPU test was skipped on a GPU machine: see $OUT/pytest_gpu.log" >&2
        exit 1
    fi
    LAUNCH=(--num_processes 1 --mixed_precision bf16)
    PRECISION=bf16
    GPU_FLAG=--gpu
else
    LAUNCH=(--cpu --num_processes 1)
    PRECISION=no
    GPU_FLAG=
fi

step "training smoke run ($PRECISION)"
# shellcheck disable=SC2086  # SMOKE_FLAGS is a list of flags
"$PYTHON" -m accelerate.commands.launch "${LAUNCH[@]}" recipes/train.py \
    --mixed-precision "$PRECISION" $SMOKE_FLAGS --name gpu-smoke \
    --output-dir "$OUT/runs" --log-with none --no-progress 2>&1 | tee "$OUT/train.log"
grep -q "gpu-smoke: mAP@" "$OUT/train.log"

step "index speed table${GPU_FLAG:+ with the GPU flat index}"
# shellcheck disable=SC2086
"$PYTHON" benchmarks/bench_index.py $GPU_FLAG ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_index.txt"

step "all checks passed; logs in $OUT/"
