from __future__ import annotations

import numpy as np

from .._validation import check_integer, code_array
from ..codes import ArrayLike, check_num_bits, pack_bool, to_numpy
from .id_map import check_ids, extend_ids

#: Distance reported for the padding slots of a k-NN result (``id == -1``).
MISSING_TERNARY_DISTANCE = float("inf")


class TernaryFlatIndex:
    """Exact k-NN search over ternary codes (DPN-T retrieval), from packed bit planes.

    Distance (the DPN authors' convention, applied to query and database):
    ``d(q, i) = sum_k (1 - b_qk b_ik) / 2`` with ``b`` in {-1, 0, +1}, so a bit that is 0 on
    either side contributes 1/2 and distances are multiples of 1/2. Binary (+-1) codes are
    ternary codes without zeros, so binary queries against a ternary database (or the reverse)
    work too.

    Each code is stored as two packed planes: the sign ``s`` (bit set where ``b = +1``) and the
    mask ``m`` (bit set where ``b != 0``). With ``c = m_q & m_i``, the exact doubled distance is
    ``2 d = K - |c| + 2 |c & (s_q ^ s_i)|``, computed with numpy popcounts
    (``np.bitwise_count``) on 64-bit words, in blocks of ``query_chunk`` queries by
    ``database_chunk`` codes: memory stays ``O(query_chunk * database_chunk * K / 64)``, never
    a dense float queries x database matrix.

    Args:
        num_bits: ``K``, a positive multiple of 8.
        query_chunk: queries per block.
        database_chunk: database codes per block.
    """

    def __init__(self, num_bits: int, query_chunk: int = 256, database_chunk: int = 4096):
        self._num_bits = check_num_bits(num_bits)
        self.query_chunk = check_integer(query_chunk, "query_chunk", minimum=1)
        self.database_chunk = check_integer(database_chunk, "database_chunk", minimum=1)
        self._words = -(-self._num_bits // 64)
        self._sign = np.zeros((0, self._words), dtype=np.uint64)
        self._mask = np.zeros((0, self._words), dtype=np.uint64)
        self._ids: np.ndarray | None = None

    @property
    def num_bits(self) -> int:
        """``K``, the code length."""
        return self._num_bits

    @property
    def ntotal(self) -> int:
        """Number of codes in the index."""
        return int(self._sign.shape[0])

    def __len__(self) -> int:
        return self.ntotal

    def __repr__(self) -> str:
        return f"TernaryFlatIndex(num_bits={self._num_bits}, ntotal={self.ntotal})"

    def _planes(self, codes: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
        arr = to_numpy(codes)
        if arr.ndim != 2 or arr.shape[1] != self._num_bits:
            raise ValueError(
                f"{name} must have shape (N, num_bits) = (N, {self._num_bits}); got {arr.shape}"
            )
        if arr.shape[0] == 0:
            return self._pack(np.zeros((0, self._num_bits), bool)), self._pack(
                np.zeros((0, self._num_bits), bool)
            )
        try:
            arr = code_array(arr, name)
        except ValueError as e:
            raise ValueError(
                f"{e} (use pml_hashing.codes.ternarize on network outputs first)"
            ) from None
        return self._pack(arr > 0), self._pack(arr != 0)

    def _pack(self, bits: np.ndarray) -> np.ndarray:
        packed = pack_bool(bits)
        # Zero padding to whole 64-bit words: padded bits have mask 0, so they never count.
        padded = np.zeros((packed.shape[0], self._words * 8), dtype=np.uint8)
        padded[:, : packed.shape[1]] = packed
        return padded.view(np.uint64)

    def add(self, codes: ArrayLike, ids: ArrayLike | None = None) -> None:
        """Add ``(N, num_bits)`` ternary codes (values in {-1, 0, +1}).

        Args:
            codes: the codes to add.
            ids: optional ``(N,)`` non-negative integer ids (default: insertion positions).
        """
        sign, mask = self._planes(codes, "codes")
        new_ids = check_ids(ids, len(sign))
        self._ids = extend_ids(self._ids, new_ids, self.ntotal, len(sign))
        self._sign = np.concatenate([self._sign, sign])
        self._mask = np.concatenate([self._mask, mask])

    def _doubled_distances(self, sq, mq, start: int, stop: int) -> np.ndarray:
        common = mq[:, None, :] & self._mask[None, start:stop, :]
        disagree = common & (sq[:, None, :] ^ self._sign[None, start:stop, :])
        n_common = np.bitwise_count(common).sum(axis=2, dtype=np.int64)
        n_disagree = np.bitwise_count(disagree).sum(axis=2, dtype=np.int64)
        return self._num_bits - n_common + 2 * n_disagree

    def search(self, codes: ArrayLike, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest codes for each query, exactly.

        Args:
            codes: ``(Q, num_bits)`` query codes in {-1, 0, +1}.
            k: number of neighbours, a positive integer; a ``k`` above :attr:`ntotal` is
                clamped to :attr:`ntotal` (so memory stays ``Q x ntotal`` whatever ``k``).

        Returns:
            ``(distances, ids)``: ``float32 (Q, min(k, ntotal))`` distances, multiples of 1/2,
            ascending (exact: float32 holds them without rounding), and ``int64 (Q, k)`` ids; equal
            distances are ordered by insertion position. An empty index gives ``(Q, 0)``.
        """
        k = check_integer(k, "k", minimum=1)
        sign, mask = self._planes(codes, "codes")
        q, n = len(sign), self.ntotal
        k = min(k, n)
        distances = np.full((q, k), MISSING_TERNARY_DISTANCE, dtype=np.float32)
        ids = np.full((q, k), -1, dtype=np.int64)
        if q == 0 or n == 0:
            return distances, ids
        kept = k
        # One int64 key per (distance, position): sorting keys breaks ties by position.
        stride = np.int64(n)
        for q0 in range(0, q, self.query_chunk):
            q1 = min(q0 + self.query_chunk, q)
            best = np.empty((q1 - q0, 0), dtype=np.int64)
            for d0 in range(0, n, self.database_chunk):
                d1 = min(d0 + self.database_chunk, n)
                keys = self._doubled_distances(sign[q0:q1], mask[q0:q1], d0, d1) * stride
                keys += np.arange(d0, d1, dtype=np.int64)
                candidates = np.concatenate([best, keys], axis=1)
                if candidates.shape[1] > kept:
                    candidates = np.partition(candidates, kept - 1, axis=1)[:, :kept]
                best = candidates
            best.sort(axis=1)
            distances[q0:q1, :kept] = (best // stride).astype(np.float32) / 2
            positions = best % stride
            ids[q0:q1, :kept] = positions if self._ids is None else self._ids[positions]
        return distances, ids
