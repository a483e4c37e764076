"""The training loop moved to :mod:`pml_hashing.training.trainer` (the ``Trainer``); these
names stay importable from here."""

from .trainer import _evaluate, _in_chans, build_model, build_protocol, run_experiment

__all__ = ["_evaluate", "_in_chans", "build_model", "build_protocol", "run_experiment"]
