"""The trackers a training run logs to (``--log-with``): ours and every one Accelerate has.

``csv`` is :class:`~pml_hashing.training.csv_tracker.CSVTracker` (no extra package; what
``pml-hashing plot`` reads); ``none`` logs nothing; every other name is one of Accelerate's
trackers (``accelerate.tracking.LOGGER_TYPE_TO_CLASS``: tensorboard, wandb, mlflow,
comet_ml, aim, clearml, dvclive, swanlab, trackio in accelerate 1.15). Several are given
comma-separated (``csv,tensorboard``). Accelerate drops a tracker whose package is missing
with a log line only; here a missing package is a ``ValueError`` before training starts,
naming the package and the command that installs it.
"""

from __future__ import annotations

from pathlib import Path

import accelerate.utils
from accelerate.tracking import LOGGER_TYPE_TO_CLASS

from .csv_tracker import CSVTracker

__all__ = ["ACCELERATE_TRACKERS", "TRACKER_NAMES", "build_trackers", "parse_log_with"]

# Accelerate's tracker names, as the installed version knows them.
ACCELERATE_TRACKERS: tuple[str, ...] = tuple(LOGGER_TYPE_TO_CLASS)
TRACKER_NAMES: tuple[str, ...] = ("csv", "none", *ACCELERATE_TRACKERS)
# Other spellings users type; the value is Accelerate's name.
_ALIASES = {"comet": "comet_ml", "comet-ml": "comet_ml"}
# The PyPI package of each tracker, where its name differs from the tracker's.
_PACKAGES = {"comet_ml": "comet-ml"}
# Trackers with an extra of pml-hashing (pyproject.toml's [project.optional-dependencies]).
_EXTRAS = {"tensorboard": "tensorboard"}


def parse_log_with(log_with: str | None) -> tuple[str, ...]:
    """The tracker names of a ``log_with`` value (comma-separated; ``none`` or empty: none).

    Raises:
        ValueError: an unknown name (the message lists :data:`TRACKER_NAMES`), or ``none``
            beside other names.
    """
    if log_with is None:
        return ()
    if not isinstance(log_with, str):
        raise ValueError(
            f"log_with must be a string of tracker names (e.g. 'csv,tensorboard'); got {log_with!r}"
        )
    names = [_ALIASES.get(n.strip().lower(), n.strip().lower()) for n in log_with.split(",")]
    names = [n for n in names if n]
    unknown = [n for n in names if n not in TRACKER_NAMES]
    if unknown:
        raise ValueError(
            f"log_with must be one or more of {list(TRACKER_NAMES)} (comma-separated); "
            f"got {unknown[0]!r}"
        )
    if "none" in names:
        if len(names) > 1:
            raise ValueError(f"log_with 'none' cannot be combined with others; got {log_with!r}")
        return ()
    return tuple(dict.fromkeys(names))


def _is_available(name: str) -> bool:
    return bool(getattr(accelerate.utils, f"is_{name}_available")())


def check_trackers_available(names) -> None:
    """Raise ``ValueError`` for the first Accelerate tracker whose package is missing."""
    for name in names:
        if name in ACCELERATE_TRACKERS and not _is_available(name):
            package = _PACKAGES.get(name, name)
            command = f"`pip install {package}`"
            if name in _EXTRAS:
                command = f"`pip install 'pml-hashing[{_EXTRAS[name]}]'` or {command}"
            raise ValueError(
                f"log_with {name!r} needs the {package!r} package, which is not installed: "
                f"{command} (or log with 'csv', which needs nothing)"
            )


def build_trackers(
    log_with: str | tuple[str, ...] | None, run_name: str, logging_dir: str | Path
) -> list:
    """The ``log_with`` list of an ``Accelerator`` for a run, checked before training.

    Args:
        log_with: tracker names, comma-separated (:data:`TRACKER_NAMES`), or the tuple
            that :func:`parse_log_with` gave (a config's ``tracker_names``).
        run_name: the run's name (the CSV tracker's and Accelerate's project name).
        logging_dir: where ``csv`` writes ``metrics.csv`` and ``hparams.json``
            (``runs/<name>/logs``); Accelerate's trackers write under the accelerator's
            ``project_config.logging_dir``.

    Returns:
        ``[CSVTracker(...)]`` and/or Accelerate's tracker names; empty for ``none``.

    Raises:
        ValueError: an unknown name, or a tracker whose package is missing (the message
            names the package and ``pip install`` command).
    """
    names = log_with if isinstance(log_with, tuple) else parse_log_with(log_with)
    check_trackers_available(names)
    return [CSVTracker(run_name, logging_dir) if n == "csv" else n for n in names]
