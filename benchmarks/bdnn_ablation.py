"""SH-BDNN ablation: what the balance and independence terms do to retrieval and to the codes.

Trains SH-BDNN (Do, Doan, Cheung, ECCV 2016) with and without the balance term (l4) and the
independence term (l3) at several code lengths on a bundled data set, and prints, per arm and
code length, the median over seeds of:

* mAP: mAP@R over the database (R = all for the bundled sets), tie-aware ("expected" over
  random orders inside each tie group, He et al. 2018), so that no tie order favours an arm;
* P@r2: mean precision within Hamming radius 2 (an empty ball counts 0, as in BDNN);
* empty@r2: the fraction of queries whose radius-2 ball is empty;
* balance: mean over bits of |mean of the bit over the database codes| (0 = balanced);
* corr: mean |off-diagonal| of the correlation matrix of the database codes' bits (bits that
  are constant over the database are left out of it, and counted in "const").

Arms: ``full`` (the authors' weights), ``no-balance`` (l4 = 0), ``no-independence`` (l3 = 0),
``neither`` (l3 = l4 = 0), all with the method's default ``full_data_scale`` (the batch-summed
similarity and balance terms times M / m, so that they estimate the authors' full-batch
terms), and ``unscaled`` (the authors' weights on the raw batch terms, ``full_data_scale``
off).

Training goes through ``pml_hashing.training.run_experiment`` (the training job of
``recipes/train.py``: the project's ``hashing_cnn_small`` backbone, ``--widths`` wide, AdamW
with weight decay l1, cosine schedule); mAP, P@r2 and empty@r2 are the run's retrieval
report, and the bit statistics come from the trained model (kept by a ``run_experiment``
callback) on the database. Timings are not the point here; the runs were made on a shared
2-core CPU.

    python benchmarks/bdnn_ablation.py                      # digits, 8/16/24/32 bits, 3 seeds
    python benchmarks/bdnn_ablation.py --dataset mnist-5k --seeds 0
    python benchmarks/bdnn_ablation.py --quick              # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from pml_hashing.codes import binarize, to_numpy  # noqa: E402
from pml_hashing.data import load_protocol  # noqa: E402
from pml_hashing.training import encode_dataset, run_experiment  # noqa: E402

DEFAULTS = {"l1": 1e-5, "l2": 5e-2, "l3": 1e-2, "l4": 5e-7, "l5": 1e-2}
ARMS = ("full", "no-balance", "no-independence", "neither", "unscaled")


def arm_kwargs(arm: str) -> dict:
    """``SHBDNNMethod`` keyword arguments of an ablation arm."""
    kwargs = dict(DEFAULTS)
    if arm in ("no-balance", "neither"):
        kwargs["l4"] = 0.0
    if arm in ("no-independence", "neither"):
        kwargs["l3"] = 0.0
    kwargs["full_data_scale"] = arm != "unscaled"
    return kwargs


def code_statistics(codes: np.ndarray) -> tuple[float, float, int]:
    """(mean |bit mean|, mean |off-diagonal correlation| over non-constant bits, #constant)."""
    codes = codes.astype(np.float64)
    balance = float(np.abs(codes.mean(axis=0)).mean())
    varying = codes.std(axis=0) > 0
    kept = codes[:, varying]
    if kept.shape[1] < 2:
        return balance, float("nan"), int((~varying).sum())
    correlation = np.corrcoef(kept, rowvar=False)
    off_diagonal = correlation[~np.eye(kept.shape[1], dtype=bool)]
    return balance, float(np.abs(off_diagonal).mean()), int((~varying).sum())


def train(dataset, bits, method_kwargs, seed, epochs, batch_size, lr, widths) -> dict:
    """One SH-BDNN run of ``pml_hashing.training.run_experiment``: its retrieval report
    (mAP, P@r2, empty@r2) and the bit statistics of its database codes."""
    trained = {}

    def keep_model(epoch, model, method):
        trained["model"] = model  # after the last epoch: the model the report evaluated

    with tempfile.TemporaryDirectory() as output_dir:
        config = {
            "dataset": dataset,
            "method": "sh-bdnn",
            "bits": bits,
            "epochs": epochs,
            "seed": seed,
            "batch_size": batch_size,
            "lr": lr,
            "weight_decay": method_kwargs["l1"],
            "method_kwargs": method_kwargs,
            "backbone_kwargs": {"widths": list(widths)},
            "ties": "expected",
            "radius": 2,
            "output_dir": output_dir,
            "name": "run",
            "progress": False,
            "log_with": "none",
            "checkpoint_every": 0,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = run_experiment(config, callbacks=[keep_model])
    report = metrics["last_epoch"]
    protocol = load_protocol(dataset, seed=seed)  # the run's split (same seed and sizes)
    db_out, _ = encode_dataset(trained["model"], protocol.database)
    balance, correlation, constant = code_statistics(to_numpy(binarize(db_out)))
    return {
        "mAP": report["map"],
        "P@r2": report["precision_within_radius"],
        "empty@r2": report["empty_ball_fraction"],
        "balance": balance,
        "corr": correlation,
        "const": constant,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist-5k"])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 16, 24, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument(
        "--widths",
        type=int,
        nargs="+",
        default=[16, 32, 64],
        help="channel widths of the hashing_cnn_small backbone",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 bits, 1 seed, 1 epoch")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: on a shared CPU, more threads than "
        "free cores slow this small CNN down many times)",
    )
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        run_ablation(args)
    finally:
        torch.set_num_threads(threads)


def run_ablation(args) -> None:
    if args.quick:
        args.bits, args.seeds, args.epochs, args.arms = [8], [0], 1, ["full", "neither"]
    rows = []
    started = time.perf_counter()
    for bits in args.bits:
        for arm in args.arms:
            results = []
            for seed in args.seeds:
                results.append(
                    train(
                        args.dataset,
                        bits,
                        arm_kwargs(arm),
                        seed,
                        args.epochs,
                        args.batch_size,
                        args.lr,
                        args.widths,
                    )
                )
                print(
                    f"  {bits} bits, {arm}, seed {seed}: mAP {results[-1]['mAP']:.4f} "
                    f"({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            rows.append((bits, arm, results))

    keys = ("mAP", "P@r2", "empty@r2", "balance", "corr", "const")
    print(
        f"SH-BDNN ablation on {args.dataset}: run_experiment, hashing_cnn_small widths "
        f"{args.widths}, {args.epochs} epochs, "
        f"batch {args.batch_size}, seeds {args.seeds}; medians over seeds "
        f"(mAP tie-aware, R = all; radius 2 inclusive)"
    )
    print(f"{'bits':>4} {'arm':<16}" + "".join(f"{k:>10}" for k in keys))
    for bits, arm, results in rows:
        # nanmedian: the correlation is undefined (NaN) when fewer than two bits vary.
        medians = [float(np.nanmedian([r[k] for r in results])) for k in keys]
        print(f"{bits:>4} {arm:<16}" + "".join(f"{v:>10.4f}" for v in medians))
    print(f"total {time.perf_counter() - started:.0f} s (shared 2-core CPU)")


if __name__ == "__main__":
    main()
