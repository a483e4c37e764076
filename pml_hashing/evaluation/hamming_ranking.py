"""Validated retrieval inputs and the chunked Hamming ranking every metric is computed from.

Definitions (DESIGN.md section 3), shared by every function of :mod:`pml_hashing.evaluation`:

* Distance: ``d(q, i) = sum_k (1 - b_qk b_ik) / 2`` on codes in {-1, +1} or ternary codes in
  {-1, 0, +1}; a 0 contributes 1/2 against anything. Internally distances are small integer
  *keys*: ``d`` itself for binary codes (computed by faiss on packed bits), ``2 d`` (half-units)
  for ternary codes (an exact float32 product of small integers, exact for ``K <= 2**24``).
* Relevance: ``rel(q, i) = 1`` iff the labels share at least one label; labels are integer
  ``(N,)`` or multi-hot ``(N, C)``.
* Memory: queries are processed in chunks of ``chunk_size`` rows; the only queries x database
  arrays are one chunk's distance and relevance blocks, reused across chunks, so memory does not
  grow with the number of queries.
* R < all on binary codes (integer labels, or multi-hot labels of at most 64 classes) skips
  the chunks: :meth:`HammingRanking.index_average_precisions` and
  :meth:`HammingRanking.map_histograms` run ``_kernels.selected_rows`` on packed uint64 words,
  with one query's distances and selected keys as the only database-sized buffers per thread.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property

import faiss
import numpy as np

from .._validation import (
    MAX_NUM_BITS,
    TIE_RULES,
    check_integer,
    check_tie_rule,
    code_array,
    label_array,
)
from ..codes import ArrayLike, pack_bool

__all__ = [
    "TIE_RULES",
    "HammingRanking",
    "check_ties",
    "histograms",
    "prepare_ranking",
    "relevant_positions",
]

# About 8M elements per chunk: ~32 MB of int32 distances, small next to the database itself.
_CHUNK_ELEMENTS = 1 << 23

# The selection kernel (:mod:`._kernels`' ``selected_rows``) where it applies; ``False`` forces the
# chunked faiss path everywhere (the benchmark and the tests compare the two).
FUSED_KERNEL = True


class ZeroOneCodesWarning(UserWarning):
    """Kept for code that filters it: code arrays holding only 0 and +1 are now refused with
    ``ValueError`` (0/1 bits; see :func:`~pml_hashing.evaluation.allow_zero_one_codes` for
    ternary codes with no -1), so this warning is no longer emitted."""


def _codes(x: ArrayLike, name: str) -> np.ndarray:
    return code_array(x, name)


def _labels(y: ArrayLike, name: str, num_rows: int, codes_name: str) -> np.ndarray:
    return label_array(y, name, num_rows, f"code of {codes_name}")


@dataclass
class HammingRanking:
    """Validated queries and database, ready to be ranked chunk by chunk.

    Build it with :func:`prepare_ranking`. ``keys`` are distances in units of ``1 / key_unit``
    bits (``key_unit`` is 1 for binary codes, 2 for ternary codes); ``num_bins`` keys exist
    (``0 .. num_bins - 1``), and the key ``num_bins`` marks an excluded database item.
    """

    query: np.ndarray
    database: np.ndarray
    query_labels: np.ndarray
    db_labels: np.ndarray
    num_bits: int
    ternary: bool
    chunk_size: int
    exclude_columns: np.ndarray | None

    @property
    def num_queries(self) -> int:
        return self.query.shape[0]

    @property
    def num_db(self) -> int:
        return self.database.shape[0]

    @property
    def num_candidates(self) -> int:
        """Items ranked per query: the database, less the query itself when it is excluded."""
        return self.num_db - (self.exclude_columns is not None)

    @property
    def key_unit(self) -> int:
        return 2 if self.ternary else 1

    @property
    def num_bins(self) -> int:
        return self.key_unit * self.num_bits + 1

    @property
    def multi_label(self) -> bool:
        return self.db_labels.ndim == 2

    @property
    def selects(self) -> bool:
        """Whether :mod:`._kernels`' ``selected_rows`` ranks a top R < all of this data: binary
        codes, and integer labels or multi-hot labels of at most 64 classes (one uint64 mask
        a row). Otherwise (ternary codes, more classes, R = all, or ``FUSED_KERNEL`` off) the
        chunked faiss path does: at R = all every item is selected, and there the counting
        kernels on the chunks measured faster."""
        multi_ok = not self.multi_label or self.db_labels.shape[1] <= 64
        return FUSED_KERNEL and not self.ternary and multi_ok

    def map_chunks(self, fn, num_threads: int | None = None) -> list:
        """``[fn(start, stop, keys, rel) for each chunk]``, in query order, on several threads.

        The queries are cut into ``num_threads`` contiguous parts, each ranked chunk by chunk
        with buffers of its own (memory grows with the threads, not with the queries). numpy's
        sorts and faiss release the GIL, so the threads run in parallel. Default: one thread
        per CPU core, at most 8.
        """
        return self._in_parts(
            lambda first, last: [fn(*chunk) for chunk in self.chunks(first, last)], num_threads
        )

    def map_histograms(self, fn, depth: int | None = None, num_threads: int | None = None) -> list:
        """``[fn(start, stop, n, r) for each chunk]``, in query order: ``n[i, key]`` items and
        ``r[i, key]`` relevant items of query ``start + i`` at each distance key (the excluded
        item left out), from the selection kernel where it applies, else from :meth:`chunks`.

        With a ``depth`` below the items ranked per query, the selection counts exactly only
        up to the key ``t`` that reaches ``depth`` items, and the rest as not relevant at
        ``t + 1``: enough for anything computed on the top ``depth`` of each ranking.
        """
        depth = self.num_candidates if depth is None else depth
        if depth >= self.num_candidates or not self.selects:
            return self.map_chunks(
                lambda start, stop, keys, rel: fn(
                    start, stop, *histograms(keys, rel, self.num_bins)
                ),
                num_threads,
            )

        def on_counts(start, stop, counts, ap):
            return fn(start, stop, *_split_counts(counts, self.num_bins))

        return self._in_parts(
            lambda first, last: self._select(first, last, depth, False, on_counts),
            num_threads,
            self._selection_step,
        )

    def index_average_precisions(self, depth: int, num_threads: int | None = None) -> np.ndarray:
        """``(Q,)`` AP@depth under index ties (ranks by distance, then database position)."""
        if depth < self.num_candidates and self.selects:
            parts = self._in_parts(
                lambda first, last: self._select(first, last, depth, True, lambda *c: c[3].copy()),
                num_threads,
                self._selection_step,
            )
        else:
            from ._kernels import index_ap_rows  # numba on first use, not with the package

            def chunk_ap(start, stop, keys, rel):
                # One counting pass per query (a stable counting sort without the sort): the
                # same numbers as a stable argsort of the row, summed in the same order.
                ap = np.empty(stop - start)
                index_ap_rows(keys, rel.view(np.uint8), depth, self.num_bins, ap)
                return ap

            parts = self.map_chunks(chunk_ap, num_threads)
        return np.concatenate(parts) if parts else np.empty(0)

    @property
    def _selection_step(self) -> int:
        """Queries per call of the selection kernel: its buffers do not grow with them (only the
        ``(chunk, 2 num_bins + 1)`` counts), so more than :attr:`chunk_size`, which spreads
        the Python work per chunk (the expected-ties AP) over more queries."""
        return max(self.chunk_size, min(256, self.num_queries))

    def _in_parts(self, run_part, num_threads: int | None = None, step: int = 0) -> list:
        """``run_part(first, last)`` (a list per part) over ``num_threads`` contiguous parts of
        whole chunks of ``step`` queries (default :attr:`chunk_size`), on threads; the lists
        joined in query order."""
        step = step or self.chunk_size
        if num_threads is None:
            num_threads = min(os.cpu_count() or 1, 8)
        chunks_total = -(-self.num_queries // step)
        num_threads = max(1, min(int(num_threads), chunks_total))
        per_part = -(-chunks_total // num_threads) * step
        bounds = [
            (first, min(first + per_part, self.num_queries))
            for first in range(0, self.num_queries, per_part)
        ]
        if len(bounds) == 1:
            return run_part(*bounds[0])
        with ThreadPoolExecutor(len(bounds)) as pool:
            parts = [pool.submit(run_part, first, last) for first, last in bounds]
            return [result for part in parts for result in part.result()]

    @cached_property
    def _packed_inputs(self) -> tuple:
        """Codes as uint64 words, labels as compact integers or uint64 masks, and the
        excluded column of every query (-1 for none)."""
        if self.multi_label:
            labels = _label_masks(self.query_labels), _label_masks(self.db_labels)
        else:
            labels = _compact_labels(self.query_labels, self.db_labels)
        excl = self.exclude_columns
        excl = np.full(self.num_queries, -1, np.int64) if excl is None else excl.astype(np.int64)
        return _words(self.query), labels[0], _words(self.database), labels[1], excl

    def _select(self, first: int, last: int, depth: int, index_ap: bool, fn) -> list:
        """``[fn(start, stop, counts, ap)]`` per chunk of the queries ``first .. last - 1``:
        ``counts`` items per composite key ``2 key + rel`` (exact up to the key that reaches
        ``depth`` items), ``ap`` AP@depth under index ties (when ``index_ap``); both
        overwritten by the next chunk."""
        from ._kernels import selected_rows  # numba on first use, not with the package

        qw, ql, dbw, dl, excl = self._packed_inputs
        n, c, width = self.num_db, self._selection_step, 2 * self.num_bins + 1
        counts, ap = np.empty((c, width), np.int64), np.empty(c)
        # one query's distances, padded to whole words with a distance above any cut-off
        dist_dtype = np.uint8 if self.num_bins < 256 else np.uint32
        dist = np.full(-(-n // 8) * 8, np.iinfo(dist_dtype).max, dist_dtype)
        buffers = (dist, np.empty(n, np.int32))
        out = []
        for start in range(first, last, c):
            stop = min(start + c, last)
            rows = stop - start
            selected_rows(
                *(qw[start:stop], ql[start:stop], dbw, dl, self.multi_label, index_ap),
                *(excl[start:stop], self.num_bins, depth, *buffers, counts[:rows], ap[:rows]),
            )
            out.append(fn(start, stop, counts[:rows], ap[:rows]))
        return out

    def chunks(
        self, first: int = 0, last: int | None = None
    ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """Yield ``(start, stop, keys, rel)`` per chunk of the queries ``first .. last - 1``.

        ``keys`` is ``(stop - start, num_db)`` unsigned integers and ``rel`` the matching boolean
        relevance; both are views into buffers that the next chunk overwrites.
        """
        last = self.num_queries if last is None else last
        c = self.chunk_size
        # the narrowest type that holds every key and the excluded marker num_bins
        key_dtype = (
            np.uint8 if self.num_bins < 256 else np.uint16 if self.num_bins < 65536 else np.uint32
        )
        keys_buf = np.empty((c, self.num_db), dtype=key_dtype)
        rel_buf = np.empty((c, self.num_db), dtype=bool)
        fill_keys, fill_relevance = self._key_filler(), self._relevance_filler()
        for start in range(first, last, c):
            stop = min(start + c, last)
            keys, rel = keys_buf[: stop - start], rel_buf[: stop - start]
            fill_keys(start, stop, keys)
            fill_relevance(start, stop, rel)
            if self.exclude_columns is not None:
                r = np.arange(stop - start)
                cols = self.exclude_columns[start:stop]
                keys[r, cols] = self.num_bins
                rel[r, cols] = False
            yield start, stop, keys, rel

    def _key_filler(self):
        """``fill(start, stop, keys)``: the distance keys of the queries ``start .. stop - 1``,
        with buffers of its own (one chunk)."""
        n, c = self.num_db, self.chunk_size
        if self.ternary:
            dot_buf = np.empty((c, n), dtype=np.float32)
            db_t = self.database.T

            def fill(start, stop, keys):
                dots = dot_buf[: stop - start]
                np.matmul(self.query[start:stop], db_t, out=dots)
                # 2d = K - <b_q, b_i>: small integers, exact in float32.
                np.subtract(np.float32(self.num_bits), dots, out=dots)
                np.copyto(keys, dots, casting="unsafe")

            return fill
        dist_buf = np.empty((c, n), dtype=np.int32)

        def fill(start, stop, keys):
            dist = dist_buf[: stop - start]
            q = np.ascontiguousarray(self.query[start:stop])
            faiss.hammings(
                faiss.swig_ptr(q),
                faiss.swig_ptr(self.database),
                stop - start,
                n,
                self.database.shape[1],
                faiss.swig_ptr(dist),
            )
            np.copyto(keys, dist, casting="unsafe")

        return fill

    def _relevance_filler(self):
        """``fill(start, stop, rel)``: the relevance of the queries ``start .. stop - 1``."""
        if self.multi_label:
            match_buf = np.empty((self.chunk_size, self.num_db), dtype=np.float32)
            db_labels_t = self.db_labels.T

            def fill(start, stop, rel):
                match = match_buf[: stop - start]
                np.matmul(self.query_labels[start:stop], db_labels_t, out=match)
                np.greater(match, 0, out=rel)

            return fill
        query_labels, db_labels = _compact_labels(self.query_labels, self.db_labels)

        def fill(start, stop, rel):
            np.equal(query_labels[start:stop, None], db_labels[None, :], out=rel)

        return fill


def _words(packed: np.ndarray) -> np.ndarray:
    """``(N, ceil(K / 64))`` uint64 words of faiss-order packed bytes, zero padded (the same
    layout for queries and database, so XOR and popcount give the Hamming distance)."""
    rows, nbytes = packed.shape
    words = np.zeros((rows, -(-nbytes // 8) * 8), np.uint8)
    words[:, :nbytes] = packed
    return words.view(np.uint64)


def _label_masks(labels: np.ndarray) -> np.ndarray:
    """``(N,)`` uint64 masks of ``(N, C <= 64)`` multi-hot labels: two rows share a label iff
    their masks share a bit."""
    return _words(pack_bool(labels > 0))[:, 0].copy()


def _split_counts(counts: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Items and relevant items per key from the counts per composite key ``2 key + rel``."""
    relevant = counts[:, 1 : 2 * num_bins : 2]
    return counts[:, 0 : 2 * num_bins : 2] + relevant, relevant.copy()


def _compact_labels(query_labels: np.ndarray, db_labels: np.ndarray):
    """The same equalities on the narrowest integer type: the comparison of every query
    with the whole database reads the database labels once per query (8 bytes each as int64,
    which made it as slow as the distances on a large database)."""
    lo = min(query_labels.min(), db_labels.min())
    hi = max(query_labels.max(), db_labels.max())
    for dtype in (np.int8, np.int16, np.int32):
        if np.iinfo(dtype).min <= lo and hi <= np.iinfo(dtype).max:
            return query_labels.astype(dtype), db_labels.astype(dtype)
    _, ids = np.unique(np.concatenate([query_labels, db_labels]), return_inverse=True)
    ids = ids.astype(np.int32)
    return ids[: query_labels.size], ids[query_labels.size :]


def prepare_ranking(
    *arrays: ArrayLike,
    chunk_size: int | None = None,
    exclude_self: bool = False,
    shuffle_seed: int | None = None,
) -> HammingRanking:
    """Validate ``query_codes, query_labels, db_codes, db_labels`` (``arrays``, in that order)
    once and build a :class:`HammingRanking`; the options as in
    :func:`~pml_hashing.evaluation.average_precision_per_query`.

    ``shuffle_seed`` (used by ``ties="random"``) applies one seeded random permutation to the
    database, so that breaking ties by (permuted) position is a uniformly random tie order.
    """
    q, ql, db, dl = _checked_arrays(*arrays)
    if chunk_size is None:
        chunk_size = max(1, min(4096, _CHUNK_ELEMENTS // db.shape[0]))
    else:
        chunk_size = check_integer(chunk_size, "chunk_size", minimum=1)
    exclude_columns = _self_columns(q, ql, db, dl) if exclude_self else None
    if shuffle_seed is not None:
        perm = np.random.default_rng(shuffle_seed).permutation(db.shape[0])
        db, dl = db[perm], dl[perm]
        if exclude_columns is not None:
            inverse = np.empty_like(perm)
            inverse[perm] = np.arange(perm.size)
            exclude_columns = inverse[exclude_columns]
    ternary = bool((q == 0).any() or (db == 0).any())
    if ternary:
        q_rep, db_rep = q.astype(np.float32), db.astype(np.float32)
    else:
        # Packing pads the last byte with zeros in both codes, which adds no distance.
        q_rep, db_rep = pack_bool(q > 0), np.ascontiguousarray(pack_bool(db > 0))
    return HammingRanking(
        query=q_rep,
        database=db_rep,
        query_labels=ql,
        db_labels=dl,
        num_bits=q.shape[1],
        ternary=ternary,
        chunk_size=int(min(chunk_size, q.shape[0])),
        exclude_columns=exclude_columns,
    )


def _checked_arrays(query_codes, query_labels, db_codes, db_labels):
    """The four arrays validated: codes of the same length, labels of the same kind."""
    q = _codes(query_codes, "query_codes")
    db = _codes(db_codes, "db_codes")
    if q.shape[1] != db.shape[1]:
        raise ValueError(
            f"db_codes must have the same number of bits as query_codes ({q.shape[1]}); "
            f"got {db.shape[1]}"
        )
    if q.shape[1] > MAX_NUM_BITS:
        raise ValueError(f"codes must have at most 2**24 bits; got {q.shape[1]}")
    ql = _labels(query_labels, "query_labels", q.shape[0], "query_codes")
    dl = _labels(db_labels, "db_labels", db.shape[0], "db_codes")
    if ql.ndim != dl.ndim or (ql.ndim == 2 and ql.shape[1] != dl.shape[1]):
        raise ValueError(
            f"db_labels must be of the same kind as query_labels (shape (N,) or (N, C) with the "
            f"same C); got query_labels {ql.shape[1:]} per row and db_labels {dl.shape[1:]}"
        )
    return q, ql, db, dl


def _self_columns(q, ql, db, dl) -> np.ndarray:
    """The excluded column of every query under ``exclude_self`` (query i is item i)."""
    nq = q.shape[0]
    if db.shape[0] < max(nq, 2):
        raise ValueError(
            f"db_codes must start with the {nq} queries and hold at least 2 items when "
            f"exclude_self=True; got {db.shape[0]} items"
        )
    if not np.array_equal(db[:nq], q) or not np.array_equal(dl[:nq], ql):
        raise ValueError(
            "db_codes and db_labels must start with query_codes and query_labels when "
            "exclude_self=True (query i is database item i)"
        )
    return np.arange(nq)


def check_ties(ties: str) -> str:
    return check_tie_rule(ties)


def histograms(keys: np.ndarray, rel: np.ndarray, num_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: ``n[q, key]`` items and ``r[q, key]`` relevant items at each distance key."""
    from ._kernels import key_histograms  # numba is imported on first use, not with the package

    n = np.empty((keys.shape[0], num_bins), dtype=np.int64)
    r = np.empty((keys.shape[0], num_bins), dtype=np.int64)
    key_histograms(keys, rel.view(np.uint8), num_bins, n, r)
    return n, r


def relevant_positions(
    keys: np.ndarray, rel: np.ndarray, depth: int, num_candidates: int, num_bins: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and 0-based ranks of the relevant items among the first ``depth`` of each ranking.

    The ranking sorts by distance key, equal keys by increasing database column (a stable
    counting sort; the excluded item has the largest key and ranks last). Output is ordered by
    row, then rank.
    """
    if depth >= num_candidates:
        # numpy's stable argsort of 8/16-bit integers is a radix sort.
        order = np.argsort(keys, axis=1, kind="stable")
        ranked_rel = np.take_along_axis(rel, order, axis=1)
        return np.nonzero(ranked_rel)
    all_rows, all_pos = [], []
    for i in range(keys.shape[0]):
        k = keys[i]
        cumulative = np.cumsum(np.bincount(k, minlength=num_bins + 1)[:num_bins])
        cutoff = int(np.searchsorted(cumulative, depth))  # first key reaching depth items
        candidates = np.flatnonzero(k <= cutoff)  # in column order
        top = candidates[np.argsort(k[candidates], kind="stable")[:depth]]
        pos = np.flatnonzero(rel[i, top])
        all_pos.append(pos)
        all_rows.append(np.full(pos.size, i, dtype=np.intp))
    return np.concatenate(all_rows), np.concatenate(all_pos)
