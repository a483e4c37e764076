"""OrthoHash (Hoe et al., NeurIPS 2021) as a hashing method: ``--method orthohash``."""

from __future__ import annotations

from ..losses import OrthoHashLoss
from .base import METHODS, ProtocolInfo
from .target_code import TargetCodeMethod

__all__ = ["OrthoHashMethod"]


@METHODS.register("orthohash")
class OrthoHashMethod(TargetCodeMethod):
    """OrthoHash: :class:`~pml_hashing.losses.OrthoHashLoss` (a scaled cosine softmax with an
    additive margin) against a fixed codebook, Bernoulli(0.5) codes by default as in the
    authors' code. The authors' batch norm on the hash layer is the model's
    (``hash_batchnorm``, on by default for this method: :attr:`default_hash_batchnorm`).

    Args:
        scale: ``s`` (8). margin: ``m``, the cosine margin (0.2; config key
            ``cosine_margin``).
        target_miner, target_miner_kwargs, seed: the codebook.
    """

    name = "orthohash"
    default_hash_batchnorm = True

    def build_loss(
        self, target_miner, seed: int, scale: float = 8.0, margin: float = 0.2
    ) -> OrthoHashLoss:
        return OrthoHashLoss(target_miner, scale=scale, margin=margin)

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """Also ``scale`` and ``margin`` (config keys ``scale`` and ``cosine_margin``)."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("scale", config.scale)
        kwargs.setdefault("margin", config.cosine_margin)
        return kwargs
