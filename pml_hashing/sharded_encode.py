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

    paths, labels = read_image_inputs(images, root)
    return ImageListDataset(
        paths,
        torch.from_numpy(labels),
        np.arange(len(paths)),
        transform=image_transform(model, config),
    )


def image_transform(model, config) -> _ChannelsThen:
    """What an image file goes through before the checkpoint's model: its channels, then
    its eval transform (resize to ``config.image_size``, normalize)."""
    from .export import _file_transform

    return _ChannelsThen(
        int(getattr(model, "in_chans", 3)),
        _file_transform(model, getattr(config, "image_size", None)),
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


def _launcher_state(device=None):
    """``(process_index, num_processes, device, state)`` under accelerate/torchrun, with the
    threads configured as for a training run; else ``(0, 1, device, None)``. ``device`` is
    where the model runs: the one given, else the launcher's, else the CPU."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, torch.device(device) if device is not None else "cpu", None
    from accelerate import PartialState

    from .training.threads import configure_threads

    # without cpu=True a CPU-only launch is read as one process (DESIGN.md section 6)
    state = PartialState(cpu=not torch.cuda.is_available())
    configure_threads()  # cores per process, before the first parallel operation
    if device is None:
        device = state.device or "cpu"
    else:
        device = torch.device(device)
    return state.process_index, state.num_processes, device, state


def _check_batching(batch_size, num_workers, outputs) -> tuple[int, int]:
    """``(batch_size, num_workers)`` checked, and ``outputs`` a bool."""
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    num_workers = check_integer(num_workers, "num_workers", minimum=0)
    if not isinstance(outputs, bool):
        raise ValueError(f"outputs must be True or False; got {outputs!r}")
    return batch_size, num_workers


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
        a dict with ``out``, ``shard``, ``num_shards``, ``shard_file``, ``skipped``,
        ``rows_written`` and ``manifest`` (the written ``_manifest.json`` content, or None
        while other shards are still running; whoever finishes last writes it).
    """
    batch_size, num_workers = _check_batching(batch_size, num_workers, outputs)
    process, processes, device, state = _launcher_state(device)
    shard, num_shards = _this_shard(shard, num_shards, process, processes)
    out, lance = _output_target(out, format)
    checkpoint_path = checkpoint_file(checkpoint)
    model, method, config, data, source = _load_input(
        checkpoint_path, split, images, dataset, root, split_file
    )
    info = {**encode_info(config, checkpoint_path, source, outputs), "items": len(data)}
    items = shard_range(shard, num_shards, len(data))
    new_writer, skip = _shard_writer(out, lance, shard, num_shards, data, info, items)
    batches = _batches(data, items, batch_size, num_workers)  # a generator: nothing read yet
    rows = 0 if skip else _write_codes(new_writer, model, method, batches, device, outputs)
    result = {
        "out": str(out),
        "shard": shard,
        "num_shards": num_shards,
        "shard_file": None if lance else shard_name(shard, num_shards),
        "skipped": skip,
        "rows_written": rows,
    }
    return {**result, "manifest": _manifest_when_all_done(out, lance, num_shards, info, state)}


def _manifest_when_all_done(out, lance: bool, num_shards: int, info: dict, state) -> dict | None:
    """After every launcher process has written its shard, the main process (or a job-array
    task) writes the folder's manifest if every shard is finished; Lance tables have none."""
    if state is not None:
        state.wait_for_everyone()
    if lance or (state is not None and not state.is_main_process):
        return None
    return write_manifest_if_complete(out, num_shards, info)


def _output_target(out, format: str | None) -> tuple:
    """``(out, is_lance)``: a Lance target spelled ``lance://DIR/TABLE``, the folder checked."""
    lance = is_lance_target(out, format)
    if lance and not str(out).startswith(_LANCE_SCHEME):
        out = _LANCE_SCHEME + str(out)
    check_output_folder(out)
    return out, lance


def _this_shard(shard, num_shards, process: int, processes: int) -> tuple[int, int]:
    """``(shard, num_shards)``: a job array's task as given, else the launcher's process."""
    if (shard is None) != (num_shards is None):
        raise ValueError("give both --shard and --num-shards (a job array's task and size)")
    if shard is None:
        return process, processes
    num_shards = check_integer(num_shards, "num_shards", minimum=1)
    shard = check_integer(shard, "shard", minimum=0)
    if shard >= num_shards:
        raise ValueError(f"shard must be in [0, num_shards) = [0, {num_shards}); got {shard}")
    if processes > 1:
        raise ValueError(
            f"--shard/--num-shards are for job arrays without a launcher; this run has "
            f"{processes} launcher processes, which are the shards"
        )
    return shard, num_shards


def _load_input(checkpoint_path, split, images, dataset, root, split_file) -> tuple:
    """``(model, method, config, data, source)``: the checkpoint, and the images it encodes
    (an image folder or list, else one split of its protocol) with their ``source`` record."""
    from .training import load_checkpoint

    model, method, config, payload = load_checkpoint(checkpoint_path)
    if images is not None:
        data = _image_dataset(images, root, model, config)
        return model, method, config, data, {"images": str(Path(images).resolve())}
    data, source = _split_data(config, model, payload, split, dataset, root, split_file)
    return model, method, config, data, source


def _split_data(config, model, payload, split, dataset, root, split_file) -> tuple:
    """``(data, source)``: one split of the checkpoint's protocol (or of ``dataset``)."""
    from .training.checkpoint_jobs import SPLITS, _protocol_for

    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
    protocol = _protocol_for(config, model, dataset, root, split_file, payload)
    data = getattr(protocol, split)
    if data is None:
        raise ValueError(f"the protocol has no {split} split (set validation_per_class)")
    return data, {"split": split, "dataset": protocol.name}


def encode_info(config, checkpoint_path, source: dict, outputs: bool) -> dict:
    """What every shard record and the manifest carry, so that a rerun with another
    checkpoint, input or column set is refused instead of mixed in."""
    return {
        "num_bits": int(config.bits),
        "checkpoint_sha256": file_sha256(checkpoint_path),
        "input": source,
        "outputs": outputs,
    }


def _shard_writer(out, lance: bool, shard, num_shards, data, info: dict, items: range):
    """``(make_writer, skip)``: how this shard's writer is made, and whether its shard is
    already finished (a Parquet shard with its record; Lance shards are always redone)."""
    labels = getattr(data, "labels", None)
    multi_label = labels is not None and getattr(labels, "ndim", 1) == 2
    layout = (shard, num_shards, info["num_bits"], multi_label, info["outputs"], info, items)
    if lance:
        from .engines.lance_codes import LanceCodeWriter

        def make_writer():
            return LanceCodeWriter(out, *layout)

        return make_writer, make_writer().is_complete_and_compatible()
    check_compatible(out, num_shards, info)
    skip = finished_record(out, shard, num_shards) is not None
    return (lambda: ShardWriter(out, *layout)), skip


def _write_codes(new_writer, model, method, batches, device, outputs: bool) -> int:
    """Encode ``batches`` on ``device`` into a writer from ``new_writer()`` (closed when
    done, aborted on any error); returns the number of rows written."""
    encoder = method.retrieval_encoder(model).to(device).eval()
    method = method.to(device)
    writer = new_writer()
    rows = 0
    try:
        with torch.no_grad():
            for images, targets, ids in batches:
                values = finite_outputs(
                    method, encoder, images.to(device), f"items {ids[0]}..{ids[-1]}"
                )
                writer.write(
                    ids, targets.numpy(), pack_bool(values >= 0), values if outputs else None
                )
                rows += len(ids)
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return rows


def finite_outputs(method, encoder, images, what: str) -> np.ndarray:
    """The method's retrieval outputs for ``images`` as float32 numpy, refused when any is
    not finite (``what`` names the items in the message)."""
    values = method.retrieval_outputs(encoder(images)).float().cpu().numpy()
    if not np.isfinite(values).all():
        raise ValueError(f"the model's outputs for {what} are not finite")
    return values
