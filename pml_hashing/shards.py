"""Codes as a folder of Parquet shards: the streaming output of ``pml-hashing encode``.

A shard folder holds one Parquet file per encoding process (or job-array task),
``shard-00000-of-00002.parquet``, ..., and ``_manifest.json``, written last. Columns:

* ``id`` (int64): the item's index in the encoded split or image list;
* ``label`` (int64, or ``list<int64>`` holding the multi-hot row for multi-label data);
* ``code`` (``fixed_size_list<uint8>[K/8]``): the binary code packed in the package's one
  bit order (:func:`pml_hashing.codes.pack_bits`, faiss's);
* ``output`` (``fixed_size_list<float32>[K]``): the real outputs, only with ``--outputs``.

Shard ``i`` of ``n`` holds the contiguous items ``[i * N // n, (i + 1) * N // n)``, so the
shards read in order give the items in order. Each finished shard gets a small
``shard-....json`` record (rows, sha256, code length, checkpoint digest); the manifest
collects them once every shard is done. A rerun skips the shards whose record and digest
match, so a crash costs only the unfinished shards.

Readers (:func:`check_shard_folder`, :func:`iter_shard_batches`, :func:`read_shards`)
verify the manifest and every shard's digest before reading anything.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "MANIFEST_NAME",
    "ShardFolder",
    "ShardWriter",
    "check_shard_folder",
    "is_shard_folder",
    "iter_shard_batches",
    "read_shards",
    "shard_name",
    "shard_range",
    "write_manifest_if_complete",
]

MANIFEST_NAME = "_manifest.json"
_FORMAT = "pml-hashing-shards-1"
_META_BITS = b"pml_hashing.num_bits"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow ships with the dev extra
        raise ImportError(
            "shard folders need pyarrow: pip install 'pml-hashing[lance]' or pyarrow"
        ) from None
    return pa, pq


def shard_name(shard: int, num_shards: int) -> str:
    """The file name of shard ``shard`` of ``num_shards``."""
    return f"shard-{shard:05d}-of-{num_shards:05d}.parquet"


def shard_range(shard: int, num_shards: int, num_items: int) -> range:
    """The contiguous item range of one shard: the shards in order cover every item once."""
    return range(shard * num_items // num_shards, (shard + 1) * num_items // num_shards)


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def schema(num_bits: int, multi_label: bool, with_outputs: bool):
    """The Parquet schema of a shard with codes of ``num_bits`` bits."""
    pa, _ = _pyarrow()
    fields = [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("label", pa.list_(pa.int64()) if multi_label else pa.int64(), nullable=False),
        pa.field("code", pa.list_(pa.uint8(), num_bits // 8), nullable=False),
    ]
    if with_outputs:
        fields.append(pa.field("output", pa.list_(pa.float32(), num_bits), nullable=False))
    return pa.schema(fields, metadata={_META_BITS: str(num_bits).encode()})


def record_batch(ids, labels, packed, outputs, schema_):
    """One Arrow record batch of the shard schema (no copies of the code bytes)."""
    pa, _ = _pyarrow()
    labels = np.asarray(labels, dtype=np.int64)
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    columns = [pa.array(np.asarray(ids, dtype=np.int64))]
    if labels.ndim == 2:
        columns.append(
            pa.ListArray.from_arrays(
                pa.array(np.arange(0, labels.size + 1, labels.shape[1], dtype=np.int32)),
                pa.array(labels.reshape(-1)),
            )
        )
    else:
        columns.append(pa.array(labels))
    columns.append(pa.FixedSizeListArray.from_arrays(pa.array(packed.reshape(-1)), packed.shape[1]))
    if outputs is not None:
        outputs = np.ascontiguousarray(outputs, dtype=np.float32)
        columns.append(
            pa.FixedSizeListArray.from_arrays(pa.array(outputs.reshape(-1)), outputs.shape[1])
        )
    return pa.RecordBatch.from_arrays(columns, schema=schema_)


class _ShardRowsWriter:
    """What writing one shard's rows is, wherever they go (a Parquet file, a Lance table):
    the shard's columns and identity, batches turned into record batches, rows counted. A
    subclass opens its storage in ``_open(folder)`` and takes each batch in ``_append``."""

    def __init__(
        self,
        folder,
        shard: int,
        num_shards: int,
        num_bits: int,
        multi_label: bool,
        with_outputs: bool,
        info: dict,
        items: range | None = None,
    ):
        self.shard, self.num_shards, self.num_bits = shard, num_shards, num_bits
        self.with_outputs = with_outputs
        self.info = dict(info)
        self.items = items
        self._schema = schema(num_bits, multi_label, with_outputs)
        self.rows = 0
        self._open(folder)

    def _open(self, folder) -> None:
        raise NotImplementedError

    def _append(self, batch) -> None:
        raise NotImplementedError

    def write(self, ids, labels, packed, outputs=None) -> None:
        """Append a batch: ids ``(B,)``, labels ``(B,)`` or ``(B, C)``, packed ``(B, K/8)``."""
        if self.with_outputs and outputs is None:
            raise ValueError("this shard has an output column: pass outputs")
        batch = record_batch(
            ids, labels, packed, outputs if self.with_outputs else None, self._schema
        )
        self._append(batch)
        self.rows += len(ids)


class ShardWriter(_ShardRowsWriter):
    """Writes one shard as its batches come (memory stays one batch), then records it.

    The Parquet file is written under a ``.partial`` name and renamed when complete, so a
    shard file that exists is a finished one; its ``.json`` record (rows, sha256) follows.

    Args:
        folder: the shard folder (created if missing).
        shard, num_shards: which shard this is.
        num_bits: the code length ``K``.
        multi_label: labels are multi-hot rows (a list column) instead of integers.
        with_outputs: also write the real outputs.
        info: what every record and the manifest carry to refuse a mixed rerun
            (checkpoint digest, input); written into the shard record.
        items: the shard's item range (:func:`shard_range`); unused here, as the file of a
            rerun shard is replaced whole (a Lance shard deletes the rows of its range).
    """

    def _open(self, folder) -> None:
        _, pq = _pyarrow()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / shard_name(self.shard, self.num_shards)
        self._partial = self.path.with_name(self.path.name + ".partial")
        self._writer = pq.ParquetWriter(self._partial, self._schema)

    def _append(self, batch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> dict:
        """Finish the file, rename it into place and write its record; returns the record."""
        self._writer.close()
        os.replace(self._partial, self.path)
        record = {
            "file": self.path.name,
            "rows": self.rows,
            "sha256": file_sha256(self.path),
            "shard": self.shard,
            "num_shards": self.num_shards,
            "num_bits": self.num_bits,
            **self.info,
        }
        _write_json_atomic(self.path.with_suffix(".json"), record)
        return record

    def abort(self) -> None:
        """Drop the partial file (an error during encoding)."""
        try:
            self._writer.close()
        finally:
            self._partial.unlink(missing_ok=True)


def _write_json_atomic(path: Path, value: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def finished_record(folder, shard: int, num_shards: int) -> dict | None:
    """The record of a finished shard whose file still has its recorded digest, else None."""
    path = Path(folder) / shard_name(shard, num_shards)
    record = _read_json(path.with_suffix(".json"))
    if record is None or not path.is_file():
        return None
    if record.get("sha256") != file_sha256(path):
        return None
    return record


def check_compatible(folder, num_shards: int, expected: dict) -> None:
    """Refuse to add shards to a folder written with another checkpoint, code length, input
    or shard count, naming what differs. ``expected`` holds the keys every record carries."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise ValueError(f"--out {folder}: exists and is not a folder")
    records = [(MANIFEST_NAME, _read_json(folder / MANIFEST_NAME))]
    records += [(p.name, _read_json(p)) for p in sorted(folder.glob("shard-*.json"))]
    for name, record in records:
        if record is None:
            continue
        theirs = record.get("num_shards")
        if theirs is not None and theirs != num_shards:
            raise ValueError(
                f"{folder} holds shards of a {theirs}-shard encode ({name}); this run has "
                f"num_shards={num_shards}: use another --out folder or the same shard count"
            )
        for key, value in expected.items():
            if key in record and record[key] != value:
                raise ValueError(
                    f"{folder} was encoded with another {key} ({name}: {record[key]!r}; this "
                    f"run: {value!r}): use another --out folder or delete this one"
                )


def write_manifest_if_complete(folder, num_shards: int, info: dict) -> dict | None:
    """Write ``_manifest.json`` when every shard is finished; return it (None if not yet).

    Whoever finishes last writes it (several writers write the same bytes, atomically).
    """
    folder = Path(folder)
    records = [finished_record(folder, i, num_shards) for i in range(num_shards)]
    if any(record is None for record in records):
        return None
    manifest = {
        "format": _FORMAT,
        "num_shards": num_shards,
        "rows": sum(r["rows"] for r in records),
        "shards": [{"file": r["file"], "rows": r["rows"], "sha256": r["sha256"]} for r in records],
        **info,
    }
    _write_json_atomic(folder / MANIFEST_NAME, manifest)
    return manifest


# ---------------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class ShardFolder:
    """A verified shard folder: its manifest, shard paths and code length."""

    path: Path
    manifest: dict
    files: tuple
    num_bits: int
    rows: int
    with_outputs: bool


def is_shard_folder(path) -> bool:
    """True when ``path`` is a folder (a shard folder or meant as one)."""
    return Path(path).is_dir()


def check_shard_folder(path, name: str = "shard folder") -> ShardFolder:
    """Verify a shard folder before anything is read: the manifest, every shard present with
    its recorded digest, one code length. ``ValueError`` naming the problem otherwise."""
    _, pq = _pyarrow()
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{name} {folder}: not a folder")
    manifest = _read_json(folder / MANIFEST_NAME)
    if manifest is None:
        raise ValueError(
            f"{name} {folder}: no readable {MANIFEST_NAME}; the encode has not finished (rerun "
            "it: finished shards are kept) or this is not a shard folder"
        )
    if manifest.get("format") != _FORMAT:
        raise ValueError(f"{name} {folder}: {MANIFEST_NAME} is not a {_FORMAT} manifest")
    _check_manifest_fields(manifest, f"{name} {folder}: {MANIFEST_NAME}")
    num_bits = manifest["num_bits"]
    files = []
    for entry in manifest["shards"]:
        file = folder / entry["file"]
        if not file.is_file():
            raise ValueError(f"{name} {folder}: shard {entry['file']} is missing")
        if file_sha256(file) != entry["sha256"]:
            raise ValueError(
                f"{name} {folder}: shard {entry['file']} was altered (its sha256 differs "
                f"from {MANIFEST_NAME}); re-encode it (delete it and rerun the encode)"
            )
        bits = _file_num_bits(pq.read_schema(file))
        if bits != num_bits:
            raise ValueError(
                f"{name} {folder}: shard {entry['file']} holds {bits}-bit codes; the "
                f"manifest says {num_bits} bits (mixed bit widths)"
            )
        if pq.ParquetFile(file).metadata.num_rows != entry["rows"]:
            raise ValueError(
                f"{name} {folder}: shard {entry['file']} does not hold the {entry['rows']} "
                f"rows {MANIFEST_NAME} records"
            )
        files.append(file)
    return ShardFolder(
        path=folder,
        manifest=manifest,
        files=tuple(files),
        num_bits=int(num_bits),
        rows=int(manifest["rows"]),
        with_outputs=bool(manifest.get("outputs", False)),
    )


def _is_count(value) -> bool:
    return type(value) is int and value >= 0  # JSON true/false are not counts


def _check_manifest_fields(manifest: dict, where: str) -> None:
    """The manifest's fields have the types the encode writes, before any is used (a
    hand-edited or damaged manifest is refused by name, not met as a KeyError later)."""
    num_bits = manifest.get("num_bits")
    if not _is_count(num_bits) or num_bits == 0 or num_bits % 8:
        raise ValueError(f"{where}: num_bits must be a positive multiple of 8; got {num_bits!r}")
    shards = manifest.get("shards")
    if not isinstance(shards, list) or not shards:
        raise ValueError(f"{where}: shards must be a non-empty list; got {shards!r}")
    for entry in shards:
        file = entry.get("file") if isinstance(entry, dict) else None
        if (
            not isinstance(file, str)
            or file != Path(file).name
            or file in ("", ".", "..")
            or not isinstance(entry.get("sha256"), str)
            or not _is_count(entry.get("rows"))
        ):
            raise ValueError(
                f"{where}: each shard entry must hold file (a name in the folder), rows and "
                f"sha256; got {entry!r}"
            )
    rows = manifest.get("rows")
    if not _is_count(rows) or rows != sum(entry["rows"] for entry in shards):
        raise ValueError(f"{where}: rows {rows!r} is not the sum of the shards' rows")
    if not isinstance(manifest.get("outputs", False), bool):
        raise ValueError(f"{where}: outputs must be true or false; got {manifest['outputs']!r}")


def _file_num_bits(schema_) -> int:
    """A shard's code length: its metadata, else its code column's width (-1 if neither)."""
    pa, _ = _pyarrow()
    metadata = schema_.metadata or {}
    if _META_BITS in metadata:
        return int(metadata[_META_BITS])
    if "code" in schema_.names:
        kind = schema_.field("code").type
        if pa.types.is_fixed_size_list(kind):
            return kind.list_size * 8
    return -1


def _column_arrays(table, name: str, width: int | None, dtype) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if width is None:
        return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)
    return column.flatten().to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, width)


def _labels(table) -> np.ndarray:
    pa, _ = _pyarrow()
    column = table.column("label").combine_chunks()
    if pa.types.is_list(column.type):
        flat = column.flatten().to_numpy(zero_copy_only=False).astype(np.int64)
        return flat.reshape(len(column), -1) if len(column) else flat.reshape(0, 0)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def iter_shard_batches(
    path, columns=("id", "label", "code"), batch_size: int = 65536
) -> Iterator[dict[str, np.ndarray]]:
    """Stream a verified shard folder in order, ``batch_size`` rows at a time.

    Yields dicts of numpy arrays: ``ids`` (B,), ``labels`` (B,) or (B, C), ``packed``
    (B, K/8) uint8, ``outputs`` (B, K) float32 (when asked and present).
    """
    pa, pq = _pyarrow()
    folder = path if isinstance(path, ShardFolder) else check_shard_folder(path)
    width = folder.num_bits // 8
    for file in folder.files:
        parquet = pq.ParquetFile(file)
        for batch in parquet.iter_batches(batch_size=batch_size, columns=list(columns)):
            table = pa.Table.from_batches([batch])
            out = {}
            if "id" in columns:
                out["ids"] = _column_arrays(table, "id", None, np.int64)
            if "label" in columns:
                out["labels"] = _labels(table)
            if "code" in columns:
                out["packed"] = _column_arrays(table, "code", width, np.uint8)
            if "output" in columns:
                out["outputs"] = _column_arrays(table, "output", folder.num_bits, np.float32)
            yield out


def read_shards(path, outputs: bool = False) -> dict[str, np.ndarray]:
    """All rows of a shard folder as arrays: ``codes`` (N, K) int8 +-1, ``packed``, ``ids``,
    ``labels`` and (with ``outputs``) ``outputs``, in item order."""
    from .codes import unpack_bits

    folder = check_shard_folder(path)
    columns = ["id", "label", "code"]
    if outputs and folder.with_outputs:
        columns.append("output")
    parts = list(iter_shard_batches(folder, columns))
    width = folder.num_bits // 8
    if not parts:
        packed = np.zeros((0, width), np.uint8)
        arrays = {"ids": np.zeros(0, np.int64), "labels": np.zeros(0, np.int64)}
    else:
        packed = np.concatenate([p["packed"] for p in parts])
        arrays = {
            "ids": np.concatenate([p["ids"] for p in parts]),
            "labels": np.concatenate([p["labels"] for p in parts]),
        }
        if "output" in columns:
            arrays["outputs"] = np.concatenate([p["outputs"] for p in parts])
    arrays["packed"] = packed
    arrays["codes"] = unpack_bits(packed, folder.num_bits)
    return arrays
