"""Streaming, sharded encode: each process (or job-array task) writes its share of the codes
as it computes them, to a Parquet shard (:mod:`pml_hashing.shards`) or a Lance table.

Nothing is gathered to one process and no process holds more than one batch of outputs,
so memory stays bounded whatever the data set size. Processes are told apart by the
launcher (``accelerate launch`` / ``torchrun``: one shard per process) or by
``shard``/``num_shards`` (Slurm or Kubernetes job arrays, no launcher).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ._validation import check_integer
from .codes import pack_bool
from .shards import (
    ShardWriter,
    check_compatible,
    file_sha256,
    finished_record,
    shard_name,
    shard_range,
    write_manifest_if_complete,
)

__all__ = ["encode_to_shards", "is_lance_target", "read_image_inputs"]

_LANCE_SCHEME = "lance://"


def is_lance_target(out, format: str | None = None) -> bool:
    """True for ``lance://DIR/TABLE`` or ``format="lance"``."""
    return format == "lance" or str(out).startswith(_LANCE_SCHEME)


def split_lance_target(out) -> tuple[str, str]:
    """``lance://DIR/TABLE`` or ``DIR/TABLE`` (or ``s3://bucket/DIR/TABLE``) -> (DIR, TABLE)."""
    text = str(out)
    if text.startswith(_LANCE_SCHEME):
        text = text[len(_LANCE_SCHEME) :]
    text = text.rstrip("/")
    uri, sep, table = text.rpartition("/")
    if not sep or not uri or not table:
        raise ValueError(
            f"--out must be lance://DIR/TABLE (a LanceDB folder or object-store URI, then the "
            f"table name); got {out!r}"
        )
    return uri, table


def check_output_folder(out, name: str = "--out") -> None:
    """Refuse, before any work, an output whose parent folder does not exist (local paths)."""
    text = str(out)
    if is_lance_target(text):
        uri, _ = split_lance_target(text)
        if "://" in uri:  # object storage: nothing to check locally
            return
        parent = Path(uri).resolve().parent
    else:
        path = Path(text)
        if path.exists() and not path.is_dir():
            raise ValueError(f"{name} {out}: exists and is not a folder (shards go in a folder)")
        parent = path.resolve().parent
    if not parent.is_dir():
        raise ValueError(f"{name} {out}: the folder {parent} does not exist")


def checkpoint_file(checkpoint) -> Path:
    path = Path(checkpoint)
    if path.is_dir():
        path = path / "checkpoint.safetensors"
    if not path.is_file():
        raise ValueError(f"--checkpoint {checkpoint}: checkpoint not found ({path} is no file)")
    return path


def read_image_inputs(images, root=None) -> tuple[list[str], np.ndarray]:
    """The images to encode: an image folder (``ROOT/<class>/<image>``, labels from the
    class folders) or an image-list file (``path [label]`` or ``path b1 ... bC`` per line,
    relative paths resolved against ``root``, default the list's folder; a line without a
    label gets -1)."""
    path = Path(images)
    if path.is_dir():
        from .data.image_folder import read_image_folder

        paths, labels, _ = read_image_folder(path)
        return list(paths), np.asarray(labels, dtype=np.int64)
    if not path.is_file():
        raise ValueError(f"--images {images}: no such file or folder")
    base = Path(root) if root is not None else path.parent
    paths, rows = [], []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        try:
            values = [int(v) for v in parts[1:]]
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: expected an image path then integer labels; got {line!r}"
            ) from None
        file = Path(parts[0])
        paths.append(str(file if file.is_absolute() else base / file))
        rows.append(values)
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise ValueError(
            f"{path}: every line must have the same number of label columns; got {sorted(widths)}"
        )
    width = widths.pop() if widths else 1
    if width == 0:
        return paths, np.full(len(paths), -1, dtype=np.int64)
    if width == 1:
        return paths, np.asarray([r[0] for r in rows], dtype=np.int64).reshape(-1)
    labels = np.asarray(rows, dtype=np.int64).reshape(len(paths), width)
    if not np.isin(labels, (0, 1)).all():
        raise ValueError(f"{path}: multi-label columns must be 0 or 1 (HashNet list format)")
    return paths, labels


def _image_dataset(images, root, model, config):
    from .data.image_list_dataset import ImageListDataset
    from .export import _file_transform

    paths, labels = read_image_inputs(images, root)
    return ImageListDataset(
        paths,
        torch.from_numpy(labels),
        np.arange(len(paths)),
        transform=_ChannelsThen(
            int(getattr(model, "in_chans", 3)),
            _file_transform(model, getattr(config, "image_size", None)),
        ),
    )


class _ChannelsThen:
    """PIL image -> the checkpoint's channels (L for 1, RGB for 3) -> its eval transform."""

    def __init__(self, in_chans: int, transform):
        self.mode = "L" if in_chans == 1 else "RGB"
        self.transform = transform

    def __call__(self, image):
        return self.transform(image.convert(self.mode))


def _in_memory(data) -> bool:
    from .training.encoding import _in_memory as in_memory

    return in_memory(data)


def _batches(data, items: range, batch_size: int, num_workers: int):
    """``(images, labels, ids)`` over ``items`` of ``data``, one batch at a time."""
    if len(items) == 0:
        return
    if _in_memory(data):  # one tensor slice a batch, as the training encoder does
        for start in range(items.start, items.stop, batch_size):
            stop = min(start + batch_size, items.stop)
            yield data.images[start:stop], data.labels[start:stop], np.arange(start, stop)
        return
    from torch.utils.data import DataLoader, Subset

    loader = DataLoader(
        Subset(data, items), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    start = items.start
    for images, labels in loader:
        yield images, labels, np.arange(start, start + len(images))
        start += len(images)


def _launcher_state():
    """(process_index, num_processes, device) under accelerate/torchrun, else (0, 1, None)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, None, None
    from accelerate import PartialState

    # without cpu=True a CPU-only launch is read as one process (DESIGN.md section 6)
    state = PartialState(cpu=not torch.cuda.is_available())
    return state.process_index, state.num_processes, state.device, state


def encode_to_shards(
    checkpoint,
    out,
    split: str = "database",
    images=None,
    dataset: str | None = None,
    root=None,
    split_file=None,
    shard: int | None = None,
    num_shards: int | None = None,
    outputs: bool = False,
    batch_size: int = 512,
    num_workers: int = 0,
    format: str | None = None,
    device=None,
) -> dict:
    """Encode a split of the checkpoint's data (or an image folder / list) into shards.

    Args:
        checkpoint: ``runs/<name>/`` or its ``checkpoint.safetensors``.
        out: the shard folder; or a Lance table, ``lance://DIR/TABLE`` (or ``format="lance"``
            with ``DIR/TABLE``; ``DIR`` may be an object-store URI).
        split: the protocol split to encode (ignored with ``images``).
        images: an image folder or an image-list file instead of a split.
        dataset, root, split_file: another data set than the checkpoint's (as
            :func:`~pml_hashing.training.encode_checkpoint`); with ``images``, ``root`` is
            the folder relative list paths start from.
        shard, num_shards: this task's shard of a job array (no launcher). Under
            ``accelerate launch`` / ``torchrun`` each process is one shard.
        outputs: also write the real outputs (column ``output``).
        batch_size, num_workers: per forward pass, and DataLoader workers.
        device: where the model runs (default: the launcher's device, else the CPU).

    Returns:
        ``{"out", "shards_written", "shards_skipped", "rows_written", "manifest"}``;
        ``manifest`` is the written ``_manifest.json`` content, or None while other shards
        are still running (whoever finishes last writes it).
    """
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    num_workers = check_integer(num_workers, "num_workers", minimum=0)
    if not isinstance(outputs, bool):
        raise ValueError(f"outputs must be True or False; got {outputs!r}")
    process, processes, launcher_device, state = _launcher_state()
    if (shard is None) != (num_shards is None):
        raise ValueError("give both --shard and --num-shards (a job array's task and size)")
    if shard is not None:
        num_shards = check_integer(num_shards, "num_shards", minimum=1)
        shard = check_integer(shard, "shard", minimum=0)
        if shard >= num_shards:
            raise ValueError(f"shard must be in [0, num_shards) = [0, {num_shards}); got {shard}")
        if processes > 1:
            raise ValueError(
                f"--shard/--num-shards are for job arrays without a launcher; this run has "
                f"{processes} launcher processes, which are the shards"
            )
    else:
        shard, num_shards = process, processes
    lance = is_lance_target(out, format)
    if lance and not str(out).startswith(_LANCE_SCHEME):
        out = _LANCE_SCHEME + str(out)
    check_output_folder(out)
    checkpoint_path = checkpoint_file(checkpoint)

    from .training import load_checkpoint

    model, method, config, payload = load_checkpoint(checkpoint_path)
    num_bits = int(config.bits)
    if images is not None:
        data = _image_dataset(images, root, model, config)
        source = {"images": str(Path(images).resolve())}
    else:
        from .training.checkpoint_jobs import SPLITS, _protocol_for

        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
        protocol = _protocol_for(config, model, dataset, root, split_file, payload)
        data = getattr(protocol, split)
        if data is None:
            raise ValueError(f"the protocol has no {split} split (set validation_per_class)")
        source = {"split": split, "dataset": protocol.name}
    info = {
        "num_bits": num_bits,
        "checkpoint_sha256": file_sha256(checkpoint_path),
        "input": source,
        "outputs": outputs,
        "items": len(data),
    }
    labels = getattr(data, "labels", None)
    multi_label = labels is not None and getattr(labels, "ndim", 1) == 2

    if lance:
        from .engines.lance_codes import LanceCodeWriter

        items = shard_range(shard, num_shards, len(data))
        writer_factory = lambda: LanceCodeWriter(  # noqa: E731
            out, shard, num_shards, num_bits, multi_label, outputs, info, items
        )
        skip = writer_factory().is_complete_and_compatible()
    else:
        check_compatible(out, num_shards, info)
        skip = finished_record(out, shard, num_shards) is not None
        writer_factory = lambda: ShardWriter(  # noqa: E731
            out, shard, num_shards, num_bits, multi_label, outputs, info
        )

    rows = 0
    if state is not None:  # cores / processes, as a training run under the launcher
        from .training.threads import configure_threads

        configure_threads()
    if not skip:
        device = torch.device(device) if device is not None else (launcher_device or "cpu")
        encoder = method.retrieval_encoder(model).to(device).eval()
        method = method.to(device)
        writer = writer_factory()
        try:
            with torch.no_grad():
                items = shard_range(shard, num_shards, len(data))
                for images_, targets, ids in _batches(data, items, batch_size, num_workers):
                    values = method.retrieval_outputs(encoder(images_.to(device))).float().cpu()
                    values = values.numpy()
                    if not np.isfinite(values).all():
                        raise ValueError(
                            f"the model's outputs for items {ids[0]}..{ids[-1]} are not finite"
                        )
                    writer.write(
                        ids, targets.numpy(), pack_bool(values >= 0), values if outputs else None
                    )
                    rows += len(ids)
        except BaseException:
            writer.abort()
            raise
        writer.close()
    if state is not None:
        state.wait_for_everyone()
    manifest = None
    if not lance and (state is None or state.is_main_process):
        manifest = write_manifest_if_complete(out, num_shards, info)
    return {
        "out": str(out),
        "shard": shard,
        "num_shards": num_shards,
        "shard_file": None if lance else shard_name(shard, num_shards),
        "skipped": skip,
        "rows_written": rows,
        "manifest": manifest,
    }
