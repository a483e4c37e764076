"""Compiled per-query counting passes (numba) behind the index-tie mAP.

Under ``ties="index"`` the rank of an item is the number of items at a smaller distance plus
the items at the same distance with a smaller database index: a stable counting sort. One
pass over a query's row counts the items (and the relevant items) per distance key; their
exclusive prefix sums are the first rank (and the first relevant rank) of every key. A second
pass in column order hands out ranks key by key, which is the stable order, without sorting
or gathering the row. numpy cannot express the second pass (a running count per key), hence
the JIT; ``cache=True`` keeps the compiled code between processes, ``nogil=True`` lets the
query-chunk threads of :meth:`HammingRanking.map_chunks` run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _count_keys(k, r, width, counts):  # pragma: no cover - compiled
    """``counts[b]`` items at key ``b`` that are not relevant, ``counts[width + b]`` relevant.

    One composite key per item and four interleaved partial histograms: consecutive items
    mostly share a key (a database sorted by class), and increments of one counter would
    wait on each other.
    """
    n = k.shape[0]
    parts = np.zeros((4, 2 * width), np.int64)
    m = n - n % 4
    for j in range(0, m, 4):
        parts[0, k[j] + width * r[j]] += 1
        parts[1, k[j + 1] + width * r[j + 1]] += 1
        parts[2, k[j + 2] + width * r[j + 2]] += 1
        parts[3, k[j + 3] + width * r[j + 3]] += 1
    for j in range(m, n):
        parts[0, k[j] + width * r[j]] += 1
    for b in range(2 * width):
        counts[b] = parts[0, b] + parts[1, b] + parts[2, b] + parts[3, b]


@njit(cache=True, nogil=True)
def index_ap_rows(keys, rel, depth, num_bins, out):  # pragma: no cover - compiled
    """``out[i]`` = AP@depth of row ``i`` under index ties (0 without a relevant item).

    ``keys`` ``(rows, N)`` uint8/uint16 distance keys (``num_bins`` marks an excluded item,
    ranked last), ``rel`` the matching relevance as uint8 0/1. The precisions are summed in
    rank order, as ``np.bincount`` sums the ranked terms, so the values are bit-identical to
    ranking each row with a stable argsort.
    """
    rows, n = keys.shape
    width = num_bins + 1
    counts = np.empty(2 * width, np.int64)
    first = np.empty(width, np.int64)  # next rank handed out at each key
    first_rel = np.empty(width, np.int64)  # next relevant rank at each key
    terms = np.empty(min(n, depth), np.float64)
    for i in range(rows):
        k = keys[i]
        r = rel[i]
        _count_keys(k, r, width, counts)
        # Keys whose first rank is at or beyond depth cannot contribute: the second pass
        # only looks at keys up to the one straddling depth.
        total = 0
        total_rel = 0
        cutoff = width - 1
        for b in range(width):
            first[b] = total
            first_rel[b] = total_rel
            total += counts[b] + counts[width + b]
            total_rel += counts[width + b]
            if total >= depth and cutoff == width - 1:
                cutoff = b
        found = 0
        for j in range(n):
            b = k[j]
            if b > cutoff:
                continue
            pos = first[b]
            first[b] = pos + 1
            if r[j]:
                f = first_rel[b]
                first_rel[b] = f + 1
                if pos < depth:
                    terms[f] = (f + 1) / (pos + 1.0)
                    found += 1
        s = 0.0
        for f in range(found):
            s += terms[f]
        out[i] = s / found if found > 0 else 0.0


@njit(cache=True, nogil=True)
def key_histograms(keys, rel, num_bins, n_out, r_out):  # pragma: no cover - compiled
    """``n_out[i, b]`` items and ``r_out[i, b]`` relevant items of row ``i`` at key ``b``
    (``b < num_bins``; the excluded item's key ``num_bins`` is dropped). ``rel`` as uint8."""
    rows = keys.shape[0]
    width = num_bins + 1
    counts = np.empty(2 * width, np.int64)
    for i in range(rows):
        _count_keys(keys[i], rel[i], width, counts)
        for b in range(num_bins):
            n_out[i, b] = counts[b] + counts[width + b]
            r_out[i, b] = counts[width + b]
