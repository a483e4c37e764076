"""A local Milvus standalone server for tests, benchmarks and trying things out.

PyPI's ``milvus`` package ships a real Milvus standalone server (embedded etcd, local
storage) started by its ``milvus-server`` wrapper; it runs offline. Production serving is a
Milvus cluster or a managed service: :class:`~pml_hashing.engines.MilvusIndex` speaks the
same API to both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

__all__ = ["local_milvus_server", "milvus_server_available"]

_HEALTH = "http://127.0.0.1:9091/healthz"
# the server writes /tmp/milvus/server_id_<pid>, outside its data folder
_SERVER_IDS = "/tmp/milvus"


def milvus_server_available() -> bool:
    """True when the ``milvus-server`` wrapper (``pip install milvus``) is on the PATH."""
    return shutil.which("milvus-server") is not None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _healthy() -> bool:
    try:
        with urllib.request.urlopen(_HEALTH, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _process_group(pgid: int) -> list[int]:
    """The pids of a process group (the wrapper and the server it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # after the name: state, ppid, pgrp
                pids.append(int(entry))
    return pids


@contextlib.contextmanager
def local_milvus_server(startup_timeout: float = 180.0):
    """Start a Milvus standalone server on 127.0.0.1; yield its URI; kill and clean it up.

    The data (and the ~250 MB of binaries the wrapper unpacks into it) go in a temporary
    folder removed on exit; the client port is a free one, the health port is Milvus' fixed
    9091 (so one server at a time per machine). The server ignores SIGTERM for up to a
    minute, so its whole process group is SIGKILLed. Linux only (it reads ``/proc``).
    """
    if not milvus_server_available():
        raise RuntimeError('milvus-server not found: pip install "milvus>=2.3.5,<2.4"')
    if _healthy():
        raise RuntimeError("a Milvus server already answers on 127.0.0.1:9091; stop it first")
    data = tempfile.mkdtemp(prefix="pml-hashing-milvus-")
    port = _free_port()
    log_path = os.path.join(data, "server.log")
    group: list[int] = []
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["milvus-server", "--data", data, "--proxy-port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy():
            if process.poll() is not None or time.monotonic() > deadline:
                with open(log_path, "rb") as f:
                    tail = f.read()[-2000:].decode(errors="replace")
                raise RuntimeError(f"the Milvus server did not start:\n{tail}")
            time.sleep(0.5)
        group = _process_group(process.pid)
        yield f"http://127.0.0.1:{port}"
    finally:
        group = sorted(set(group) | set(_process_group(process.pid)))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        shutil.rmtree(data, ignore_errors=True)
        for pid in group:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(_SERVER_IDS, f"server_id_{pid}"))
        with contextlib.suppress(OSError):
            os.rmdir(_SERVER_IDS)  # only when nothing else is in it
