"""The user ids an index returns instead of insertion positions (shared by the index kinds)."""

from __future__ import annotations

import numpy as np

from ..codes import ArrayLike, to_numpy


def check_ids(ids: ArrayLike | None, count: int) -> np.ndarray | None:
    """Validate ``(count,)`` non-negative integer ids; ``None`` stays ``None``."""
    if ids is None:
        return None
    new_ids = to_numpy(ids)
    if new_ids.ndim != 1 or len(new_ids) != count:
        raise ValueError(f"ids must have shape (N,) = ({count},); got {new_ids.shape}")
    if new_ids.size and not np.issubdtype(new_ids.dtype, np.integer):
        raise ValueError(f"ids must be integers; got dtype {new_ids.dtype}")
    new_ids = new_ids.astype(np.int64)
    if new_ids.size and new_ids.min() < 0:
        raise ValueError(f"ids must be >= 0 (-1 marks a missing result); got {int(new_ids.min())}")
    return new_ids


def extend_ids(
    ids: np.ndarray | None, new_ids: np.ndarray | None, start: int, count: int
) -> np.ndarray | None:
    """The id map after adding ``count`` items at position ``start``.

    No map is kept while every item uses its position as id; the first explicit ids create
    one, filled with positions for the items added before.
    """
    if new_ids is not None and ids is None:
        ids = np.arange(start, dtype=np.int64)
    if ids is None:
        return None
    if new_ids is None:
        new_ids = np.arange(start, start + count, dtype=np.int64)
    return np.concatenate([ids, new_ids])
