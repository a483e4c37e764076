"""The main job as the README launches it against a plain PyTorch script run with ``python``.

Both run as subprocesses, as a user would start them, so that what ``accelerate launch``
does to the process (it writes ``OMP_NUM_THREADS=1``) is measured too:

* recipe: ``accelerate launch recipes/train.py`` with the default config (the main job);
  its step rate per epoch comes from ``metrics.json`` (``epoch_seconds``);
* plain, same model: ``python benchmarks/plain_dpn.py`` with the recipe's model, batch, bits
  and epochs: a hand-written loop over tensors indexed directly;
* plain anchor (full run only): the plain script with the three-conv CNN of 32-64-128
  channels, batch 64, 10 epochs: the wall time the main job must not exceed (issue 14).

Repeats are interleaved pairs so that load drifts hit every side alike: pair i runs every
side with ``--seed i`` (the main job's quality is a mean over seeds, not seed 0's number).
Printed: each pair's wall times and ratios (recipe / plain and recipe / anchor, goal <= 1.0
in every pair), the recipe's mAP@all per seed and its mean (goal >= 0.98), then medians.
Step rates are medians over the epochs after the first.

    python benchmarks/bench_training_throughput.py              # main job, 3 repeats
    python benchmarks/bench_training_throughput.py --epochs 3   # step rates only
    python benchmarks/bench_training_throughput.py --quick      # a smoke run (digits)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(cmd: list[str]) -> tuple[float, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}")
    return wall, out.stdout


def recipe(flags: list[str], seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["accelerate", "launch", "recipes/train.py", "--output-dir", tmp, "--name", "b"]
        wall, _ = _run(cmd + ["--no-progress", "--seed", str(seed)] + flags)
        metrics = json.loads((Path(tmp) / "b" / "metrics.json").read_text())
    steps = metrics["sizes"]["train"] // metrics["batch_size"]
    rates = [steps / s for s in metrics["epoch_seconds"]]
    loop = sum(metrics["epoch_seconds"])
    return {
        "wall": wall,
        "steps/s": statistics.median(rates[1:] or rates),
        "map": metrics["last_epoch"]["map"],
        "map_ternary": metrics["last_epoch"].get("map_ternary"),
        "threads": metrics.get("torch_threads", "-"),
        # where the wall time goes: process start-up and imports (accelerate launch, torch),
        # the epochs' step loops, the rest of build + fit (data, model, checkpoints, the
        # epochs' hooks), and the report (encoding, evaluation, final checkpoint)
        "profile": {
            "start-up": wall - metrics["total_seconds"],
            "steps": loop,
            "build + checkpoints + hooks": metrics["train_seconds"] - loop,
            "evaluation + final write": metrics["total_seconds"] - metrics["train_seconds"],
        },
    }


def plain(
    dataset: str, widths, batch_size: int, bits: int, epochs: int, lr: float, seed: int
) -> dict:
    cmd = [sys.executable, "benchmarks/plain_dpn.py", "--dataset", dataset, "--epochs", str(epochs)]
    cmd += ["--batch-size", str(batch_size), "--bits", str(bits), "--lr", str(lr)]
    cmd += ["--seed", str(seed)]
    wall, stdout = _run(cmd + ["--widths", *map(str, widths)])
    result = json.loads(stdout.strip().splitlines()[-1])
    rates = result["steps_per_second"]
    return {
        "wall": wall,
        "steps/s": statistics.median(rates[1:] or rates),
        "map": result["map"],
        "threads": result["torch_threads"],
    }


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (digits)")
    parser.add_argument("--epochs", type=int, help="epochs of both (default: the main job's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from pml_hashing.training import ExperimentConfig

    config = ExperimentConfig()
    widths = config.backbone_kwargs.get("widths", (32, 64, 128))
    dataset, epochs, flags = config.dataset, config.epochs, []
    if args.quick:
        dataset, epochs, args.repeats, widths = "digits", 2, 1, (8, 16)
        flags = ["--dataset", dataset, "--backbone-kwargs", "{widths: [8, 16]}"]
    if args.epochs:
        epochs = args.epochs
    if epochs != config.epochs or args.quick:
        flags += ["--epochs", str(epochs)]
    anchor = not (args.quick or args.epochs)
    runs: dict[str, list[dict]] = {"plain": [], "recipe": [], "anchor": []}
    for seed in range(args.repeats):  # interleaved pairs, so drift hits every side alike
        runs["plain"].append(
            plain(dataset, widths, config.batch_size, config.bits, epochs, config.lr, seed)
        )
        runs["recipe"].append(recipe(flags, seed))
        if anchor:
            runs["anchor"].append(plain(dataset, (32, 64, 128), 64, config.bits, 10, 3e-3, seed))

    def med(side, key):
        return statistics.median(r[key] for r in runs[side])

    names = {
        "plain": f"plain PyTorch, python (same model, {epochs} epochs)",
        "recipe": f"recipe, accelerate launch ({epochs} epochs)",
        "anchor": "plain anchor, python (32-64-128, batch 64, 10 epochs)",
    }
    rows = []
    for side in ("plain", "recipe", "anchor"):
        if runs[side]:
            rows.append(
                {
                    "loop": names[side],
                    "steps/s": med(side, "steps/s"),
                    "wall": med(side, "wall"),
                    "map": statistics.mean(r["map"] for r in runs[side]),
                    "threads": runs[side][0]["threads"],
                }
            )
    print(
        f"{dataset}, {config.bits} bits, batch {config.batch_size}, widths {tuple(widths)}; "
        f"{args.repeats} interleaved pairs, pair i with seed i; machine: {os.cpu_count()} CPUs"
    )
    print_pairs(runs)
    print("\nmedians over the pairs (mAP@all: mean over the seeds)")
    print("| run | torch threads | steps/s | wall s | mAP@all |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['loop']} | {row['threads']} | {row['steps/s']:.2f} | {row['wall']:.1f} "
            f"| {row['map']:.4f} |"
        )
    if runs["recipe"]:
        parts = runs["recipe"][0]["profile"]
        print("\nrecipe wall time by phase, seconds (median over repeats):")
        print("| " + " | ".join(parts) + " |")
        print("|" + "---|" * len(parts))
        print(
            "| "
            + " | ".join(
                f"{statistics.median(r['profile'][k] for r in runs['recipe']):.1f}" for k in parts
            )
            + " |"
        )
    rate_ratio = rows[1]["steps/s"] / rows[0]["steps/s"]
    print(f"\nstep rate, recipe / plain (same model and batch): {rate_ratio:.3f} (goal >= 0.95)")
    for side in ("plain", "anchor"):
        if runs[side]:
            ratios = [
                r["wall"] / p["wall"] for r, p in zip(runs["recipe"], runs[side], strict=True)
            ]
            print(
                f"wall, recipe / {side}: worst pair {max(ratios):.3f}, median "
                f"{statistics.median(ratios):.3f} (goal <= 1.0 in every pair)"
            )
    return rows


def print_pairs(runs: dict) -> None:
    """One row per pair: its seed, each side's wall time and mAP, the recipe's ratios."""
    sides = [side for side in ("plain", "recipe", "anchor") if runs[side]]
    others = [side for side in sides if side != "recipe"]
    head = ["seed"] + [f"{side} wall s" for side in sides]
    head += [f"recipe / {side}" for side in others]
    head += ["recipe mAP@all / DPN-T"] + [f"{side} mAP@all" for side in others]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for seed in range(len(runs["recipe"])):
        recipe_run = runs["recipe"][seed]
        cells = [str(seed)] + [f"{runs[side][seed]['wall']:.1f}" for side in sides]
        cells += [f"{recipe_run['wall'] / runs[side][seed]['wall']:.3f}" for side in others]
        ternary = recipe_run["map_ternary"]
        cells.append(f"{recipe_run['map']:.4f} / " + ("-" if ternary is None else f"{ternary:.4f}"))
        cells += [f"{runs[side][seed]['map']:.4f}" for side in others]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
