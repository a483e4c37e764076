"""Binary codes in a Milvus collection (a standalone server or a cluster)."""

from __future__ import annotations

import numpy as np

from ._engine_index import EngineIndex
from ._results import check_k, complete_last_group, knn_arrays, packed_queries

#: Milvus caps both the number of results of one query (topk) and queries per request.
MILVUS_MAX_K = 16384
_INDEX_TYPES = {"flat": "BIN_FLAT", "ivf": "BIN_IVF_FLAT"}
_INSERT_BATCH = 10000


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise ImportError('MilvusIndex needs pymilvus: pip install "pml-hashing[milvus]"') from None
    return pymilvus


class MilvusIndex(EngineIndex):
    """Hamming search of binary codes in a Milvus collection, with :class:`BinaryIndex`'s
    methods that make sense remotely (``add``, ``search``, ``range_search``, ``count``) and
    ``drop``.

    The collection has three fields: ``pos`` (int64 primary key, the insertion position),
    ``id`` (int64, the id searches return: the one given to :meth:`add`, else the position)
    and ``code`` (``BINARY_VECTOR`` of ``num_bits``, metric ``HAMMING``). It is created
    when missing; an existing one must hold codes of ``num_bits`` bits under the same index
    kind. Searches use strong consistency, so a search right after :meth:`add` sees every
    code.

    ``kind="flat"`` (``BIN_FLAT``) is exact: :meth:`search` returns the same distances and,
    ties included, the same ids as ``BinaryIndex(kind="flat")`` over the codes in insertion
    order (the last group of equal distances is completed by a range query, as long as it
    holds at most 16,384 codes, Milvus's result cap). ``kind="ivf"`` (``BIN_IVF_FLAT``) is
    approximate once :meth:`reindex` has built it: ``nlist`` inverted lists, ``nprobe`` of
    them searched; recall rises with ``nprobe`` and is exact at ``nprobe == nlist``. Codes
    added after the last :meth:`reindex` are searched exhaustively. :meth:`range_search` is
    refused on IVF, because Milvus' IVF range search drops hits even with every list probed,
    and for a query with more than 16,383 codes within the radius (Milvus' result cap).

    Args:
        uri: the server, e.g. ``http://127.0.0.1:19530`` (``token`` for authentication).
        collection: the collection name.
        num_bits: ``K``, a positive multiple of 8.
        kind: ``"flat"`` or ``"ivf"`` (None: an existing collection's kind, else flat).
        nlist, nprobe: IVF parameters (ignored by ``flat``).
        timeout: seconds to wait for the server (connection and each call).
        token: ``user:password`` or an API key, if the server asks for one.
        create: create a missing collection (False: a missing one is a ``ValueError``).
    """

    KINDS = tuple(_INDEX_TYPES)
    _NO_IVF_RANGE_SEARCH = (
        "Milvus' BIN_IVF_FLAT range search drops hits even with every list probed"
    )

    def __init__(
        self,
        uri: str,
        collection: str,
        num_bits: int,
        kind: str | None = "flat",
        nlist: int = 1024,
        nprobe: int = 8,
        timeout: float = 10.0,
        token: str = "",
        create: bool = True,
    ):
        self._check_layout(num_bits, kind, nlist, nprobe)
        if not isinstance(uri, str) or not uri:
            raise ValueError(f"uri must be a server address such as http://HOST:19530; got {uri!r}")
        if not isinstance(collection, str) or not collection:
            raise ValueError(f"collection must be a non-empty name; got {collection!r}")
        self._uri, self._collection = uri, collection
        pymilvus = _pymilvus()
        self._error = pymilvus.MilvusException
        try:
            self._client = pymilvus.MilvusClient(uri=uri, token=token, timeout=timeout)
        except Exception as e:
            raise ConnectionError(
                f"cannot reach a Milvus server at uri={uri!r} ({type(e).__name__}: "
                f"{getattr(e, 'message', e)}); is it running, and is the address right?"
            ) from None
        self._timeout = timeout
        if self._client.has_collection(collection):
            self._check_existing()
        elif not create:
            raise ValueError(
                f"collection {collection!r} does not exist at {uri} (build it first: "
                "pml-hashing index build --engine milvus)"
            )
        else:
            self._kind = self._kind or "flat"
            self._create()
        self._client.load_collection(collection)

    # ------------------------------------------------------------------ collection
    def _create(self) -> None:
        pymilvus = _pymilvus()
        schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("pos", pymilvus.DataType.INT64, is_primary=True)
        schema.add_field("id", pymilvus.DataType.INT64)
        schema.add_field("code", pymilvus.DataType.BINARY_VECTOR, dim=self._num_bits)
        index = self._client.prepare_index_params()
        params = {"nlist": self._nlist} if self._kind == "ivf" else {}
        index.add_index(
            field_name="code",
            index_type=_INDEX_TYPES[self._kind],
            metric_type="HAMMING",
            params=params,
        )
        self._client.create_collection(
            self._collection, schema=schema, index_params=index, consistency_level="Strong"
        )

    def _check_existing(self) -> None:
        info = self._client.describe_collection(self._collection)
        fields = {f["name"]: f for f in info["fields"]}
        code = fields.get("code")
        if set(fields) != {"pos", "id", "code"} or code is None:
            raise ValueError(
                f"collection {self._collection!r} at {self._uri} was not written by "
                f"MilvusIndex (fields {sorted(fields)}; expected pos, id, code): pick "
                "another name"
            )
        bits = int(code["params"].get("dim", -1))
        if bits != self._num_bits:
            raise ValueError(
                f"collection {self._collection!r} at {self._uri} holds {bits}-bit codes; "
                f"got num_bits={self._num_bits} (use another collection, or drop this one)"
            )
        index = self._client.describe_index(self._collection, "code") or {}
        index_type = index.get("index_type")
        if self._kind is None:  # the collection's own kind
            kinds = {v: k for k, v in _INDEX_TYPES.items()}
            self._kind = kinds.get(index_type, "flat")
        if index_type is not None and index_type != _INDEX_TYPES[self._kind]:
            kind = {v: k for k, v in _INDEX_TYPES.items()}.get(index_type, index_type)
            raise ValueError(
                f"collection {self._collection!r} has a {index_type} index (kind={kind!r}); "
                f"got kind={self._kind!r}"
            )
        if self._kind == "ivf" and index.get("nlist") is not None:
            self._nlist = int(index["nlist"])

    # ------------------------------------------------------------------ properties
    @property
    def count(self) -> int:
        """Number of codes in the collection (strongly consistent)."""
        rows = self._client.query(
            self._collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level="Strong",
        )
        return int(rows[0]["count(*)"])

    def __repr__(self) -> str:
        return (
            f"MilvusIndex(uri={self._uri!r}, collection={self._collection!r}, "
            f"num_bits={self._num_bits}, kind={self._kind!r})"
        )

    # ------------------------------------------------------------------ building
    def add(self, codes, ids=None) -> None:
        """Insert ``(N, num_bits)`` codes (or packed uint8) in batches, then flush.

        Without ``ids`` a code's id is its insertion position (0, 1, ... over every
        :meth:`add`), as in ``BinaryIndex``. One writer at a time: positions are counted
        from the collection's size when the call starts.
        """
        added = self._rows_to_add(codes, ids)
        if added is None:
            return
        packed, new_ids, positions = added
        for s in range(0, len(packed), _INSERT_BATCH):
            rows = [
                {"pos": int(p), "id": int(i), "code": c.tobytes()}
                for p, i, c in zip(
                    positions[s : s + _INSERT_BATCH],
                    new_ids[s : s + _INSERT_BATCH],
                    packed[s : s + _INSERT_BATCH],
                    strict=True,
                )
            ]
            self._client.insert(self._collection, rows)
        self._client.flush(self._collection)

    def reindex(self) -> None:
        """Build the ``BIN_IVF_FLAT`` index over every code now in the collection (``ivf``
        only; waits until it is built, then loads the collection).

        Milvus searches codes without a built index exhaustively (exact, slower): the
        standalone server does not index flushed codes by itself, so call this after the
        last :meth:`add` (``pml-hashing index build --kind ivf`` does).
        """
        if self._kind != "ivf":
            return
        self._client.release_collection(self._collection)
        self._client.drop_index(self._collection, "code")
        index = self._client.prepare_index_params()
        index.add_index(
            field_name="code",
            index_type=_INDEX_TYPES["ivf"],
            metric_type="HAMMING",
            params={"nlist": self._nlist},
        )
        self._client.create_index(self._collection, index)
        self._client.load_collection(self._collection)

    def drop(self) -> None:
        """Delete the collection and its codes."""
        self._client.drop_collection(self._collection)

    # ------------------------------------------------------------------ searching
    def _search(self, packed: np.ndarray, limit: int, params: dict) -> list[list[tuple]]:
        # Callers first read the count with strong consistency, which waits until every
        # earlier write is searchable; "Session" then costs no further wait (a strong
        # search waits about 0.4 s for the server's time tick on every call).
        results = self._client.search(
            self._collection,
            data=[row.tobytes() for row in packed],
            anns_field="code",
            limit=limit,
            output_fields=["id"],
            search_params={"metric_type": "HAMMING", "params": params},
            consistency_level="Session",
        )
        return [
            [(int(round(h["distance"])), int(h["id"]), int(h["entity"]["id"])) for h in found]
            for found in results
        ]

    def _chunks(self, n: int, k: int):
        step = max(1, min(1024, 1_000_000 // max(k, 1)))
        return range(0, n, step), step

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query: ``(distances int32 (Q, k), ids int64
        (Q, k))``, ascending, ``k`` clamped to :attr:`count`; equal distances in insertion
        order (exact on ``flat``); missing slots hold id -1."""
        k = check_k(k)
        packed = packed_queries(queries, self._num_bits)
        k = min(k, self.count)  # also the strongly consistent read the searches rely on
        if k > MILVUS_MAX_K:
            raise ValueError(
                f"k must be <= {MILVUS_MAX_K} on Milvus (its topk cap); got {k} (use a faiss "
                "BinaryIndex for deeper rankings)"
            )
        if len(packed) == 0 or k == 0:
            return knn_arrays([[] for _ in range(len(packed))], k)
        params = {} if self._kind == "flat" else {"nprobe": self._nprobe}
        starts, step = self._chunks(len(packed), k)
        hits = []
        for s in starts:
            chunk = packed[s : s + step]
            found = self._search(chunk, k, params)
            if self._kind == "flat":
                found = complete_last_group(chunk, found, k, self._tied)
            hits.extend(found)
        return knn_arrays(hits, k)

    def _tied(self, packed: np.ndarray, distance: int) -> list[list[tuple]]:
        # Milvus' range search keeps range_filter <= d < radius: exactly d == distance
        return self._search(
            packed, MILVUS_MAX_K, {"radius": distance + 1, "range_filter": distance}
        )

    def _range_hits(self, packed: np.ndarray, radius: int) -> list[list[tuple]]:
        if self.count == 0:  # also the strongly consistent read that the searches rely on
            return [[] for _ in range(len(packed))]
        params = {"radius": min(radius, self._num_bits) + 1, "range_filter": 0}
        starts, step = self._chunks(len(packed), MILVUS_MAX_K)
        hits = []
        for s in starts:
            found = self._search(packed[s : s + step], MILVUS_MAX_K, params)
            for row, row_hits in enumerate(found):
                if len(row_hits) >= MILVUS_MAX_K:
                    raise ValueError(
                        f"query {s + row} has more than {MILVUS_MAX_K - 1} codes within radius "
                        f"{radius}, more than Milvus returns: lower the radius"
                    )
            hits.extend(found)
        return hits
