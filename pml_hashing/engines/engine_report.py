"""The retrieval report of codes searched in an engine (Milvus, LanceDB, or a faiss
``BinaryIndex``): mAP@R over the engine's own top-R lists, precision within a radius from
its range search."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer, label_array

__all__ = ["engine_retrieval_report", "format_engine_report"]

# Queries per engine call: bounds the (queries x R) result arrays.
_CHUNK_ELEMENTS = 4_000_000


def _label_lookup(db_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rows of the database labels for engine ids (-1 where the id is unknown or missing)."""
    order = np.argsort(db_ids, kind="stable")
    sorted_ids = db_ids[order]
    where = np.searchsorted(sorted_ids, ids)
    where = np.minimum(where, len(sorted_ids) - 1)
    found = (ids >= 0) & (sorted_ids[where] == ids)
    return np.where(found, order[where], -1)


def _relevance(rows: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray) -> np.ndarray:
    """``(Q, R)`` booleans: the item in each slot shares a label with its query."""
    safe = np.maximum(rows, 0)
    if db_labels.ndim == 1:
        relevant = db_labels[safe] == query_labels[:, None]
    else:
        relevant = np.einsum("qrc,qc->qr", db_labels[safe], query_labels) > 0
    return relevant & (rows >= 0)


def engine_retrieval_report(
    index,
    query_codes,
    query_labels,
    db_ids,
    db_labels,
    topk: int | None = None,
    radius: int = 2,
) -> dict:
    """mAP@R and precision within ``radius`` of queries searched in ``index``.

    The ranking is the engine's: its top-R list per query, ties in its order (for a flat
    ``MilvusIndex``, ``LanceIndex`` or ``BinaryIndex``: insertion order, so the numbers equal
    :func:`~pml_hashing.evaluation.retrieval_report` with ``ties="index"`` on the same
    codes). AP@R = sum_k P(k) rel(k) / sum_k rel(k) over the top R (0 with no relevant
    item), as in the hashing convention. The ball statistics need a range search, which
    only flat kinds offer; other kinds report them as None.

    Args:
        index: a ``MilvusIndex``, ``LanceIndex`` or ``BinaryIndex`` holding the database.
        query_codes: ``(Q, K)`` query codes (+-1, raw outputs or packed uint8).
        query_labels: integer ``(Q,)`` or multi-hot ``(Q, C)``.
        db_ids: ``(N,)`` the ids the engine returns for the database items.
        db_labels: the labels of those items, in ``db_ids`` order.
        topk: R (None: the whole database; Milvus caps R at 16,384).
        radius: the inclusive Hamming radius of the ball statistics.

    Returns:
        the keys of ``retrieval_report`` (``map``, ``precision_within_radius``,
        ``empty_ball_fraction``, ``mean_ball_size``, ``topk``, ``ties``, ``radius``).
    """
    topk = check_integer(topk, "topk", minimum=1, allow_none=True)
    radius = check_integer(radius, "radius", minimum=0)
    db_ids = np.asarray(db_ids, dtype=np.int64)
    db_labels = label_array(db_labels, "db_labels", len(db_ids), "db_ids")
    num_queries = len(query_codes)
    query_labels = label_array(query_labels, "query_labels", num_queries, "query_codes")
    if (db_labels.ndim == 2) != (query_labels.ndim == 2):
        raise ValueError(
            "query_labels and db_labels must both be integer (N,) or both multi-hot (N, C); "
            f"got {query_labels.shape} and {db_labels.shape}"
        )
    count = index.ntotal
    depth = count if topk is None else min(topk, count)
    ap = _average_precisions(index, query_codes, query_labels, db_ids, db_labels, depth)
    report = {"map": float(ap.mean()) if num_queries else 0.0}
    if index.kind == "flat":
        report.update(_ball_statistics(index, query_codes, query_labels, db_ids, db_labels, radius))
    else:
        report.update(precision_within_radius=None, empty_ball_fraction=None, mean_ball_size=None)
    report.update({"topk": "all" if topk is None else topk, "ties": "index", "radius": radius})
    return report


def _average_precisions(index, query_codes, query_labels, db_ids, db_labels, depth: int):
    """AP@``depth`` of each query over the engine's top-``depth`` list (0 with no relevant
    item), searched a chunk of queries at a time."""
    num_queries = len(query_codes)
    ap = np.zeros(num_queries)
    if depth == 0:
        return ap
    step = max(1, _CHUNK_ELEMENTS // depth)
    for s in range(0, num_queries, step):
        _, ids = index.search(query_codes[s : s + step], depth)
        relevant = _relevance(_label_lookup(db_ids, ids), query_labels[s : s + step], db_labels)
        hits = np.cumsum(relevant, axis=1)
        precision = hits / np.arange(1, relevant.shape[1] + 1)
        total = relevant.sum(1)
        ap[s : s + step] = np.where(
            total > 0, (precision * relevant).sum(1) / np.maximum(total, 1), 0.0
        )
    return ap


def _ball_statistics(index, query_codes, query_labels, db_ids, db_labels, radius: int) -> dict:
    """Precision within the Hamming ball of ``radius`` (0 for an empty ball), the fraction
    of empty balls and the mean ball size, from the engine's range search."""
    num_queries = len(query_codes)
    lims, _, ids = index.range_search(query_codes, radius)
    owner = np.repeat(np.arange(num_queries), np.diff(lims))
    # one result a row: the (Q, R) relevance of R = 1 item per query row
    rows = _label_lookup(db_ids, ids)[:, None]
    relevant = _relevance(rows, query_labels[owner], db_labels)[:, 0]
    size = np.diff(lims)
    relevant_within = np.bincount(owner, weights=relevant, minlength=num_queries)
    precision = np.where(size > 0, relevant_within / np.maximum(size, 1), 0.0)
    return {
        "precision_within_radius": float(precision.mean()) if num_queries else 0.0,
        "empty_ball_fraction": float((size == 0).mean()) if num_queries else 0.0,
        "mean_ball_size": float(size.mean()) if num_queries else 0.0,
    }


def format_engine_report(report: dict) -> str:
    """The lines ``pml-hashing index evaluate`` prints (as for a faiss report)."""
    from ..evaluation import format_retrieval_report

    if report.get("precision_within_radius") is not None:
        return format_retrieval_report(report)
    at = f"mAP@{report['topk']} (ties={report['ties']})"
    return "\n".join(
        [
            f"{at:<40}{report['map']:.4f}",
            f"{'precision within radius ' + str(report['radius']):<40}"
            "n/a (range search needs kind flat)",
        ]
    )
