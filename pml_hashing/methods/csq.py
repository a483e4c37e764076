"""CSQ (Yuan et al., CVPR 2020) as a hashing method: ``--method csq``."""

from __future__ import annotations

from ..losses import CSQLoss
from .base import METHODS, ProtocolInfo
from .target_code import TargetCodeMethod

__all__ = ["CSQMethod"]


@METHODS.register("csq")
class CSQMethod(TargetCodeMethod):
    """Central Similarity Quantization: :class:`~pml_hashing.losses.CSQLoss` against hash
    centers. The authors' centers are ``target_miner="hash-center"`` (Hadamard rows up to
    ``2K`` classes, Bernoulli centers with a minimum distance beyond); any target miner
    works.

    Args:
        quantization_weight: ``lambda`` of the quantization term (1e-4, DeepHash-pytorch's).
        target_miner, target_miner_kwargs, seed: the codebook (``seed`` also draws the
            multi-label tie-break center).
    """

    name = "csq"
    default_quantization_weight = 1e-4
    default_target_miner = "hash-center"

    def build_loss(
        self, target_miner, seed: int, quantization_weight: float = default_quantization_weight
    ) -> CSQLoss:
        return CSQLoss(target_miner, quantization_weight=quantization_weight, seed=seed)

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """Also ``quantization_weight`` (the config key; none: 1e-4)."""
        kwargs = super().config_arguments(config, facts)
        weight = config.quantization_weight
        kwargs.setdefault(
            "quantization_weight", cls.default_quantization_weight if weight is None else weight
        )
        return kwargs
