"""The target-code family against pairwise, BDNN, classifier and classical baselines.

One command reruns it all (cells already in the results file are kept, so an interrupted run
resumes; run it again to fill what is missing)::

    nice -n 10 python benchmarks/results_families.py --jobs 2

Methods, each trained or fitted through ``pml_hashing.training.run_experiment`` at the
recipe's default epochs (10): DPN (random targets); DPN-T, the same DPN model's ternary
retrieval with the threshold chosen on the validation split (``ternary_threshold: auto``);
CSQ (the authors' hash centers, ``target_miner: hash-center``); OrthoHash (Bernoulli codebook,
batch norm on the hash layer, s = 8, m = 0.2); the pairwise baseline (PML's
``ContrastiveLoss`` + the quantization regularizer); SH-BDNN; the classifier baseline; ITQ
and LSH (fit-only). Data: digits and mnist-5k; 16 / 32 / 64 bits; seeds 0, 1, 2; protocols
``seen`` (the usual one) and ``unseen`` (``unseen_classes: auto``, 3 of 10 classes held out),
whose runs also report ``map_unseen_vs_all`` (unseen queries against unseen + seen items).
Every run holds out ``validation_per_class`` = 5 items per class (the validation split).

Learning rate: for each trained method and data set, chosen among ``--lrs`` on the
validation split (last-epoch validation mAP, seen classes, 64 bits, seed 0), then used in
every cell of that method and data set. On mnist-5k (``DATASET_LRS``) the rates tried are
4e-3 and 1.5e-2, the two digits preferred; a trial that is a grid cell already is not rerun.
mAP is the tie-aware mAP@all (``ties="expected"``)
of the last epoch.

Cells run in priority order: learning-rate selection (digits, then mnist-5k), mnist-5k at
64 bits (seen classes) for every seed, digits seed 0, mnist-5k unseen at 32 and 64 bits,
then the rest. ``report`` lists the cells that are missing.

Subcommands: ``grid`` (run cells; ``--worker i --workers n`` runs every n-th cell),
``report`` (table and plots from the results file); no subcommand: both.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# benchmarks/_grid.py, also when this file is loaded by path (the tests)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _grid import cell_text, read_results, run_workers  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "families_grid.jsonl"
PLOTS = ROOT / "docs" / "img" / "results"
TABLE = ROOT / "benchmarks" / "results" / "families_table.md"

# label -> config overrides
METHODS = {
    "DPN": {"method": "dpn", "target_miner": "random", "ternary_threshold": "auto"},
    "CSQ": {"method": "csq", "target_miner": "hash-center"},
    "OrthoHash": {"method": "orthohash", "target_miner": "random"},
    "pairwise": {"method": "pairwise", "pair_loss": "contrastive"},
    "SH-BDNN": {"method": "sh-bdnn"},
    "classifier": {"method": "classifier"},
    "LSH": {"method": "lsh"},
    "ITQ": {"method": "itq"},
}
# label -> (the run it reads, the report key of its seen / unseen mAP)
DERIVED = {"DPN-T": ("DPN", "map_ternary")}
ORDER = ["DPN", "DPN-T", "CSQ", "OrthoHash", "pairwise", "SH-BDNN", "classifier", "ITQ", "LSH"]
FAMILY = {
    "DPN": "target codes",
    "DPN-T": "target codes",
    "CSQ": "target codes",
    "OrthoHash": "target codes",
    "pairwise": "pairs",
    "SH-BDNN": "pairs (BDNN)",
    "classifier": "classifier",
    "ITQ": "unsupervised",
    "LSH": "unsupervised",
}
FIT_ONLY = ("LSH", "ITQ")
TRAINED = [m for m in METHODS if m not in FIT_ONLY]
PROTOCOLS = {"seen": None, "unseen": "auto"}
# what each table / plot shows: (protocol of the runs, report key)
VIEWS = {
    "seen": ("seen", "map"),
    "unseen": ("unseen", "map"),
    "unseen_vs_all": ("unseen", "map_unseen_vs_all"),
}
EPOCHS = 10  # the recipe's default
VALIDATION_PER_CLASS = 5
SELECTION_BITS = 64
DEFAULT_LRS = (1e-3, 4e-3, 1.5e-2)


def cells(datasets, bits_list, seeds) -> list[dict]:
    """Every cell, in priority order; ``kind`` is ``select`` (a learning-rate trial) or
    ``grid`` (a table cell)."""
    out = []

    def add(cell):
        if cell not in out:
            out.append(cell)

    def grid_cells(dataset, seed_list, bits_sel, methods, protocols):
        for seed in seed_list:
            for bits in bits_sel:
                for protocol in protocols:
                    for method in methods:
                        add(
                            {
                                "kind": "grid",
                                "dataset": dataset,
                                "seed": seed,
                                "bits": bits,
                                "method": method,
                                "protocol": protocol,
                            }
                        )

    def select(dataset):
        for method in SELECTED.get(dataset, TRAINED):
            for lr in DATASET_LRS.get(dataset, LRS):
                add({"kind": "select", "dataset": dataset, "method": method, "lr": lr})

    # the learning rates first (every later cell needs them), then the target cell
    # (mnist-5k, 64 bits, seen classes: the target-code family and the fit-only baselines,
    # then the other methods), mnist-5k's unseen classes at 64 bits (seed 0), digits' first
    # seed, then everything else
    for dataset in datasets:
        select(dataset)
    first = ["DPN", "CSQ", "OrthoHash", "ITQ", "LSH"]
    rest = [m for m in METHODS if m not in first]
    for dataset in datasets:
        if dataset != "digits":
            target = [b for b in bits_list if b == 64] or bits_list[-1:]
            grid_cells(dataset, seeds, target, first, ["seen"])
            grid_cells(dataset, seeds, target, rest, ["seen"])
            grid_cells(dataset, seeds[:1], target, list(METHODS), ["unseen"])
    for dataset in datasets:
        if dataset == "digits":
            grid_cells(dataset, seeds[:1], bits_list, list(METHODS), PROTOCOLS)
    for dataset in datasets:
        if dataset != "digits":
            grid_cells(dataset, seeds, [b for b in bits_list if b >= 32], list(METHODS), ["unseen"])
    for dataset in datasets:
        grid_cells(dataset, seeds, bits_list, list(METHODS), PROTOCOLS)
    return out


LRS = list(DEFAULT_LRS)
# An mnist-5k run of 10 epochs takes about 30 s on a quiet machine (7 minutes on a shared
# one): there, every trained method's rate is chosen among the two rates digits preferred.
DATASET_LRS = {"mnist-5k": [4e-3, 1.5e-2]}
SELECTED: dict[str, list[str]] = {}


def cell_key(cell) -> tuple:
    if cell["kind"] == "select":
        return ("select", cell["dataset"], cell["method"], float(cell["lr"]))
    return ("grid", cell["dataset"], cell["seed"], cell["bits"], cell["method"], cell["protocol"])


def chosen_lr(records, dataset, method) -> float | None:
    """The selected learning rate: best last-epoch validation mAP over the tried ones (every
    rate of the data set's list must have been tried). A method not selected on a data set
    (``SELECTED``) takes the rate chosen on digits."""
    if method not in SELECTED.get(dataset, TRAINED):
        return None if dataset == "digits" else chosen_lr(records, "digits", method)
    trials = {
        float(r["lr"]): r["validation_map"]
        for r in records
        if r["kind"] == "select" and r["dataset"] == dataset and r["method"] == method
    }
    if any(float(lr) not in trials for lr in DATASET_LRS.get(dataset, LRS)):
        return None
    return max(sorted(trials), key=lambda lr: trials[lr])


def _config(cell, lr, output_dir: Path) -> dict:
    label = cell["method"]
    protocol = cell.get("protocol", "seen")
    seed = cell.get("seed", 0)
    bits = cell.get("bits", SELECTION_BITS)
    name = "-".join(
        [cell["kind"], cell["dataset"], protocol, label, f"{bits}b", f"seed{seed}", f"lr{lr:g}"]
    )
    return {
        "dataset": cell["dataset"],
        "bits": bits,
        "seed": seed,
        "epochs": EPOCHS,
        "lr": lr,
        "validation_per_class": VALIDATION_PER_CLASS,
        "unseen_classes": PROTOCOLS[protocol],
        "ties": "expected",
        "progress": False,
        "log_with": "none",
        "checkpoint_every": 0,
        "output_dir": str(output_dir),
        "name": name,
        **METHODS[label],
    }


def run_cell(cell: dict, lr: float | None, output_dir: Path) -> dict:
    """Train (or fit) one cell and return its record."""
    from pml_hashing.training import run_experiment

    label = cell["method"]
    config = _config(cell, lr if lr is not None else 1.5e-2, output_dir)
    if label in FIT_ONLY:
        config.pop("lr")
    start = time.perf_counter()
    metrics = run_experiment(config)
    seconds = time.perf_counter() - start
    report = metrics["last_epoch"]
    record = {
        **cell,
        "lr": None if label in FIT_ONLY else config["lr"],
        "epochs": 0 if label in FIT_ONLY else EPOCHS,
        "seconds": seconds,
        "map": report["map"],
        "map_ternary": report.get("map_ternary"),
        "ternary_threshold": report.get("ternary_threshold"),
        "map_unseen_vs_all": report.get("map_unseen_vs_all"),
        "precision_within_radius": report["precision_within_radius"],
        "num_query": report["num_query"],
        "num_database": report["num_database"],
        "validation_map": metrics["validation"][-1]["map"] if metrics.get("validation") else None,
        "train_loss": [float(np.mean(h["losses"])) for h in metrics["history"] if h["losses"]],
    }
    return record


def grid(args) -> None:
    import torch

    torch.set_num_threads(1)
    results = args.results
    results.parent.mkdir(parents=True, exist_ok=True)
    all_cells = cells(args.datasets, args.bits, args.seeds)
    if args.protocol is not None:  # a worker of one protocol's grid cells
        all_cells = [c for c in all_cells if c["kind"] == "grid" and c["protocol"] == args.protocol]
    mine = [c for i, c in enumerate(all_cells) if i % args.workers == args.worker]
    for i, cell in enumerate(mine):
        records = read_results(results)
        if cell_key(cell) in {cell_key(r) for r in current(records)}:
            continue
        lr = None
        if cell["kind"] == "select":
            lr = float(cell["lr"])
        elif cell["method"] not in FIT_ONLY:
            # the other worker may still be trying a learning rate: wait for it
            waited = 0.0
            while (lr := chosen_lr(records, cell["dataset"], cell["method"])) is None:
                if waited > args.wait_seconds:
                    print(f"[worker {args.worker}] no learning rate for {cell_key(cell)}")
                    break
                time.sleep(15)
                waited += 15
                records = read_results(results)
            if lr is None:
                continue
        reused = _selection_run(records, cell, lr) or _grid_run(records, cell)
        record = reused if reused is not None else run_cell(cell, lr, args.output_dir)
        with results.open("a") as f:  # one line per cell: appends from workers interleave
            f.write(json.dumps(record) + "\n")
        print(
            f"[worker {args.worker}] {i + 1}/{len(mine)} {cell_key(cell)} lr {record['lr']} "
            f"mAP {record['map']:.4f} ({record['seconds']:.0f} s)",
            flush=True,
        )


def _selection_run(records, cell, lr) -> dict | None:
    """The learning-rate trial that is this grid cell already (same data set, method, seed
    0, seen classes, the selection's bits and the chosen rate), as the cell's record."""
    if cell["kind"] != "grid" or (cell["seed"], cell["bits"], cell["protocol"]) != (
        0,
        SELECTION_BITS,
        "seen",
    ):
        return None
    for r in records:
        if (r["kind"], r["dataset"], r["method"]) == ("select", cell["dataset"], cell["method"]):
            if lr is not None and float(r["lr"]) == float(lr):
                return {**r, **cell, "reused_from": "select"}
    return None


def _grid_run(records, cell) -> dict | None:
    """The grid cell that is this learning-rate trial already (seed 0, seen classes, the
    selection's bits, the trial's rate), as the trial's record."""
    if cell["kind"] != "select":
        return None
    for r in records:
        if (
            r["kind"],
            r["dataset"],
            r["method"],
            r.get("seed"),
            r.get("bits"),
            r.get("protocol"),
        ) == (
            "grid",
            cell["dataset"],
            cell["method"],
            0,
            SELECTION_BITS,
            "seen",
        ) and float(r["lr"]) == float(cell["lr"]):
            fields = ("seed", "bits", "protocol", "reused_from")
            return {**{k: v for k, v in r.items() if k not in fields}, **cell}
    return None


def current(records) -> list[dict]:
    """The records that count: a trained method's grid cell only at the rate chosen for it
    (a cell run before its method's rate was chosen again is run again at the new rate)."""
    keep = []
    for r in records:
        if r["kind"] == "grid" and r["method"] not in FIT_ONLY:
            lr = chosen_lr(records, r["dataset"], r["method"])
            if lr is not None and float(r["lr"]) != lr:
                continue
        keep.append(r)
    return keep


# ---------------------------------------------------------------------------- report


def values(records, dataset, view, bits, label) -> list[float]:
    protocol, key = VIEWS[view]
    method, key = DERIVED[label] if label in DERIVED and key == "map" else (label, key)
    if label in DERIVED and view == "unseen_vs_all":
        return []  # the unseen-vs-all report is of binary codes only
    return [
        r[key]
        for r in current(records)
        if r["kind"] == "grid"
        and (r["dataset"], r["protocol"], r["bits"], r["method"])
        == (dataset, protocol, bits, method)
        and r.get(key) is not None
    ]


def lr_lines(records, datasets) -> list[str]:
    lines = []
    for dataset in datasets:
        parts = []
        for method in TRAINED:
            trials = {
                r["lr"]: r["validation_map"]
                for r in records
                if r["kind"] == "select" and r["dataset"] == dataset and r["method"] == method
            }
            lr = chosen_lr(records, dataset, method)
            chosen = "pending" if lr is None else f"{lr:g}"
            if trials:
                tried = ", ".join(f"{k:g}: {v:.3f}" for k, v in sorted(trials.items()))
                parts.append(f"{method} {chosen} (validation mAP {tried})")
            elif method not in SELECTED.get(dataset, TRAINED):
                parts.append(f"{method} {chosen} (digits' choice)")
        if parts:
            lines.append(f"{dataset}: " + "; ".join(parts))
    return lines


def table(records, datasets, bits_list) -> str:
    lines = []
    for dataset in datasets:
        lines.append(
            f"**{dataset}**: tie-aware mAP@all of the last epoch ({EPOCHS} epochs for trained "
            "methods), mean ± sample std over seeds (number of seeds)."
        )
        lines.append("")
        header = "| method | family | " + " | ".join(
            f"{view.replace('_', ' ')} {b}" for view in VIEWS for b in bits_list
        )
        lines += [header + " |", "|" + "---|" * (2 + len(VIEWS) * len(bits_list))]
        for label in ORDER:
            row = [
                cell_text(values(records, dataset, view, b, label))
                for view in VIEWS
                for b in bits_list
            ]
            lines.append(f"| {label} | {FAMILY[label]} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def plots(records, datasets, bits_list, plot_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    markers = dict(zip(ORDER, "osDv^<>xP", strict=True))
    titles = {
        "seen": "seen classes",
        "unseen": "unseen classes (unseen database)",
        "unseen_vs_all": "unseen queries vs seen + unseen database",
    }
    for view in VIEWS:
        fig, axes = plt.subplots(
            1, len(datasets), figsize=(5.2 * len(datasets), 4.2), squeeze=False, sharey=True
        )
        for j, dataset in enumerate(datasets):
            ax = axes[0][j]
            for i, label in enumerate(ORDER):
                xs, ys, es = [], [], []
                for b in bits_list:
                    vals = values(records, dataset, view, b, label)
                    if vals:
                        xs.append(b)
                        ys.append(np.mean(vals))
                        es.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
                if xs:
                    ax.errorbar(
                        xs, ys, yerr=es, capsize=3, marker=markers[label], color=f"C{i}",
                        linestyle="--" if label in FIT_ONLY else "-", label=label,
                    )  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_xlim(min(bits_list) / 1.25, max(bits_list) * 1.25)  # also with one point
            ax.set_xticks(bits_list, [str(b) for b in bits_list])
            ax.set_xlabel("code length (bits)")
            if j == 0:
                ax.set_ylabel("tie-aware mAP@all")
            ax.set_title(f"{dataset}: {titles[view]}", fontsize=10)
            ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
        fig.tight_layout(rect=(0, 0.12, 1, 1))
        path = plot_dir / f"families_{view}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def coverage(records, datasets, bits_list, seeds) -> list[str]:
    """Per (dataset, view, bits): how many seeds every method has, and what is missing."""
    lines = []
    done = {cell_key(r) for r in records}
    for dataset in datasets:
        for protocol in PROTOCOLS:
            for b in bits_list:
                counts = {
                    m: sum(("grid", dataset, s, b, m, protocol) in done for s in seeds)
                    for m in METHODS
                }
                full = [m for m, n in counts.items() if n == len(seeds)]
                short = {m: n for m, n in counts.items() if n < len(seeds)}
                text = (
                    f"{dataset} {protocol} {b} bits: {len(full)}/{len(METHODS)} methods with "
                    f"{len(seeds)} seeds"
                )
                if short:
                    text += "; fewer: " + ", ".join(f"{m} {n}" for m, n in short.items())
                lines.append(text)
    return lines


def first_per_cell(records) -> list[dict]:
    """One record per cell (two workers may finish the same cell; the first one counts)."""
    seen, out = set(), []
    for r in records:
        if cell_key(r) not in seen:
            seen.add(cell_key(r))
            out.append(r)
    return out


def report(args) -> None:
    # a cell run at a rate that was not chosen in the end does not count (current)
    records = first_per_cell(current(read_results(args.results)))
    body = table(records, args.datasets, args.bits)
    body += "\nLearning rates (chosen on the validation split, seen classes, "
    body += f"{SELECTION_BITS} bits, seed 0):\n\n"
    body += "".join(f"- {line}\n" for line in lr_lines(records, args.datasets))
    body += "\nCoverage (grid runs per cell):\n\n"
    body += "".join(
        f"- {line}\n" for line in coverage(records, args.datasets, args.bits, args.seeds)
    )
    args.table.parent.mkdir(parents=True, exist_ok=True)
    args.table.write_text(body)
    print(body)
    for path in plots(records, args.datasets, args.bits, args.plots):
        print(f"wrote {path}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", nargs="?", choices=("grid", "report", "all"), default="all")
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist-5k"])
    parser.add_argument("--bits", nargs="+", type=int, default=[16, 32, 64])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--plots", type=Path, default=PLOTS)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs" / "families")
    parser.add_argument("--wait-seconds", type=float, default=3600.0)
    parser.add_argument(
        "--protocol", choices=tuple(PROTOCOLS), default=None, help="grid cells of one protocol"
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the grid")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    LRS[:] = args.lrs
    if args.command in ("grid", "all"):
        if args.jobs > 1:
            run_workers(__file__, argv, args.jobs)
        else:
            grid(args)
    if args.command in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
