"""Time to build a MaxHammingDistanceTargetMiner codebook, against the previous version.

``old``: the previous greedy (kept here as the baseline): ``candidates_per_class * C``
balanced candidates as float rows, and for each of the C classes one matrix-vector product
over the whole candidate pool (``O(C^2 K * candidates_per_class)``, one class at a time).
``new``: :class:`~pml_hashing.miners.MaxHammingDistanceTargetMiner`: classes in blocks,
candidates compared with the chosen codes as packed bits by ``faiss.hammings``.

Both draw ``candidates_per_class`` (20) candidates per class. Printed per size: the median
wall time over ``--repeats`` (the old one only up to ``--old-max`` classes: it takes minutes
beyond), the ratio old / new measured in the same run, and the minimum pairwise Hamming
distance each codebook reaches (larger is better; ``HashCenterTargetMiner``'s default floor
at 64 bits is 20, a random codebook's is far lower).

    python benchmarks/bench_target_miners.py                  # C = 1000, 2000, 4000, 40000; K = 64
    python benchmarks/bench_target_miners.py --quick          # a smoke run

Timings are wall-clock on whatever CPU runs it (a shared machine makes them noisy; compare
ratios).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def old_max_hamming_targets(num_classes: int, num_bits: int, candidates_per_class: int = 20,
                            seed: int = 0) -> torch.Tensor:  # fmt: skip
    """The previous MaxHammingDistanceTargetMiner.make_targets, verbatim in substance."""
    generator = torch.Generator().manual_seed(seed)
    num_candidates = max(candidates_per_class * num_classes, num_classes)
    noise = torch.rand(num_candidates, num_bits, generator=generator)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    threshold = torch.full((num_candidates, 1), num_bits // 2)
    if num_bits % 2:
        threshold += (torch.rand(num_candidates, 1, generator=generator) < 0.5).long()
    candidates = torch.where(ranks < threshold, 1.0, -1.0)
    chosen = torch.empty(num_classes, dtype=torch.long)
    chosen[0] = 0
    min_distance = (num_bits - candidates @ candidates[0]) / 2
    inner_sum = (candidates @ candidates[0]).clone()
    available = torch.ones(num_candidates, dtype=torch.bool)
    available[0] = False
    for c in range(1, num_classes):
        score = min_distance * (num_candidates * num_bits + 1) - inner_sum
        score[~available] = float("-inf")
        best = int(score.argmax())
        chosen[c] = best
        available[best] = False
        inner = candidates @ candidates[best]
        min_distance = torch.minimum(min_distance, (num_bits - inner) / 2)
        inner_sum += inner
    return candidates[chosen]


def timed(function, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main(argv=None) -> list[dict]:
    from pml_hashing.miners import MaxHammingDistanceTargetMiner
    from pml_hashing.miners.base_target_miner import min_pairwise_hamming_distance

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 2000, 4000, 40000])
    parser.add_argument("--bits", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-max", type=int, default=4000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.old_max = [200, 400], 1, 400
    if args.threads:
        torch.set_num_threads(args.threads)
    MaxHammingDistanceTargetMiner(8, args.bits)  # import faiss outside the timings
    rows = []
    print(f"K = {args.bits} bits, 20 candidates per class, median of {args.repeats} (1 above 4000)")
    header = ("classes", "old s", "new s", "old/new", "old min d", "new min d")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (8, 9, 9, 8, 10, 10), strict=True)))
    for size in args.sizes:
        repeats = args.repeats if size <= 4000 else 1
        new_s, miner = timed(lambda s=size: MaxHammingDistanceTargetMiner(s, args.bits), repeats)
        row = {"classes": size, "new_s": new_s, "new_min": miner.min_hamming_distance}
        if size <= args.old_max:
            old_s, codes = timed(lambda s=size: old_max_hamming_targets(s, args.bits), repeats)
            row.update(old_s=old_s, old_min=min_pairwise_hamming_distance(codes))
        rows.append(row)
        old = f"{row['old_s']:9.2f}" if "old_s" in row else f"{'—':>9}"
        ratio = f"{row['old_s'] / new_s:8.1f}" if "old_s" in row else f"{'—':>8}"
        old_min = f"{row['old_min']:10.0f}" if "old_min" in row else f"{'—':>10}"
        print(f"{size:>8} {old} {new_s:9.2f} {ratio} {old_min} {row['new_min']:10.0f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
