"""Speed and recall of BinaryIndex kinds against an exact flat index, on random 64-bit codes.

Tables (medians over ``--repeats`` runs, ratios against a plain baseline measured in the same
run):

1. k-NN (k = 100): flat (exact), HNSW (M 32) and IVF (nlist 1024, nprobe 8): build seconds,
   queries per second, recall@100 against flat; on uniform random codes (no structure: the
   worst case for IVF and HNSW) and on clustered codes (1,000 random centers, 10% of the bits
   flipped), closer to the codes of a trained network. Random codes tie massively at the 100th
   distance, so recall counts a returned neighbour as correct when its distance is at most the
   exact 100th distance (tie-aware recall), the only definition that does not depend on how
   each index orders equal distances. HNSW is built on the first ``--hnsw-size`` codes (its
   build takes about 45 s per million codes here) and compared with flat on the same codes.
2. Radius-2 search: IndexBinaryMultiHash (nhash 3, exact for radius <= 2) vs flat range search,
   for queries made from database codes with 0 to 3 random bit flips (random queries would
   have empty balls).
3. Library overhead: BinaryIndex.search vs the same faiss index called directly.
4. Peak memory (ru_maxrss) of the process.

``--gpu`` adds a flat index searched on the GPU (``GpuIndexBinaryFlat``, needs faiss-gpu and a
CUDA GPU: see benchmarks/gpu_check.sh) to the k-NN tables, with its speedup over the CPU flat
index and whether its distances equal the CPU's.

Run ``python benchmarks/bench_index.py`` (about 5 minutes on 2 cores) or with ``--quick`` for
a smoke run of a few seconds. Numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

import faiss
import numpy as np

from pml_hashing.index import BinaryIndex, faiss_has_gpu


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def tie_aware_recall(found_distances, found_ids, exact_distances) -> float:
    kth = exact_distances[:, -1:]
    return float(((found_distances <= kth) & (found_ids >= 0)).sum() / found_ids.size)


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    print(f"\n{title}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


def knn_table(database, queries, title, hnsw_size, nlist, repeats, k=100, gpu=False):
    """Print the k-NN table for one data set; return its flat index."""
    size, num_queries, num_bits = len(database), len(queries), database.shape[1] * 8
    flat, flat_build = timed(lambda: _filled(BinaryIndex(num_bits, device="cpu"), database))
    exact_d, exact_ids = flat.search(queries, k)
    flat_s = median_seconds(lambda: flat.search(queries, k), repeats)
    rows = [
        ["flat", f"{size:,}", f"{flat_build:.2f}", f"{num_queries / flat_s:,.0f}", "1.00", "1.000"]
    ]

    if gpu:
        on_gpu, gpu_build = timed(lambda: _filled(BinaryIndex(num_bits, device="cuda"), database))
        gpu_d, gpu_ids = on_gpu.search(queries, k)  # the first search copies it to the GPU
        gpu_s = median_seconds(lambda: on_gpu.search(queries, k), repeats)
        rows.append(
            [
                "flat on GPU (distances equal CPU: " + str(np.array_equal(gpu_d, exact_d)) + ")",
                f"{size:,}",
                f"{gpu_build:.2f}",
                f"{num_queries / gpu_s:,.0f}",
                f"{flat_s / gpu_s:.2f}",
                f"{tie_aware_recall(gpu_d, gpu_ids, exact_d):.3f}",
            ]
        )
    ivf, ivf_build = timed(
        lambda: _filled(BinaryIndex(num_bits, kind="ivf", nlist=nlist, nprobe=8), database)
    )
    ivf_d, ivf_ids = ivf.search(queries, k)
    ivf_s = median_seconds(lambda: ivf.search(queries, k), repeats)
    rows.append(
        [
            f"ivf (nlist {nlist}, nprobe 8)",
            f"{size:,}",
            f"{ivf_build:.2f}",
            f"{num_queries / ivf_s:,.0f}",
            f"{flat_s / ivf_s:.2f}",
            f"{tie_aware_recall(ivf_d, ivf_ids, exact_d):.3f}",
        ]
    )

    small_flat = _filled(BinaryIndex(num_bits, device="cpu"), database[:hnsw_size])
    small_exact_d, _ = small_flat.search(queries, k)
    small_flat_s = median_seconds(lambda: small_flat.search(queries, k), repeats)
    rows.append(
        ["flat", f"{hnsw_size:,}", "-", f"{num_queries / small_flat_s:,.0f}", "1.00", "1.000"]
    )
    hnsw, hnsw_build = timed(
        lambda: _filled(BinaryIndex(num_bits, kind="hnsw", M=32), database[:hnsw_size])
    )
    hnsw_d, hnsw_ids = hnsw.search(queries, k)
    hnsw_s = median_seconds(lambda: hnsw.search(queries, k), repeats)
    rows.append(
        [
            f"hnsw (M 32, ef_search {hnsw.params['ef_search']})",
            f"{hnsw_size:,}",
            f"{hnsw_build:.2f}",
            f"{num_queries / hnsw_s:,.0f}",
            f"{small_flat_s / hnsw_s:.2f}",
            f"{tie_aware_recall(hnsw_d, hnsw_ids, small_exact_d):.3f}",
        ]
    )
    print_table(
        f"k-NN, k={k}, {title} (speedup: against flat on the same codes)",
        ["index", "codes", "build s", "queries/s", "speedup", "recall@100"],
        rows,
    )

    return flat


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--size", type=int, help="database codes (default 1,000,000)")
    parser.add_argument("--hnsw-size", type=int, help="codes in the HNSW index (default 200,000)")
    parser.add_argument("--queries", type=int, help="number of queries (default 1,000)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 3)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="faiss OpenMP threads (default 1: on a loaded 2-core machine 2 threads ran "
        "10-20x slower than 1, spinning on each other)",
    )
    parser.add_argument(
        "--gpu", action="store_true", help="add a GPU flat index (needs faiss-gpu and a CUDA GPU)"
    )
    args = parser.parse_args(argv)
    if args.gpu and not faiss_has_gpu():
        parser.error("--gpu needs faiss-gpu and a CUDA GPU (see benchmarks/gpu_check.sh)")
    size = args.size or (20_000 if args.quick else 1_000_000)
    hnsw_size = min(size, args.hnsw_size or (5_000 if args.quick else 200_000))
    num_queries = args.queries or (100 if args.quick else 1_000)
    repeats = args.repeats or (2 if args.quick else 3)
    nlist = 64 if args.quick else 1024
    faiss.omp_set_num_threads(args.threads)
    num_bits, k = 64, 100

    rng = np.random.default_rng(0)
    database = rng.integers(0, 256, (size, num_bits // 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (num_queries, num_bits // 8), dtype=np.uint8)
    print(
        f"{size:,} random {num_bits}-bit codes, {num_queries:,} queries, k={k}, "
        f"median of {repeats} repeats; HNSW on {hnsw_size:,} codes; "
        f"{args.threads} faiss thread(s)"
    )

    # 1. k-NN, on uniform codes (the worst case for IVF and HNSW: no structure) and on
    # clustered codes, closer to the codes of a trained hashing network.
    flat = knn_table(
        database, queries, "uniform random codes", hnsw_size, nlist, repeats, gpu=args.gpu
    )
    centers = rng.integers(0, 2, (1000, num_bits), dtype=np.uint8)
    assignment = rng.integers(0, 1000, size + num_queries)
    flipped = centers[assignment] ^ (rng.random((size + num_queries, num_bits)) < 0.1)
    clustered = np.packbits(flipped, axis=1, bitorder="little")
    knn_table(
        clustered[:size],
        clustered[size:],
        "clustered codes (1,000 centers, 10% bits flipped)",
        hnsw_size,
        nlist,
        repeats,
        gpu=args.gpu,
    )
    del centers, assignment, flipped, clustered

    # 2. radius 2
    multihash, mh_build = timed(
        lambda: _filled(BinaryIndex(num_bits, kind="multihash", nhash=3), database)
    )
    # Random queries have empty radius-2 balls; queries near database codes do not.
    flips = rng.integers(0, 4, num_queries)
    near = np.unpackbits(database[:num_queries], axis=1, bitorder="little")
    for i, f in enumerate(flips):
        near[i, rng.choice(num_bits, f, replace=False)] ^= 1
    near = np.packbits(near, axis=1, bitorder="little")
    flat_range_s = median_seconds(lambda: flat.range_search(near, 2), repeats)
    mh_range_s = median_seconds(lambda: multihash.range_search(near, 2), repeats)
    flat_found = flat.range_search(near, 2)
    mh_found = multihash.range_search(near, 2)
    same = all(np.array_equal(a, b) for a, b in zip(flat_found, mh_found, strict=True))
    print_table(
        "radius-2 search (inclusive; queries = database codes with 0-3 random bit flips)",
        ["index", "build s", "queries/s", "speedup", "results", "equal to flat"],
        [
            [
                "flat range_search",
                "-",
                f"{num_queries / flat_range_s:,.0f}",
                "1.00",
                f"{len(flat_found[2]):,}",
                "-",
            ],
            [
                "multihash (nhash 3)",
                f"{mh_build:.2f}",
                f"{num_queries / mh_range_s:,.0f}",
                f"{flat_range_s / mh_range_s:.2f}",
                f"{len(mh_found[2]):,}",
                str(same),
            ],
        ],
    )

    # 3. overhead of the wrapper. The three calls are interleaved in every repeat, so that
    # load from other processes on a shared machine hits them alike.
    raw = flat.faiss_index
    few = queries[: max(1, num_queries // 5)]
    plus_minus = np.where(np.unpackbits(few, axis=1, bitorder="little") > 0, 1.0, -1.0)
    calls = {
        "faiss IndexBinaryFlat.search (packed)": lambda: raw.search(few, k),
        "BinaryIndex.search (packed)": lambda: flat.search(few, k),
        "BinaryIndex.search (+-1 float64)": lambda: flat.search(plus_minus, k),
    }
    times = {name: [] for name in calls}
    for _ in range(3 * repeats):
        for name, call in calls.items():
            times[name].append(median_seconds(call, 1))
    medians = {name: statistics.median(t) for name, t in times.items()}
    baseline = medians["faiss IndexBinaryFlat.search (packed)"]
    print_table(
        f"library overhead (flat, k-NN, {len(few):,} queries, {3 * repeats} interleaved repeats)",
        ["call", "median s", "min s", "ratio to faiss (medians)"],
        [
            [
                name,
                f"{medians[name]:.4f}",
                f"{min(times[name]):.4f}",
                f"{medians[name] / baseline:.3f}",
            ]
            for name in calls
        ],
    )

    # 4. memory
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak memory (ru_maxrss): {peak_mib:,.0f} MiB")


def _filled(index: BinaryIndex, codes: np.ndarray) -> BinaryIndex:
    index.add(codes)
    return index


if __name__ == "__main__":
    main()
