"""What :class:`MilvusIndex` and :class:`LanceIndex` share: the code length and kind, the
sizes ``BinaryIndex`` also answers to, and the checks and numbering of :meth:`add`."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer
from ..codes import check_num_bits
from ..index.id_map import check_ids
from ._results import packed_queries


class EngineIndex:
    """Base of the engine indexes; a subclass sets ``_num_bits`` and ``_kind`` and fills
    :attr:`count` (the engine's row count, read so that a search right after an add sees it)."""

    KINDS: tuple = ()
    _num_bits: int
    _kind: str

    def _check_layout(self, num_bits, kind, nlist, nprobe) -> None:
        """Check and keep the code length, the kind (one of :attr:`KINDS`, or None: the
        stored one) and the IVF parameters, before any connection is made."""
        self._num_bits = check_num_bits(num_bits)
        if kind is not None and (not isinstance(kind, str) or kind not in self.KINDS):
            raise ValueError(f"kind must be one of {list(self.KINDS)} or None; got {kind!r}")
        self._kind = kind
        self._nlist = check_integer(nlist, "nlist", minimum=1)
        self._nprobe = check_integer(nprobe, "nprobe", minimum=1)

    @property
    def num_bits(self) -> int:
        return self._num_bits

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def count(self) -> int:
        raise NotImplementedError

    @property
    def ntotal(self) -> int:
        return self.count

    def __len__(self) -> int:
        return self.count

    def _rows_to_add(self, codes, ids):
        """``(packed, ids, positions)`` of an :meth:`add`, or None when ``codes`` is empty.

        Without ``ids`` a code's id is its insertion position (0, 1, ... over every add), as
        in ``BinaryIndex``; positions count from the engine's size when the call starts (one
        writer at a time)."""
        packed = packed_queries(codes, self._num_bits)
        new_ids = check_ids(ids, len(packed))
        if len(packed) == 0:
            return None
        start = self.count
        positions = np.arange(start, start + len(packed), dtype=np.int64)
        return packed, positions if new_ids is None else new_ids, positions
