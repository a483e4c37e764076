"""DPN-A (schedule and guard) and DPN-T (``ternary_threshold: auto``) against plain DPN.

Every run trains through the package's own ``run_experiment`` (quiet: no progress bar, no
tracker, no resumable checkpoints) with a validation split held out of training, the same
split for every arm of a seed. Studies:

* ``grid``      random targets vs DPN-A with the package defaults, per data set, code length
  and seed. From the random-target run of each cell: binary mAP, DPN-T at the paper's
  threshold m and DPN-T with ``ternary_threshold: auto`` (chosen on the validation split).
  From the DPN-A run: mAP, the final minimum pairwise target distance, refused updates.
* ``schedule``  DPN-A schedules on one cell (digits, 64 bits by default): Algorithm 1 as
  written, the guard alone, warm-up and period with and without the guard.

Every mAP is mAP@all over the protocol's queries, tie rule ``expected`` (tie-aware).
Finished runs are appended to ``--cache`` (JSON lines) and reused, so an interrupted
command continues where it stopped.

    python benchmarks/results_dpn_variants.py all     # every table of docs/results.md section 8
    python benchmarks/results_dpn_variants.py grid --datasets digits mnist-5k --bits 16 32 64
    python benchmarks/results_dpn_variants.py schedule --datasets digits --bits 64
    python benchmarks/results_dpn_variants.py grid --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pml_hashing.evaluation import retrieval_report  # noqa: E402
from pml_hashing.training import (  # noqa: E402
    build_protocol,  # noqa: E402
    encode_dataset,
    run_experiment,
)
from pml_hashing.training.checkpoint import load_checkpoint  # noqa: E402
from pml_hashing.training.config import ExperimentConfig  # noqa: E402

EPOCHS = {"digits": 10, "mnist-5k": 8}
VALIDATION_PER_CLASS = {"digits": 5, "mnist-5k": 20}
ALGORITHM_1 = {"warmup_epochs": 0, "update_every": 1, "min_distance_floor": None}
# DPN-A schedules: (label, miner arguments); "defaults" trains exactly the grid's DPN-A run.
SCHEDULES = {
    "algorithm-1": ("Algorithm 1 as written (0, 1, none)", ALGORITHM_1),
    "guard-only": ("guard only (0, 1, initial)", {**ALGORITHM_1, "min_distance_floor": "initial"}),
    "every-5": (
        "(0, 5, none)",
        {"warmup_epochs": 0, "update_every": 5, "min_distance_floor": None},
    ),
    "warmup-2-every-3": (
        "(2, 3, none)",
        {"warmup_epochs": 2, "update_every": 3, "min_distance_floor": None},
    ),
    "defaults": ("defaults (2, 3, initial)", {}),
}


def run_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def train_and_measure(spec: dict, work_dir: Path) -> dict:
    """One ``run_experiment``; then the same last-epoch model at the paper's threshold m."""
    name = f"{spec['dataset']}-{spec['arm']}-{spec['bits']}b-s{spec['seed']}".replace(" ", "_")
    config = dict(
        name=name,
        output_dir=str(work_dir),
        dataset=spec["dataset"],
        bits=spec["bits"],
        seed=spec["seed"],
        epochs=spec["epochs"],
        lr=3e-3,  # the setting these tables were measured with (the job's default then)
        backbone="hashing_cnn_small",
        backbone_kwargs={"widths": [16, 32, 64]},
        validation_per_class=spec["validation_per_class"],
        target_miner=spec["target_miner"],
        ternary_threshold="auto",
        ties="expected",
        log_with="none",
        progress=False,
        checkpoint_every=0,
        **spec.get("miner", {}),
    )
    start = time.perf_counter()
    metrics = run_experiment(config)
    seconds = time.perf_counter() - start
    last = metrics["last_epoch"]
    model, method, cfg, _ = load_checkpoint(Path(work_dir) / name / "checkpoint.safetensors")
    protocol = build_protocol(ExperimentConfig.from_dict(config))
    query, database = (
        encode_dataset(model, protocol.query),
        encode_dataset(model, protocol.database),
    )
    at_margin = retrieval_report(*query, *database, ties="expected", ternary_margin=cfg.margin)
    stats = metrics["history"][-1]["method"]
    return {
        "map": last["map"],
        "map_ternary_auto": last["map_ternary"],
        "threshold_auto": last["ternary_threshold"],
        "zeros_auto": last["ternary_zero_fraction"],
        "validation_map": last["ternary_threshold_selection"]["validation_map"],
        "map_ternary_margin": at_margin["map_ternary"],
        "check_map": at_margin["map"],
        "min_distance": stats["targets/min_hamming_distance"],
        "refused_updates": stats.get("targets/refused_updates"),
        "min_distance_per_epoch": [
            e["method"]["targets/min_hamming_distance"] for e in metrics["history"]
        ],
        "seconds": seconds,
    }


def read_cache(cache: Path) -> dict[str, dict]:
    done = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["key"]] = row["result"]
    return done


def run_specs(specs: list[dict], cache: Path, train: bool = True) -> dict[str, dict]:
    with tempfile.TemporaryDirectory() as work_dir:
        for i, spec in enumerate(specs):
            key = run_key(spec)
            if not train or key in read_cache(cache):  # re-read: a command may share the cache
                continue
            result = train_and_measure(spec, Path(work_dir))
            with cache.open("a") as f:
                f.write(json.dumps({"key": key, "spec": spec, "result": result}) + "\n")
            print(
                f"[{i + 1}/{len(specs)}] {spec['dataset']} {spec['arm']} {spec['bits']} bits "
                f"seed {spec['seed']}: mAP {result['map']:.4f}, "
                f"auto {result['map_ternary_auto']:.4f}"
                f" (t={result['threshold_auto']:g}), min d {result['min_distance']:g}, "
                f"{result['seconds']:.0f} s",
                flush=True,
            )
    return read_cache(cache)


def spec(dataset, bits, seed, arm, target_miner, epochs, miner=None) -> dict:
    return {
        "dataset": dataset,
        "bits": bits,
        "seed": seed,
        "arm": arm,
        "target_miner": target_miner,
        "epochs": epochs,
        "validation_per_class": VALIDATION_PER_CLASS[dataset],
        "miner": miner or {},
    }


def mean_std(values) -> str:
    values = list(values)
    if len(values) < 2:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def join_numbers(values) -> str:
    return ", ".join(f"{v:g}" for v in values)


def grid_specs(args) -> list[dict]:
    specs = []
    for dataset in args.datasets:
        epochs = args.epochs or EPOCHS[dataset]
        for seed in args.seeds:  # seed-major: an interrupted grid has whole seeds
            for bits in args.bits:
                specs.append(spec(dataset, bits, seed, "random", "random", epochs))
                specs.append(spec(dataset, bits, seed, "adaptive", "adaptive", epochs))
    return specs


def grid_report(args, done) -> str:
    lines = [
        "| data | bits | seeds | random mAP | DPN-A mAP | DPN-A − random | DPN-A min d per seed "
        "| refused per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = [
        "| data | bits | seeds | DPN-T (t = m) − binary | DPN-T auto − binary: mean | worst "
        "| best | thresholds chosen |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ternary = [
        "| data | bits | seed | binary mAP | DPN-T (t = m) | DPN-T auto | auto − binary "
        "| t chosen | zeros |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for dataset in args.datasets:
        epochs = args.epochs or EPOCHS[dataset]
        for bits in args.bits:
            rand, pairs = [], []  # pairs: (random, DPN-A) of one seed, one split
            for seed in args.seeds:
                r = done.get(run_key(spec(dataset, bits, seed, "random", "random", epochs)))
                a = done.get(run_key(spec(dataset, bits, seed, "adaptive", "adaptive", epochs)))
                if r:
                    rand.append(r)
                    ternary.append(
                        f"| {dataset} | {bits} | {seed} | {r['map']:.4f} | "
                        f"{r['map_ternary_margin']:.4f} | {r['map_ternary_auto']:.4f} | "
                        f"{r['map_ternary_auto'] - r['map']:+.4f} | {r['threshold_auto']:g} | "
                        f"{r['zeros_auto']:.3f} |"
                    )
                if a and r:
                    pairs.append((r, a))
            if rand:
                gains = [r["map_ternary_auto"] - r["map"] for r in rand]
                at_m = [r["map_ternary_margin"] - r["map"] for r in rand]
                summary.append(
                    f"| {dataset} | {bits} | {len(rand)} | {statistics.mean(at_m):+.4f} | "
                    f"{statistics.mean(gains):+.4f} | {min(gains):+.4f} | {max(gains):+.4f} | "
                    f"{join_numbers(r['threshold_auto'] for r in rand)} |"
                )
            if pairs:
                rand_maps = [r["map"] for r, _ in pairs]
                adapt_maps = [a["map"] for _, a in pairs]
                diff = statistics.mean(adapt_maps) - statistics.mean(rand_maps)
                lines.append(
                    f"| {dataset} | {bits} | {len(pairs)} | {mean_std(rand_maps)} | "
                    f"{mean_std(adapt_maps)} | {diff:+.4f} | "
                    f"{join_numbers(a['min_distance'] for _, a in pairs)} | "
                    f"{', '.join(str(a['refused_updates']) for _, a in pairs)} |"
                )
    return "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n\n" + "\n".join(ternary)


def schedule_arms(args) -> list[tuple[str, str, str, dict | None]]:
    """(label, arm, target miner, miner arguments) of the schedule study, random first."""
    arms = [("random targets", "random", "random", None)]
    for name in args.schedules:
        label, miner = SCHEDULES[name]
        arm = "adaptive" if name == "defaults" else f"adaptive {name}"
        arms.append((label, arm, "adaptive", miner or None))
    return arms


def schedule_specs(args) -> list[dict]:
    dataset, bits = args.datasets[0], args.bits[-1]
    epochs = args.epochs or EPOCHS[dataset]
    specs = [
        spec(dataset, bits, s, arm, miner_name, epochs, miner)
        for _, arm, miner_name, miner in schedule_arms(args)
        for s in args.seeds
    ]
    return specs[len(args.seeds) :] + specs[: len(args.seeds)]  # random last: the grid has it


def schedule_report(args, done) -> str:
    dataset, bits = args.datasets[0], args.bits[-1]
    epochs = args.epochs or EPOCHS[dataset]
    lines = [
        "| arm (warmup_epochs, update_every, min_distance_floor) | seeds | mAP "
        "| final min d per seed | refused per seed |",
        "|---|---|---|---|---|",
    ]
    for label, arm, miner_name, miner in schedule_arms(args):
        rows = [
            done.get(run_key(spec(dataset, bits, s, arm, miner_name, epochs, miner)))
            for s in args.seeds
        ]
        rows = [r for r in rows if r]
        if not rows:
            continue
        refused = ", ".join(str(r["refused_updates"]) for r in rows)
        lines.append(
            f"| {label} | {len(rows)} | {mean_std(r['map'] for r in rows)} | "
            f"{join_numbers(r['min_distance'] for r in rows)} | "
            f"{refused if miner_name == 'adaptive' else '-'} |"
        )
    return "\n".join(lines)


# What "all" runs: the grid on both data sets, and every schedule on each.
ALL_SCHEDULES = {"digits": list(SCHEDULES), "mnist-5k": list(SCHEDULES)}


def run_study(args) -> None:
    specs = grid_specs(args) if args.study == "grid" else schedule_specs(args)
    start = time.perf_counter()
    done = run_specs(specs, args.cache, train=not args.report_only)
    elapsed = time.perf_counter() - start
    seconds = [done[run_key(s)]["seconds"] for s in specs if run_key(s) in done]
    bits = args.bits if args.study == "grid" else args.bits[-1:]
    datasets = args.datasets if args.study == "grid" else args.datasets[:1]
    print(
        f"\n# {args.study}: {', '.join(datasets)}, bits {bits}, seeds {args.seeds}, "
        f"epochs {args.epochs or {d: EPOCHS[d] for d in datasets}}, validation per class "
        f"{ {d: VALIDATION_PER_CLASS[d] for d in datasets} }; hashing_cnn_small widths "
        f"[16, 32, 64], AdamW lr 3e-3, batch 64; mAP@all, ties 'expected'\n"
    )
    print(grid_report(args, done) if args.study == "grid" else schedule_report(args, done))
    if seconds:
        print(
            f"\n# {len(seconds)} runs, {elapsed:.0f} s wall this call; median "
            f"{statistics.median(seconds):.1f} s per run"
        )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", choices=["grid", "schedule", "all"])
    parser.add_argument(
        "--datasets", nargs="+", choices=list(EPOCHS), help="default: digits; all: both"
    )
    parser.add_argument("--bits", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--epochs", type=int, help="epochs for every data set (default: digits 10, mnist-5k 8)"
    )
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "dpn_variants.jsonl")
    parser.add_argument(
        "--schedules",
        nargs="+",
        default=list(SCHEDULES),
        choices=list(SCHEDULES),
        help="DPN-A schedules of the schedule study",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument(
        "--report-only", action="store_true", help="print the tables of the cached runs only"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 16 bits, 2 ep")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.bits, args.epochs = [0], [16], 2
    torch.set_num_threads(args.threads)
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    if args.study != "all":
        args.datasets = args.datasets or ["digits"]
        run_study(args)
        return
    datasets = args.datasets or list(EPOCHS)
    run_study(argparse.Namespace(**{**vars(args), "study": "grid", "datasets": datasets}))
    for dataset in datasets:
        run_study(
            argparse.Namespace(
                **{
                    **vars(args),
                    "study": "schedule",
                    "datasets": [dataset],
                    "schedules": ALL_SCHEDULES[dataset],
                }
            )
        )


if __name__ == "__main__":
    main()
