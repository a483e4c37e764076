"""Precision and recall at rank k, and their curve over ranks."""

from __future__ import annotations

import numpy as np

from ..codes import ArrayLike
from .average_precision import prepare_tied_ranking
from .hamming_ranking import HammingRanking, histograms, relevant_positions
from .precision_recall_curve import PrecisionRecallCurve

__all__ = ["precision_at_k", "recall_at_k", "precision_recall_by_rank"]


def _check_ranks(ranks, num_candidates: int, name: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ranks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be a positive integer (or a list of them); got {ranks!r}")
    if arr.min() <= 0 or arr.max() > num_candidates:
        raise ValueError(
            f"{name} must be in [1, {num_candidates}] (the items ranked per query); got {ranks!r}"
        )
    return arr.astype(np.int64)


def _relevant_in_top(ranking: HammingRanking, ranks: np.ndarray, ties: str):
    """``(Q, len(ranks))`` (expected) relevant items in the top k, and ``(Q,)`` relevant totals."""
    q = ranking.num_queries
    found = np.empty((q, ranks.size))
    total = np.empty(q)
    depth = int(ranks.max())
    for start, stop, keys, rel in ranking.chunks():
        if ties == "expected":
            n, r = histograms(keys, rel, ranking.num_bins)
            cum_n, cum_r = np.cumsum(n, axis=1), np.cumsum(r, axis=1)
            rows = np.arange(stop - start)
            for j, k in enumerate(ranks):
                # Only the group straddling rank k is split: a uniformly random order puts
                # on average m * r / n of its relevant items in its first m positions.
                cut = np.argmax(cum_n >= k, axis=1)
                size, rel_cut = n[rows, cut], r[rows, cut]
                m = k - (cum_n[rows, cut] - size)
                found[start:stop, j] = cum_r[rows, cut] - rel_cut + m * rel_cut / size
            total[start:stop] = cum_r[:, -1]
        else:
            rows, pos = relevant_positions(
                keys, rel, depth, ranking.num_candidates, ranking.num_bins
            )
            for j, k in enumerate(ranks):
                found[start:stop, j] = np.bincount(rows[pos < k], minlength=stop - start)
            total[start:stop] = rel.sum(axis=1)
    return found, total


def _relevant_at_k(
    query_codes, query_labels, db_codes, db_labels, k, ties, seed, chunk_size, exclude
):
    """``(found, total, k)``: ``(Q,)`` (expected) relevant items in the top ``k`` and in all,
    and the checked single rank ``k``."""
    ranking = prepare_tied_ranking(
        query_codes, query_labels, db_codes, db_labels, ties, seed, chunk_size, exclude
    )
    ranks = _check_ranks(k, ranking.num_candidates, "k")
    if ranks.size != 1:
        raise ValueError(f"k must be a single positive integer; got {k!r}")
    found, total = _relevant_in_top(ranking, ranks, ties)
    return found[:, 0], total, ranks[0]


def precision_at_k(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: str = "index",
    seed: int = 0,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> float:
    """Mean over queries of (relevant items among the first k of the Hamming ranking) / k.

    Distances, relevance, ``ties``, ``seed``, ``chunk_size`` and ``exclude_self`` as in
    :func:`~pml_hashing.evaluation.average_precision_per_query` (``ties="expected"`` gives the
    exact expectation over random orders inside tie groups).

    Args:
        k: the rank, ``1 <= k <=`` the number of items ranked per query.

    Returns:
        mean precision@k as a Python float.
    """
    found, _, k = _relevant_at_k(
        query_codes, query_labels, db_codes, db_labels, k, ties, seed, chunk_size, exclude_self
    )
    return float(found.mean() / k)


def recall_at_k(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    k: int,
    ties: str = "index",
    seed: int = 0,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> float:
    """Mean over queries of (relevant items among the first k) / (relevant items in total).

    A query with no relevant item counts 0. Other arguments as in :func:`precision_at_k`.

    Returns:
        mean recall@k as a Python float.
    """
    found, total, _ = _relevant_at_k(
        query_codes, query_labels, db_codes, db_labels, k, ties, seed, chunk_size, exclude_self
    )
    recall = np.where(total > 0, found / np.maximum(total, 1), 0.0)
    return float(recall.mean())


def precision_recall_by_rank(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    ranks=None,
    ties: str = "index",
    seed: int = 0,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> PrecisionRecallCurve:
    """Mean precision@k and recall@k over queries for each k in ``ranks``.

    Args:
        ranks: increasing ranks in ``[1, N]``; ``None`` takes 20 ranks evenly spaced up to the
            number of items ranked per query.
        Others: as in :func:`precision_at_k`.

    Returns:
        a :class:`PrecisionRecallCurve` with ``thresholds = ranks`` and ``kind="rank"``.
    """
    ranking = prepare_tied_ranking(
        query_codes, query_labels, db_codes, db_labels, ties, seed, chunk_size, exclude_self
    )
    if ranks is None:
        ranks = np.unique(np.linspace(1, ranking.num_candidates, 20).round().astype(np.int64))
    ranks = _check_ranks(ranks, ranking.num_candidates, "ranks")
    found, total = _relevant_in_top(ranking, ranks, ties)
    precision = (found / ranks[None, :]).mean(axis=0)
    recall = np.where(total[:, None] > 0, found / np.maximum(total, 1)[:, None], 0.0).mean(0)
    return PrecisionRecallCurve(thresholds=ranks, precision=precision, recall=recall, kind="rank")
