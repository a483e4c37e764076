"""Precision, recall and emptiness of the Hamming ball of radius r around each query (BDNN)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..codes import ArrayLike
from .hamming_ranking import HammingRanking, prepare_ranking
from .precision_recall_curve import PrecisionRecallCurve

__all__ = [
    "HammingBallStatistics",
    "hamming_ball_statistics",
    "precision_within_radius",
    "precision_recall_by_radius",
]


@dataclass(frozen=True)
class HammingBallStatistics:
    """Means over all queries of the Hamming ball ``{i : d(q, i) <= radius}`` (inclusive).

    Attributes:
        radius: r, in bits.
        precision: mean of ``|ball ∩ relevant| / |ball|``, an empty ball counting 0 (BDNN).
        empty_fraction: fraction of queries whose ball is empty.
        recall: mean of ``|ball ∩ relevant| / |relevant|``, 0 for a query with no relevant item.
        mean_ball_size: mean of ``|ball|``.
    """

    radius: float
    precision: float
    empty_fraction: float
    recall: float
    mean_ball_size: float


def _check_radius(radius) -> float:
    if isinstance(radius, bool) or not isinstance(radius, (int, float, np.integer, np.floating)):
        raise ValueError(f"radius must be a non-negative number of bits; got {radius!r}")
    if not (math.isfinite(radius) and radius >= 0):
        raise ValueError(f"radius must be a non-negative number of bits; got {radius}")
    return float(radius)


def _cumulative_histograms(ranking: HammingRanking):
    """Per query, items and relevant items at distance key <= each key; and relevant totals."""
    q, b = ranking.num_queries, ranking.num_bins
    within = np.empty((q, b), dtype=np.int64)
    relevant_within = np.empty((q, b), dtype=np.int64)

    def cumulate(start, stop, n, r):
        np.cumsum(n, axis=1, out=within[start:stop])
        np.cumsum(r, axis=1, out=relevant_within[start:stop])

    ranking.map_histograms(cumulate)
    return within, relevant_within, relevant_within[:, -1]


def _ball_means(within, relevant_within, total_relevant):
    """Mean precision, recall, empty fraction and size over queries, per column of keys."""
    precision = np.where(within > 0, relevant_within / np.maximum(within, 1), 0.0)
    total = total_relevant[:, None]
    recall = np.where(total > 0, relevant_within / np.maximum(total, 1), 0.0)
    return precision.mean(0), recall.mean(0), (within == 0).mean(0), within.mean(0)


def hamming_ball_statistics(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    radius: float = 2,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> HammingBallStatistics:
    """Statistics of the Hamming ball ``{i : d(q, i) <= radius}`` (BDNN uses ``radius=2``).

    Distances and relevance as in :func:`~pml_hashing.evaluation.mean_average_precision`
    (a ternary 0 counts 1/2, so ternary distances can be half-integers). The ball is
    inclusive; an empty ball has precision 0 (the BDNN convention) and is counted in
    ``empty_fraction``, which should be reported next to the precision.

    Args:
        query_codes, query_labels, db_codes, db_labels: as in
            :func:`~pml_hashing.evaluation.average_precision_per_query`.
        radius: r >= 0, in bits.
        chunk_size, exclude_self: as in
            :func:`~pml_hashing.evaluation.average_precision_per_query`.

    Returns:
        a :class:`HammingBallStatistics`.
    """
    radius = _check_radius(radius)
    arrays = (query_codes, query_labels, db_codes, db_labels)
    ranking = prepare_ranking(*arrays, chunk_size=chunk_size, exclude_self=exclude_self)
    key = min(math.floor(radius * ranking.key_unit), ranking.num_bins - 1)
    within, relevant_within, total = _cumulative_histograms(ranking)
    precision, recall, empty, size = _ball_means(
        within[:, key : key + 1], relevant_within[:, key : key + 1], total
    )
    return HammingBallStatistics(
        radius=radius,
        precision=float(precision[0]),
        empty_fraction=float(empty[0]),
        recall=float(recall[0]),
        mean_ball_size=float(size[0]),
    )


def precision_within_radius(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    radius: float = 2,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> float:
    """Mean over queries of ``|ball ∩ relevant| / |ball|``, ``ball = {i : d(q, i) <= radius}``.

    An empty ball counts 0; see :func:`hamming_ball_statistics` for the fraction of empty
    balls, which should be reported with it.

    Returns:
        the mean precision as a Python float.
    """
    return hamming_ball_statistics(
        query_codes, query_labels, db_codes, db_labels, radius, chunk_size, exclude_self
    ).precision


def precision_recall_by_radius(
    query_codes: ArrayLike,
    query_labels: ArrayLike,
    db_codes: ArrayLike,
    db_labels: ArrayLike,
    chunk_size: int | None = None,
    exclude_self: bool = False,
) -> PrecisionRecallCurve:
    """Mean precision and recall of the Hamming ball for every radius ``r = 0, 1, ..., K``.

    For each r, precision is the mean over all queries of ``|ball ∩ relevant| / |ball|`` with
    an empty ball counting 0 (so small radii can show low precision because balls are empty,
    not because they are wrong), and recall the mean of ``|ball ∩ relevant| / |relevant|``
    (0 for a query with no relevant item). Ternary codes are evaluated at the same integer
    radii.

    Returns:
        a :class:`PrecisionRecallCurve` with ``thresholds = [0, 1, ..., K]`` and
        ``kind="radius"``.
    """
    arrays = (query_codes, query_labels, db_codes, db_labels)
    ranking = prepare_ranking(*arrays, chunk_size=chunk_size, exclude_self=exclude_self)
    keys = np.arange(ranking.num_bits + 1) * ranking.key_unit
    within, relevant_within, total = _cumulative_histograms(ranking)
    precision, recall, _, _ = _ball_means(within[:, keys], relevant_within[:, keys], total)
    return PrecisionRecallCurve(
        thresholds=np.arange(ranking.num_bits + 1),
        precision=precision,
        recall=recall,
        kind="radius",
    )
