"""The run folder: one run per folder, one process group at a time, nothing lost.

``runs/<name>/run.json`` records the config of the run that owns the folder. ``.lock`` is a
``filelock`` lock held while a run writes into the folder: the operating system drops it
when the process dies, so a killed run never blocks the next one, and a live run's lock is
never taken over, not even with ``overwrite``. ``.lock.json`` beside it names the holder
(process id and host), for the message only.

A fresh run into a folder that holds an earlier run's outputs writes aside, into
``.next/``, and swaps its outputs in only once it has reported (:meth:`RunFolder.publish`):
a run killed or failed on the way leaves the earlier outputs as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import filelock

from .._files import write_text_atomic
from .checkpoint import CHECKPOINT_NAME
from .config import RESUME_MAY_CHANGE, ExperimentConfig, describe_differences

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
HOLDER_FILE = ".lock.json"
NEXT_DIR = ".next"
RUN_FORMAT = "pml-hashing-run-v1"
# Keys that may change on resume but make a fresh run another run: a finished run is not
# replaced by a shorter or longer one without overwrite.
FRESH_RUN_KEYS = ("epochs", "max_train_steps")
# What a run writes; publishing a fresh run replaces these and nothing else.
RUN_OUTPUTS = ("checkpoints", "logs", "metrics.json", CHECKPOINT_NAME, "splits.json", RUN_FILE)


def _holds_something(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class RunFolder:
    """Locks ``run_dir`` for ``config`` (:meth:`acquire`), says where the run writes
    (:attr:`work_dir`), publishes a fresh run's outputs (:meth:`publish`), frees the lock
    (:meth:`release`). Errors name config keys in backticks (`name`, `overwrite`); the
    recipe and the command line show them as flags."""

    def __init__(self, run_dir, config: ExperimentConfig, data: dict | None = None):
        self.run_dir = Path(run_dir)
        self.config = config
        self.data = data or {}
        self.work_dir = self.run_dir
        # the lock file is kept: removing it while another process waits on it would let
        # a third one lock a new file of the same name
        self._lock = filelock.FileLock(
            self.run_dir / LOCK_FILE, thread_local=False, preserve_lock_file=True
        )

    # ------------------------------------------------------------------ lock
    def _holder(self) -> str:
        # the holder writes its record just after it takes the lock: wait a moment for it
        for _ in range(20):
            try:
                holder = json.loads((self.run_dir / HOLDER_FILE).read_text())
                return f"process {holder['pid']} on {holder['host']}"
            except (OSError, ValueError, KeyError, TypeError):
                time.sleep(0.05)
        return "process (unknown: it wrote no record)"

    def _take_lock(self) -> None:
        try:
            self._lock.acquire(timeout=0)
        except filelock.Timeout:
            raise ValueError(
                f"{self.run_dir} is in use by {self._holder()} (lock file {self._lock.lock_file})"
                "; wait for it to finish or give this run another `name` (`overwrite` never "
                "takes a folder from a live run)"
            ) from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
        write_text_atomic(self.run_dir / HOLDER_FILE, json.dumps(record))

    def release(self) -> None:
        """Free the lock; a fresh run that did not finish leaves its ``.next/`` behind no
        longer (the earlier outputs were never touched)."""
        if not self._lock.is_locked:
            return
        if self.work_dir != self.run_dir:
            _remove(self.work_dir)
            self.work_dir = self.run_dir
        (self.run_dir / HOLDER_FILE).unlink(missing_ok=True)
        self._lock.release(force=True)

    def _remove_leftovers(self) -> None:
        """What a killed run leaves: a fresh run's ``.next/``, half-written checkpoint
        folders and temporary files. Only under the lock, so no live run writes them."""
        for path in [self.run_dir / NEXT_DIR, *self.run_dir.glob(".*.tmp")]:
            _remove(path)
        for path in (self.run_dir / "checkpoints").glob(".*.tmp"):
            _remove(path)

    # ------------------------------------------------------------------ ownership
    def _owner(self) -> dict | None:
        path = self.run_dir / RUN_FILE
        if path.is_file():
            try:
                owner = json.loads(path.read_text())
                owner["config"] = ExperimentConfig.from_dict(owner["config"], source=str(path))
                return owner
            except (ValueError, KeyError, TypeError) as error:
                return {"unreadable": f"{path} is unreadable ({error})"}
        # an empty folder is nothing (a tracker makes logs/ as it starts)
        if any(_holds_something(self.run_dir / name) for name in RUN_OUTPUTS):
            return {"unreadable": f"{self.run_dir} holds run outputs without a {RUN_FILE}"}
        return None

    def _other_run(self, owner: dict | None, resuming: bool) -> str | None:
        """Why the folder holds another config's run, or None."""
        if owner is None:
            return None
        if "unreadable" in owner:
            return owner["unreadable"]
        saved = owner["config"]
        differences = saved.differences(self.config)
        if not resuming:
            for key in FRESH_RUN_KEYS:
                if getattr(saved, key) != getattr(self.config, key):
                    differences[key] = (getattr(saved, key), getattr(self.config, key))
        if owner.get("data", {}) != self.data:
            differences["data"] = (owner.get("data"), self.data)
        if not differences:
            return None
        return f"{self.run_dir} holds a run of another config; it differs in " + (
            describe_differences(differences, "there", "now")
        )

    def acquire(self, resuming: bool) -> str:
        """Lock the folder, remove a killed run's leftovers and check that it holds no other
        config's run (unless ``overwrite``); nothing else is removed or written.

        A fresh run (not resuming) also counts a different ``epochs`` or
        ``max_train_steps`` as another config.

        Returns:
            The folder the run writes into (:attr:`work_dir`): the run folder, or ``.next/``
            in it for a fresh run over an earlier run's outputs.
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(
                f"the run folder {self.run_dir} cannot be made: it or a folder above it is a "
                "file (check `output_dir` and `name`)"
            ) from None
        self._take_lock()
        try:
            self._remove_leftovers()
            owner = self._owner()
            differs = self._other_run(owner, resuming)
            if differs and not self.config.overwrite:
                more = "" if resuming else ", `resume` latest to continue it"
                raise ValueError(
                    f"{differs}. Give this run another `name`{more}, or set `overwrite` to "
                    "replace that run"
                )
            if owner is not None and not resuming:
                self.work_dir = self.run_dir / NEXT_DIR
        except BaseException:
            self.release()
            raise
        return str(self.work_dir)

    def claim(self) -> None:
        """Write ``run.json`` into :attr:`work_dir`; called once the run is built."""
        record = {"format": RUN_FORMAT, "config": self.config.to_dict(), "data": self.data}
        record["resume_may_change"] = list(RESUME_MAY_CHANGE)
        write_text_atomic(self.work_dir / RUN_FILE, json.dumps(record, indent=1))

    def publish(self) -> None:
        """A fresh run written aside has finished: its outputs replace the earlier run's.

        The earlier outputs are moved away first and removed last, so no moment has a
        folder mixing the two runs' files.
        """
        if self.work_dir == self.run_dir:
            return
        old = self.run_dir / ".previous.tmp"
        _remove(old)
        old.mkdir()
        new = [path.name for path in self.work_dir.iterdir()]
        for name in dict.fromkeys([*RUN_OUTPUTS, *new]):
            if (self.run_dir / name).exists():
                os.replace(self.run_dir / name, old / name)
        for name in new:
            os.replace(self.work_dir / name, self.run_dir / name)
        self.work_dir.rmdir()
        shutil.rmtree(old)
        self.work_dir = self.run_dir
