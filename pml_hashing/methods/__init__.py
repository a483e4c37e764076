"""Hashing methods: a loss plus the per-epoch hooks a training loop calls.

``create_method(name, num_classes, num_bits, **kwargs)`` builds one from its recipe name.
"""

from __future__ import annotations

from .base import EncodedTrainingSet, HashingMethod
from .dpn import TARGET_MINERS, DPNMethod, create_target_miner

METHODS: dict[str, type[HashingMethod]] = {"dpn": DPNMethod}


def register_method(name: str, cls: type[HashingMethod]) -> None:
    METHODS[name] = cls


def create_method(name: str, num_classes: int, num_bits: int, **kwargs) -> HashingMethod:
    """Build a hashing method by name (``dpn``, ``sh-bdnn``, ``uh-bdnn``)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}; got {name!r}")
    return METHODS[name](num_classes, num_bits, **kwargs)


# imported last: it registers itself with register_method above
from .bdnn import SHBDNNMethod, UHBDNNMethod  # noqa: E402
from .classifier import ClassifierMethod  # noqa: E402
from .fit_only import FitOnlyMethod, ITQMethod, LSHMethod  # noqa: E402

__all__ = [
    "ClassifierMethod",
    "DPNMethod",
    "FitOnlyMethod",
    "ITQMethod",
    "LSHMethod",
    "SHBDNNMethod",
    "UHBDNNMethod",
    "EncodedTrainingSet",
    "HashingMethod",
    "METHODS",
    "TARGET_MINERS",
    "create_method",
    "create_target_miner",
    "register_method",
]
