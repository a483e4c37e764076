"""Forward + backward time of PolarizationLoss against pairwise losses: O(N K) vs O(N^2 K).

The DPN paper (Remark II) notes that the polarization loss is linear in the batch size while
pairwise Hamming objectives are quadratic. This benchmark times, on the same random batch
(K-bit outputs, 10 classes):

* ``polarization``: ``pml_hashing.losses.PolarizationLoss`` (random targets), the baseline;
* ``pml-contrastive``: PML's ``ContrastiveLoss`` on the K-dim outputs (all pairs in the batch);
* ``pairwise-hamming``: a hand-written pairwise loss on the relaxed Hamming distance
  ``D_ij = (K - tanh(v_i) . tanh(v_j)) / 2``: ``D_ij`` for similar pairs and
  ``max(K/2 - D_ij, 0)`` for dissimilar pairs, averaged over all ordered pairs ``i != j``.

It prints, per batch size and loss, the median over repeats of one forward + backward (after
one warm-up call) and the ratio to the polarization loss measured in the same run. Timings are
wall-clock on whatever CPU runs it (a shared machine makes them noisy; compare ratios).

    python benchmarks/bench_loss.py                 # batch 256, 1024, 4096; K = 64; 7 repeats
    python benchmarks/bench_loss.py --threads 1     # steadier on a shared, busy CPU
    python benchmarks/bench_loss.py --quick         # a smoke run

Measured on a shared 2-core CPU (other jobs running; torch 2.14.1), ``--threads 1``:

    batch  loss                median ms  x polarization
      256  polarization            0.260             1.0
      256  pml-contrastive         2.682            10.3
      256  pairwise-hamming        3.019            11.6
     1024  polarization            0.675             1.0
     1024  pml-contrastive        57.801            85.7
     1024  pairwise-hamming       47.038            69.7
     4096  polarization            1.913             1.0
     4096  pml-contrastive      1143.314           597.6
     4096  pairwise-hamming     1732.848           905.8

With the default two threads the same run was dominated by contention with the other jobs
(polarization at batch 256 took 7.9 ms, at batch 1024 0.65 ms): use one thread there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from pytorch_metric_learning.losses import ContrastiveLoss

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pml_hashing.losses import PolarizationLoss  # noqa: E402


class PairwiseHammingLoss(torch.nn.Module):
    """Mean over ordered pairs i != j of D_ij (similar) or max(margin - D_ij, 0) (dissimilar)."""

    def __init__(self, num_bits: int, margin: float | None = None):
        super().__init__()
        self.num_bits = num_bits
        self.margin = num_bits / 2 if margin is None else margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        relaxed = torch.tanh(embeddings)
        distances = 0.5 * (self.num_bits - relaxed @ relaxed.T)  # (N, N): the O(N^2) part
        similar = labels[:, None] == labels[None, :]
        losses = torch.where(similar, distances, torch.relu(self.margin - distances))
        off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
        return losses[off_diagonal].mean()


def time_forward_backward(loss_fn, embeddings, labels, repeats: int) -> float:
    """Median seconds of loss_fn(embeddings, labels).backward(), after one warm-up call."""
    times = []
    for i in range(repeats + 1):
        embeddings.grad = None
        start = time.perf_counter()
        loss_fn(embeddings, labels).backward()
        elapsed = time.perf_counter() - start
        if i > 0:
            times.append(elapsed)
    return statistics.median(times)


def run(batch_sizes, num_bits: int, num_classes: int, repeats: int, seed: int = 0) -> list[dict]:
    losses = {
        "polarization": PolarizationLoss(num_classes=num_classes, num_bits=num_bits, seed=seed),
        "pml-contrastive": ContrastiveLoss(),
        "pairwise-hamming": PairwiseHammingLoss(num_bits),
    }
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for batch_size in batch_sizes:
        embeddings = torch.randn(batch_size, num_bits, generator=generator).requires_grad_(True)
        labels = torch.randint(0, num_classes, (batch_size,), generator=generator)
        baseline = None
        for name, loss_fn in losses.items():
            seconds = time_forward_backward(loss_fn, embeddings, labels, repeats)
            if baseline is None:
                baseline = seconds
            rows.append(
                {
                    "batch": batch_size,
                    "loss": name,
                    "median_ms": 1000 * seconds,
                    "ratio": seconds / baseline,
                }
            )
    return rows


def format_table(rows: list[dict]) -> str:
    lines = [f"{'batch':>6}  {'loss':<18} {'median ms':>10}  {'x polarization':>14}"]
    for row in rows:
        lines.append(
            f"{row['batch']:>6}  {row['loss']:<18} {row['median_ms']:>10.3f}  {row['ratio']:>14.1f}"
        )
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--num-bits", type=int, default=64)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--quick", action="store_true", help="tiny batches, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes, args.repeats = [32, 128], 3
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1; got {args.repeats}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"forward + backward, K = {args.num_bits}, {args.num_classes} classes, median of "
        f"{args.repeats} repeats, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    rows = run(args.batch_sizes, args.num_bits, args.num_classes, args.repeats)
    print(format_table(rows))
    return rows


if __name__ == "__main__":
    main()
