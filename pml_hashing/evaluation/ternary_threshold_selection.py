"""Choose the DPN-T threshold on a validation split: never on the queries."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import allow_zero_one_codes
from ..codes import ternarize
from .average_precision import mean_average_precision

# Candidate thresholds as fractions of the margin m: 0 is binary ("no zeros"), 1 the paper's m.
DEFAULT_THRESHOLD_FRACTIONS = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0)


class TernaryThresholdSelection(NamedTuple):
    """The chosen threshold and the validation mAP of every candidate, in grid order."""

    threshold: float
    validation_map: dict[float, float]


def ternary_threshold_grid(margin: float = 1.0) -> tuple[float, ...]:
    """The default candidates: ``(0, 0.1, 0.25, 0.5, 0.75, 1) * margin``; 0 means binary codes."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0; got {margin}")
    return tuple(fraction * float(margin) for fraction in DEFAULT_THRESHOLD_FRACTIONS)


def select_ternary_threshold(
    validation_outputs: torch.Tensor,
    validation_labels: torch.Tensor,
    database_outputs: torch.Tensor,
    database_labels: torch.Tensor,
    margin: float = 1.0,
    grid: tuple[float, ...] | list[float] | None = None,
    topk: int | None = None,
    ties: str = "expected",
    seed: int = 0,
) -> TernaryThresholdSelection:
    """The DPN-T threshold with the best validation mAP@R, from a small grid.

    Each candidate ``t`` ternarizes validation and database outputs alike (``|v| <= t -> 0``,
    a 0 counts 1/2 in the distance) and ranks the database for every validation item. The
    threshold with the highest mAP@R wins; on a tie the smaller threshold (fewer zeros) wins,
    so binary codes are kept unless zeros measurably help. The queries of the test protocol
    must never be passed here: selecting on them would report a tuned, optimistic number.
    The database should not contain the validation items themselves (each would retrieve
    itself first).

    Args:
        validation_outputs, database_outputs: real outputs ``v`` of the hash layer.
        validation_labels, database_labels: integer ``(N,)`` or multi-hot ``(N, C)``.
        margin: the training margin m; the default grid is
            :func:`ternary_threshold_grid` ``(margin)``.
        grid: candidate thresholds ``>= 0`` (0: binary codes, no zeros); default as above.
        topk, ties, seed: as in :func:`mean_average_precision`.

    Returns:
        ``TernaryThresholdSelection(threshold, validation_map)``.
    """
    candidates = ternary_threshold_grid(margin) if grid is None else tuple(grid)
    if not candidates:
        raise ValueError("grid must hold at least one threshold; got an empty grid")
    for threshold in candidates:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise ValueError(f"grid thresholds must be numbers >= 0; got {threshold!r}")
        if not threshold >= 0:
            raise ValueError(f"grid thresholds must be >= 0; got {threshold}")
    scores: dict[float, float] = {}
    for threshold in sorted(set(float(t) for t in candidates)):
        # ternary codes by construction, not 0/1 bits passed by mistake
        with allow_zero_one_codes():
            scores[threshold] = mean_average_precision(
                ternarize(validation_outputs, threshold),
                validation_labels,
                ternarize(database_outputs, threshold),
                database_labels,
                topk=topk,
                ties=ties,
                seed=seed,
            )
    best = max(scores, key=lambda t: (scores[t], -t))
    return TernaryThresholdSelection(best, scores)
