"""How many CPU threads a training process uses, also under ``accelerate launch``.

``accelerate launch`` without a config file writes ``OMP_NUM_THREADS=1`` into the environment
of a single CPU process (``accelerate/commands/launch.py``: ``num_cpu_threads_per_process``
defaults to ``OMP_NUM_THREADS`` or 1, and ``utils/launch.py`` exports it; the larger value it
computes for ``--cpu`` runs is skipped when ``psutil.cpu_count(logical=False) / processes``
is 1). PyTorch then trains on one core of a machine that has several. A ``1`` written by
accelerate cannot be told apart from a user's own ``OMP_NUM_THREADS=1`` (or
``--num_cpu_threads_per_process 1``), so the rule is:

1. ``num_threads`` (the config key) when given;
2. else the ``PML_HASHING_NUM_THREADS`` environment variable when set;
3. else ``OMP_NUM_THREADS`` when set, except the value 1 inside ``accelerate launch`` (seen by
   the ``ACCELERATE_DYNAMO_BACKEND`` variable its launchers always export), which is
   accelerate's default;
4. else the cores this process may run on (``os.sched_getaffinity``) divided by the processes
   on this machine (``LOCAL_WORLD_SIZE``), at least 1.

To really train on one thread under ``accelerate launch``, pass ``--num-threads 1`` or set
``PML_HASHING_NUM_THREADS=1``.
"""

from __future__ import annotations

import os

import torch

__all__ = ["available_cores", "configure_threads", "resolve_num_threads"]

ENV_VAR = "PML_HASHING_NUM_THREADS"
# Exported by every accelerate launcher (simple, multi-GPU/CPU, DeepSpeed, FSDP, ...).
_ACCELERATE_MARKER = "ACCELERATE_DYNAMO_BACKEND"


def _positive_int(value, name: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool) or number < 1 or str(number) != str(value).strip():
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return number


def available_cores() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def max_loader_workers() -> int:
    """The most data-loader worker processes a run may ask for: 4 per available CPU, at
    least 8."""
    return max(8, 4 * available_cores())


def resolve_num_threads(
    num_threads: int | None = None, environ: dict[str, str] | None = None
) -> tuple[int, str]:
    """The thread count of this process by the module's rule, and where it came from.

    Args:
        num_threads: an explicit count (the ``num_threads`` config key); ``None`` to decide.
        environ: the environment to read (default ``os.environ``).

    Returns:
        ``(threads, source)``, source one of ``"num_threads"``, ``"PML_HASHING_NUM_THREADS"``,
        ``"OMP_NUM_THREADS"``, ``"cores"``.
    """
    env = os.environ if environ is None else environ
    if num_threads is not None:
        return _positive_int(num_threads, "num_threads"), "num_threads"
    if env.get(ENV_VAR, "").strip():
        return _positive_int(env[ENV_VAR], ENV_VAR), ENV_VAR
    omp = env.get("OMP_NUM_THREADS", "").strip()
    under_accelerate = _ACCELERATE_MARKER in env
    if omp and not (under_accelerate and omp == "1"):
        return _positive_int(omp, "OMP_NUM_THREADS"), "OMP_NUM_THREADS"
    local_processes = env.get("LOCAL_WORLD_SIZE", "").strip() or "1"
    local_processes = _positive_int(local_processes, "LOCAL_WORLD_SIZE")
    return max(1, available_cores() // local_processes), "cores"


def configure_threads(num_threads: int | None = None) -> int:
    """Set PyTorch's intra-op threads (and faiss's OpenMP threads) by the module's rule.

    Call it once at the start of a run, before the first parallel operation.

    Returns:
        The number of threads set.
    """
    threads, _ = resolve_num_threads(num_threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except (ImportError, AttributeError):  # pragma: no cover - faiss is a dependency
        pass
    return threads
