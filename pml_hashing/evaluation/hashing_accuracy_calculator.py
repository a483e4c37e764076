from __future__ import annotations

from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from .._validation import check_code_spread, check_integer
from ..codes import binarize
from .average_precision import mean_average_precision
from .hamming_ball_statistics import precision_within_radius


class HashingAccuracyCalculator(AccuracyCalculator):
    """PML's ``AccuracyCalculator`` plus the hashing metrics, computed on binarized embeddings.

    Adds two metrics through PML's ``calculate_<name>`` protocol (select them with
    ``include=`` / ``exclude=`` like PML's own):

    * ``hashing_map``: mAP@R of the hashing literature (HashNet protocol) on
      ``binarize(query)`` against ``binarize(reference)`` (``v >= 0 -> +1``), ranked by Hamming
      distance with ``ties="index"``, over the WHOLE reference set (not PML's k nearest
      neighbours), computed by :func:`~pml_hashing.evaluation.mean_average_precision`.
      ``AP@R = sum_{k<=R} P(k) rel(k) / sum_{k<=R} rel(k)``, 0 when no relevant item is in the
      top R, mean over all queries; R is ``hashing_topk`` (``None`` = all).
    * ``precision_within_radius_2``: mean precision of the Hamming ball of radius 2 (an empty
      ball counts 0), by :func:`~pml_hashing.evaluation.precision_within_radius`.

    Why not PML's ``mean_average_precision``: with an integer ``k`` it divides the summed
    precisions by the number of relevant items in the whole reference set, not by the number
    retrieved in the top k, and it ranks by the float embeddings; the hashing papers' mAP@R is
    neither. Neither hashing metric needs PML's k-NN, so they are not in ``requires_knn``.

    ``ref_includes_query`` is honoured: when the reference starts with the queries (or
    ``reference`` is omitted), each query's own item is left out of its ranking. Labels are
    integer ``(N,)`` or multi-hot ``(N, C)``; relevance is sharing at least one label (PML's
    ``label_comparison_fn`` is not used by the hashing metrics). Labels of shape ``(N, 1)``,
    which the hashing functions refuse as ambiguous, are read here as PML reads them: class
    ids in a column (PML's testers hand labels over that way).

    Embeddings must be zero-centred: non-negative embeddings (post-ReLU features, sigmoid
    outputs) all binarize to +1, and are refused with ``ValueError``; otherwise identical
    codes (a collapsed model) give an ``IdenticalCodesWarning``.

    Args:
        hashing_topk: R of ``hashing_map``; ``None`` ranks the whole reference set.
        **kwargs: passed to PML's ``AccuracyCalculator``.
    """

    def __init__(self, *args, hashing_topk: int | None = None, **kwargs):
        self.hashing_topk = check_integer(hashing_topk, "hashing_topk", minimum=1, allow_none=True)
        super().__init__(*args, **kwargs)

    @staticmethod
    def _class_ids(labels):
        # PML's convention: an (N, 1) column holds class ids (one hierarchy level).
        return labels[:, 0] if labels.ndim == 2 and labels.shape[1] == 1 else labels

    def _binary_inputs(self, query, reference, query_labels, reference_labels) -> tuple:
        """``(query codes, query labels, reference codes, reference labels)`` for a metric."""
        check_code_spread([query, reference], "query and reference embeddings")
        query_labels, reference_labels = map(self._class_ids, (query_labels, reference_labels))
        return binarize(query), query_labels, binarize(reference), reference_labels

    def calculate_hashing_map(
        self, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ):
        return mean_average_precision(
            *self._binary_inputs(query, reference, query_labels, reference_labels),
            topk=self.hashing_topk,
            ties="index",
            exclude_self=ref_includes_query,
        )

    def calculate_precision_within_radius_2(
        self, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ):
        return precision_within_radius(
            *self._binary_inputs(query, reference, query_labels, reference_labels),
            radius=2,
            exclude_self=ref_includes_query,
        )
