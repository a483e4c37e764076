"""What the engines share: query checks, and turning an engine's hits into the
``BinaryIndex`` result layout with its tie order."""

from __future__ import annotations

import numpy as np

from .._validation import binary_code_array, check_integer
from ..index.binary_index import MISSING_DISTANCE


def packed_queries(codes, num_bits: int) -> np.ndarray:
    return binary_code_array(codes, "queries", num_bits)


def knn_arrays(hits: list[list[tuple[int, int, int]]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(distances int32 (Q, k), ids int64 (Q, k))`` from per-query ``(distance, position,
    id)`` hits: sorted by distance then insertion position (``BinaryIndex`` flat's order),
    padded with id -1 and ``MISSING_DISTANCE``."""
    distances = np.full((len(hits), k), MISSING_DISTANCE, dtype=np.int32)
    ids = np.full((len(hits), k), -1, dtype=np.int64)
    for row, found in enumerate(hits):
        found = sorted(found)[:k]
        if found:
            values = np.asarray(found, dtype=np.int64)
            distances[row, : len(found)] = values[:, 0]
            ids[row, : len(found)] = values[:, 2]
    return distances, ids


def range_arrays(hits: list[list[tuple[int, int, int]]]):
    """faiss's ``(lims, distances, ids)`` layout, each query's hits sorted by distance then
    id (``BinaryIndex.range_search``'s order)."""
    lims = np.zeros(len(hits) + 1, dtype=np.int64)
    distances, ids = [], []
    for row, found in enumerate(hits):
        found = sorted((d, i) for d, _, i in found)
        lims[row + 1] = lims[row] + len(found)
        distances.extend(d for d, _ in found)
        ids.extend(i for _, i in found)
    return lims, np.asarray(distances, dtype=np.int32), np.asarray(ids, dtype=np.int64)


def check_k(k) -> int:
    return check_integer(k, "k", minimum=1)


def check_radius(radius) -> int:
    return check_integer(radius, "radius", minimum=0)


def complete_last_group(packed: np.ndarray, hits: list, k: int, tied_search) -> list:
    """Make an exact engine's k-NN hits keep ``BinaryIndex`` flat's ``k`` codes.

    An engine keeps an arbitrary subset of the codes tied at the k-th distance. For each
    query with ``k`` hits, ``tied_search(packed_rows, distance)`` fetches every code at
    exactly that distance (one call per distinct distance), and the hits become the closer
    codes plus that whole group, from which :func:`knn_arrays` keeps the first ``k`` in
    insertion order.
    """
    by_distance: dict[int, list[int]] = {}
    for row, found in enumerate(hits):
        if len(found) == k:
            by_distance.setdefault(max(h[0] for h in found), []).append(row)
    for distance, rows in by_distance.items():
        group = tied_search(packed[rows], distance)
        for row, tied in zip(rows, group, strict=True):
            tied = [h for h in tied if h[0] == distance]
            closer = [h for h in hits[row] if h[0] < distance]
            if len(closer) + len(tied) >= k:  # else the engine capped the group: keep its own
                hits[row] = closer + tied
    return hits
