"""Hashing methods: a loss plus the per-epoch hooks a training loop calls.

Each method registers itself in :data:`METHODS` (a :class:`~pml_hashing.registry.Registry`)
in its own file. ``create_method(name, num_classes, num_bits, **kwargs)`` builds one from its
recipe name; ``build_method(config, protocol)`` builds the one an ``ExperimentConfig`` names,
with the arguments it and the data imply (:meth:`HashingMethod.from_config`).
"""

from __future__ import annotations

from ..miners import TARGET_MINERS
from .base import METHODS, EncodedTrainingSet, HashingMethod, ProtocolInfo
from .bdnn import SHBDNNMethod, UHBDNNMethod
from .classifier import ClassifierMethod
from .csq import CSQMethod
from .dpn import DPNMethod
from .fit_only import FitOnlyMethod, ITQMethod, LSHMethod
from .orthohash import OrthoHashMethod
from .pairwise import PAIR_LOSSES, PairwiseMethod
from .target_code import TargetCodeMethod, create_target_miner


def register_method(name: str, cls: type[HashingMethod], overwrite: bool | None = None):
    """Register a method class under ``name`` (same as ``@METHODS.register(name)``); a name
    already taken warns before it is replaced (``overwrite=False`` refuses)."""
    return METHODS.register(name, cls, overwrite=overwrite)


def create_method(name: str, num_classes: int, num_bits: int, **kwargs) -> HashingMethod:
    """Build a hashing method by name (``dpn``, ``csq``, ``orthohash``, ``pairwise``,
    ``sh-bdnn``, ``uh-bdnn``, ...: the names in :data:`METHODS`)."""
    return METHODS.create(name, num_classes, num_bits, **kwargs)


def method_config_arguments(config, protocol) -> dict:
    """The keyword arguments of ``create_method(config.method, ...)`` for a config and its
    data (a :class:`~pml_hashing.data.Protocol` or :class:`ProtocolInfo`)."""
    cls = METHODS.get_or_raise(config.method)
    return cls.config_arguments(config, ProtocolInfo.of(protocol, cls.needs_input_dim))


def hash_batchnorm_of(config) -> bool:
    """Whether the config's model ends in a batch norm (``hash_batchnorm``; none: the
    method's ``default_hash_batchnorm``, true for OrthoHash as in its authors' code)."""
    if config.hash_batchnorm is not None:
        return bool(config.hash_batchnorm)
    return bool(getattr(METHODS.get_or_raise(config.method), "default_hash_batchnorm", False))


def build_method(config, protocol) -> HashingMethod:
    """The hashing method of an ``ExperimentConfig``, built by its class's ``from_config``
    for a :class:`~pml_hashing.data.Protocol` (or its :class:`ProtocolInfo`)."""
    return METHODS.get_or_raise(config.method).from_config(config, protocol)


__all__ = [
    "CSQMethod",
    "ClassifierMethod",
    "DPNMethod",
    "OrthoHashMethod",
    "PAIR_LOSSES",
    "PairwiseMethod",
    "TargetCodeMethod",
    "FitOnlyMethod",
    "ITQMethod",
    "LSHMethod",
    "SHBDNNMethod",
    "UHBDNNMethod",
    "EncodedTrainingSet",
    "HashingMethod",
    "METHODS",
    "ProtocolInfo",
    "TARGET_MINERS",
    "build_method",
    "create_method",
    "create_target_miner",
    "hash_batchnorm_of",
    "method_config_arguments",
    "register_method",
]
