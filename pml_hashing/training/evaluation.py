"""The one evaluation path: encode query and database with a model and its method, report.

Used by the :class:`~pml_hashing.training.Trainer` (the last and the best epoch), by its
validation callback (validation mAP every epoch), by :func:`evaluate_checkpoint`, and so by
``recipes/evaluate.py`` and ``pml-hashing index evaluate --checkpoint``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..codes import binarize
from ..data.protocol import seen_items_for_unseen_vs_all
from ..evaluation import mean_average_precision, select_ternary_threshold
from ..evaluation.retrieval_report import map_unseen_vs_all, retrieval_report
from .encoding import encode_for_retrieval

__all__ = ["EvaluationSettings", "evaluate_retrieval", "validation_map"]


@dataclass(frozen=True)
class EvaluationSettings:
    """How a model is evaluated: ``topk`` (R of mAP@R, None: the protocol's), the tie rule,
    the Hamming radius, the seed of ``ties="random"``, the DPN-T threshold (a number, None,
    or ``"auto"``: chosen on the validation split), the batch size, the loader workers."""

    topk: int | None = None
    ties: str = "index"
    radius: int = 2
    seed: int = 0
    ternary_threshold: float | str | None = None
    batch_size: int = 512
    num_workers: int = 0

    @classmethod
    def of(cls, config) -> EvaluationSettings:
        """The settings of an :class:`~pml_hashing.training.ExperimentConfig`."""
        same = ("topk", "ties", "radius", "seed", "ternary_threshold", "num_workers")
        return cls(batch_size=config.eval_batch_size, **{k: getattr(config, k) for k in same})


def _encode(model, method, data, settings: EvaluationSettings, accelerator):
    return encode_for_retrieval(
        model, method, data, settings.batch_size, accelerator, settings.num_workers
    )


def evaluate_retrieval(
    model, method, protocol, settings: EvaluationSettings, accelerator=None
) -> dict:
    """Encode query and database and compute the one retrieval report.

    Returns:
        :func:`~pml_hashing.evaluation.retrieval_report` plus ``num_query`` and
        ``num_database``; with ``ternary_threshold="auto"`` also
        ``ternary_threshold_selection`` (the validation mAP of each candidate threshold).
    """
    query_out, query_labels = _encode(model, method, protocol.query, settings, accelerator)
    db_out, db_labels = _encode(model, method, protocol.database, settings, accelerator)
    topk = settings.topk if settings.topk is not None else protocol.topk
    margin = method.retrieval_margin()
    threshold, selection = settings.ternary_threshold, None
    if threshold == "auto" and margin is not None:
        val_out, val_labels, ref_out, ref_labels = _validation_against_reference(
            model, method, protocol, settings, accelerator, database=(db_out, db_labels)
        )
        selection = select_ternary_threshold(
            val_out, val_labels, ref_out, ref_labels,
            margin=margin, topk=topk, ties=settings.ties, seed=settings.seed,
        )  # fmt: skip
        threshold = selection.threshold
    report = retrieval_report(
        query_out,
        query_labels,
        db_out,
        db_labels,
        topk=topk,
        ties=settings.ties,
        radius=settings.radius,
        ternary_margin=margin,
        seed=settings.seed,
        ternary_threshold=threshold if margin is not None else None,
    )
    if selection is not None:
        report["ternary_threshold_selection"] = {
            "split": "validation",
            "validation_map": {str(t): m for t, m in selection.validation_map.items()},
        }
    report["num_query"], report["num_database"] = len(query_out), len(db_out)
    seen_items = seen_items_for_unseen_vs_all(protocol)
    if seen_items is not None:  # unseen-class queries against seen + unseen items
        seen_out, seen_labels = _encode(model, method, seen_items, settings, accelerator)
        report["map_unseen_vs_all"] = map_unseen_vs_all(
            query_out, query_labels, db_out, db_labels, seen_out, seen_labels,
            topk=topk, ties=settings.ties, seed=settings.seed,
        )  # fmt: skip
        report["num_database_unseen_vs_all"] = len(db_out) + len(seen_out)
    return report


def validation_map(model, method, protocol, settings: EvaluationSettings, accelerator) -> float:
    """mAP of validation items against the database minus themselves (never the queries)."""
    val_out, val_labels, ref_out, ref_labels = _validation_against_reference(
        model, method, protocol, settings, accelerator
    )
    topk = settings.topk if settings.topk is not None else protocol.topk
    return mean_average_precision(
        binarize(val_out), val_labels, binarize(ref_out), ref_labels, topk=topk, ties=settings.ties
    )


def _validation_against_reference(model, method, protocol, settings, accelerator, database=None):
    """Validation outputs, and the outputs of what they search: the database minus the
    validation items themselves (each would retrieve itself first), or, under the
    unseen-class protocol, whose database holds unseen classes only, the training set.
    Never the queries. ``database``: the database's ``(outputs, labels)`` when the caller
    has already encoded it."""
    unseen = protocol.info.get("unseen_classes")
    reference = protocol.train if unseen else protocol.database
    val_out, val_labels = _encode(model, method, protocol.validation, settings, accelerator)
    if database is not None and not unseen:
        ref_out, ref_labels = database
    else:
        ref_out, ref_labels = _encode(model, method, reference, settings, accelerator)
    val_ids = np.asarray(getattr(protocol.validation, "indices", []), dtype=np.int64)
    ref_ids = getattr(reference, "indices", None)
    if ref_ids is not None and val_ids.size:
        # one vectorized membership test (this runs every validated epoch)
        keep = torch.from_numpy(~np.isin(np.asarray(ref_ids, dtype=np.int64), val_ids))
        ref_out, ref_labels = ref_out[keep], ref_labels[keep]
    return val_out, val_labels, ref_out, ref_labels
