"""Retrieval over binary and ternary codes: faiss binary indexes and a PML ``knn_func``."""

from .binary_index import MISSING_DISTANCE, BinaryIndex, faiss_has_gpu
from .hamming_knn import HammingKNN
from .ternary_flat_index import MISSING_TERNARY_DISTANCE, TernaryFlatIndex

__all__ = [
    "BinaryIndex",
    "HammingKNN",
    "MISSING_DISTANCE",
    "MISSING_TERNARY_DISTANCE",
    "TernaryFlatIndex",
    "faiss_has_gpu",
]
