"""Binary codes in a LanceDB table (embedded: a local folder or an object-store URI)."""

from __future__ import annotations

import numpy as np

from ._engine_index import EngineIndex
from ._results import check_k, complete_last_group, knn_arrays, packed_queries

_KINDS = ("flat", "ivf")
META_BITS = b"pml_hashing.num_bits"
# Queries per LanceDB call (one multi-vector query each).
_QUERY_CHUNK = 256
# Results (queries x limit) per LanceDB call, and the largest tie group completed.
_RESULT_ELEMENTS = 1 << 20
MAX_TIED = 16384


def lancedb_module():
    try:
        import lancedb
    except ImportError:
        raise ImportError('LanceIndex needs lancedb: pip install "pml-hashing[lance]"') from None
    return lancedb


def connect(path_or_uri, storage_options=None):
    """A LanceDB connection to a local folder or an object-store URI."""
    if not isinstance(path_or_uri, str) or not path_or_uri:
        raise ValueError(
            f"path_or_uri must be a folder or an object-store URI (s3://, gs://, az://); got "
            f"{path_or_uri!r}"
        )
    return lancedb_module().connect(path_or_uri, storage_options=storage_options)


def table_names(db) -> list[str]:
    """Every table name of a LanceDB connection (``list_tables`` answers in pages)."""
    names, token = [], None
    while True:
        response = db.list_tables(page_token=token)
        names.extend(response.tables)
        token = response.page_token
        if not token:
            return names


def table_num_bits(table) -> int | None:
    """The code length of a table's ``code`` column (fixed-size list of K/8 bytes)."""
    import pyarrow as pa

    schema = table.schema
    if "code" not in schema.names:
        return None
    field = schema.field("code")
    if not pa.types.is_fixed_size_list(field.type) or field.type.value_type != pa.uint8():
        return None
    return field.type.list_size * 8


class LanceIndex(EngineIndex):
    """Hamming search of binary codes in a LanceDB table, with the methods of
    :class:`~pml_hashing.engines.MilvusIndex` (``add``, ``search``, ``range_search``,
    ``count``, ``drop``).

    The table holds ``pos`` (int64, the insertion position), ``id`` (int64, what searches
    return) and ``code`` (``fixed_size_list<uint8>[K/8]``, packed in faiss's bit order); a
    table written by ``pml-hashing encode --out lance://DIR/TABLE`` (``id``, ``label``,
    ``code``) is searched as it is, its ``id`` standing for the position. LanceDB is
    embedded: no server; ``path_or_uri`` is a local folder or an object-store URI
    (``s3://bucket/path``, ``gs://``, ``az://``, credentials in ``storage_options`` or the
    environment, as LanceDB documents), and many processes may read one table.

    ``kind="flat"`` searches without an index (exact, same distances and ids as
    ``BinaryIndex(kind="flat")``, ties in insertion order as long as the group tied at the
    k-th distance holds at most 16,384 codes). ``kind="ivf"`` builds an
    ``IVF_FLAT`` index with ``nlist`` partitions when :meth:`reindex` is called (after the
    last :meth:`add`; codes added later are searched exhaustively until the next one) and
    searches ``nprobe`` of them: approximate, exact at ``nprobe == nlist``.
    :meth:`range_search` is flat only (LanceDB's distance range over an index is
    approximate).

    Args:
        path_or_uri: the LanceDB folder or URI.
        table: the table name.
        num_bits: ``K``, a positive multiple of 8.
        kind: ``"flat"`` or ``"ivf"`` (None: ``ivf`` when the table has an index, else flat).
        nlist, nprobe: IVF parameters.
        storage_options: object-store settings passed to ``lancedb.connect``.
        create: create a missing table (False: a missing one is a ``ValueError``).
    """

    KINDS = _KINDS
    _NO_IVF_RANGE_SEARCH = (
        "LanceDB's distance range over an IVF index misses codes in unprobed partitions"
    )

    def __init__(
        self,
        path_or_uri: str,
        table: str,
        num_bits: int,
        kind: str | None = "flat",
        nlist: int = 256,
        nprobe: int = 8,
        storage_options: dict | None = None,
        create: bool = True,
    ):
        self._check_layout(num_bits, kind, nlist, nprobe)
        if not isinstance(table, str) or not table:
            raise ValueError(f"table must be a non-empty name; got {table!r}")
        self._uri, self._name = path_or_uri, table
        self._db = connect(path_or_uri, storage_options)
        if table in table_names(self._db):
            self._table = self._db.open_table(table)
            bits = table_num_bits(self._table)
            if bits is None:
                raise ValueError(
                    f"table {table!r} at {path_or_uri} has no code column of packed bytes "
                    f"(fixed_size_list<uint8>); its columns: {self._table.schema.names}"
                )
            if bits != self._num_bits:
                raise ValueError(
                    f"table {table!r} at {path_or_uri} holds {bits}-bit codes; got "
                    f"num_bits={self._num_bits} (use another table, or drop this one)"
                )
        elif not create:
            raise ValueError(
                f"table {table!r} does not exist at {path_or_uri} (build it first: "
                "pml-hashing index build --engine lance)"
            )
        else:
            self._table = self._db.create_table(table, schema=self._schema())
        if self._kind is None:  # an existing table's kind: ivf when it has an index
            self._kind = "ivf" if self._has_index() else "flat"
        names = self._table.schema.names
        self._position = "pos" if "pos" in names else "id"

    def _schema(self):
        import pyarrow as pa

        return pa.schema(
            [
                pa.field("pos", pa.int64()),
                pa.field("id", pa.int64()),
                pa.field("code", pa.list_(pa.uint8(), self._num_bits // 8)),
            ],
            metadata={META_BITS: str(self._num_bits).encode()},
        )

    # ------------------------------------------------------------------ properties
    @property
    def table(self):
        """The ``lancedb`` table."""
        return self._table

    @property
    def count(self) -> int:
        self._table.checkout_latest()
        return int(self._table.count_rows())

    def __repr__(self) -> str:
        return (
            f"LanceIndex(path_or_uri={self._uri!r}, table={self._name!r}, "
            f"num_bits={self._num_bits}, kind={self._kind!r})"
        )

    def _has_index(self) -> bool:
        return any("code" in i.columns for i in self._table.list_indices())

    # ------------------------------------------------------------------ building
    def add(self, codes, ids=None) -> None:
        """Append ``(N, num_bits)`` codes (or packed uint8); without ``ids`` a code's id is
        its insertion position. On ``ivf``, call :meth:`reindex` after the last add."""
        import pyarrow as pa

        if self._position != "pos":
            raise ValueError(
                f"table {self._name!r} was written by pml-hashing encode (no pos column): "
                "add codes by encoding into it, or use another table"
            )
        added = self._rows_to_add(codes, ids)
        if added is None:
            return
        packed, new_ids, positions = added
        table = pa.table(
            {
                "pos": positions,
                "id": new_ids,
                "code": pa.FixedSizeListArray.from_arrays(
                    pa.array(packed.reshape(-1)), packed.shape[1]
                ),
            },
            schema=self._schema(),
        )
        self._table.add(table)

    def reindex(self) -> None:
        """(Re)build the IVF_FLAT index over every code now in the table (``ivf`` only)."""
        if self._kind != "ivf":
            return
        from lancedb.index import IvfFlat

        count = self.count
        if count < self._nlist:
            raise ValueError(
                f"an IVF index with nlist={self._nlist} needs at least nlist codes; the table "
                f"holds {count}"
            )
        self._table.create_index(
            "code",
            config=IvfFlat(distance_type="hamming", num_partitions=self._nlist),
            replace=True,
        )

    def drop(self) -> None:
        """Delete the table."""
        self._db.drop_table(self._name)

    # ------------------------------------------------------------------ searching
    def _query(self, packed: np.ndarray, limit: int, distance_range=None) -> list[list[tuple]]:
        query = (
            self._table.search(list(packed), vector_column_name="code")
            .distance_type("hamming")
            .select([*sorted({self._position, "id"}), "_distance"])
            .limit(limit)
        )
        if self._kind == "flat" or distance_range is not None:
            query = query.bypass_vector_index()
        else:
            query = query.nprobes(self._nprobe)
        if distance_range is not None:
            query = query.distance_range(*distance_range)
        result = query.to_arrow()
        hits: list[list[tuple]] = [[] for _ in range(len(packed))]
        if result.num_rows == 0:
            return hits
        rows = (
            result["query_index"].to_numpy()
            if "query_index" in result.column_names
            else np.zeros(result.num_rows, np.int64)
        )
        distances = np.rint(result["_distance"].to_numpy()).astype(np.int64)
        positions = result[self._position].to_numpy()
        ids = result["id"].to_numpy()
        for row, d, p, i in zip(rows, distances, positions, ids, strict=True):
            hits[int(row)].append((int(d), int(p), int(i)))
        return hits

    def _tied(self, packed: np.ndarray, distance: int) -> list[list[tuple]]:
        # distance_range keeps lower <= d < upper; LanceDB sizes its result buffers by the
        # limit, so a group is capped (as Milvus caps it) and queried a few rows at a time
        limit = min(self.count, MAX_TIED)
        step = max(1, _RESULT_ELEMENTS // limit)
        hits = []
        for s in range(0, len(packed), step):
            hits.extend(self._query(packed[s : s + step], limit, (distance, distance + 1)))
        return hits

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes of each query, as ``BinaryIndex.search`` returns them."""
        k = check_k(k)
        packed = packed_queries(queries, self._num_bits)
        k = min(k, self.count)
        hits = []
        if k > 0:
            for s in range(0, len(packed), _QUERY_CHUNK):
                chunk = packed[s : s + _QUERY_CHUNK]
                found = self._query(chunk, k)
                if self._kind == "flat":
                    found = complete_last_group(chunk, found, k, self._tied)
                hits.extend(found)
        else:
            hits = [[] for _ in range(len(packed))]
        return knn_arrays(hits, k)

    def _range_hits(self, packed: np.ndarray, radius: int) -> list[list[tuple]]:
        count = self.count
        if not count:
            return [[] for _ in range(len(packed))]
        step = max(1, min(_QUERY_CHUNK, _RESULT_ELEMENTS // count))
        hits = []
        for s in range(0, len(packed), step):
            hits.extend(self._query(packed[s : s + step], count, (0, radius + 1)))
        return hits
