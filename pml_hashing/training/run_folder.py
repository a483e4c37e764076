"""The run folder: one run per folder, one process group at a time.

``runs/<name>/run.json`` records the config of the run that owns the folder;
``runs/<name>/.lock`` names the process that writes into it now. A new run refuses a folder
that holds another config's run or that a live process holds, unless ``overwrite``; a lock
whose process is gone (a killed run) is taken over.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME, write_text_atomic
from .config import RESUME_MAY_CHANGE, ExperimentConfig

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
RUN_FORMAT = "pml-hashing-run-v1"
# Keys that may change on resume but make a fresh run another run: a finished run is not
# replaced by a shorter or longer one without --overwrite.
FRESH_RUN_KEYS = ("epochs", "max_train_steps")
# What a run writes; a fresh run (or --overwrite) removes these and nothing else.
RUN_OUTPUTS = (
    "checkpoints",
    "logs",
    "metrics.json",
    CHECKPOINT_NAME,
    "checkpoint.pt",
    "splits.json",
    RUN_FILE,
)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _holds_something(path: Path) -> bool:
    return path.is_file() or (path.is_dir() and any(path.iterdir()))


def describe_differences(differences: dict, first: str, second: str) -> str:
    return ", ".join(f"{k} ({first} {a!r}, {second} {b!r})" for k, (a, b) in differences.items())


class RunFolder:
    """Claims ``run_dir`` for ``config`` (:meth:`acquire`) and frees it (:meth:`release`)."""

    def __init__(self, run_dir, config: ExperimentConfig, data: dict | None = None):
        self.run_dir = Path(run_dir)
        self.config = config
        self.data = data or {}
        self.lock_path = self.run_dir / LOCK_FILE
        self._locked = False

    # ------------------------------------------------------------------ lock
    def _write_lock(self) -> bool:
        """Create the lock with its content in one step, or return False if one exists.

        The record is written to a unique file first and then hard-linked to ``.lock``
        (which fails if ``.lock`` exists), so no other process ever reads a lock that is
        still empty: an empty lock would read as stale and be taken over by a second run.
        """
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()})
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, prefix=f"{LOCK_FILE}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(record)
            try:
                os.link(tmp, self.lock_path)
            except FileExistsError:
                return False
            return True
        finally:
            os.remove(tmp)

    def _lock(self) -> None:
        # A few tries: between reading a stale lock and removing it, another run may take it.
        for _ in range(5):
            if self._write_lock():
                self._locked = True
                return
            try:
                holder = json.loads(self.lock_path.read_text())
                pid, host = int(holder["pid"]), str(holder["host"])
            except FileNotFoundError:
                continue  # released in the meantime: try again
            except (OSError, ValueError, KeyError, TypeError):
                pid, host = None, None  # unreadable: not written by this package's lock
            live = pid is not None and (host != socket.gethostname() or _process_alive(pid))
            if live and not self.config.overwrite:
                if pid == os.getpid():
                    raise ValueError(
                        f"{self.run_dir} is in use by another run of this process (lock file "
                        f"{self.lock_path}); give another --name, or pass --overwrite"
                    )
                raise ValueError(
                    f"{self.run_dir} is in use by process {pid} on {host} (lock file "
                    f"{self.lock_path}); wait for it to finish, give another --name, or pass "
                    "--overwrite (config key overwrite) to take the folder over"
                )
            # a stale lock (its process is gone), or overwrite: remove it and claim it anew,
            # through the same exclusive step, so two runs never both take a stale lock over
            try:
                self.lock_path.unlink()
            except FileNotFoundError:
                pass
        raise ValueError(
            f"could not lock {self.run_dir}: other runs keep taking {self.lock_path}; "
            "give this run another --name"
        )

    def release(self) -> None:
        if not self._locked:
            return
        try:
            holder = json.loads(self.lock_path.read_text())
            if int(holder.get("pid", -1)) == os.getpid():
                self.lock_path.unlink()
        except (OSError, ValueError):
            pass
        self._locked = False

    # ------------------------------------------------------------------ ownership
    def _owner(self) -> dict | None:
        path = self.run_dir / RUN_FILE
        if path.is_file():
            try:
                owner = json.loads(path.read_text())
                ExperimentConfig.from_dict(owner["config"], source=str(path))
                return owner
            except (ValueError, KeyError, TypeError) as error:
                return {"unreadable": f"{path} is unreadable ({error})"}
        # an empty folder is nothing (a tracker makes logs/ as it starts)
        if any(_holds_something(self.run_dir / name) for name in RUN_OUTPUTS):
            return {"unreadable": f"{self.run_dir} holds run outputs without a {RUN_FILE}"}
        return None

    def acquire(self, resuming: bool) -> None:
        """Lock the folder and check that it holds no other config's run; nothing is
        removed or written yet (:meth:`claim` does that once the run is built).

        A fresh run (not resuming) also counts a different ``epochs`` or
        ``max_train_steps`` as another config: replacing a finished run by a shorter or
        longer one is asked for with ``--overwrite`` (or continued with ``--resume``).
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(
                f"the run folder {self.run_dir} cannot be made: it or a folder above it is a "
                "file (check --output-dir and --name)"
            ) from None
        self._lock()
        try:
            owner = self._owner()
            differs = None
            if owner is not None and "unreadable" in owner:
                differs = owner["unreadable"]
            elif owner is not None:
                saved = ExperimentConfig.from_dict(owner["config"])
                differences = saved.differences(self.config)
                if not resuming:
                    for key in FRESH_RUN_KEYS:
                        if getattr(saved, key) != getattr(self.config, key):
                            differences[key] = (getattr(saved, key), getattr(self.config, key))
                if owner.get("data", {}) != self.data:
                    differences["data"] = (owner.get("data"), self.data)
                if differences:
                    differs = (
                        f"{self.run_dir} holds a run of another config; it differs in "
                        + describe_differences(differences, "there", "now")
                    )
            if differs and not self.config.overwrite:
                more = "" if resuming else ", --resume latest to continue it"
                raise ValueError(
                    f"{differs}. Give this run another --name (config key name){more}, or pass "
                    "--overwrite (config key overwrite) to replace that run"
                )
        except BaseException:
            self.release()
            raise

    def claim(self, resuming: bool) -> None:
        """Write ``run.json``; a fresh run (not resuming) first removes the outputs of an
        earlier run of the same config (or of any run, with ``overwrite``), so stale
        checkpoints never sit beside new ones. Called once the run is built, so a config
        that fails to build never costs an earlier run its outputs."""
        if not resuming:
            for name in RUN_OUTPUTS:
                path = self.run_dir / name
                if path.is_dir():
                    shutil.rmtree(path)
                elif path.exists():
                    path.unlink()
        record = {"format": RUN_FORMAT, "config": self.config.to_dict(), "data": self.data}
        record["resume_may_change"] = list(RESUME_MAY_CHANGE)
        write_text_atomic(self.run_dir / RUN_FILE, json.dumps(record, indent=1))
