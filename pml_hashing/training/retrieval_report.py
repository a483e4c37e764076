"""The retrieval numbers a run reports, with the definitions they follow named."""

from __future__ import annotations

import warnings

import torch

from ..codes import binarize, ternarize
from ..evaluation import hamming_ball_statistics, mean_average_precision
from ..evaluation.hamming_ranking import ZeroOneCodesWarning


def retrieval_report(
    query_outputs: torch.Tensor,
    query_labels: torch.Tensor,
    db_outputs: torch.Tensor,
    db_labels: torch.Tensor,
    topk: int | None = None,
    ties: str = "index",
    radius: int = 2,
    ternary_margin: float | None = None,
    seed: int = 0,
    ternary_threshold: float | None = None,
) -> dict:
    """mAP@R of binary codes (and of ternary DPN-T codes), and precision within radius r.

    Args:
        query_outputs, db_outputs: real outputs ``v`` of the hash layer.
        query_labels, db_labels: integer ``(N,)`` or multi-hot ``(N, C)``.
        topk: R of mAP@R (None: all).
        ties: tie rule of mAP (``index``, ``random``, ``expected``).
        radius: Hamming radius of the ball statistics.
        ternary_margin: when given, also the DPN-T mAP with ``|v| <= threshold -> 0``.
        ternary_threshold: the DPN-T threshold (default: ``ternary_margin``, the paper's
            choice; 0 gives binary codes; see ``select_ternary_threshold`` for ``"auto"``).

    Returns:
        A dict: ``map`` (binary), ``map_ternary`` (or absent), ``precision_within_radius``,
        ``empty_ball_fraction``, ``mean_ball_size``, ``ternary_zero_fraction``,
        ``ternary_threshold`` (the threshold used), and the
        definitions used (``topk``, ``ties``, ``radius``).
    """
    query_codes, db_codes = binarize(query_outputs), binarize(db_outputs)
    args = (query_codes, query_labels, db_codes, db_labels)
    ball = hamming_ball_statistics(*args, radius=radius)
    report = {
        "map": mean_average_precision(*args, topk=topk, ties=ties, seed=seed),
        "precision_within_radius": ball.precision,
        "empty_ball_fraction": ball.empty_fraction,
        "mean_ball_size": ball.mean_ball_size,
    }
    if ternary_threshold is None:
        ternary_threshold = ternary_margin
    if ternary_threshold is not None:
        query_ternary = ternarize(query_outputs, ternary_threshold)
        db_ternary = ternarize(db_outputs, ternary_threshold)
        with warnings.catch_warnings():
            # these are ternary codes by construction, not 0/1 bits passed by mistake
            warnings.simplefilter("ignore", ZeroOneCodesWarning)
            report["map_ternary"] = mean_average_precision(
                query_ternary, query_labels, db_ternary, db_labels, topk=topk, ties=ties, seed=seed
            )
        report["ternary_margin"] = ternary_margin
        report["ternary_threshold"] = float(ternary_threshold)
        report["ternary_zero_fraction"] = float(
            (torch.cat([query_ternary, db_ternary]) == 0).float().mean()
        )
    report.update({"topk": "all" if topk is None else topk, "ties": ties, "radius": radius})
    return report
