"""The baselines table and plots of docs/results.md: every method, seen and unseen classes.

One command reruns it all (cells already in the results file are kept, so an interrupted run
resumes)::

    python benchmarks/results_baselines.py --jobs 2

Methods (each trained or fitted through ``pml_hashing.training.run_experiment``): DPN
(random targets; its DPN-T number is the same model's ternary mAP), DPN-A (adaptive
targets, updated every ``max(1, epochs // 2)`` epochs), SH-BDNN, UH-BDNN (B started from
``sign(H)``), UH-BDNN with ``init="itq"``, the classifier baseline, LSH and ITQ (fit-only,
on the flattened training pixels). Protocols: ``seen`` (the usual one: queries and database
of the training classes) and ``unseen`` (``unseen_classes="auto"``: a quarter of the
classes, rounded up, i.e. 3 of 10, held out of training; queries and database hold only
them). mAP is the tie-aware mAP@all (``ties="expected"``); precision within Hamming radius
2 counts an empty ball as 0.

Cells are run in priority order (digits seed 0, then mnist-5k seed 0 at 32 bits, then
UH-BDNN against ITQ on mnist-5k, then the other seeds), so that a run cut short still
fills the most useful cells; ``report`` lists the cells that are missing.

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
RESULTS = ROOT / "benchmarks" / "results" / "baselines_grid.jsonl"
PLOTS = ROOT / "docs" / "img" / "results"
TABLE = ROOT / "benchmarks" / "results" / "baselines_table.md"

# label -> (config overrides, which metric of the report is the label's mAP)
METHODS = {
    "DPN": ({"method": "dpn", "target_miner": "random"}, "map"),
    "DPN-A": ({"method": "dpn", "target_miner": "adaptive"}, "map"),
    "SH-BDNN": ({"method": "sh-bdnn"}, "map"),
    "UH-BDNN": ({"method": "uh-bdnn"}, "map"),
    "UH-BDNN (ITQ init)": ({"method": "uh-bdnn", "method_kwargs": {"init": "itq"}}, "map"),
    "classifier": ({"method": "classifier"}, "map"),
    "LSH": ({"method": "lsh"}, "map"),
    "ITQ": ({"method": "itq"}, "map"),
}
# DPN-T is not trained: it is the DPN model's ternary retrieval.
DERIVED = {"DPN-T": ("DPN", "map_ternary")}
ORDER = ["DPN", "DPN-A", "DPN-T", "SH-BDNN", "UH-BDNN", "UH-BDNN (ITQ init)", "classifier",
         "LSH", "ITQ"]  # fmt: skip
FIT_ONLY = ("LSH", "ITQ")
PROTOCOLS = {"seen": None, "unseen": "auto"}
DEFAULT_EPOCHS = {"digits": 10, "mnist-5k": 2}


def cells(datasets, bits_list, seeds) -> list[dict]:
    """Every cell, in priority order."""
    out = []

    def add(dataset, seed, bits, methods, protocols=PROTOCOLS):
        for protocol in protocols:
            for method in methods:
                cell = {
                    "dataset": dataset,
                    "seed": seed,
                    "bits": bits,
                    "method": method,
                    "protocol": protocol,
                }
                if cell not in out:
                    out.append(cell)

    all_methods = list(METHODS)
    for seed in seeds[:1]:
        for dataset in datasets:
            if dataset == "digits":
                for bits in bits_list:
                    add(dataset, seed, bits, all_methods)
            else:
                add(dataset, seed, 32 if 32 in bits_list else bits_list[0], all_methods)
                for bits in bits_list:  # UH-BDNN against ITQ (the BDNN paper's claim)
                    add(dataset, seed, bits, ["LSH", "ITQ", "UH-BDNN", "UH-BDNN (ITQ init)"],
                        ["seen"])  # fmt: skip
    for dataset in datasets:
        for seed in seeds:
            for bits in bits_list:
                add(dataset, seed, bits, list(FIT_ONLY))
    for dataset in datasets:
        for seed in seeds:
            for bits in bits_list:
                add(dataset, seed, bits, all_methods)
    return out


def cell_key(cell) -> tuple:
    return (cell["dataset"], cell["seed"], cell["bits"], cell["method"], cell["protocol"])


def run_cell(cell: dict, epochs: dict, output_dir: Path) -> dict:
    """Train (or fit) one cell and return its record."""
    import torch

    from pml_hashing.training import run_experiment

    overrides, _ = METHODS[cell["method"]]
    n_epochs = epochs[cell["dataset"]]
    config = {
        "dataset": cell["dataset"],
        "bits": cell["bits"],
        "seed": cell["seed"],
        "epochs": n_epochs,
        "lr": 3e-3,  # the setting the table was measured with (the job's default then)
        "unseen_classes": PROTOCOLS[cell["protocol"]],
        "ties": "expected",
        "progress": False,
        "log_with": "none",
        "checkpoint_every": 0,
        "output_dir": str(output_dir),
        "name": "-".join(
            [
                cell["dataset"],
                cell["protocol"],
                cell["method"].replace(" ", "_").strip("()"),
                f"{cell['bits']}b",
                f"seed{cell['seed']}",
            ]  # fmt: skip
        )
        .replace("(", "")
        .replace(")", ""),
        **overrides,
    }
    if cell["method"] == "DPN-A":
        # The schedule the table was measured with, before the guarded defaults (warm-up 2,
        # the minimum-distance guard) existed: no warm-up, no guard, an update every half run.
        config["update_every"] = max(1, n_epochs // 2)
        config["warmup_epochs"] = 0
        config["min_distance_floor"] = None
    start = time.perf_counter()
    metrics = run_experiment(config)
    seconds = time.perf_counter() - start
    report = metrics["last_epoch"]
    record = {
        **cell,
        "epochs": 0 if cell["method"] in FIT_ONLY else n_epochs,
        "seconds": seconds,
        "map": report["map"],
        "map_ternary": report.get("map_ternary"),
        "precision_within_radius": report["precision_within_radius"],
        "empty_ball_fraction": report["empty_ball_fraction"],
        "num_query": report["num_query"],
        "num_database": report["num_database"],
        "train_loss": [float(np.mean(h["losses"])) for h in metrics["history"] if h["losses"]],
    }
    if cell["method"] in FIT_ONLY or (cell["bits"] == 32 and cell["seed"] == 0):
        codes = run_codes(Path(config["output_dir"]) / config["name"])
        db_codes = codes["db_codes"]
        record["positive_bit_ratio"] = (db_codes > 0).float().mean(dim=0).tolist()
        if cell["bits"] == 32 and cell["seed"] == 0:
            from pml_hashing.evaluation import precision_recall_by_radius

            curve = precision_recall_by_radius(
                codes["query_codes"], codes["query_labels"], db_codes, codes["db_labels"]
            )
            record["pr_radius"] = {
                "precision": curve.precision.tolist(),
                "recall": curve.recall.tolist(),
            }
    del torch
    return record


def run_codes(run_dir: Path) -> dict:
    """Binary codes of a finished run's queries and database, rebuilt from its checkpoint."""
    import torch

    from pml_hashing.codes import binarize
    from pml_hashing.training import build_protocol
    from pml_hashing.training.checkpoint import load_checkpoint
    from pml_hashing.training.encoding import encode_dataset

    model, method, config, _ = load_checkpoint(run_dir / "checkpoint.safetensors")
    protocol = build_protocol(config, model)
    fit_only = getattr(method, "fit_only", False)
    out = {}
    for split in ("query", "db"):
        dataset = protocol.query if split == "query" else protocol.database
        if fit_only:  # the codes come from the pixels; there is no network
            loader = torch.utils.data.DataLoader(dataset, batch_size=512)
            batches = list(loader)
            outputs = torch.cat([images.flatten(1) for images, _ in batches])
            labels = torch.cat([lab for _, lab in batches])
        else:
            outputs, labels = encode_dataset(model, dataset, 512)
        out[f"{split}_codes"] = binarize(method.retrieval_outputs(outputs))
        out[f"{split}_labels"] = labels
    return out


def grid(args) -> None:
    import torch

    torch.set_num_threads(1)
    done = {cell_key(r) for r in read_results(args.results)}
    todo = [c for c in cells(args.datasets, args.bits, args.seeds) if cell_key(c) not in done]
    mine = todo[args.worker :: args.workers]
    epochs = dict(DEFAULT_EPOCHS)
    if args.epochs_digits is not None:
        epochs["digits"] = args.epochs_digits
    if args.epochs_mnist is not None:
        epochs["mnist-5k"] = args.epochs_mnist
    args.results.parent.mkdir(parents=True, exist_ok=True)
    for i, cell in enumerate(mine):
        record = run_cell(cell, epochs, args.output_dir)
        with args.results.open("a") as f:  # one line per cell: appends from workers interleave
            f.write(json.dumps(record) + "\n")
        print(
            f"[worker {args.worker}] {i + 1}/{len(mine)} {cell_key(cell)} "
            f"mAP {record['map']:.4f} ({record['seconds']:.0f} s)",
            flush=True,
        )


def _values(records, dataset, protocol, bits, label) -> list[float]:
    method, metric = DERIVED.get(label, (label, "map"))
    return [
        r[metric]
        for r in records
        if r["dataset"] == dataset
        and r["protocol"] == protocol
        and r["bits"] == bits
        and r["method"] == method
        and r.get(metric) is not None
    ]


def table(records, datasets, bits_list) -> str:
    lines = []
    for dataset in datasets:
        epochs = sorted({r["epochs"] for r in records if r["dataset"] == dataset and r["epochs"]})
        lines.append(
            f"**{dataset}** (trained methods: {', '.join(map(str, epochs)) or '?'} epochs). "
            "Tie-aware mAP@all, mean ± sample std over seeds (number of seeds)."
        )
        lines.append("")
        header = (
            "| method | " + " | ".join(f"{p} {b} bits" for p in PROTOCOLS for b in bits_list) + " |"
        )
        lines += [header, "|" + "---|" * (1 + len(PROTOCOLS) * len(bits_list))]
        for label in ORDER:
            row = [
                cell_text(_values(records, dataset, p, b, label))
                for p in PROTOCOLS
                for b in bits_list
            ]
            lines.append(f"| {label} | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def plots(records, datasets, bits_list, plot_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    written = []
    markers = dict(zip(ORDER, "osDv^<>xP", strict=True))
    colors = {label: f"C{i}" for i, label in enumerate(ORDER)}  # one colour per method, all plots

    def trained_epochs(dataset):
        epochs = sorted({r["epochs"] for r in records if r["dataset"] == dataset and r["epochs"]})
        return (
            "trained methods: " + "/".join(map(str, epochs)) + " epochs" if epochs else "fit only"
        )

    def look(label):
        return {"marker": markers[label], "color": colors[label], "label": label}

    def save(fig, name):
        path = plot_dir / name
        # leave the bottom strip to the figure legend
        fig.tight_layout(rect=(0, 0.13 / len(datasets), 1, 0.95))
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    for metric, ylabel, name in (
        ("map", "tie-aware mAP@all", "map_vs_bits.png"),
        ("precision_within_radius", "precision within Hamming radius 2", "p2_vs_bits.png"),
    ):
        fig, axes = plt.subplots(
            len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False, sharey=True
        )
        for i, dataset in enumerate(datasets):
            for j, protocol in enumerate(PROTOCOLS):
                ax = axes[i][j]
                for label in ORDER:
                    method, key = DERIVED.get(label, (label, metric))
                    if metric != "map" and label in DERIVED:
                        continue  # radius precision of ternary codes is not reported
                    xs, ys, es = [], [], []
                    for b in bits_list:
                        vals = [
                            r[key if metric == "map" else metric]
                            for r in records
                            if (r["dataset"], r["protocol"], r["bits"], r["method"])
                            == (dataset, protocol, b, method)
                            and r.get(key if metric == "map" else metric) is not None
                        ]
                        if vals:
                            xs.append(b)
                            ys.append(np.mean(vals))
                            es.append(np.std(vals, ddof=1) if len(vals) > 1 else 0.0)
                    if xs:
                        style = "--" if label in FIT_ONLY else "-"
                        ax.errorbar(xs, ys, yerr=es, capsize=3, linestyle=style, **look(label))
                ax.set_xscale("log", base=2)
                ax.set_xticks(bits_list, [str(b) for b in bits_list])
                ax.set_xlabel("code length (bits)")
                if j == 0:  # the axes share y
                    ax.set_ylabel(ylabel)
                ax.set_title(f"{dataset}, {protocol} classes ({trained_epochs(dataset)})")
                ax.grid(alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8)
        # said in the figure itself: these short runs are not the headline's 10-epoch main job
        fig.suptitle(
            "Short runs of every method, for the seen / unseen protocol comparison: the trained\n"
            "methods' levels are below the main job's (10 epochs: mAP@all about 0.98 on mnist-5k "
            "at 64 bits)",
            fontsize=9,
        )
        save(fig, name)

    # precision-recall over the Hamming radius, 32 bits, seed 0
    fig, axes = plt.subplots(
        len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False, sharey=True
    )
    for i, dataset in enumerate(datasets):
        for j, protocol in enumerate(PROTOCOLS):
            ax = axes[i][j]
            for label in ORDER:
                for r in records_of(records, dataset, protocol, label, bits=32, seed=0):
                    if "pr_radius" in r:
                        pr = r["pr_radius"]
                        ax.plot(pr["recall"], pr["precision"], markersize=3, **look(label))
            ax.set_xlabel("recall (Hamming ball of radius r = 0..32)")
            if j == 0:  # the axes share y
                ax.set_ylabel("precision (empty ball = 0)")
            ax.set_title(f"{dataset}, {protocol} classes, 32 bits, seed 0")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    save(fig, "precision_recall_radius.png")

    # training curves, 32 bits, seed 0
    fig, axes = plt.subplots(len(datasets), 2, figsize=(10, 3.6 * len(datasets)), squeeze=False)
    for i, dataset in enumerate(datasets):
        for j, protocol in enumerate(PROTOCOLS):
            ax = axes[i][j]
            for label in ORDER:
                for r in records_of(records, dataset, protocol, label, bits=32, seed=0):
                    if r.get("train_loss"):
                        loss = np.asarray(r["train_loss"])
                        ax.plot(np.arange(1, len(loss) + 1), loss / loss[0], **look(label))
            ax.set_xlabel("epoch")
            ax.set_ylabel("training loss / first-epoch loss")
            ax.set_yscale("log")
            ax.set_title(f"{dataset}, {protocol} classes, 32 bits, seed 0")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    save(fig, "training_curves.png")
    return written


def records_of(records, dataset, protocol, method, bits, seed) -> list[dict]:
    """The records of one cell (a rerun appends another)."""
    key = (dataset, seed, bits, method, protocol)
    return [r for r in records if cell_key(r) == key]


def missing(records, datasets, bits_list, seeds) -> list[tuple]:
    done = {cell_key(r) for r in records}
    return [cell_key(c) for c in cells(datasets, bits_list, seeds) if cell_key(c) not in done]


def balance_lines(records) -> list[str]:
    """How balanced the fit-only baselines' bits are on the database, per protocol."""
    lines = []
    for label in FIT_ONLY:
        for dataset in sorted({r["dataset"] for r in records}):
            for protocol in PROTOCOLS:
                ratios = [
                    np.asarray(r["positive_bit_ratio"])
                    for r in records
                    if (r["method"], r["dataset"], r["protocol"]) == (label, dataset, protocol)
                    and "positive_bit_ratio" in r
                ]
                if ratios:
                    allr = np.concatenate(ratios)
                    lines.append(
                        f"{label}, {dataset}, {protocol} classes: fraction of +1 per bit over "
                        f"the database, median {np.median(allr):.3f}, mean |ratio - 0.5| "
                        f"{np.mean(np.abs(allr - 0.5)):.3f}, range [{allr.min():.3f}, "
                        f"{allr.max():.3f}] ({len(ratios)} runs, {len(allr)} bits)"
                    )
    return lines


def report(args) -> None:
    records = read_results(args.results)
    text = table(records, args.datasets, args.bits)
    lines = balance_lines(records)
    gaps = missing(records, args.datasets, args.bits, args.seeds)
    body = text + "\n" + "\n".join(f"- {line}" for line in lines) + "\n"
    body += f"\nMissing cells: {len(gaps)}\n" + "".join(f"- {g}\n" for g in gaps)
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
    parser.add_argument("--epochs-digits", type=int, default=None)
    parser.add_argument("--epochs-mnist", type=int, default=None)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--plots", type=Path, default=PLOTS)
    parser.add_argument("--output-dir", type=Path, default=ROOT / "runs" / "baselines")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the grid")
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command in ("grid", "all"):
        if args.jobs > 1:
            run_workers(__file__, argv, args.jobs)
        else:
            grid(args)
    if args.command in ("report", "all"):
        report(args)


if __name__ == "__main__":
    main()
