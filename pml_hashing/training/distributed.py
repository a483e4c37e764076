"""What the processes of one run share: the main process's result, or its error.

Some steps run on the main process only (the run folder's lock, the resume check, the
CSV log's repair). The other processes wait for its answer in a collective call; if the
main process failed and said nothing, they would wait forever. :func:`on_main` sends the
error instead, of any type, so that every process raises it.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from typing import TypeVar

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list

__all__ = ["on_main", "process_state", "rebuild_error", "shared_token"]

T = TypeVar("T")


def process_state() -> PartialState:
    """This process's place in the process group, set up the way the trainer's
    ``Accelerator`` sets it up (a CPU group where there is no GPU), so the two agree."""
    return PartialState(cpu=not torch.cuda.is_available())


def on_main(action: Callable[[], T]) -> T:
    """Run ``action`` on the main process and give its result to every process.

    An error there, of any type, is raised on every process: the main process raises the
    error itself, the others an error of its nearest built-in type with its message
    (:func:`rebuild_error`).
    """
    state = process_state()
    error, result = None, None
    if state.is_main_process:
        try:
            result = action()
        except Exception as caught:
            error = caught
    shared = [None if error is None else _describe(error), result]
    if state.num_processes > 1:
        broadcast_object_list(shared)
    if error is not None:
        raise error
    if shared[0] is not None:
        raise rebuild_error(*shared[0])
    return shared[1]


def _describe(error: Exception) -> tuple[list[str], str, tuple]:
    """What crosses to the other processes: the type's names (its class, then its bases),
    the message, and the arguments when they are plain values."""
    plain = all(isinstance(a, (str, int, float, bool, type(None))) for a in error.args)
    names = [c.__name__ for c in type(error).__mro__]
    return names, str(error), tuple(error.args) if plain else (str(error),)


def rebuild_error(type_names: list[str], message: str, args: tuple = ()) -> Exception:
    """An error of the first built-in exception type among ``type_names`` (an error's
    class and its bases, most derived first) built from ``args`` (else ``message``);
    ``RuntimeError(message)`` when none can be built so."""
    for name in type_names:
        kind = getattr(builtins, name, None)
        if isinstance(kind, type) and issubclass(kind, Exception):
            try:
                return kind(*(args or (message,)))
            except TypeError:  # a type that needs other arguments (UnicodeDecodeError)
                continue
    return RuntimeError(message)


def shared_token() -> str:
    """A token that every process of the run holds the same (the main process's clock):
    temporary folders are then unique per run and agreed on by all processes."""
    token = [f"{time.time_ns():x}"]
    if process_state().num_processes > 1:
        broadcast_object_list(token)
    return token[0]
