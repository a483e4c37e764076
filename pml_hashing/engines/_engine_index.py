"""What :class:`MilvusIndex` and :class:`LanceIndex` share: the code length and kind, the
sizes ``BinaryIndex`` also answers to, the checks and numbering of :meth:`add`, and
:meth:`range_search` (an engine fills ``_range_hits``)."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer
from ..codes import check_num_bits
from ..index._code_index import CodeIndex
from ..index.id_map import check_ids
from ._results import check_radius, packed_queries, range_arrays


class EngineIndex(CodeIndex):
    """Base of the engine indexes; a subclass sets ``_num_bits`` and ``_kind``, fills
    :attr:`count` (the engine's row count, read so that a search right after an add sees it)
    and ``_range_hits``, and says in ``_NO_IVF_RANGE_SEARCH`` why its IVF kind has none."""

    KINDS: tuple = ()
    _NO_IVF_RANGE_SEARCH: str

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
    def count(self) -> int:
        raise NotImplementedError

    @property
    def ntotal(self) -> int:
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

    def range_search(self, queries, radius: int):
        """All codes within Hamming distance ``radius`` (inclusive) of each query, in faiss's
        ``(lims, distances, ids)`` layout (each query's hits by distance, then id); ``flat``
        only."""
        radius = check_radius(radius)
        if self._kind != "flat":
            raise ValueError(
                f"range_search is available on kind='flat' only: {self._NO_IVF_RANGE_SEARCH}"
            )
        return range_arrays(self._range_hits(packed_queries(queries, self._num_bits), radius))

    def _range_hits(self, packed: np.ndarray, radius: int) -> list[list[tuple]]:
        """Each query's ``(distance, position, id)`` hits within ``radius``."""
        raise NotImplementedError
