"""Start a script under ``accelerate launch`` as a user would: a fresh interpreter per
process (forking the test process, as ``debug_launcher`` does, deadlocks once torch's or
faiss's threads exist), CPU processes, no mixed precision or dynamo."""

from __future__ import annotations

import os
import subprocess
import sys


def accelerate_launch(
    script, *args, num_processes: int = 1, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``script args`` under ``accelerate launch`` with ``num_processes`` CPU processes
    (a process group through torchrun when more than one); the completed process."""
    group = ["--multi_gpu"] if num_processes > 1 else []
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *group,
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        str(script),
        *map(str, args),
    ]
    env = dict(os.environ)
    if num_processes > 1:
        env.update(ACCELERATE_USE_CPU="true", OMP_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
