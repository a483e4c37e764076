"""Plots of a finished (or running) training run, from the CSV its tracker wrote.

``pml-hashing plot RUN_DIR`` calls :func:`plot_run`: it reads ``RUN_DIR/logs/metrics.csv``
(:class:`~pml_hashing.training.csv_tracker.CSVTracker`, the default ``--log-with csv``) and
writes PNGs with matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import csv
import math
import textwrap
from pathlib import Path

__all__ = ["plot_run", "read_run_log"]

# (file name, title, y label, [(logged name, line label), ...]); a figure whose names were
# never logged is skipped.
_FIGURES = (
    ("training_loss.png", "training loss", "mean loss over the epoch", [("train/loss", "train")]),
    ("validation_map.png", "validation mAP", "mAP", [("validation/map", "validation")]),
    (
        "target_distances.png",
        "Hamming distances between target codes",
        "bits",
        [
            ("targets/min_hamming_distance", "min over class pairs"),
            ("targets/mean_hamming_distance", "mean over class pairs"),
        ],
    ),
)


def _metrics_file(run_dir: Path) -> Path:
    for candidate in (run_dir / "logs" / "metrics.csv", run_dir / "metrics.csv"):
        if candidate.is_file():
            return candidate
    raise ValueError(
        f"{run_dir} holds no run logs: expected {run_dir / 'logs' / 'metrics.csv'}, written by "
        "a training run with --log-with csv (the default)"
    )


def read_run_log(run_dir) -> dict[str, list[tuple[int, float]]]:
    """The per-epoch series of a run's ``metrics.csv``: name -> ``[(epoch, value), ...]``.

    Rows logged at one step belong to the epoch logged with them (the ``epoch`` row); a
    resumed run appends, and a later row for an epoch replaces the earlier one.
    """
    run_dir = Path(run_dir)
    path = _metrics_file(run_dir)
    by_step: dict[int, dict[str, float]] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            if not row.get("step"):
                continue
            try:
                value = float(row["value"])
            except (TypeError, ValueError):
                continue  # a non-numeric value (a string hyperparameter) is not a curve
            by_step.setdefault(int(row["step"]), {})[row["name"]] = value
    series: dict[str, dict[int, float]] = {}
    for values in by_step.values():
        if "epoch" not in values:
            continue  # the final test/* numbers: one point, not a curve
        epoch = int(values["epoch"])
        for name, value in values.items():
            if name != "epoch" and math.isfinite(value):
                series.setdefault(name, {})[epoch] = value
    if not series:
        raise ValueError(f"{path} holds no per-epoch numbers yet (no epoch has finished)")
    return {name: sorted(points.items()) for name, points in series.items()}


def plot_run(run_dir, out=None) -> list[Path]:
    """Write the PNGs of a run: training loss, validation mAP and target-code distances per
    epoch (the last two when the run logged them).

    Args:
        run_dir: the run's folder (``runs/<name>``), holding ``logs/metrics.csv``.
        out: the folder to write into (default: ``run_dir``).

    Returns:
        The paths written.

    Raises:
        ValueError: the folder holds no run logs (the message names the file expected).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    series = read_run_log(run_dir)
    out = run_dir if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, title, ylabel, lines in _FIGURES:
        present = [(name, label) for name, label in lines if name in series]
        if not present:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for name, label in present:
            epochs, values = zip(*series[name], strict=True)
            ax.plot(epochs, values, "o-", label=label)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        # the run name on a line of its own, wrapped: "<run>: <title>" was clipped at the
        # figure's edges for the usual run names
        run_name = "\n".join(textwrap.wrap(run_dir.name, 60, break_on_hyphens=True))
        ax.set_title(f"{title}\n{run_name}", fontsize=9)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(present) > 1:
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / file_name, dpi=110)
        plt.close(fig)
        written.append(out / file_name)
    return written
