"""Compiled per-query counting passes (numba) behind the index-tie mAP.

Under ``ties="index"`` the rank of an item is the number of items at a smaller distance plus
the items at the same distance with a smaller database index: a stable counting sort. One
pass over a query's row, in column order, counts the items per distance key (the histogram
that ``ties="expected"`` also needs) and notes, for each relevant item only, its key and the
items already seen at that key. The histogram's prefix sums give the first rank of every key,
and the notes become ranks without a second pass over the row, a sort or a gather. numpy
cannot express the notes (a running count per key), hence the JIT; ``cache=True`` keeps the
compiled code between processes, ``nogil=True`` lets the query-chunk threads of
:meth:`HammingRanking.map_chunks` run in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic


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


@njit(cache=True, nogil=True, inline="always")
def _note_or_count(
    b, is_relevant, part, others, relevant, notes, note_key, note_seen, note_seen_rel
):  # pragma: no cover - compiled
    """One item of :func:`index_ap_rows`'s pass; returns the new number of notes."""
    if is_relevant:
        c = relevant[b]
        note_key[notes] = b
        note_seen_rel[notes] = c
        note_seen[notes] = c + others[0, b] + others[1, b] + others[2, b] + others[3, b]
        relevant[b] = c + 1
        return notes + 1
    others[part, b] += 1
    return notes


@njit(cache=True, nogil=True)
def index_ap_rows(keys, rel, depth, num_bins, out):  # pragma: no cover - compiled
    """``out[i]`` = AP@depth of row ``i`` under index ties (0 without a relevant item).

    ``keys`` ``(rows, N)`` uint8/uint16 distance keys (``num_bins`` marks an excluded item,
    ranked last), ``rel`` the matching relevance as uint8 0/1. The precisions are summed in
    rank order, as ``np.bincount`` sums the ranked terms, so the values are bit-identical to
    ranking each row with a stable argsort.

    One pass per row in column order, the histogram's own: the items that are not relevant
    are counted per key into four interleaved partial histograms (as :func:`_count_keys`),
    and each relevant item notes its key, the relevant items and all the items seen at that
    key before it. Once the row's histogram is complete, the first rank of every key is
    known and the notes alone (the relevant items, not the row) become ranks: rank = first
    rank of the key + items seen before it at that key, which is the stable order.
    """
    rows, n = keys.shape
    width = num_bins + 1
    others = np.zeros((4, width), np.int64)  # items not relevant, per key, 4 partial counts
    relevant = np.zeros(width, np.int64)  # relevant items per key so far
    note_key = np.empty(n, np.int64)
    note_seen = np.empty(n, np.int64)
    note_seen_rel = np.empty(n, np.int64)
    terms = np.empty(max(min(n, depth), 1), np.float64)
    m4 = n - n % 4
    for i in range(rows):
        k = keys[i]
        r = rel[i]
        others[:] = 0
        relevant[:] = 0
        notes = 0
        for j in range(0, m4, 4):
            for p in range(4):
                notes = _note_or_count(
                    k[j + p],
                    r[j + p],
                    p,
                    others,
                    relevant,
                    notes,
                    note_key,
                    note_seen,
                    note_seen_rel,
                )
        for j in range(m4, n):
            notes = _note_or_count(
                k[j], r[j], 0, others, relevant, notes, note_key, note_seen, note_seen_rel
            )
        out[i] = _ap_from_notes(
            others, relevant, note_key[:notes], note_seen, note_seen_rel, depth, terms
        )


@njit(cache=True, nogil=True, inline="always")
def _mean_in_order(terms, found):  # pragma: no cover - compiled
    """The mean of ``terms[:found]`` summed in index (rank) order; 0 for none."""
    s = 0.0
    for f in range(found):
        s += terms[f]
    return s / found if found > 0 else 0.0


@njit(cache=True, nogil=True)
def _ap_from_notes(
    others, relevant, note_key, note_seen, note_seen_rel, depth, terms
):  # pragma: no cover - compiled
    """AP@depth of one row of :func:`index_ap_rows` once its histogram is complete: the
    prefix sums give the first rank (and first relevant rank) of every key, and each note
    becomes a rank."""
    width = relevant.shape[0]
    first = np.empty(width, np.int64)  # first rank of each key
    first_rel = np.empty(width, np.int64)  # first relevant rank of each key
    total = 0
    total_rel = 0
    for b in range(width):
        first[b] = total
        first_rel[b] = total_rel
        total += others[0, b] + others[1, b] + others[2, b] + others[3, b] + relevant[b]
        total_rel += relevant[b]
    # The relevant items ranked before depth are the first ones of the relevant order,
    # so their relevant ranks f fill 0 .. found - 1.
    found = 0
    for m in range(note_key.shape[0]):
        b = note_key[m]
        pos = first[b] + note_seen[m]
        if pos < depth:
            f = first_rel[b] + note_seen_rel[m]
            terms[f] = (f + 1) / (pos + 1.0)
            found += 1
    return _mean_in_order(terms, found)


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


# ---------------------------------------------------------------------------------------------
# R < all from packed codes (binary codes; integer labels or <= 64 multi-hot classes): per
# query the distances, the cut-off distance that reaches R items, then the labels, counts and
# ranks of only the items up to it. No (queries x database) keys or relevance chunks.


@intrinsic
def _popcount(typingctx, x):  # pragma: no cover - compiled
    """Set bits of a uint64, as an int64 (numba types uint64 mixed with int64 as float64):
    LLVM's ``ctpop``, one instruction where the CPU has popcnt."""

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@njit(cache=True, nogil=True)
def _index_ap_from_keys(keys, counts, num_bins, depth, terms):  # pragma: no cover - compiled
    """AP@depth under index ties of one query from its composite keys and their counts.

    The ranks of a key's items follow those of every smaller key, and inside the key the
    database order: rank = items before the key + items of the key seen so far. Items
    beyond the cut-off key (the one that reaches ``depth``), and the cut-off key's items
    beyond ``depth``, are skipped. The precisions are summed in rank order (``terms`` is
    indexed by relevant rank), as :func:`index_ap_rows`, so the values are the same bits.
    """
    before = np.empty(num_bins, np.int64)
    rel_before = np.empty(num_bins, np.int64)
    seen = np.zeros(num_bins, np.int64)
    seen_rel = np.zeros(num_bins, np.int64)
    total = 0
    total_rel = 0
    cutoff = num_bins - 1
    for b in range(num_bins):
        before[b] = total
        rel_before[b] = total_rel
        total += counts[2 * b] + counts[2 * b + 1]
        total_rel += counts[2 * b + 1]
        if total >= depth:
            cutoff = b
            break
    room = depth - before[cutoff]  # positions of the cut-off key inside the top depth
    limit = 2 * cutoff + 1
    found = 0
    for j in range(keys.shape[0]):
        key = keys[j]
        if key > limit:
            continue
        b = key >> 1
        s = seen[b]
        if b == cutoff:
            if s >= room:
                continue
        seen[b] = s + 1
        if key & 1:
            f = rel_before[b] + seen_rel[b]
            seen_rel[b] += 1
            terms[f] = (f + 1) / (before[b] + s + 1.0)
            found += 1
    return _mean_in_order(terms, found)


@njit(cache=True, nogil=True)
def _within(dist, n, t):  # pragma: no cover - compiled
    """Items ``j < n`` at distance ``<= t`` (a vectorized count, no histogram)."""
    c = 0
    for j in range(n):
        c += np.int64(dist[j] <= t)
    return c


@njit(cache=True, nogil=True)
def _distances(q, dbw, excl, marker, guess, dist):  # pragma: no cover - compiled
    """``dist[j]`` = Hamming distance of item ``j`` (``marker`` for the excluded item); returns
    the items at distance ``<= guess`` and ``<= guess - 1``, the first two probes of
    :func:`_cutoff` (the excluded item left out).

    Word by word, each a loop that the compiler vectorizes (vpopcntq where the CPU has it);
    with one word (K <= 64) the probes are counted in the same loop.
    """
    n = dbw.shape[0]
    at_most = 0
    below = 0
    q0 = q[0]
    for j in range(n):
        d = _popcount(q0 ^ dbw[j, 0])
        dist[j] = d
        at_most += np.int64(d <= guess)
        below += np.int64(d < guess)
    if q.shape[0] > 1:
        for w in range(1, q.shape[0]):
            qw = q[w]
            for j in range(n):
                dist[j] += _popcount(qw ^ dbw[j, w])
        at_most = _within(dist, n, guess)
        below = _within(dist, n, guess - 1)
    if excl >= 0:
        at_most -= np.int64(dist[excl] <= guess)
        below -= np.int64(dist[excl] < guess)
        dist[excl] = marker
    return at_most, below


@njit(cache=True, nogil=True)
def _cutoff(dist, n, depth, hi, guess, at_most, below):  # pragma: no cover - compiled
    """The smallest ``t`` in ``[0, hi]`` with at least ``depth`` items at distance ``<= t``
    (``hi`` has them), given the counts at ``guess`` and ``guess - 1`` (the previous
    query's cut-off, usually right or next to it). Further probes gallop away from the
    guess, doubling the step, until the answer is bracketed, then bisect."""
    lo = 0
    direction = 0
    if at_most >= depth:
        hi = guess
        if below >= depth:
            hi = guess - 1
            direction = -1
        else:
            lo = guess
    else:
        lo = guess + 1
        direction = 1
    t = guess + 2 * direction
    step = 4
    galloping = True
    while lo < hi:
        t = min(max(t, lo), hi - 1)
        if _within(dist, n, t) >= depth:
            hi = t
            galloping = galloping and direction < 0
        else:
            lo = t + 1
            galloping = galloping and direction > 0
        if galloping:
            t += direction * step
            step *= 2
        else:
            t = (lo + hi) // 2
    return hi


@njit(cache=True, nogil=True, inline="always")
def _select_one(j, dist, label, dl, multi, cand, m, counts):  # pragma: no cover - compiled
    if multi:
        key = 2 * np.int64(dist[j]) + np.int64((label & dl[j]) != 0)
    else:
        key = 2 * np.int64(dist[j]) + np.int64(label == dl[j])
    cand[m] = key
    counts[key] += 1


@njit(cache=True, nogil=True)
def _select(dist, n, t, label, dl, multi, cand, counts):  # pragma: no cover - compiled
    """Composite keys ``2 d + rel`` of the items at distance ``<= t``, in database order, into
    ``cand``, counted into ``counts``; returns how many. One-byte distances are tested eight
    at a time (a word holds a byte below ``t + 1`` iff ``(x - (t+1)*ones) & ~x & highs``,
    for ``t + 1 <= 128``); ``dist`` is padded to whole words with bytes above any ``t``."""
    m = 0
    if dist.itemsize == 1 and t < 128:
        words = dist.view(np.uint64)
        ones = np.uint64(0x0101010101010101)
        highs = np.uint64(0x8080808080808080)
        below = ones * np.uint64(t + 1)
        for w in range(words.shape[0]):
            x = words[w]
            if ((x - below) & ~x & highs) != np.uint64(0):
                for j in range(8 * w, 8 * w + 8):
                    if dist[j] <= t:
                        _select_one(j, dist, label, dl, multi, cand, m, counts)
                        m += 1
    else:
        for j in range(n):
            if dist[j] <= t:
                _select_one(j, dist, label, dl, multi, cand, m, counts)
                m += 1
    return m


@njit(cache=True, nogil=True)
def selected_rows(
    qw, ql, dbw, dl, multi, store, excl, num_bins, depth, dist, cand, counts, ap
):  # pragma: no cover - compiled
    """Per query ``i`` (packed uint64 words ``qw[i]``, label ``ql[i]``: an integer, or with
    ``multi`` a uint64 mask of its classes; ``excl[i]`` its excluded item, -1 for none) and
    ``depth`` below the items ranked per query (R < all): ``counts[i, 2 d + rel]`` the
    items at Hamming distance ``d``, relevant or not, exact up to the cut-off distance
    ``t`` (the first that reaches ``depth`` items); the items beyond it are counted, all as
    not relevant, at ``t + 1``, which is all that the AP@depth of either tie rule reads.

    Per query: the distances into ``dist`` (``N`` rounded up to whole words), the cut-off
    from a few vectorized counts, then only the items up to the cut-off are labelled,
    counted and (``store``) ranked: a few thousand of a million for R = 1000.
    """
    n = dbw.shape[0]
    terms = np.empty(max(depth, 1), np.float64)
    t = num_bins - 1
    for i in range(qw.shape[0]):
        at_most, below = _distances(qw[i], dbw, excl[i], num_bins, t, dist)
        t = _cutoff(dist, n, depth, num_bins - 1, t, at_most, below)
        counts[i, :] = 0
        m = _select(dist, n, t, ql[i], dl, multi, cand, counts[i])
        if t + 1 < num_bins:
            counts[i, 2 * (t + 1)] += n - np.int64(excl[i] >= 0) - m
        if store:
            ap[i] = _index_ap_from_keys(cand[:m], counts[i], num_bins, depth, terms)
