"""A run's resumable state: where to resume from, the state folders, RNG, the CSV log.

A state folder (``runs/<name>/checkpoints/epoch_0003``) holds ``shared.safetensors`` (model,
optimizer, schedule, callbacks, progress: written by the main process), one
``rank<i>.safetensors`` per process (the method's buffers and the RNG states) and
``state.json``: the config, the progress, the sha256 of every part, and a sha256 of
``state.json`` itself, so an edited manifest (a changed ``lr``) is refused, not resumed.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from .._files import replace_directory, write_text_atomic
from .builders import load_optimizer_state
from .checkpoint import from_tree, read_safetensors, sha256_file, to_tree, write_safetensors
from .config import RESUME_MAY_CHANGE, ExperimentConfig, describe_differences

STATE_FORMAT = "pml-hashing-training-state-v2"
STATE_MANIFEST = "state.json"
LATEST = "latest"


# ---------------------------------------------------------------- the folder format
def write_state_part(folder, name: str, obj) -> Path:
    """One part of a training state: ``<name>.safetensors`` (tensors + JSON tree)."""
    tensors: dict = {}
    tree = to_tree(obj, tensors, name)
    return write_safetensors(Path(folder) / f"{name}.safetensors", tensors, {"tree": tree})


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal_state_folder(folder, manifest: dict) -> Path:
    """Write ``state.json``: ``manifest``, the sha256 of every part and of itself."""
    folder = Path(folder)
    parts = sorted(p.name for p in folder.iterdir() if p.name.endswith(".safetensors"))
    manifest = dict(
        manifest, format=STATE_FORMAT, files={n: sha256_file(folder / n) for n in parts}
    )
    manifest["sha256"] = _manifest_digest(manifest)
    return write_text_atomic(folder / STATE_MANIFEST, json.dumps(manifest, indent=1))


def read_state_manifest(folder) -> dict:
    """``state.json`` of a training state, after checking its own digest and every part's.

    Raises:
        ValueError: naming the file, for a folder without a manifest, a manifest that is
            not JSON, not this package's, edited, or whose parts are missing or changed.
    """
    folder = Path(folder)
    path = folder / STATE_MANIFEST
    if not path.is_file():
        raise ValueError(f"{folder} is not a pml-hashing training state: no {STATE_MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not readable JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a pml-hashing training state (no {STATE_FORMAT!r} tag)")
    if manifest.get("sha256") != _manifest_digest(manifest):
        raise ValueError(
            f"{path} was edited or is corrupted: its sha256 does not match its contents; "
            "a training state is resumed only as it was saved"
        )
    for name, digest in manifest["files"].items():
        part = folder / name
        if Path(name).name != name or not part.is_file():
            raise ValueError(f"training state {folder} lacks its part {name}")
        if sha256_file(part) != digest:
            raise ValueError(
                f"training state {folder} is corrupted: {name} does not match its sha256 in "
                f"{STATE_MANIFEST}; it was not loaded"
            )
    return manifest


def read_state_part(folder, name: str, manifest: dict):
    """The object written by :func:`write_state_part`, from a checked folder."""
    filename = f"{name}.safetensors"
    if filename not in manifest["files"]:
        raise ValueError(f"training state {folder} has no part {filename}")
    tensors, meta = read_safetensors(Path(folder) / filename)
    return from_tree(meta["tree"], tensors)


def save_state_folder(accelerator, checkpoints: Path, label: str, token: str, parts) -> Path:
    """Write a state folder aside (``.<label>.<token>.tmp``), seal it and move it into place;
    every process calls it. ``parts()`` gives ``(shared, own, manifest)``: ``shared`` and
    ``manifest`` are written by the main process only, ``own`` by each process."""
    tmp = checkpoints / f".{label}.{token}.tmp"
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        tmp.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    shared, own, manifest = parts()
    if accelerator.is_main_process:
        write_state_part(tmp, "shared", shared)
    write_state_part(tmp, f"rank{accelerator.process_index}", own)
    accelerator.wait_for_everyone()
    final = checkpoints / label
    if accelerator.is_main_process:
        seal_state_folder(tmp, manifest)
        replace_directory(tmp, final)
        write_text_atomic(checkpoints / LATEST, final.name)
    accelerator.wait_for_everyone()
    return final


# ---------------------------------------------------------------- a trainer's state
def _position(trainer) -> dict:
    return {
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "global_step": trainer.global_step,
    }


def save_trainer_state(trainer) -> Path:
    """A state folder of everything that decides what the rest of a run computes; every
    process calls it (``trainer.save_state()``)."""
    label = f"epoch_{trainer.epoch:04d}"
    if trainer.batch_in_epoch:
        label += f"_batch_{trainer.batch_in_epoch:05d}"

    def parts():
        shared = {
            "model": trainer.unwrapped.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "scheduler": trainer.scheduler.state_dict(),
            "callbacks": {c.name: c.state_dict() for c in trainer.callbacks},
            "progress": _position(trainer),
            "history": trainer.history,
            "epoch_losses": [float(loss) for loss in trainer.epoch_losses],
            "epoch_seconds": trainer.epoch_seconds,
        }
        # per process: the method's buffers (DPN-A's votes are local until the epoch's end)
        own = {"method": trainer.method.state_dict(), "rng": rng_state()}
        manifest = {
            "config": trainer.config.to_dict(),
            "progress": _position(trainer),
            "num_processes": trainer.accelerator.num_processes,
            "data": trainer.data_identity,
            "log_rows": csv_log_rows(trainer.work_dir / "logs" / "metrics.csv"),
        }
        return shared, own, manifest

    checkpoints = trainer.work_dir / "checkpoints"
    return save_state_folder(trainer.accelerator, checkpoints, label, trainer.run_token, parts)


def load_trainer_state(trainer, folder: Path, manifest: dict) -> None:
    """Put a built trainer where the state folder (checked by :func:`find_resume_point`)
    left its run."""
    shared = read_state_part(folder, "shared", manifest)
    own = read_state_part(folder, f"rank{trainer.accelerator.process_index}", manifest)
    trainer.unwrapped.load_state_dict(shared["model"])
    load_optimizer_state(trainer.optimizer, shared["optimizer"])
    trainer.scheduler.load_state_dict(shared["scheduler"])
    trainer.method.load_state_dict(own["method"])
    for callback in trainer.callbacks:
        if callback.name in shared["callbacks"]:
            callback.load_state_dict(shared["callbacks"][callback.name])
    progress = shared["progress"]
    trainer.epoch, trainer.batch_in_epoch = progress["epoch"], progress["batch_in_epoch"]
    trainer.global_step = progress["global_step"]
    trainer.history = list(shared["history"])
    trainer.epoch_losses = list(shared["epoch_losses"])
    trainer.epoch_seconds = shared["epoch_seconds"]
    set_rng_state(own["rng"])
    where = f"epoch {trainer.epoch}"
    if trainer.batch_in_epoch:
        where += f", batch {trainer.batch_in_epoch} of epoch {trainer.epoch + 1}"
    trainer.accelerator.print(f"resumed from {folder} after {where}", flush=True)


# ---------------------------------------------------------------- where to resume from
def find_resume_point(
    config: ExperimentConfig, run_dir: Path, data: dict, num_processes: int
) -> tuple[Path, dict] | None:
    """The state folder named by ``config.resume`` and its checked manifest, or None.

    Raises:
        ValueError: no such folder, or its config, data or process count differ from this
            run's (but for the keys that may change on resume).
    """
    if not config.resume:
        return None
    if config.resume == LATEST:
        pointer = run_dir / "checkpoints" / LATEST
        if not pointer.is_file():
            raise ValueError(f"resume='latest' but {pointer} does not exist (no checkpoint yet)")
        path = run_dir / "checkpoints" / pointer.read_text().strip()
    else:
        path = Path(config.resume)
    if not path.is_dir():
        raise ValueError(f"resume must be a checkpoint folder; {path} is not a folder")
    manifest = read_state_manifest(path)
    saved = ExperimentConfig.from_dict(manifest["config"], source=f"checkpoint {path}")
    differences = saved.differences(config)
    if saved.epochs != config.epochs and config.scheduler != "none":
        differences["epochs"] = (saved.epochs, config.epochs)
    if manifest["data"] != data:
        differences["data"] = (manifest["data"], data)
    if differences:
        why = ""
        if "epochs" in differences:
            why = " (epochs may change only with scheduler none: the cosine schedule is laid "
            why += "out over the epochs)"
        raise ValueError(
            f"cannot resume from {path}: the config differs from the checkpoint's in "
            + describe_differences(differences, "checkpoint", "now")
            + f"{why}. Resume with the checkpoint's values, or start a new run (another "
            f"`name`). Keys that may change on resume: {', '.join(RESUME_MAY_CHANGE)}"
        )
    if manifest["progress"]["epoch"] > config.epochs:
        raise ValueError(
            f"cannot resume from {path}: it has trained {manifest['progress']['epoch']} "
            f"epochs, more than epochs={config.epochs}"
        )
    if manifest["num_processes"] != num_processes:
        raise ValueError(
            f"cannot resume from {path}: it was saved by {manifest['num_processes']} "
            f"processes; resume with as many (now {num_processes})"
        )
    return path, manifest


# ---------------------------------------------------------------- RNG
def rng_state() -> dict:
    name, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global)
    return {
        "python": random.getstate(),
        "numpy": [name, [int(k) for k in keys], int(position), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, gauss = state["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((name, keys, position, has_gauss, gauss))  # noqa: NPY002 (global)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- the CSV log
def csv_log_rows(path: Path) -> int | None:
    """The number of lines of ``logs/metrics.csv`` now (None: no such file); a checkpoint
    records it so that a resume keeps exactly the rows logged before it."""
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def truncate_csv_log(path: Path, rows: int | None) -> None:
    """Keep the first ``rows`` lines: the rows a killed run (or a finished run's report,
    whose ``test/*`` rows the resumed report logs again) wrote after its checkpoint.

    Runs before the trackers start, so the CSV tracker appends to the file it truncated.
    """
    if rows is None or not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) > rows:
        write_text_atomic(path, "".join(lines[:rows]))
