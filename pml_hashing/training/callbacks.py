"""Per-epoch behaviour of a :class:`~pml_hashing.training.Trainer`, all called the same way.

The trainer calls every callback's ``on_step_end`` after each batch, ``on_epoch_end`` after
each epoch and ``on_report`` when it writes the report, in order: validation, the user's,
tracking, checkpoint. It never asks what type a callback is; a callback reads what it
needs from the trainer (``trainer.stop_requested`` when ``max_train_steps`` is reached).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .evaluation import EvaluationSettings, validation_map

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = [
    "Callback",
    "CheckpointCallback",
    "FunctionCallback",
    "TrackingCallback",
    "ValidationCallback",
    "as_callbacks",
    "trainer_callbacks",
]


class Callback:
    """Per-epoch behaviour whose state is saved in the trainer's checkpoints.

    ``state_dict()`` may hold tensors (saved in safetensors) and JSON values; ``name``
    keys it in the checkpoint, so it must be unique among a trainer's callbacks.
    """

    name = "callback"

    def on_step_end(self, trainer: Trainer) -> None:
        """After every batch (``trainer.global_step``, ``trainer.batch_in_epoch``)."""

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        """After every finished epoch; ``logs`` (this epoch's numbers) may be added to."""

    def on_report(self, trainer: Trainer, metrics: dict) -> None:
        """When the trainer reports; ``metrics`` (``last_epoch`` evaluated) may be added to."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave."""


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, model, method)`` run after every epoch (``epoch`` counts
    from 1; ``model`` is the unwrapped ``HashingModel``), for studies that measure every
    epoch. It keeps no state, so it is simply called again on the epochs after a resume."""

    def __init__(self, function, name: str):
        self.function = function
        self.name = name

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        self.function(trainer.epoch, trainer.unwrapped, trainer.method)


def as_callbacks(callbacks) -> list[Callback]:
    """Callback objects (anything with ``on_epoch_end``) as given; plain functions wrapped
    in :class:`FunctionCallback`."""
    out = []
    for i, callback in enumerate(callbacks or []):
        if hasattr(callback, "on_epoch_end"):
            out.append(callback)
        elif callable(callback):
            out.append(FunctionCallback(callback, f"function_{i}"))
        else:
            raise TypeError(
                f"callbacks must be Callback objects or functions (epoch, model, method); "
                f"got {type(callback).__name__}"
            )
    return out


def trainer_callbacks(callbacks=None) -> list[Callback]:
    """A trainer's callbacks in the order they run: validation, the user's (``callbacks``),
    tracking, checkpoint; their names key their state in checkpoints, so they are unique."""
    out = [ValidationCallback(), *as_callbacks(callbacks), TrackingCallback(), CheckpointCallback()]
    names = [c.name for c in out]
    if len(set(names)) != len(names):
        raise ValueError(f"callback names must be unique; got {names}")
    return out


def _clone_state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class ValidationCallback(Callback):
    """mAP on the validation split after every epoch, and the best epoch's model and method
    state, evaluated as ``best_by_validation`` in the report. Part of the checkpoint, so a
    resumed run selects the same best epoch as an uninterrupted one."""

    name = "validation"

    def __init__(self):
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_map = -1.0
        self.best_model: dict | None = None
        self.best_method: dict | None = None

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.protocol.validation is None:
            return
        settings = EvaluationSettings.of(trainer.config)
        value = validation_map(
            trainer.unwrapped, trainer.method, trainer.protocol, settings, trainer.accelerator
        )
        logs["validation/map"] = value
        self.history.append({"epoch": trainer.epoch, "map": value})
        if value > self.best_map:
            self.best_epoch, self.best_map = trainer.epoch, value
            self.best_model = _clone_state(trainer.unwrapped)
            self.best_method = _clone_state(trainer.method)

    def on_report(self, trainer: Trainer, metrics: dict) -> None:
        if self.best_model is None:
            return
        metrics["validation"] = self.history
        metrics["best_epoch_by_validation"] = self.best_epoch
        if self.best_epoch == trainer.epoch and not trainer.stopped_mid_epoch:
            metrics["best_by_validation"] = metrics["last_epoch"]
            return
        last_model, last_method = _clone_state(trainer.unwrapped), _clone_state(trainer.method)
        trainer.unwrapped.load_state_dict(self.best_model)
        trainer.method.load_state_dict(self.best_method)
        metrics["best_by_validation"] = trainer.evaluate()
        trainer.unwrapped.load_state_dict(last_model)
        trainer.method.load_state_dict(last_method)

    def state_dict(self) -> dict:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_map": self.best_map,
            "best_model": self.best_model,
            "best_method": self.best_method,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.best_epoch, self.best_map = state["best_epoch"], state["best_map"]
        self.best_model, self.best_method = state["best_model"], state["best_method"]


class TrackingCallback(Callback):
    """Logs each epoch's numbers to the trackers and prints one line per epoch."""

    name = "tracking"

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        trainer.accelerator.log(logs, step=trainer.global_step)
        line = f"epoch {trainer.epoch}/{trainer.config.epochs}: loss {logs['train/loss']:.4f}"
        if "validation/map" in logs:
            line += f", validation mAP {logs['validation/map']:.4f}"
        trainer.accelerator.print(line, flush=True)


class CheckpointCallback(Callback):
    """A resumable checkpoint every ``checkpoint_every`` epochs, after the last epoch (so
    that a finished run can be resumed with more epochs) and when a stop is requested (so
    that a stop is always resumable); none with ``checkpoint_every`` 0. The last callback."""

    name = "checkpoint"

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        every = trainer.config.checkpoint_every
        if not every:
            return
        if trainer.stop_requested or trainer.epoch % every == 0:
            trainer.save_state()
        elif trainer.epoch >= trainer.config.epochs:
            trainer.save_state()
