"""Garbage collection in a process that runs one job and exits (the recipes run as scripts).

Starting a run creates some 470,000 Python objects (torch, Accelerate, PML, scipy,
``torch._dynamo``) that live until the process ends. CPython's full collections walk every
one of them, and none is garbage: in the main job (``accelerate launch recipes/train.py``)
that was seven full passes, 0.9 s, counted with ``gc.callbacks``, and one more at exit.
So a recipe run as a script pauses collection while it imports and builds
(:func:`pause_collection`) and then freezes what exists (:func:`freeze_and_resume`):
``gc.freeze()`` moves the objects to a permanent generation that later collections, the one at
exit included, skip. Objects made afterwards (batches, autograd graphs, metrics) are collected
as usual, until the run's outputs are written and the process is about to exit
(:func:`freeze_for_exit`: the interpreter's last collection would walk the objects the
evaluation imported, about 0.2 s, to free memory the exit frees anyway).

Not for a long-lived process (a notebook, a test session, a user's own script that calls
:class:`~pml_hashing.training.Trainer` more than once): frozen objects that later become
cyclic garbage are never freed there. :class:`~pml_hashing.training.Trainer` therefore never
calls these; only the recipes' ``__main__`` blocks do. Files and trackers do not rely on a
collection to be flushed: the trainer closes them itself.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_and_resume", "freeze_for_exit", "pause_collection"]

_paused = False  # turned off by pause_collection, not yet back on
_managed = False  # pause_collection turned it off in this process


def pause_collection() -> None:
    """Turn the cyclic collector off until :func:`freeze_and_resume` (imports and build)."""
    global _paused, _managed
    if gc.isenabled():
        gc.disable()
        _paused = _managed = True


def freeze_and_resume() -> None:
    """Freeze every object tracked now and turn collection back on, if
    :func:`pause_collection` turned it off; otherwise do nothing."""
    global _paused
    if _paused:
        gc.freeze()
        gc.enable()
        _paused = False


def freeze_for_exit() -> None:
    """Freeze every object tracked now, if :func:`pause_collection` ran in this process:
    call it when the job's outputs are written and the process only has to exit."""
    if _managed:
        gc.freeze()
