"""Start-up: the seconds a user waits before anything happens, against ``import torch``.

Every command runs as a fresh process, as a user starts it; the rounds are interleaved so
that load drifts hit every command alike, and each row prints its median beside the
median of the anchor measured in the same run (``python -c "import torch"``: torch's own
import, which every command needs) and the difference (goal: within 1 s of the anchor),
in wall and in CPU seconds.

* ``python recipes/train.py --help`` and a usage error (``--bits 7``): the recipe's parser
  only (the Trainer, Accelerate, timm and faiss are imported after the flags are read);
* ``pml-hashing --help`` (``python -m pml_hashing.cli``) and a usage error;
* ``accelerate launch`` with a script that does nothing but ``import torch``: the launcher's
  own start-up and exit (it imports torch itself, then starts the script in a second
  interpreter), which is not the package's and which every ``accelerate launch`` pays. Twice:
  the ``accelerate`` command (the README's), whose CLI imports every subcommand, and with it
  timm, torchvision and ``torch._dynamo`` when timm is installed (``accelerate/commands/
  estimate.py``); and ``python -m accelerate.commands.launch``, the same launcher without them;
* ``import pml_hashing.training.trainer``: what the main job imports before its first step.

    python benchmarks/bench_startup.py               # 5 rounds
    python benchmarks/bench_startup.py --rounds 9
    python benchmarks/bench_startup.py --root ../other-checkout   # time another version
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _accelerate_command() -> str:
    """The ``accelerate`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("accelerate")
    return str(beside) if beside.exists() else (shutil.which("accelerate") or "accelerate")


def commands(torch_script: str) -> dict[str, list[str]]:
    py = sys.executable
    return {
        'python -c "import torch" (anchor)': [py, "-c", "import torch"],
        "python recipes/train.py --help": [py, "recipes/train.py", "--help"],
        "python recipes/train.py --bits 7 (usage error)": [py, "recipes/train.py", "--bits", "7"],
        "pml-hashing --help": [py, "-m", "pml_hashing.cli", "--help"],
        "pml-hashing index build (usage error)": [py, "-m", "pml_hashing.cli", "index", "build"],
        "accelerate launch (script: import torch)": [
            *(_accelerate_command(), "launch", "--num_processes", "1"),
            *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
            torch_script,
        ],
        "python -m accelerate.commands.launch (same script)": [
            *(py, "-m", "accelerate.commands.launch", "--num_processes", "1"),
            *("--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"),
            torch_script,
        ],
        "import pml_hashing.training.trainer": [py, "-c", "import pml_hashing.training.trainer"],
    }


def main(argv=None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--root", type=Path, default=ROOT, help="checkout whose recipe and package are timed"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "just_torch.py"
        script.write_text("import torch\n")
        cmds = commands(str(script))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        cpu: dict[str, list[float]] = {name: [] for name in cmds}
        for round_ in range(args.rounds):
            order = list(cmds) if round_ % 2 == 0 else list(cmds)[::-1]
            for name in order:
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                start = time.perf_counter()
                subprocess.run(cmds[name], cwd=root, env=env, capture_output=True, check=False)
                times[name].append(time.perf_counter() - start)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu[name].append(
                    after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
                )
    medians = {name: statistics.median(t) for name, t in times.items()}
    cpu_medians = {name: statistics.median(t) for name, t in cpu.items()}
    anchor = medians['python -c "import torch" (anchor)']
    cpu_anchor = cpu_medians['python -c "import torch" (anchor)']
    print(
        f"median of {args.rounds} interleaved rounds, seconds; machine: {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end (timings are indicative when shared); "
        f"code: {root}"
    )
    # CPU seconds (user + system of the process and its children) move much less than
    # wall seconds when other jobs share the cores.
    print(
        "| command | wall s | anchor wall s (same run) | wall minus anchor | wall / anchor "
        "| CPU s | CPU minus anchor |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, value in medians.items():
        print(
            f"| {name} | {value:.2f} | {anchor:.2f} | {value - anchor:+.2f} "
            f"| {value / anchor:.2f} | {cpu_medians[name]:.2f} "
            f"| {cpu_medians[name] - cpu_anchor:+.2f} |"
        )
    return medians


if __name__ == "__main__":
    main()
