from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, NamedTuple

import numpy as np

from .._files import write_bytes_atomic
from .._validation import binary_code_array, check_input_file, check_integer
from ..codes import ArrayLike, check_num_bits
from ._code_index import CodeIndex
from .id_map import check_ids, extend_ids

#: Distance reported for the padding slots of a k-NN result (``id == -1``), as faiss does.
MISSING_DISTANCE = int(np.iinfo(np.int32).max)

_MAGIC = b"PMLHBIX1"
_HEADER = struct.Struct("<8sQ")  # magic, length of the JSON metadata that follows
_FORMAT_VERSION = 1
# faiss's GPU k-selection handles at most this many neighbours; larger k runs on the CPU copy.
_GPU_MAX_K = 2048

_DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "flat": {},
    "hnsw": {"M": 32, "ef_construction": 40, "ef_search": 128},
    "ivf": {"nlist": 1024, "nprobe": 8},
    "multihash": {"nhash": 3, "b": None, "nflip": 0},
}
_FAISS_TYPES = {
    "flat": "IndexBinaryFlat",
    "hnsw": "IndexBinaryHNSW",
    "ivf": "IndexBinaryIVF",
    "multihash": "IndexBinaryMultiHash",
}


def faiss_has_gpu() -> bool:
    """True when the installed faiss was built with GPU support and sees at least one GPU."""
    import faiss  # imported where used: the CLI parser reads KINDS without loading faiss

    return hasattr(faiss, "GpuIndexBinaryFlat") and faiss.get_num_gpus() > 0


class BinaryIndex(CodeIndex):
    """Hamming-distance search over binary codes, one class over faiss's binary indexes.

    ``kind`` picks the faiss index:

    * ``"flat"``: ``IndexBinaryFlat``, exact. Ties are broken by insertion position.
    * ``"hnsw"``: ``IndexBinaryHNSW``, approximate graph search. Params ``M`` (32),
      ``ef_construction`` (40), ``ef_search`` (128; faiss uses at least ``k``). No range search.
    * ``"ivf"``: ``IndexBinaryIVF`` with a flat binary coarse quantizer. Params ``nlist``
      (1024) and ``nprobe`` (8). It must be trained: :meth:`train` does it explicitly;
      otherwise the **first** :meth:`add` trains it on the codes it receives (which must then
      number at least ``nlist``; about ``39 * nlist`` gives well-balanced lists).
    * ``"multihash"``: ``IndexBinaryMultiHash``: ``nhash`` (3) hash tables over disjoint
      substrings of ``b`` bits (default ``min(num_bits // nhash, 64)``), probing codes within
      ``nflip`` (0) bit flips of each substring. By the pigeonhole principle its range search
      is exact for ``radius <= nhash * (nflip + 1) - 1`` (2 with the defaults); a larger radius
      raises ``ValueError``. Its k-NN search only sees candidates from the hash tables, so it
      is approximate.

    Codes may be given as ``(N, num_bits)`` torch tensors or numpy arrays, which are binarized
    with ``v >= 0 -> +1`` (so ``+-1`` codes and raw network outputs both work), boolean
    ``(N, num_bits)`` arrays (``True`` = +1), or codes already packed by
    :func:`pml_hashing.codes.pack_bits`: ``uint8`` ``(N, num_bits / 8)``. A ``uint8`` array is
    always read as packed. ``num_bits`` must be a positive multiple of 8: shorter codes are
    refused rather than padded, so that a code's length never changes silently between training
    and retrieval. Codes whose values are all in {-1, 0, +1} with some zeros (0/1 bits, or
    ternary codes: use :class:`~pml_hashing.index.TernaryFlatIndex`) raise ``ValueError``:
    binarizing them would map every 0 to +1 and make the distances wrong (the command line
    refuses them too).

    Ids: :meth:`add` without ``ids`` numbers codes by insertion position (0, 1, ...), as faiss
    does. With ``ids`` (non-negative int64; not necessarily unique), the index keeps its own id
    array (every faiss kind and the GPU copy then work the same way) and translates the faiss
    positions in every result; the array is saved with the index.

    GPU: with ``device="cuda"`` (or ``"auto"``, the default, when faiss has GPU support and a
    GPU is present), a flat index is searched on a ``GpuIndexBinaryFlat`` copy (built with
    ``faiss.index_binary_cpu_to_gpu``); the CPU index stays the master copy for :meth:`add`,
    :meth:`range_search` and :meth:`save`, and ``k > 2048`` runs on the CPU.

    Args:
        num_bits: ``K``, the code length, a positive multiple of 8.
        kind: ``"flat"``, ``"hnsw"``, ``"ivf"`` or ``"multihash"``.
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        **params: the kind's parameters listed above.
    """

    KINDS = tuple(_DEFAULT_PARAMS)

    def __init__(self, num_bits: int, kind: str = "flat", device: str = "auto", **params):
        self._num_bits = check_num_bits(num_bits)
        if not isinstance(kind, str) or kind not in _DEFAULT_PARAMS:
            raise ValueError(f"kind must be one of {list(self.KINDS)}; got {kind!r}")
        self._kind = kind
        self._params = self._check_params(kind, params)
        self._device = self._resolve_device(device)
        self._index = self._make_faiss_index()
        self._ids: np.ndarray | None = None
        self._gpu_index = None
        self._gpu_resources = None

    # ------------------------------------------------------------------ construction
    def _check_params(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        defaults = _DEFAULT_PARAMS[kind]
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for kind={kind!r}; accepted: {sorted(defaults)}"
            )
        merged = {**defaults, **params}
        if kind == "multihash" and merged["b"] is None:
            nhash = check_integer(merged["nhash"], "nhash", minimum=1)
            merged["b"] = min(self._num_bits // nhash, 64)
        for name, value in merged.items():
            minimum = 0 if name == "nflip" else 1
            merged[name] = check_integer(value, name, minimum=0)
            if merged[name] < minimum:
                raise ValueError(f"{name} must be >= {minimum}; got {value}")
            if merged[name] > 2**31 - 1:
                raise ValueError(f"{name} must be < 2**31 (faiss takes a C int); got {value}")
        if kind == "multihash":
            nhash, b = merged["nhash"], merged["b"]
            if b > 64 or nhash * b > self._num_bits:
                raise ValueError(
                    f"multihash needs b <= 64 and nhash * b <= num_bits = {self._num_bits}; "
                    f"got nhash={nhash}, b={b}"
                )
        return merged

    def _resolve_device(self, device: str) -> str:
        if not isinstance(device, str) or device not in ("cpu", "cuda", "auto"):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'auto'; got {device!r}")
        if device == "auto":
            return "cuda" if self._kind == "flat" and faiss_has_gpu() else "cpu"
        if device == "cuda":
            if self._kind != "flat":
                raise ValueError(
                    f"device='cuda' is available for kind='flat' only (faiss has no GPU "
                    f"binary {self._kind}); got kind={self._kind!r}"
                )
            if not faiss_has_gpu():
                import faiss

                raise ValueError(
                    "device='cuda' needs faiss-gpu and a CUDA GPU; this faiss has "
                    f"{'no GPU support' if not hasattr(faiss, 'GpuIndexBinaryFlat') else 'no GPU'}"
                )
        return device

    def _make_faiss_index(self):
        import faiss

        d, p = self._num_bits, self._params
        if self._kind == "flat":
            return faiss.IndexBinaryFlat(d)
        if self._kind == "hnsw":
            index = faiss.IndexBinaryHNSW(d, p["M"])
            index.hnsw.efConstruction = p["ef_construction"]
            index.hnsw.efSearch = p["ef_search"]
            return index
        if self._kind == "ivf":
            # The Python wrapper keeps a reference to the quantizer for the index's lifetime.
            index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, p["nlist"])
            index.nprobe = p["nprobe"]
            return index
        index = faiss.IndexBinaryMultiHash(d, p["nhash"], p["b"])
        index.nflip = p["nflip"]
        return index

    def _apply_search_params(self) -> None:
        # Search-time settings are not all serialized by faiss: set them again after a load.
        if self._kind == "hnsw":
            self._index.hnsw.efSearch = self._params["ef_search"]
        elif self._kind == "ivf":
            self._index.nprobe = self._params["nprobe"]
        elif self._kind == "multihash":
            self._index.nflip = self._params["nflip"]

    # ------------------------------------------------------------------ properties
    # num_bits, kind and len() come from CodeIndex, as for the engine indexes
    @property
    def params(self) -> dict[str, Any]:
        """The kind's parameters, defaults filled in (a copy)."""
        return dict(self._params)

    @property
    def device(self) -> str:
        """``"cpu"`` or ``"cuda"`` (where flat searches run)."""
        return self._device

    @property
    def ntotal(self) -> int:
        """Number of codes in the index."""
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        """False only for an IVF index before :meth:`train` (or its first :meth:`add`)."""
        return bool(self._index.is_trained)

    @property
    def faiss_index(self):
        """The underlying CPU faiss index (positions, not ids, label its results)."""
        return self._index

    def __repr__(self) -> str:
        return (
            f"BinaryIndex(num_bits={self._num_bits}, kind={self._kind!r}, "
            f"ntotal={self.ntotal}, device={self._device!r}, params={self._params})"
        )

    # ------------------------------------------------------------------ inputs
    def _packed(self, codes: ArrayLike, name: str) -> np.ndarray:
        return binary_code_array(codes, name, self._num_bits)

    @staticmethod
    def _check_k(k: int) -> int:
        return check_integer(k, "k", minimum=1)

    # ------------------------------------------------------------------ building
    def train(self, codes: ArrayLike) -> None:
        """Train the coarse quantizer of an IVF index (a no-op for the other kinds)."""
        packed = self._packed(codes, "codes")
        if self._kind != "ivf":
            return
        if len(packed) < self._params["nlist"]:
            raise ValueError(
                f"training an IVF index with nlist={self._params['nlist']} needs at least "
                f"nlist codes; got {len(packed)} (lower nlist or train on more codes)"
            )
        self._index.train(packed)

    def add(self, codes: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Add ``(N, num_bits)`` codes (or packed ``(N, num_bits / 8)`` uint8).

        Args:
            codes: the codes to add.
            ids: optional ``(N,)`` non-negative integer ids returned by searches instead of
                insertion positions.
        """
        packed = self._packed(codes, "codes")
        new_ids = check_ids(ids, len(packed))
        if len(packed) == 0:
            return
        if not self._index.is_trained:
            self.train(packed)
        self._ids = extend_ids(self._ids, new_ids, self.ntotal, len(packed))
        self._index.add(packed)
        self._gpu_index = None

    def reset(self) -> None:
        """Remove every code (an IVF index stays trained)."""
        self._index.reset()
        self._ids = None
        self._gpu_index = None

    # ------------------------------------------------------------------ searching
    def _to_ids(self, positions: np.ndarray) -> np.ndarray:
        if self._ids is None:
            return positions
        return np.where(positions >= 0, self._ids[np.maximum(positions, 0)], -1)

    def _searcher(self, k: int):
        if self._device != "cuda" or k > _GPU_MAX_K:
            return self._index
        if self._gpu_index is None:
            import faiss

            if self._gpu_resources is None:
                self._gpu_resources = faiss.StandardGpuResources()
            self._gpu_index = faiss.index_binary_cpu_to_gpu(self._gpu_resources, 0, self._index)
        return self._gpu_index

    def search(self, codes: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes in Hamming distance for each query.

        Args:
            codes: ``(Q, num_bits)`` query codes (or packed ``(Q, num_bits / 8)`` uint8).
            k: number of neighbours, a positive integer. A ``k`` above :attr:`ntotal` is
                clamped to :attr:`ntotal`, so the result never takes more than ``Q x ntotal``
                slots whatever ``k`` (an empty index gives ``(Q, 0)``).

        Returns:
            ``(distances, ids)``: ``int32 (Q, k)`` Hamming distances, ascending, and ``int64
            (Q, k)`` ids (``k`` after clamping). Slots beyond the results found (approximate
            kinds) hold id ``-1`` and distance ``MISSING_DISTANCE`` (``2**31 - 1``). For
            ``kind="flat"`` equal distances are ordered by insertion position (the id, when
            :meth:`add` got no ``ids``), and the ``k`` kept are the first in that order.
        """
        k = min(self._check_k(k), self.ntotal)
        packed = self._packed(codes, "codes")
        q = len(packed)
        if q == 0 or self.ntotal == 0:
            return (
                np.full((q, k), MISSING_DISTANCE, dtype=np.int32),
                np.full((q, k), -1, dtype=np.int64),
            )
        distances, positions = self._searcher(k).search(packed, k)
        missing = positions < 0
        if missing.any():
            distances[missing] = MISSING_DISTANCE
        return distances, self._to_ids(positions)

    def _check_radius(self, radius: int) -> int:
        radius = check_integer(radius, "radius", minimum=0)
        if self._kind == "hnsw":
            raise ValueError(
                "range_search is not available for kind='hnsw' (faiss's binary HNSW has no "
                "range search); use kind='flat' or kind='multihash'"
            )
        if self._kind == "multihash":
            exact = self._params["nhash"] * (self._params["nflip"] + 1) - 1
            if radius > exact:
                raise ValueError(
                    f"radius must be <= nhash * (nflip + 1) - 1 = {exact} for an exact "
                    f"multihash range search; got {radius} (raise nhash or nflip)"
                )
        return radius

    def range_search(
        self, codes: ArrayLike, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All codes within Hamming distance ``radius`` (inclusive) of each query.

        faiss's own ``range_search`` keeps distances strictly below its radius; this method
        passes ``radius + 1`` so that ``d <= radius`` is kept.

        Args:
            codes: ``(Q, num_bits)`` query codes (or packed uint8).
            radius: the largest Hamming distance kept, ``>= 0``; a radius above
                :attr:`num_bits` keeps every code (it is clamped to ``num_bits``).

        Returns:
            ``(lims, distances, ids)`` in faiss's layout: the results of query ``i`` are
            ``distances[lims[i]:lims[i + 1]]`` (int32) and ``ids[lims[i]:lims[i + 1]]``
            (int64), sorted by distance and then by id; ``lims`` is int64 ``(Q + 1,)``.
        """
        radius = self._check_radius(radius)
        packed = self._packed(codes, "codes")
        q = len(packed)
        if q == 0 or self.ntotal == 0:
            return (
                np.zeros(q + 1, dtype=np.int64),
                np.zeros(0, dtype=np.int32),
                np.zeros(0, dtype=np.int64),
            )
        lims, distances, positions = self._index.range_search(
            packed, min(radius, self._num_bits) + 1
        )
        lims = lims.astype(np.int64)
        distances = distances.astype(np.int32)
        ids = self._to_ids(positions.astype(np.int64))
        rows = np.repeat(np.arange(q), np.diff(lims))
        order = np.lexsort((ids, distances, rows))
        return lims, distances[order], ids[order]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike) -> None:
        """Write the index to ``path`` atomically (a temporary file, then ``os.replace``).

        The file holds a header (magic bytes ``PMLHBIX1`` and JSON metadata: ``num_bits``,
        ``kind``, params, sizes, a CRC32), faiss's ``serialize_index_binary`` bytes and the id
        array, if any.
        """
        import faiss

        path = os.fspath(path)
        payload = faiss.serialize_index_binary(self._index).tobytes()
        id_bytes = b"" if self._ids is None else self._ids.astype("<i8").tobytes()
        meta = {
            "format_version": _FORMAT_VERSION,
            "num_bits": self._num_bits,
            "kind": self._kind,
            "params": self._params,
            "ntotal": self.ntotal,
            "faiss_nbytes": len(payload),
            "ids_nbytes": len(id_bytes),
            "crc32": zlib.crc32(id_bytes, zlib.crc32(payload)),
        }
        meta_bytes = json.dumps(meta, sort_keys=True).encode("utf-8")
        header = _HEADER.pack(_MAGIC, len(meta_bytes))
        data = header + meta_bytes + payload + id_bytes
        write_bytes_atomic(path, data, durable=True, parents=False)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        num_bits: int | None = None,
        kind: str | None = None,
        device: str = "auto",
    ) -> BinaryIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: the file.
            num_bits: if given, the code length the caller expects; a different one raises.
            kind: if given, the kind the caller expects; a different one raises.
            device: as in the constructor.

        Raises:
            ValueError: naming ``path`` when the file is not a pml-hashing index, is truncated
                or corrupted, or does not match ``num_bits`` / ``kind``.
        """
        path = check_input_file(path, "index file")

        def bad(reason: str) -> ValueError:
            return ValueError(f"{path} is not a readable pml-hashing BinaryIndex file: {reason}")

        meta, payload, id_bytes = _read_index_file(path, bad)
        if num_bits is not None and check_num_bits(num_bits) != meta.num_bits:
            raise ValueError(
                f"{path} holds a {meta.num_bits}-bit index; num_bits={num_bits} expected"
            )
        if kind is not None and kind != meta.kind:
            raise ValueError(f"{path} holds a kind={meta.kind!r} index; kind={kind!r} expected")
        index = _deserialize_faiss_index(payload, meta, bad)
        try:
            out = cls(meta.num_bits, kind=meta.kind, device=device, **meta.params)
        except (ValueError, TypeError) as e:
            raise bad(f"unreadable metadata ({e})") from None
        out._index = index
        out._apply_search_params()
        if meta.ids_nbytes:
            out._ids = np.frombuffer(id_bytes, dtype="<i8").astype(np.int64)
        return out


class _IndexMetadata(NamedTuple):
    """The JSON metadata of a saved index, with its fields checked for type and sign."""

    version: Any
    num_bits: int
    kind: str
    params: dict
    ntotal: int
    faiss_nbytes: int
    ids_nbytes: int
    crc32: int


def _parse_metadata(raw: bytes, bad) -> _IndexMetadata:
    try:
        meta = json.loads(raw.decode("utf-8"))
        parsed = _IndexMetadata(
            version=meta["format_version"],
            num_bits=int(meta["num_bits"]),
            kind=meta["kind"],
            params=dict(meta["params"]),
            ntotal=int(meta["ntotal"]),
            faiss_nbytes=int(meta["faiss_nbytes"]),
            ids_nbytes=int(meta["ids_nbytes"]),
            crc32=int(meta["crc32"]),
        )
        if not isinstance(parsed.kind, str) or parsed.kind not in _DEFAULT_PARAMS:
            raise ValueError(f"kind {parsed.kind!r} is not one of {list(_DEFAULT_PARAMS)}")
        if min(parsed.num_bits, parsed.ntotal, parsed.faiss_nbytes, parsed.ids_nbytes) < 0:
            raise ValueError("negative sizes")
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, OverflowError) as e:
        raise bad(f"unreadable metadata ({e})") from None
    return parsed


def _read_index_file(path, bad) -> tuple[_IndexMetadata, bytes, bytes]:
    """The metadata, the faiss payload and the id bytes of a file :meth:`BinaryIndex.save`
    wrote, after the magic bytes, format version, sizes and CRC32 are checked."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _HEADER.size or data[: len(_MAGIC)] != _MAGIC:
        raise bad(f"it does not start with the magic bytes {_MAGIC!r}")
    _, meta_len = _HEADER.unpack_from(data)
    meta_end = _HEADER.size + meta_len
    if meta_end > len(data):
        raise bad("the file is truncated (metadata incomplete)")
    meta = _parse_metadata(data[_HEADER.size : meta_end], bad)
    if meta.version != _FORMAT_VERSION:
        raise bad(f"format version {meta.version}; this pml-hashing reads {_FORMAT_VERSION}")
    expected_size = meta_end + meta.faiss_nbytes + meta.ids_nbytes
    if len(data) != expected_size:
        raise bad(
            f"the file is truncated or has trailing bytes ({len(data)} bytes; the header "
            f"announces {expected_size})"
        )
    payload = data[meta_end : meta_end + meta.faiss_nbytes]
    id_bytes = data[meta_end + meta.faiss_nbytes :]
    if zlib.crc32(id_bytes, zlib.crc32(payload)) != meta.crc32:
        raise bad("the CRC32 checksum does not match (the file is corrupted)")
    return meta, payload, id_bytes


def _deserialize_faiss_index(payload: bytes, meta: _IndexMetadata, bad):
    """The faiss index in ``payload``, checked against what the metadata says it holds."""
    import faiss

    try:
        index = faiss.deserialize_index_binary(np.frombuffer(payload, dtype=np.uint8))
    except RuntimeError as e:
        raise bad(f"faiss could not read the index ({str(e).splitlines()[0]})") from None
    if meta.kind not in _FAISS_TYPES or type(index).__name__ != _FAISS_TYPES[meta.kind]:
        found = type(index).__name__
        raise bad(f"the metadata says kind={meta.kind!r} but faiss read a {found}")
    if index.d != meta.num_bits or index.ntotal != meta.ntotal:
        raise bad(
            f"the faiss index has d={index.d}, ntotal={index.ntotal}; the metadata says "
            f"num_bits={meta.num_bits}, ntotal={meta.ntotal}"
        )
    if meta.ids_nbytes not in (0, 8 * meta.ntotal):
        raise bad(f"the id array has {meta.ids_nbytes} bytes; expected 0 or {8 * meta.ntotal}")
    return index
