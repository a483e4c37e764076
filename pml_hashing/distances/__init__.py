"""PML distances over binary codes."""

from .hamming_distance import HammingDistance

__all__ = ["HammingDistance"]
