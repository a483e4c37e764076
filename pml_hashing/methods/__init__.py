"""Hashing methods: a loss plus the per-epoch hooks a training loop calls.

Each method registers itself in :data:`METHODS` (a :class:`~pml_hashing.registry.Registry`)
in its own file. ``create_method(name, num_classes, num_bits, **kwargs)`` builds one from its
recipe name; ``build_method(config, protocol)`` builds the one an ``ExperimentConfig`` names,
with the arguments it and the data imply (:meth:`HashingMethod.from_config`).
"""

from __future__ import annotations

from ..miners import TARGET_MINERS
from .base import METHODS, EncodedTrainingSet, HashingMethod, ProtocolFacts
from .bdnn import SHBDNNMethod, UHBDNNMethod
from .classifier import ClassifierMethod
from .dpn import DPNMethod, create_target_miner
from .fit_only import FitOnlyMethod, ITQMethod, LSHMethod


def register_method(name: str, cls: type[HashingMethod], overwrite: bool | None = None):
    """Register a method class under ``name`` (same as ``@METHODS.register(name)``); a name
    already taken warns before it is replaced (``overwrite=False`` refuses)."""
    return METHODS.register(name, cls, overwrite=overwrite)


def create_method(name: str, num_classes: int, num_bits: int, **kwargs) -> HashingMethod:
    """Build a hashing method by name (``dpn``, ``sh-bdnn``, ``uh-bdnn``)."""
    return METHODS.create(name, num_classes, num_bits, **kwargs)


def method_config_arguments(config, protocol) -> dict:
    """The keyword arguments of ``create_method(config.method, ...)`` for a config and its
    data (a :class:`~pml_hashing.data.Protocol` or :class:`ProtocolFacts`)."""
    cls = METHODS.get_or_raise(config.method)
    return cls.config_arguments(config, ProtocolFacts.of(protocol, cls.needs_input_dim))


def build_method(config, protocol) -> HashingMethod:
    """The hashing method of an ``ExperimentConfig``, built by its class's ``from_config``
    for a :class:`~pml_hashing.data.Protocol` (or its :class:`ProtocolFacts`)."""
    return METHODS.get_or_raise(config.method).from_config(config, protocol)



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
    "ProtocolFacts",
    "TARGET_MINERS",
    "build_method",
    "create_method",
    "create_target_miner",
    "method_config_arguments",
    "register_method",
]
