"""The DPN paper's claims measured on a bundled data set: the tables and plots of docs/results.md.

Each study trains DPN through ``pml_hashing.training.run_experiment`` (the training job of
``recipes/train.py``: ``hashing_cnn_small``, AdamW, cosine schedule; no checkpoints, no
tracker) and reads the run's retrieval report (``metrics["last_epoch"]``); what a study
measures on the model itself (Proposition 3 after every epoch, per-query AP, outputs) comes
from a ``run_experiment`` callback. Runs that two studies share (same bits, margin, targets,
seed) are trained once.

Studies (``python benchmarks/results_dpn.py STUDY ...``; ``all`` runs every one):

* ``margin``   margin m in {0.1, 0.5, 1, 2, 3} (paper Table 2), 64 bits;
* ``ratio``    ratio p of +1 bits in random targets, 0.1 .. 0.9 (Figure 3), 16 and 64 bits:
  mAP, expected 2Kp(1-p) and measured mean pairwise distance of the codebook;
* ``prop3``    LHS and RHS of Proposition 3 (eq. 7) on the training codes, per epoch
  (Figure 2), and their Pearson correlation;
* ``variants`` DPN, DPN-A, DPN-T, DPN-A-T at 16, 32, 64, 128 bits (Table 3's rows);
* ``targets``  random vs Hadamard vs max-Hamming-distance targets at 16 .. 128 bits;
* ``outputs``  distribution of v * t for correctly vs wrongly retrieved queries (Figure 5),
  m = 0.1 and m = 1;
* ``ties``     mAP under each tie rule, and with the database sorted by class.

Every mAP is mAP@all (R = all, the bundled protocols' R) over the protocol's queries,
tie rule ``expected`` (tie-aware, He et al. 2018) unless a table says otherwise; cells are
mean ± sample standard deviation over the seeds.

    python benchmarks/results_dpn.py all --plot-dir docs/img/results   # digits, seeds 0 1 2
    python benchmarks/results_dpn.py margin --dataset mnist-5k
    python benchmarks/results_dpn.py all --quick                       # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pml_hashing._validation import TIE_RULES  # noqa: E402
from pml_hashing.codes import binarize  # noqa: E402
from pml_hashing.data import load_protocol  # noqa: E402
from pml_hashing.evaluation import (  # noqa: E402
    DegenerateTernaryCodesWarning,
    average_precision_per_query,
    mean_average_precision,
)
from pml_hashing.miners import RandomTargetMiner  # noqa: E402
from pml_hashing.training import encode_dataset, run_experiment  # noqa: E402

STUDIES = ("margin", "ratio", "prop3", "variants", "targets", "outputs", "ties")
MARGINS = (0.1, 0.5, 1.0, 2.0, 3.0)
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# ----------------------------------------------------------------------------- one run


def run_spec(
    bits: int,
    seed: int,
    margin: float = 1.0,
    target_miner: str = "random",
    p: float = 0.5,
) -> dict:
    """The key of one training run. Every run measures what any study reads (the extra
    evaluations cost far less than training), so studies share identical runs."""
    return {"bits": bits, "seed": seed, "margin": margin, "target_miner": target_miner, "p": p}


def spec_key(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def proposition3_sides(outputs, labels, targets, margin: float) -> tuple[float, float]:
    """Both sides of eq. 7 of the DPN paper on one set of outputs.

    LHS = sum_x mean_{i,j in C_x} D_h(b_i, b_j) - sum_{x != y} mean_{i in C_x, j in C_y} D_h;
    RHS = sum_x (2L / |C_x|) sum_{i in C_x} L_P(v_i, t_x) - sum_{x != y} D_h(t_x, t_y), over
    ordered class pairs. The mean pairwise distance between two classes is
    (K - mu_x . mu_y) / 2 with mu the class means of the codes: O(L K), not O(M^2).
    """
    codes = binarize(outputs).double()
    num_classes, num_bits = targets.shape
    one_hot = torch.nn.functional.one_hot(labels, num_classes).double()
    counts = one_hot.sum(0)
    present = counts > 0
    means = (one_hot.T @ codes)[present] / counts[present, None]
    pair = (num_bits - means @ means.T) / 2
    intra = pair.diagonal().sum()
    lhs = intra - (pair.sum() - intra)
    hinge = torch.relu(margin - outputs.double() * targets.double()[labels]).sum(1)
    per_class = one_hot.T @ hinge  # sum of L_P over each class
    big_l = int(present.sum())
    polarization = (2 * big_l * per_class[present] / counts[present]).sum()
    target_codes = targets.double()[present]
    target_pair = (num_bits - target_codes @ target_codes.T) / 2
    rhs = polarization - (target_pair.sum() - target_pair.diagonal().sum())
    return float(lhs), float(rhs)


def train_config(spec: dict, options: dict, output_dir: str) -> dict:
    """The ``run_experiment`` config of one run: DPN on ``hashing_cnn_small``, AdamW
    (weight decay 1e-4) with a cosine schedule, reported with ``ties="expected"``."""
    return {
        "dataset": options["dataset"],
        "method": "dpn",
        "bits": spec["bits"],
        "margin": spec["margin"],
        "target_miner": spec["target_miner"],
        "p": spec["p"],
        "seed": spec["seed"],
        "epochs": options["epochs"],
        "lr": options["lr"],
        "batch_size": options["batch_size"],
        "backbone": "hashing_cnn_small",
        "backbone_kwargs": {"widths": list(options["widths"])},
        "weight_decay": 1e-4,
        "ties": "expected",
        "output_dir": output_dir,
        "name": "run",
        "progress": False,
        "log_with": "none",
        "checkpoint_every": 0,
        # section 4 measures Algorithm 1 as written; the guarded defaults are measured by
        # benchmarks/results_dpn_variants.py
        **(
            {"warmup_epochs": 0, "update_every": 1, "min_distance_floor": None}
            if spec["target_miner"] == "adaptive"
            else {}
        ),
    }


def train_and_measure(spec: dict, options: dict) -> dict:
    """Train one DPN model through ``run_experiment`` and return the numbers every study may
    read from it: its retrieval report, plus what the studies measure on the model."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    # the run draws the same split from the same seed and default sizes
    protocol = load_protocol(options["dataset"], seed=spec["seed"])
    trained, prop3 = {}, []

    def after_epoch(epoch, model, method):
        # Proposition 3 is about the training codes: measured after every epoch.
        train_out, train_labels = encode_dataset(model, protocol.train)
        targets = method.target_miner.targets.cpu()
        prop3.append(proposition3_sides(train_out, train_labels, targets, spec["margin"]))
        trained.update(model=model, method=method)

    with tempfile.TemporaryDirectory() as output_dir:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # A --quick run's ternary codes may be all zero: the report says so (None).
            warnings.simplefilter("ignore", DegenerateTernaryCodesWarning)
            metrics = run_experiment(
                train_config(spec, options, output_dir), callbacks=[after_epoch]
            )
    report = metrics["last_epoch"]
    model, method = trained["model"], trained["method"]  # the last epoch's, as reported
    query_out, query_labels = encode_dataset(model, protocol.query)
    db_out, db_labels = encode_dataset(model, protocol.database)
    query_codes, db_codes = binarize(query_out), binarize(db_out)
    args = (query_codes, query_labels, db_codes, db_labels)
    targets = method.target_miner.targets.cpu()
    result = {
        "map": report["map"],
        "map_ternary": report["map_ternary"],  # None: degenerate (all-zero) ternary codes
        "ternary_zero_fraction": report["ternary_zero_fraction"],
        "targets_mean_distance": method.target_miner.mean_hamming_distance,
        "targets_min_distance": method.target_miner.min_hamming_distance,
    }
    result["prop3"] = prop3
    for rule in TIE_RULES:
        result[f"map_{rule}"] = mean_average_precision(*args, ties=rule, seed=spec["seed"])
    if abs(result["map_expected"] - report["map"]) > 1e-9:
        raise RuntimeError(
            f"re-encoded mAP {result['map_expected']} differs from the run's {report['map']}: "
            "the model or the split is not the run's"
        )
    # Same codes, database re-ordered by class: only the tie order differs.
    for name, descending in (("sorted_up", False), ("sorted_down", True)):
        order = torch.sort(db_labels, stable=True, descending=descending).indices
        result[f"map_index_{name}"] = mean_average_precision(
            query_codes, query_labels, db_codes[order], db_labels[order], ties="index"
        )
    result["query_ap"] = average_precision_per_query(*args, ties="expected")
    result["v_times_t"] = (query_out * targets[query_labels]).numpy()
    result["seconds"] = time.perf_counter() - start
    return result


def _worker(job):
    spec, options = job
    return spec_key(spec), train_and_measure(spec, options)


def run_all(specs: list[dict], options: dict, jobs: int) -> dict[str, dict]:
    """Train every distinct spec once (in ``jobs`` processes) and map key -> result."""
    unique = {spec_key(s): s for s in specs}
    work = [(s, options) for s in unique.values()]
    print(f"# {len(work)} training runs, {jobs} process(es)", file=sys.stderr)
    done = {}
    pool = get_context("spawn").Pool(jobs) if jobs > 1 else None
    results = pool.imap_unordered(_worker, work) if pool else map(_worker, work)
    for key, result in results:
        done[key] = result
        print(f"# {len(done)}/{len(work)} {key} {result['seconds']:.1f} s", file=sys.stderr)
    if pool:
        pool.close()
        pool.join()
    return done


# ----------------------------------------------------------------------------- studies


def mean_std(values) -> str:
    """``mean ± std`` over the seeds; None (a degenerate ternary mAP: all-zero codes, which
    the report does not score) is left out and counted."""
    values = list(values)
    degenerate = sum(v is None for v in values)
    values = [float(v) for v in values if v is not None]
    if not values:
        return "degenerate (all-zero codes)"
    if degenerate:
        return f"{mean_std(values)} ({degenerate} degenerate)"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


class Study:
    """Which runs a study needs, and how it turns their results into a table (and a plot)."""

    def __init__(self, options: dict):
        self.options = options
        self.seeds = options["seeds"]

    def results(self, done, **spec_kwargs) -> list[dict]:
        return [done[spec_key(run_spec(seed=s, **spec_kwargs))] for s in self.seeds]


class MarginStudy(Study):
    title = "Margin m (paper Table 2)"

    def specs(self):
        bits = self.options["margin_bits"]
        return [run_spec(bits, s, margin=m) for m in self.options["margins"] for s in self.seeds]

    def report(self, done, plot_dir):
        bits = self.options["margin_bits"]
        rows = []
        for m in self.options["margins"]:
            runs = self.results(done, bits=bits, margin=m)
            rows.append(
                [
                    f"{m:g}",
                    mean_std(r["map"] for r in runs),
                    mean_std(r["map_ternary"] for r in runs),
                    mean_std(r["ternary_zero_fraction"] for r in runs),
                ]
            )
        header = ["m", f"DPN mAP ({bits} bits)", "DPN-T mAP (threshold m)", "zeros in DPN-T"]
        return markdown_table(header, rows)


class RatioStudy(Study):
    title = "Ratio p of +1 bits in random targets (paper Figure 3)"

    def specs(self):
        return [
            run_spec(bits, s, p=p)
            for bits in self.options["ratio_bits"]
            for p in self.options["ratios"]
            for s in self.seeds
        ]

    def report(self, done, plot_dir):
        num_classes = load_protocol(self.options["dataset"], seed=0).num_classes
        rows, curves = [], {}
        for bits in self.options["ratio_bits"]:
            for p in self.options["ratios"]:
                runs = self.results(done, bits=bits, p=p)
                expected = RandomTargetMiner(num_classes, bits, p=p).expected_hamming_distance()
                maps = [r["map"] for r in runs]
                measured = [r["targets_mean_distance"] for r in runs]
                curves.setdefault(bits, []).append(
                    (p, statistics.mean(maps), expected, statistics.mean(measured))
                )
                rows.append(
                    [
                        bits,
                        f"{p:g}",
                        mean_std(maps),
                        f"{expected:.1f}",
                        mean_std(measured),
                        mean_std(r["targets_min_distance"] for r in runs),
                    ]
                )
        if plot_dir:
            plot_ratio(curves, plot_dir / "ratio_of_positive_bits.png")
        header = [
            "bits",
            "p",
            "mAP",
            "expected distance 2Kp(1-p)",
            "measured mean distance",
            "min distance",
        ]
        return markdown_table(header, rows)


class Prop3Study(Study):
    title = "Proposition 3 over training (paper Figure 2)"

    def specs(self):
        bits = self.options["margin_bits"]
        return [run_spec(bits, s) for s in self.seeds]

    def report(self, done, plot_dir):
        bits = self.options["margin_bits"]
        runs = self.results(done, bits=bits)
        rows = []
        for seed, run in zip(self.seeds, runs, strict=True):
            lhs = np.array([a for a, _ in run["prop3"]])
            rhs = np.array([b for _, b in run["prop3"]])
            pearson = float(np.corrcoef(lhs, rhs)[0, 1]) if lhs.std() and rhs.std() else math.nan
            rows.append(
                [
                    seed,
                    f"{lhs[0]:.1f} → {lhs[-1]:.1f}",
                    f"{rhs[0]:.1f} → {rhs[-1]:.1f}",
                    "yes" if bool((lhs <= rhs + 1e-9).all()) else "NO",
                    f"{pearson:.4f}",
                ]
            )
        if plot_dir:
            plot_prop3(runs[0]["prop3"], self.seeds[0], bits, plot_dir / "proposition3.png")
        header = [
            "seed",
            "LHS epoch 1 → last",
            "RHS epoch 1 → last",
            "LHS ≤ RHS every epoch",
            "Pearson r",
        ]
        return markdown_table(header, rows)


class VariantsStudy(Study):
    title = "DPN, DPN-A, DPN-T, DPN-A-T (paper Table 3's rows)"

    def specs(self):
        return [
            run_spec(bits, s, target_miner=miner)
            for bits in self.options["variant_bits"]
            for miner in ("random", "adaptive")
            for s in self.seeds
        ]

    def report(self, done, plot_dir):
        rows = []
        for name, miner, key in (
            ("DPN", "random", "map"),
            ("DPN-A", "adaptive", "map"),
            ("DPN-T", "random", "map_ternary"),
            ("DPN-A-T", "adaptive", "map_ternary"),
        ):
            row = [name]
            for bits in self.options["variant_bits"]:
                runs = self.results(done, bits=bits, target_miner=miner)
                row.append(mean_std(r[key] for r in runs))
            rows.append(row)
        header = ["method"] + [f"{b} bits" for b in self.options["variant_bits"]]
        return markdown_table(header, rows)


class TargetsStudy(Study):
    title = "Random vs Hadamard vs max-Hamming-distance targets"

    def specs(self):
        return [
            run_spec(bits, s, target_miner=miner)
            for bits in self.options["variant_bits"]
            for miner in ("random", "hadamard", "max-hamming")
            for s in self.seeds
        ]

    def report(self, done, plot_dir):
        rows = []
        for miner in ("random", "hadamard", "max-hamming"):
            row = [miner]
            for bits in self.options["variant_bits"]:
                runs = self.results(done, bits=bits, target_miner=miner)
                row.append(
                    f"{mean_std(r['map'] for r in runs)} "
                    f"(min d {statistics.mean(r['targets_min_distance'] for r in runs):.1f})"
                )
            rows.append(row)
        header = ["target_miner"] + [f"{b} bits" for b in self.options["variant_bits"]]
        return markdown_table(header, rows)


class OutputsStudy(Study):
    title = "Outputs v of correctly vs wrongly retrieved queries (paper Figure 5)"

    def specs(self):
        bits = self.options["margin_bits"]
        return [
            run_spec(bits, s, margin=m) for m in self.options["output_margins"] for s in self.seeds
        ]

    def report(self, done, plot_dir):
        bits = self.options["margin_bits"]
        rows, panels = [], []
        for m in self.options["output_margins"]:
            runs = self.results(done, bits=bits, margin=m)
            vt = np.concatenate([np.asarray(r["v_times_t"]) for r in runs])
            ap = np.concatenate([np.repeat(r["query_ap"], bits) for r in runs])
            good, bad = vt.ravel()[ap >= 0.5], vt.ravel()[ap < 0.5]
            query_ap = np.concatenate([r["query_ap"] for r in runs])
            panels.append((m, good, bad))
            for name, values, count in (
                ("AP ≥ 0.5", good, int((query_ap >= 0.5).sum())),
                ("AP < 0.5", bad, int((query_ap < 0.5).sum())),
            ):
                if len(values) == 0:
                    rows.append([f"{m:g}", name, 0, "-", "-", "-", "-"])
                    continue
                rows.append(
                    [
                        f"{m:g}",
                        name,
                        count,
                        f"{np.median(values):.2f}",
                        f"{np.mean(np.abs(values) <= m):.3f}",
                        f"{np.mean(values < 0):.3f}",
                        f"{np.median(np.abs(values)):.2f}",
                    ]
                )
        if plot_dir:
            plot_outputs(panels, bits, plot_dir / "outputs_correct_vs_wrong.png")
        header = [
            "m",
            "queries",
            "count (all seeds)",
            "median v·t",
            "fraction abs(v) ≤ m",
            "fraction v·t < 0 (wrong bit)",
            "median abs(v)",
        ]
        return markdown_table(header, rows)


class TiesStudy(Study):
    title = "mAP under each tie rule, and with the database sorted by class"

    def specs(self):
        return [run_spec(bits, s) for bits in self.options["tie_bits"] for s in self.seeds]

    def report(self, done, plot_dir):
        rows = []
        for bits in self.options["tie_bits"]:
            runs = self.results(done, bits=bits)
            spread = [max(r[k] for k in TIE_KEYS) - min(r[k] for k in TIE_KEYS) for r in runs]
            rows.append(
                [bits] + [mean_std(r[key] for r in runs) for key in TIE_KEYS] + [mean_std(spread)]
            )
        header = [
            "bits",
            "index (protocol order)",
            "random (seeded)",
            "expected (tie-aware)",
            "index, database sorted by class 0..9",
            "index, database sorted 9..0",
            "max - min",
        ]
        return markdown_table(header, rows)


TIE_KEYS = (
    "map_index",
    "map_random",
    "map_expected",
    "map_index_sorted_up",
    "map_index_sorted_down",
)
STUDY_CLASSES = {
    "margin": MarginStudy,
    "ratio": RatioStudy,
    "prop3": Prop3Study,
    "variants": VariantsStudy,
    "targets": TargetsStudy,
    "outputs": OutputsStudy,
    "ties": TiesStudy,
}


# ----------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ratio(curves: dict, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (bits, points) in zip(axes[0], sorted(curves.items()), strict=True):
        p, maps, expected, measured = (np.array(c) for c in zip(*points, strict=True))
        ax.plot(p, expected, "k--", label="expected 2Kp(1-p)")
        ax.plot(p, measured, "o-", label="measured (codebook mean)")
        ax.set_xlabel("ratio p of +1 bits")
        ax.set_ylabel("inter-class target distance")
        twin = ax.twinx()
        twin.plot(p, maps, "s-", color="tab:red", label="mAP")
        twin.set_ylabel("mAP", color="tab:red")
        ax.set_title(f"{bits} bits")
        # the mAP line lives on the twin axis: gather both axes' lines into one legend
        handles = ax.get_legend_handles_labels()[0] + twin.get_legend_handles_labels()[0]
        ax.legend(handles=handles, loc="lower center", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_prop3(points, seed: int, bits: int, path: Path) -> None:
    plt = _pyplot()
    lhs = [a for a, _ in points]
    rhs = [b for _, b in points]
    epochs = np.arange(1, len(points) + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    (left,) = ax.plot(epochs, lhs, "o-", label="LHS of eq. 7 (codes)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("LHS")
    twin = ax.twinx()
    (right,) = twin.plot(epochs, rhs, "s-", color="tab:red", label="RHS of eq. 7 (loss side)")
    twin.set_ylabel("RHS", color="tab:red")
    r = np.corrcoef(lhs, rhs)[0, 1]
    ax.set_title(f"Proposition 3, {bits} bits, seed {seed}: Pearson r = {r:.4f}", fontsize=10)
    ax.legend(handles=[left, right], loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_outputs(panels, bits: int, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.4), squeeze=False)
    for ax, (margin, good, bad) in zip(axes[0], panels, strict=True):
        values = np.concatenate([good, bad])
        # from the smallest value: the wrong-side tail (v·t < 0) is what the text discusses
        bins = np.linspace(values.min(), np.percentile(values, 99.5), 80)
        ax.hist(good, bins=bins, density=True, alpha=0.6, label=f"AP ≥ 0.5 ({len(good)} v)")
        if len(bad):
            ax.hist(bad, bins=bins, density=True, alpha=0.6, label=f"AP < 0.5 ({len(bad)} v)")
        for x in (-margin, margin):
            ax.axvline(x, color="red", linestyle=":")
        ax.set_xlabel("v · t (output times its class's target bit)")
        ax.set_ylabel("density (each group integrates to 1)")
        ax.set_title(f"m = {margin:g}, {bits} bits")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------- main


def build_options(args) -> dict:
    options = {
        "dataset": args.dataset,
        "seeds": args.seeds,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "widths": args.widths,
        "margins": MARGINS,
        "ratios": RATIOS,
        "margin_bits": 64,
        "ratio_bits": (16, 64),
        "variant_bits": (16, 32, 64, 128),
        "tie_bits": (16, 32, 64),
        "output_margins": (0.1, 1.0),
    }
    if args.bits:
        options.update(variant_bits=tuple(args.bits), tie_bits=tuple(args.bits))
    if args.quick:
        options.update(
            seeds=[0],
            epochs=2,
            margins=(0.1, 1.0),
            ratios=(0.2, 0.5),
            margin_bits=16,
            ratio_bits=(16,),
            variant_bits=(16,),
            tie_bits=(16,),
        )
    return options


def main(argv=None) -> dict[str, str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("studies", nargs="*", default=["all"], choices=["all", *STUDIES])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist-5k"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument(
        "--bits", type=int, nargs="+", help="code lengths of variants/targets/ties (16 .. 128)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="training processes in parallel")
    parser.add_argument("--plot-dir", type=Path, help="write the PNG plots here")
    parser.add_argument("--json", type=Path, help="also write the tables as JSON here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 2 epochs, 16 bits")
    args = parser.parse_args(argv)
    studies = list(STUDIES) if "all" in args.studies else list(dict.fromkeys(args.studies))
    options = build_options(args)
    if args.plot_dir:
        args.plot_dir.mkdir(parents=True, exist_ok=True)
    chosen = [STUDY_CLASSES[name](options) for name in studies]
    start = time.perf_counter()
    done = run_all([spec for study in chosen for spec in study.specs()], options, args.jobs)
    elapsed = time.perf_counter() - start
    tables = {}
    print(
        f"# {options['dataset']}, seeds {options['seeds']}, {options['epochs']} epochs, "
        f"hashing_cnn_small widths {options['widths']}, AdamW lr {options['lr']}, batch "
        f"{options['batch_size']}; mAP@all, ties='expected' unless said; mean ± std over seeds"
    )
    for name, study in zip(studies, chosen, strict=True):
        tables[name] = study.report(done, args.plot_dir)
        print(f"\n## {name}: {study.title}\n\n{tables[name]}")
    train_seconds = [r["seconds"] for r in done.values()]
    print(
        f"\n# {len(done)} runs in {elapsed:.0f} s wall; median "
        f"{statistics.median(train_seconds):.1f} s per run ({args.jobs} process(es), "
        "one thread each)"
    )
    if args.json:
        args.json.write_text(json.dumps(tables, indent=2))
    return tables


if __name__ == "__main__":
    main()
