"""Retrieval metrics for learning to hash (DESIGN.md section 3).

mAP@R of the hashing convention with an explicit tie rule (``ties="index"``, ``"random"``,
``"expected"``), Hamming-ball statistics (precision within radius r, as in BDNN),
precision@k / recall@k, precision/recall curves over radius and rank, a PML
``AccuracyCalculator`` that reports the hashing metrics, and :func:`retrieval_report`, the
one report that training runs, the command line and the benchmarks print.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports
from .._validation import IdenticalCodesWarning, allow_zero_one_codes
from .average_precision import average_precision_per_query, mean_average_precision
from .hamming_ball_statistics import (
    HammingBallStatistics,
    hamming_ball_statistics,
    precision_recall_by_radius,
    precision_within_radius,
)
from .hamming_ranking import ZeroOneCodesWarning
from .precision_recall_curve import PrecisionRecallCurve, plot_precision_recall
from .ranking_metrics import precision_at_k, precision_recall_by_rank, recall_at_k
from .retrieval_report import (
    DegenerateTernaryCodesWarning,
    format_retrieval_report,
    retrieval_report,
)
from .ternary_threshold_selection import (
    TernaryThresholdSelection,
    select_ternary_threshold,
    ternary_threshold_grid,
)

# PML's AccuracyCalculator imports scikit-learn (about half a second): loaded on first use,
# not by every training run and report that imports the metrics.
__getattr__, __dir__ = lazy_exports(
    __name__, {"HashingAccuracyCalculator": ".hashing_accuracy_calculator"}, eager=True
)

if TYPE_CHECKING:
    from .hashing_accuracy_calculator import HashingAccuracyCalculator

__all__ = [
    "DegenerateTernaryCodesWarning",
    "HammingBallStatistics",
    "HashingAccuracyCalculator",
    "IdenticalCodesWarning",
    "PrecisionRecallCurve",
    "TernaryThresholdSelection",
    "ZeroOneCodesWarning",
    "allow_zero_one_codes",
    "average_precision_per_query",
    "format_retrieval_report",
    "hamming_ball_statistics",
    "mean_average_precision",
    "plot_precision_recall",
    "precision_at_k",
    "precision_recall_by_radius",
    "precision_recall_by_rank",
    "precision_within_radius",
    "recall_at_k",
    "retrieval_report",
    "select_ternary_threshold",
    "ternary_threshold_grid",
]
