"""Speed and memory of pml_hashing.evaluation's mAP against the plain loop and faiss itself.

Part 1: mAP@all, 1,000 queries x 59,000 database codes (CIFAR-10 protocol 1 sizes), 10 classes,
at 16/32/64/128 bits. Columns, all timed in the same run (median of --repeats):

* plain loop: what the common hashing toolkits do, per query a float distance vector
  ``0.5 * (K - B_db @ b_q)``, ``np.argsort`` (default, unstable kind) and the AP formula;
* faiss direct: ``IndexBinaryFlat.search`` with k = all and ``use_heap=False`` (chunks of 100
  queries) plus the AP from the returned order: the floor a wrapper around faiss can reach;
* ours: ``mean_average_precision(ties="index")`` and ``(ties="expected")``; "index /
  expected" is the goal ratio of issue 14 (<= 2): index ties are the same counts as expected
  ties plus one stable counting pass per query (``evaluation/_kernels.py``).

The mAP values are checked against a stable reference (the plain loop with a stable argsort,
untimed): ``ties="index"`` must match it exactly.

Part 2: mAP@1000 on 10,000 x 1,000,000 codes at 64 bits, the selection kernel of issue 21
(``_kernels.selected_rows``: per query the distances of packed words, the cut-off distance
that reaches R items, then labels, counts and ranks of only the items up to it) against the
chunked faiss path it replaced for R < all (``hamming_ranking.FUSED_KERNEL = False``), both
tie rules, each case in its own subprocess (median of --repeats after an untimed warm-up
call, wall and CPU seconds, the peak resident memory VmHWM of that process); "data only"
builds the same arrays and stops, so the difference is the metric's own memory. The AP
values of the two paths are compared query by query.

Codes are synthetic: a random +-1 prototype per class with each bit flipped with
probability 0.3, the database sorted by class (as benchmark files often are), so ties matter.
Timings depend on the machine and its load; run with nothing else on it when you can.

Run: ``python benchmarks/bench_map.py`` (several minutes; part 2 alone: ``--skip-small``) or
``--quick`` (seconds).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from functools import partial

import faiss
import numpy as np

from pml_hashing.evaluation import average_precision_per_query


def synthetic_codes(num_items, num_bits, num_classes, seed, flip=0.3, block=100_000):
    rng = np.random.default_rng(seed)
    prototypes = np.where(
        np.random.default_rng(12345 + num_bits).random((num_classes, num_bits)) < 0.5, 1, -1
    ).astype(np.int8)
    labels = np.sort(rng.integers(0, num_classes, size=num_items))
    codes = np.empty((num_items, num_bits), dtype=np.int8)
    for start in range(0, num_items, block):  # blocks keep the float temporaries small
        stop = min(start + block, num_items)
        flips = rng.random((stop - start, num_bits), dtype=np.float32) < flip
        codes[start:stop] = np.where(flips, -1, 1) * prototypes[labels[start:stop]]
    return codes, labels


def plain_loop_ap(q, ql, db, dl, kind="quicksort"):
    num_bits = q.shape[1]
    qf, dbf = q.astype(np.float32), db.astype(np.float32)
    out = np.zeros(len(q))
    for i in range(len(q)):
        dist = 0.5 * (num_bits - dbf @ qf[i])
        order = np.argsort(dist, kind=kind)
        rel = dl[order] == ql[i]
        total = rel.sum()
        if total:
            found = np.arange(1, total + 1)
            positions = np.flatnonzero(rel) + 1.0
            out[i] = np.mean(found / positions)
    return out


def faiss_direct_ap(q, ql, db, dl, chunk=100):
    index = faiss.IndexBinaryFlat(q.shape[1])
    index.add(np.packbits(db > 0, axis=1, bitorder="little"))
    index.use_heap = False
    packed_q = np.packbits(q > 0, axis=1, bitorder="little")
    n = len(db)
    out = np.zeros(len(q))
    for start in range(0, len(q), chunk):
        _, ids = index.search(packed_q[start : start + chunk], n)
        rel = dl[ids] == ql[start : start + chunk, None]
        found = np.cumsum(rel, axis=1)
        total = found[:, -1]
        precision_sum = (found * rel / np.arange(1, n + 1)).sum(axis=1)
        out[start : start + chunk] = np.where(total > 0, precision_sum / np.maximum(total, 1), 0)
    return out


def timed(fn, repeats, cpu=None):
    """Median wall seconds of ``repeats`` calls and the last result; the median CPU seconds
    of the process (all its threads) are appended to ``cpu`` when given."""
    times, cpu_times, result = [], [], None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    if cpu is not None:
        cpu.append(float(np.median(cpu_times)))
    return float(np.median(times)), result


def part1(num_queries, num_db, bit_list, repeats):
    print(
        f"\n## mAP@all, {num_queries} queries x {num_db} database codes, 10 classes "
        f"(median of {repeats}; seconds)\n"
    )
    header = (
        "| bits | plain loop | faiss direct | ours index | ours expected | index / expected "
        "| index / expected (CPU s) | index speedup "
        "| expected speedup | ours index / faiss | mAP index | mAP expected | mAP plain loop "
        "| max abs diff index vs stable ref | faiss stable |"
    )
    # The counting kernels are compiled once (numba, cache=True); the first call of a process
    # loads them from the cache (or compiles them): shown apart, not in the medians.
    t0 = time.perf_counter()
    tiny = synthetic_codes(20, 16, 2, seed=0)
    average_precision_per_query(*tiny, *tiny)
    average_precision_per_query(*tiny, *tiny, ties="expected")
    first_call = time.perf_counter() - t0
    print(f"first call in this process (JIT cache load or compile): {first_call:.2f} s\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for bits in bit_list:
        codes, labels = synthetic_codes(num_queries + num_db, bits, 10, seed=bits)
        pick = np.random.default_rng(0).permutation(len(codes))
        qi, dbi = np.sort(pick[:num_queries]), np.sort(pick[num_queries:])
        q, ql, db, dl = codes[qi], labels[qi], codes[dbi], labels[dbi]
        reference = plain_loop_ap(q, ql, db, dl, kind="stable")
        args = (q, ql, db, dl)
        t_plain, ap_plain = timed(partial(plain_loop_ap, *args), repeats)
        t_faiss, ap_faiss = timed(partial(faiss_direct_ap, *args), repeats)
        # CPU seconds of the two sides as well: on a shared machine, steadier than wall
        cpu = []
        t_index, ap_index = timed(partial(average_precision_per_query, *args), repeats, cpu)
        t_exp, ap_exp = timed(
            partial(average_precision_per_query, *args, ties="expected"), repeats, cpu
        )
        diff = float(np.abs(ap_index - reference).max())
        faiss_stable = "yes" if np.abs(ap_faiss - reference).max() < 1e-12 else "no"
        print(
            f"| {bits} | {t_plain:.3f} | {t_faiss:.3f} | {t_index:.3f} | {t_exp:.3f} "
            f"| {t_index / t_exp:.2f} | {cpu[0] / cpu[1]:.2f} "
            f"| {t_plain / t_index:.1f}x | {t_plain / t_exp:.1f}x "
            f"| {t_index / t_faiss:.2f} "
            f"| {ap_index.mean():.4f} | {ap_exp.mean():.4f} | {ap_plain.mean():.4f} "
            f"| {diff:.1e} | {faiss_stable} |"
        )


LARGE_CASES = (
    "data only",
    "chunked index",
    "selection index",
    "chunked expected",
    "selection expected",
)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ``ru_maxrss`` where /proc is absent)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def large_case(case, num_queries, num_db, topk, repeats):
    """One case of part 2 in this (fresh) process: median wall and CPU seconds of
    ``repeats`` calls after an untimed warm-up (the JIT cache load), and the peak memory."""
    from pml_hashing.evaluation import hamming_ranking

    codes, labels = synthetic_codes(num_db, 64, 10, seed=7)
    q_codes, q_labels = synthetic_codes(num_queries, 64, 10, seed=8)
    result = {"case": case}
    if case != "data only":
        path, ties = case.split()
        hamming_ranking.FUSED_KERNEL = path == "selection"
        run = partial(
            average_precision_per_query, q_codes, q_labels, codes, labels, topk=topk, ties=ties
        )
        t0 = time.perf_counter()
        average_precision_per_query(q_codes[:2], q_labels[:2], codes, labels, topk=topk, ties=ties)
        result["warm_up_seconds"] = time.perf_counter() - t0
        cpu = []
        result["seconds"], ap = timed(run, repeats, cpu)
        result["cpu_seconds"] = cpu[0]
        result["map"] = float(ap.mean())
        result["ap"] = ap.tolist()
    result["max_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


def part2(num_queries, num_db, topk, repeats):
    print(
        f"\n## mAP@{topk}, {num_queries} queries x {num_db} database codes, 64 bits, 10 classes "
        f"(each case in its own process; median of {repeats}; seconds)\n\n"
        "chunked: faiss distances and relevance chunks (the path before issue 21, kept for "
        "ternary codes, > 64 classes and R = all); selection: the selection kernel "
        "(`selected_rows`).\n"
    )
    runs = {}
    for case in LARGE_CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--large-case", case, "--repeats", str(repeats)]
            + ["--large-sizes", str(num_queries), str(num_db), str(topk)],
            capture_output=True,
            text=True,
            check=True,
        )
        runs[case] = json.loads(out.stdout.strip().splitlines()[-1])
    print(
        "| ties | chunked s (CPU s) | selection s (CPU s) | selection / chunked wall (CPU) "
        "| mAP chunked | mAP selection | max abs AP diff | peak RSS chunked / selection (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for ties in ("index", "expected"):
        old, new = runs[f"chunked {ties}"], runs[f"selection {ties}"]
        diff = np.abs(np.array(old["ap"]) - np.array(new["ap"])).max()
        print(
            f'| "{ties}" | {old["seconds"]:.3f} ({old["cpu_seconds"]:.3f}) '
            f"| {new['seconds']:.3f} ({new['cpu_seconds']:.3f}) "
            f"| {new['seconds'] / old['seconds']:.2f} "
            f"({new['cpu_seconds'] / old['cpu_seconds']:.2f}) "
            f"| {old['map']:.4f} | {new['map']:.4f} | {diff:.1e} "
            f"| {old['max_rss_mb']:.0f} / {new['max_rss_mb']:.0f} |"
        )
    data_only = runs["data only"]["max_rss_mb"]
    print(f"\ndata only (building the codes, no metric): peak RSS {data_only:.0f} MB")
    warm = ", ".join(
        f"{case} {r['warm_up_seconds']:.2f} s" for case, r in runs.items() if "warm_up_seconds" in r
    )
    print(f"first call of each process (JIT cache load, 2 queries), not in the medians: {warm}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true", help="skip part 2")
    parser.add_argument("--skip-small", action="store_true", help="skip part 1")
    parser.add_argument("--large-case", help=argparse.SUPPRESS)
    parser.add_argument("--large-sizes", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large_case:
        large_case(args.large_case, *args.large_sizes, args.repeats)
        return
    print(f"faiss {faiss.__version__}, numpy {np.__version__}, shared CPU: timings are indicative")
    small, large = (
        ((100, 5_000, (16, 64)), (1_000, 100_000, 1_000))
        if args.quick
        else ((1_000, 59_000, (16, 32, 64, 128)), (10_000, 1_000_000, 1_000))
    )
    if not args.skip_small:
        part1(*small, args.repeats)
    if not args.skip_large:
        part2(*large, args.repeats)


if __name__ == "__main__":
    main()
