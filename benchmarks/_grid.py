"""What the resumable result grids (``results_baselines.py``, ``results_families.py``) share:
the results file (one JSON record per line, appended by workers), a table cell of seeds, and
the worker processes of ``--jobs N``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np


def read_results(path: Path) -> list[dict]:
    """The records of a results file (none when it does not exist yet)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cell_text(values) -> str:
    """``mean ± sample std (n)`` of one table cell; ``—`` without values."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f} (1)"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f} ({len(values)})"


def run_workers(script: str, argv: list[str] | None, jobs: int) -> None:
    """Run ``script grid`` in ``jobs`` processes, worker ``i`` of ``jobs`` each, with the
    caller's other flags (one thread each); a failed worker is a SystemExit."""
    clean, skip = [], False
    for a in list(argv if argv is not None else sys.argv[1:]):
        if skip:
            skip = False
        elif a == "--jobs":
            skip = True
        elif a not in ("grid", "all", "report") and not a.startswith("--jobs="):
            clean.append(a)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, script, "grid", *clean, "--worker", str(i), "--workers", str(jobs)],
            env=env,
        )
        for i in range(jobs)
    ]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a grid worker failed: exit codes {codes}")
