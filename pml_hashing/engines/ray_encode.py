"""Encode images with Ray Data: a pool of actors that each load the model once, batches
streamed through ``map_batches``, Parquet shards in the schema of :mod:`pml_hashing.shards`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._validation import check_integer, check_real
from ..shards import MANIFEST_NAME, file_sha256, shard_name, write_manifest_if_complete

__all__ = ["encode_with_ray"]


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(
            'encode_with_ray needs Ray Data: pip install "pml-hashing[ray]"'
        ) from None
    return ray


class _Encoder:
    """A Ray actor: the checkpoint's model, loaded once, over batches of image paths."""

    def __init__(self, checkpoint: str, with_outputs: bool):
        import torch

        from ..sharded_encode import image_transform
        from ..shards import schema
        from ..training import load_checkpoint

        torch.set_num_threads(1)  # actors share the machine's cores
        self.model, self.method, config, _ = load_checkpoint(checkpoint)
        self.encoder = self.method.retrieval_encoder(self.model).eval()
        self.transform = image_transform(self.model, config)
        self.num_bits = int(config.bits)
        self.with_outputs = with_outputs
        self.schema = {multi: schema(self.num_bits, multi, with_outputs) for multi in (False, True)}

    def __call__(self, batch: dict) -> object:
        import torch
        from PIL import Image

        from ..codes import pack_bool
        from ..sharded_encode import finite_outputs
        from ..shards import record_batch

        images = []
        for path in batch["path"]:
            with Image.open(str(path)) as image:
                images.append(self.transform(image))
        with torch.no_grad():
            outputs = finite_outputs(
                self.method, self.encoder, torch.stack(images), f"{batch['path'][0]}..."
            )
        labels = np.stack(list(batch["label"])) if len(batch["label"]) else batch["label"]
        multi = np.asarray(labels).ndim == 2
        record = record_batch(
            batch["id"],
            labels,
            pack_bool(outputs >= 0),
            outputs if self.with_outputs else None,
            self.schema[multi],
        )
        import pyarrow as pa

        return pa.Table.from_batches([record])


def encode_with_ray(
    checkpoint,
    dataset_or_paths,
    out,
    num_actors: int = 2,
    batch_size: int = 256,
    num_cpus: float = 0.5,
    outputs: bool = False,
    root=None,
) -> dict:
    """Encode images into a shard folder with a pool of Ray actors.

    Each actor loads the model once; Ray Data streams the image paths through
    ``map_batches`` and writes Parquet files, renamed here into
    ``shard-XXXXX-of-N.parquet`` in item order with the usual ``_manifest.json``, so
    :func:`pml_hashing.codes.read_codes` and ``pml-hashing index build --codes DIR`` read
    the result like any shard folder. Ray is started in local mode if it is not running
    (``ray.init()``; connect to a cluster first with ``ray.init(address=...)``).

    Args:
        checkpoint: ``runs/<name>/`` or its ``checkpoint.safetensors``.
        dataset_or_paths: an image folder, an image-list file (as for
            ``pml-hashing encode --images``), a list of image paths, or a Ray Dataset with
            columns ``path`` and ``label`` (``id`` optional: the row number).
        out: the shard folder to write (must not hold a manifest yet).
        num_actors: encoding actors (model copies).
        batch_size: images per actor call.
        num_cpus: CPUs reserved per actor. Keep it fractional on small machines: actors
            holding whole CPUs starve Ray's read step (no progress for minutes on 2 cores).
        outputs: also write the real outputs.
        root: the folder relative list paths start from.

    Returns:
        the manifest (a dict).
    """
    ray = _ray()
    num_actors = check_integer(num_actors, "num_actors", minimum=1)
    batch_size = check_integer(batch_size, "batch_size", minimum=1)
    num_cpus = check_real(num_cpus, "num_cpus", minimum=0, strict=True)
    from ..sharded_encode import checkpoint_file, encode_info

    out = _new_folder(out)
    checkpoint_path = checkpoint_file(checkpoint)
    from ..training import load_checkpoint

    _, _, config, _ = load_checkpoint(checkpoint_path)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    dataset, source = _ray_dataset(ray, dataset_or_paths, root)
    encoder = (str(checkpoint_path), outputs)
    staging = out / "_ray"
    _encode_to_parquet(ray, dataset, encoder, staging, batch_size, num_actors, num_cpus)
    info = encode_info(config, checkpoint_path, source, outputs)
    num_shards = _shards_from_staging(staging, out, info)
    return write_manifest_if_complete(out, num_shards, info)


def _new_folder(out) -> Path:
    """``out`` as a Path, refused unless it is a new (or empty) folder whose parent exists."""
    from ..sharded_encode import check_output_folder

    check_output_folder(out)
    out = Path(out)
    if (out / MANIFEST_NAME).exists() or (out.exists() and any(out.iterdir())):
        raise ValueError(f"out {out}: already holds files; give a new folder")
    return out


def _encode_to_parquet(ray, dataset, encoder_args, folder, batch_size, num_actors, num_cpus):
    """Stream ``dataset`` through a pool of :class:`_Encoder` actors (built with
    ``encoder_args``) into Parquet files in ``folder``, in item order."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # files in item order
    encoded = dataset.map_batches(
        _Encoder,
        fn_constructor_args=encoder_args,
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=num_cpus,
    )
    encoded.write_parquet(str(folder), ray_remote_args={"num_cpus": num_cpus})


def _ray_dataset(ray, dataset_or_paths, root) -> tuple:
    """``(dataset, source)``: a Ray Dataset of ``id``, ``path``, ``label`` rows, and what the
    shard records name as the input."""
    if isinstance(dataset_or_paths, ray.data.Dataset):
        if "id" not in dataset_or_paths.columns():
            raise ValueError("a Ray Dataset must have columns id, path and label")
        return dataset_or_paths, {"ray_dataset": True}
    if isinstance(dataset_or_paths, (str, os.PathLike)):
        from ..sharded_encode import read_image_inputs

        paths, labels = read_image_inputs(dataset_or_paths, root)
        source = {"images": str(Path(dataset_or_paths).resolve())}
    else:
        paths = [str(p) for p in dataset_or_paths]
        labels = np.full(len(paths), -1, dtype=np.int64)
        source = {"images": f"{len(paths)} paths"}
    dataset = ray.data.from_items(
        [{"id": i, "path": p, "label": labels[i]} for i, p in enumerate(paths)]
    )
    return dataset, source


def _shards_from_staging(staging: Path, out: Path, info: dict) -> int:
    """Rename Ray's Parquet files (in item order) into ``out``'s shard files, each with its
    record, and remove ``staging``; ``info`` gains the item count. Returns the shard count."""
    import json

    import pyarrow.parquet as pq

    files = sorted(staging.glob("*.parquet"))
    info["items"] = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    for shard, file in enumerate(files):
        target = out / shard_name(shard, len(files))
        os.replace(file, target)
        record = {
            "file": target.name,
            "rows": pq.ParquetFile(target).metadata.num_rows,
            "sha256": file_sha256(target),
            "shard": shard,
            "num_shards": len(files),
            **info,
        }
        target.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True))
    for leftover in staging.iterdir():
        leftover.unlink()
    staging.rmdir()
    return len(files)
