"""The one atomic writer behind every file the package writes.

A file is written to a unique temporary file in its own folder and moved into place with
``os.replace``: an interrupted write never leaves a half-written file where a reader looks,
and two writers never share a temporary name. Temporary names start with ``.`` and end with
``.tmp`` so that a folder's leftovers after a kill are easy to recognise and remove.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["replace_directory", "write_atomic", "write_bytes_atomic", "write_text_atomic"]


def write_atomic(
    path, write: Callable[[str], object], durable: bool = False, parents: bool = True
) -> Path:
    """``write(tmp)`` to a unique temporary file beside ``path``, then ``os.replace``.

    Args:
        path: the file to write.
        write: writes the whole content to the path it is given.
        durable: also ``fsync`` the file before the replace (an index meant to survive a
            power loss, not only a killed process).
        parents: make the missing folders above ``path`` (else a missing folder is the
            caller's ``FileNotFoundError``).
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(path, text: str) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes_atomic(path, data: bytes, durable: bool = False, parents: bool = True) -> Path:
    return write_atomic(path, lambda tmp: Path(tmp).write_bytes(data), durable, parents)


def replace_directory(tmp_dir, final_dir) -> None:
    """Move a fully written folder into place; the old one is removed only afterwards."""
    tmp_dir, final_dir = Path(tmp_dir), Path(final_dir)
    old = None
    if final_dir.exists():
        # a unique name: two writers never share a temporary folder
        old = Path(
            tempfile.mkdtemp(dir=final_dir.parent, prefix=f".{final_dir.name}.", suffix=".tmp")
        )
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
