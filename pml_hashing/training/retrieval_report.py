"""Moved to :mod:`pml_hashing.evaluation.retrieval_report`; kept importable from here."""

from ..evaluation.retrieval_report import DegenerateTernaryCodesWarning, retrieval_report

__all__ = ["DegenerateTernaryCodesWarning", "retrieval_report"]
