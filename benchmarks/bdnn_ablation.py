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

Training goes through ``pml_hashing.training.run_experiment`` (``--trainer run_experiment``,
the default: the project's CNN backbone, AdamW with weight decay l1, cosine schedule; the
bit statistics come from the run's checkpoint) or a small self-contained loop
(``--trainer builtin``: an MLP on the flattened images, Adam, the method's epoch hooks).
Timings are not the point here; the runs were made on a shared 2-core CPU.

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
from pml_hashing.evaluation import hamming_ball_statistics, mean_average_precision  # noqa: E402
from pml_hashing.methods import EncodedTrainingSet, create_method  # noqa: E402

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


def evaluate(query_codes, query_labels, db_codes, db_labels) -> dict:
    ball = hamming_ball_statistics(query_codes, query_labels, db_codes, db_labels, radius=2)
    balance, correlation, constant = code_statistics(db_codes)
    return {
        "mAP": mean_average_precision(query_codes, query_labels, db_codes, db_labels,
                                      ties="expected"),
        "P@r2": ball.precision,
        "empty@r2": ball.empty_fraction,
        "balance": balance,
        "corr": correlation,
        "const": constant,
    }


def stacked(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])
    return images.reshape(len(dataset), -1).float(), labels


def train_builtin(dataset, bits, method_kwargs, seed, epochs, batch_size, lr) -> dict:
    """A self-contained SH-BDNN run: an MLP on flattened images, Adam, the method's hooks."""
    protocol = load_protocol(dataset, seed=seed)
    torch.manual_seed(seed)
    x_train, y_train = stacked(protocol.train)
    num_train, input_dim = x_train.shape
    network = torch.nn.Sequential(
        torch.nn.Linear(input_dim, 256), torch.nn.ReLU(), torch.nn.Linear(256, bits)
    )
    method = create_method("sh-bdnn", protocol.num_classes, bits, seed=seed,
                           num_train=num_train, **method_kwargs)
    optimizer = torch.optim.Adam(network.parameters(), lr=lr, weight_decay=method.weight_decay)
    generator = torch.Generator().manual_seed(seed)

    def encode_training_set():
        with torch.no_grad():
            outputs = network(x_train)
        return EncodedTrainingSet(outputs, x_train, y_train, torch.arange(num_train))

    for epoch in range(epochs):
        network.eval()
        method.on_epoch_start(epoch, encode_training_set)
        network.train()
        order = torch.randperm(num_train, generator=generator)
        for start in range(0, num_train, batch_size):
            indices = order[start:start + batch_size]
            loss = method.compute_loss(network(x_train[indices]), y_train[indices],
                                       x_train[indices], indices)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        method.on_epoch_end(epoch)
    network.eval()
    with torch.no_grad():
        x_query, y_query = stacked(protocol.query)
        x_db, y_db = stacked(protocol.database)
        query_codes = to_numpy(binarize(network(x_query))).astype(np.int8)
        db_codes = to_numpy(binarize(network(x_db))).astype(np.int8)
    return evaluate(query_codes, to_numpy(y_query), db_codes, to_numpy(y_db))


def train_run_experiment(dataset, bits, method_kwargs, seed, epochs, batch_size, lr) -> dict:
    """An SH-BDNN run of ``pml_hashing.training.run_experiment``; bit statistics from its
    checkpoint, re-encoded here (its mAP is checked against the run's own report)."""
    from pml_hashing.training import encode_dataset, load_checkpoint, run_experiment

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
            "ties": "expected",
            "radius": 2,
            "output_dir": output_dir,
            "name": "run",
            "progress": False,
            "log_with": "none",
            "checkpoint_every": 0,
        }
        with contextlib.redirect_stdout(io.StringIO()):
            metrics = run_experiment(config)
        model, _, _, _ = load_checkpoint(Path(output_dir) / "run" / "checkpoint.safetensors")
    protocol = load_protocol(dataset, seed=seed)
    query_out, query_labels = encode_dataset(model, protocol.query)
    db_out, db_labels = encode_dataset(model, protocol.database)
    query_codes = to_numpy(binarize(query_out)).astype(np.int8)
    db_codes = to_numpy(binarize(db_out)).astype(np.int8)
    result = evaluate(query_codes, to_numpy(query_labels), db_codes, to_numpy(db_labels))
    reported = metrics["last_epoch"]
    if abs(result["mAP"] - reported["map"]) > 1e-6:
        raise RuntimeError(
            f"re-encoded mAP {result['mAP']} differs from the run's {reported['map']}: the "
            "checkpoint or the split does not match the run"
        )
    result["P@r2"] = reported["precision_within_radius"]
    result["empty@r2"] = reported["empty_ball_fraction"]
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist-5k"])
    parser.add_argument("--bits", type=int, nargs="+", default=[8, 16, 24, 32])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--trainer", default="run_experiment",
                        choices=["run_experiment", "builtin"])
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 bits, 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.bits, args.seeds, args.epochs, args.arms = [8], [0], 1, ["full", "neither"]
    train = train_builtin if args.trainer == "builtin" else train_run_experiment

    rows = []
    started = time.perf_counter()
    for bits in args.bits:
        for arm in args.arms:
            results = []
            for seed in args.seeds:
                results.append(train(args.dataset, bits, arm_kwargs(arm), seed, args.epochs,
                                     args.batch_size, args.lr))
                print(f"  {bits} bits, {arm}, seed {seed}: mAP {results[-1]['mAP']:.4f} "
                      f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
            rows.append((bits, arm, results))

    keys = ("mAP", "P@r2", "empty@r2", "balance", "corr", "const")
    print(f"SH-BDNN ablation on {args.dataset}: trainer {args.trainer}, {args.epochs} epochs, "
          f"batch {args.batch_size}, seeds {args.seeds}; medians over seeds "
          f"(mAP tie-aware, R = all; radius 2 inclusive)")
    print(f"{'bits':>4} {'arm':<16}" + "".join(f"{k:>10}" for k in keys))
    for bits, arm, results in rows:
        # nanmedian: the correlation is undefined (NaN) when fewer than two bits vary.
        medians = [float(np.nanmedian([r[k] for r in results])) for k in keys]
        print(f"{bits:>4} {arm:<16}" + "".join(f"{v:>10.4f}" for v in medians))
    print(f"total {time.perf_counter() - started:.0f} s (shared 2-core CPU)")


if __name__ == "__main__":
    main()
