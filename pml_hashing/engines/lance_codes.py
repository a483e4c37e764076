"""Encode straight into a Lance table (``pml-hashing encode --out lance://DIR/TABLE``)."""

from __future__ import annotations

import json

from ..shards import _ShardRowsWriter
from .lance_index import connect, table_names, table_num_bits

_META_INFO = b"pml_hashing.encode"
# Rows per append: each append is a Lance version (a new fragment), so batches are grouped.
_APPEND_ROWS = 65536


class LanceCodeWriter(_ShardRowsWriter):
    """Writes one shard's rows into a Lance table that every shard shares.

    The table has the shard schema (``id``, ``label``, ``code``, ``output`` with outputs);
    its schema metadata records the checkpoint digest, the input, the code length and the
    shard count, and a writer with other values is refused, naming the difference. A
    shard first deletes the rows of its own id range, so a rerun after a crash redoes
    exactly the unfinished shards' rows (Lance commits each append atomically).
    """

    def _open(self, out) -> None:
        from ..sharded_encode import split_lance_target

        self.uri, self.name = split_lance_target(out)
        self.info["num_shards"] = self.num_shards
        self._schema = self._schema.with_metadata(
            {**self._schema.metadata, _META_INFO: json.dumps(self.info, sort_keys=True).encode()}
        )
        self._db = connect(self.uri)
        self._table = self._open_or_create()
        self._pending: list = []
        self._pending_rows = 0
        self._cleared = False

    def _open_or_create(self):
        if self.name not in table_names(self._db):
            try:
                return self._db.create_table(self.name, schema=self._schema)
            except (OSError, ValueError, RuntimeError):
                pass  # another shard created it first
        table = self._db.open_table(self.name)
        bits = table_num_bits(table)
        where = f"table {self.name!r} at {self.uri}"
        if bits != self.num_bits:
            raise ValueError(
                f"{where} holds {bits}-bit codes; this encode writes {self.num_bits} bits: use "
                "another table"
            )
        theirs = json.loads((table.schema.metadata or {}).get(_META_INFO, b"{}"))
        for key, value in self.info.items():
            if key in theirs and theirs[key] != value:
                raise ValueError(
                    f"{where} was encoded with another {key} ({theirs[key]!r}; this run: "
                    f"{value!r}): use another table or drop this one"
                )
        if table.schema.names != self._schema.names:
            raise ValueError(
                f"{where} has the columns {table.schema.names}; this encode writes "
                f"{self._schema.names}"
            )
        return table

    def is_complete_and_compatible(self) -> bool:
        """Lance shards are always redone (their rows are replaced, cheaply)."""
        return False

    def _clear_own_rows(self) -> None:
        if self._cleared or self.items is None:
            return
        self._table.delete(f"id >= {self.items.start} AND id < {self.items.stop}")
        self._cleared = True

    def _append(self, batch) -> None:
        import pyarrow as pa

        self._clear_own_rows()
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= _APPEND_ROWS:
            self._table.add(pa.Table.from_batches(self._pending, schema=self._schema))
            self._pending, self._pending_rows = [], 0

    def close(self) -> dict:
        import pyarrow as pa

        self._clear_own_rows()
        if self._pending:
            self._table.add(pa.Table.from_batches(self._pending, schema=self._schema))
            self._pending, self._pending_rows = [], 0
        return {"table": self.name, "uri": self.uri, "rows": self.rows, "shard": self.shard}

    def abort(self) -> None:
        self._pending, self._pending_rows = [], 0
