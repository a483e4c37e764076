"""The retrieval numbers a run reports, with the definitions they follow named.

One report for every caller: the training job's ``metrics.json``, ``pml-hashing index
evaluate``, :func:`~pml_hashing.training.evaluate_checkpoint` and the benchmark scripts.
"""

from __future__ import annotations

import warnings

import torch

from .._validation import (
    allow_zero_one_codes,
    check_integer,
    check_real,
    label_array,
    report_outputs,
)
from ..codes import binarize, ternarize
from .average_precision import mean_average_precision
from .hamming_ball_statistics import hamming_ball_statistics

__all__ = [
    "DegenerateTernaryCodesWarning",
    "format_retrieval_report",
    "map_unseen_vs_all",
    "retrieval_report",
]


class DegenerateTernaryCodesWarning(UserWarning):
    """Every query or every database item has an all-zero ternary code: every ternary
    distance is 0, so a ternary mAP would only measure the tie order."""


def retrieval_report(
    query_outputs,
    query_labels,
    db_outputs,
    db_labels,
    topk: int | None = None,
    ties: str = "index",
    radius: int = 2,
    ternary_margin: float | None = None,
    seed: int = 0,
    ternary_threshold: float | None = None,
) -> dict:
    """mAP@R of binary codes (and of ternary DPN-T codes), and precision within radius r.

    Args:
        query_outputs, db_outputs: real outputs ``v`` of the hash layer, or codes (``+-1``
            codes binarize to themselves; ternary codes ternarize to themselves with any
            ``ternary_margin`` in ``[0, 1)``); torch tensors or numpy arrays.
        query_labels, db_labels: integer ``(N,)`` or multi-hot ``(N, C)``.
        topk: R of mAP@R (None: all).
        ties: tie rule of mAP (``index``, ``random``, ``expected``).
        radius: Hamming radius of the ball statistics.
        ternary_margin: when given, also the DPN-T mAP with ``|v| <= threshold -> 0``.
        seed: seed of ``ties="random"``.
        ternary_threshold: the DPN-T threshold (default: ``ternary_margin``, the paper's
            choice; 0 gives binary codes; :func:`select_ternary_threshold` chooses one on a
            validation split for ``ternary_threshold: auto``).

    Returns:
        A dict: ``map`` (binary), ``precision_within_radius``, ``empty_ball_fraction``,
        ``mean_ball_size``; with ``ternary_margin`` also ``map_ternary``,
        ``ternary_margin``, ``ternary_threshold`` (the threshold used),
        ``ternary_zero_fraction`` and ``ternary_degenerate``; and the
        definitions used (``topk``, ``ties``, ``radius``). When the ternary codes are
        degenerate (every query's or every database item's code is all zero, so every
        ternary distance is 0), ``map_ternary`` is None, ``ternary_degenerate`` True and a
        :class:`DegenerateTernaryCodesWarning` says so: a number there would only measure
        the tie order.
    """
    topk, radius, seed, ternary_margin, ternary_threshold = _check_report_arguments(
        topk, radius, seed, ternary_margin, ternary_threshold
    )
    query_outputs, db_outputs = report_outputs(query_outputs, db_outputs)
    query_labels = _label_tensor(query_labels, "query_labels", query_outputs)
    db_labels = _label_tensor(db_labels, "db_labels", db_outputs)
    data = (query_outputs, query_labels, db_outputs, db_labels)
    report = _binary_report(*data, topk, ties, seed, radius)
    if ternary_threshold is not None:
        report.update(_ternary_report(*data, ternary_threshold, topk, ties, seed))
        report["ternary_margin"] = ternary_margin
        report["ternary_threshold"] = float(ternary_threshold)
    report.update({"topk": "all" if topk is None else topk, "ties": ties, "radius": radius})
    return report


def _check_report_arguments(topk, radius, seed, ternary_margin, ternary_threshold) -> tuple:
    """The checked ``(topk, radius, seed, ternary_margin, ternary_threshold)``, the threshold
    defaulting to the margin."""
    # plain ints in the report: json (metrics.json, --json) refuses numpy integers
    topk = check_integer(topk, "topk", minimum=1, allow_none=True)
    radius = check_integer(radius, "radius", minimum=0)
    seed = check_integer(seed, "seed")
    if ternary_margin is not None:
        ternary_margin = check_real(ternary_margin, "ternary_margin", minimum=0)
    if ternary_threshold is not None:
        ternary_threshold = check_real(ternary_threshold, "ternary_threshold", minimum=0)
    if ternary_threshold is None:
        ternary_threshold = ternary_margin
    return topk, radius, seed, ternary_margin, ternary_threshold


def _label_tensor(labels, name: str, outputs) -> torch.Tensor:
    """``labels`` (``query_labels``, ``db_labels``...) checked against their outputs' length."""
    outputs_name = name.replace("labels", "outputs")
    return torch.from_numpy(label_array(labels, name, len(outputs), outputs_name))


def _binary_report(query_outputs, query_labels, db_outputs, db_labels, topk, ties, seed, radius):
    args = (binarize(query_outputs), query_labels, binarize(db_outputs), db_labels)
    ball = hamming_ball_statistics(*args, radius=radius)
    return {
        "map": mean_average_precision(*args, topk=topk, ties=ties, seed=seed),
        "precision_within_radius": ball.precision,
        "empty_ball_fraction": ball.empty_fraction,
        "mean_ball_size": ball.mean_ball_size,
    }


def map_unseen_vs_all(
    query_outputs,
    query_labels,
    unseen_db_outputs,
    unseen_db_labels,
    seen_outputs,
    seen_labels,
    topk: int | None = None,
    ties: str = "index",
    seed: int = 0,
) -> float:
    """mAP@R of unseen-class queries against a database of unseen *and* seen items.

    The report's ``map_unseen_vs_all`` ("unseen@all" in the comparative studies): the
    database is the unseen-class database followed by the seen items
    (:func:`~pml_hashing.data.protocol.seen_items_for_unseen_vs_all`, labels in the source
    class ids). A seen item is never relevant to an unseen query, so every seen item ranked
    among the unseen ones costs precision: fixed-code methods, which map seen classes onto
    their targets, and any codes that send unseen items onto seen targets, lose here.
    Outputs or codes are binarized (``v >= 0 -> +1``); labels integer or multi-hot.
    """
    topk = check_integer(topk, "topk", minimum=1, allow_none=True)
    query_outputs, unseen_db_outputs = report_outputs(query_outputs, unseen_db_outputs)
    _, seen_outputs = report_outputs(query_outputs, seen_outputs, ("query_outputs", "seen_outputs"))
    query_labels = _label_tensor(query_labels, "query_labels", query_outputs)
    db_labels = [
        _label_tensor(unseen_db_labels, "unseen_db_labels", unseen_db_outputs),
        _label_tensor(seen_labels, "seen_labels", seen_outputs),
    ]
    if db_labels[0].ndim != db_labels[1].ndim or db_labels[0].shape[1:] != db_labels[1].shape[1:]:
        raise ValueError(
            "seen_labels must be of the same kind as unseen_db_labels "
            f"{tuple(db_labels[0].shape)}; got shape {tuple(db_labels[1].shape)}"
        )
    db_codes = torch.cat([binarize(unseen_db_outputs), binarize(seen_outputs)])
    return mean_average_precision(
        binarize(query_outputs),
        query_labels,
        db_codes,
        torch.cat(db_labels),
        topk=topk,
        ties=ties,
        seed=seed,
    )


def _ternary_report(query_outputs, query_labels, db_outputs, db_labels, margin, topk, ties, seed):
    query_ternary = ternarize(query_outputs, margin)
    db_ternary = ternarize(db_outputs, margin)
    zero_fraction = float((torch.cat([query_ternary, db_ternary]) == 0).float().mean())
    degenerate = bool((query_ternary == 0).all() or (db_ternary == 0).all())
    if degenerate:
        side = (
            "query and database"
            if zero_fraction == 1.0
            else ("query" if bool((query_ternary == 0).all()) else "database")
        )
        warnings.warn(
            f"every {side} ternary code is all zero at ternary threshold {margin} (no output "
            f"beyond +-{margin}; ternary_zero_fraction {zero_fraction:.3f}): every ternary "
            "distance is 0, so no ternary mAP is reported (map_ternary None). The model is "
            "not polarized beyond the margin: train longer or lower the threshold",
            DegenerateTernaryCodesWarning,
            stacklevel=3,
        )
        map_ternary = None
    else:
        # these are ternary codes by construction, not 0/1 bits passed by mistake
        with allow_zero_one_codes():
            map_ternary = mean_average_precision(
                query_ternary, query_labels, db_ternary, db_labels, topk=topk, ties=ties, seed=seed
            )
    return {
        "map_ternary": map_ternary,
        "ternary_margin": margin,
        "ternary_zero_fraction": zero_fraction,
        "ternary_degenerate": degenerate,
    }


def format_retrieval_report(report: dict) -> str:
    """The lines ``pml-hashing index evaluate`` prints for a :func:`retrieval_report`."""
    at = f"mAP@{report['topk']} (ties={report['ties']})"
    lines = [f"{at:<40}{report['map']:.4f}"]
    if "map_ternary" in report:
        label = f"ternary mAP (DPN-T, margin {report['ternary_margin']:g})"
        if report["ternary_degenerate"]:
            value = "none: degenerate codes (all zero), see the warning"
        else:
            value = f"{report['map_ternary']:.4f}"
        lines.append(f"{label:<40}{value}")
        lines.append(f"{'  zeros in the ternary codes':<40}{report['ternary_zero_fraction']:.2%}")
    if report.get("map_unseen_vs_all") is not None:  # the unseen-class protocol
        label = "mAP unseen vs all (seen + unseen items)"
        lines.append(f"{label:<40}{report['map_unseen_vs_all']:.4f}")
    lines += [
        f"{'precision within radius ' + str(report['radius']):<40}"
        f"{report['precision_within_radius']:.4f}",
        f"{'  empty balls (count as 0)':<40}{report['empty_ball_fraction']:.2%}",
        f"{'  mean ball size':<40}{report['mean_ball_size']:.2f}",
    ]
    return "\n".join(lines)
