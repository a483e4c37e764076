from __future__ import annotations

from ..losses import PolarizationLoss
from .base import METHODS, ProtocolInfo
from .target_code import TargetCodeMethod, create_target_miner

__all__ = ["DPNMethod", "create_target_miner"]


@METHODS.register("dpn")
class DPNMethod(TargetCodeMethod):
    """Deep Polarized Network: the polarization loss against per-class target codes.

    Args:
        margin: ``m`` of the polarization hinge (1.0).
        target_miner, target_miner_kwargs, seed, regularizers: the codebook and the
            regularizers (:class:`TargetCodeMethod`); ``random`` targets by default.
    """

    name = "dpn"

    def build_loss(self, target_miner, seed: int, margin: float = 1.0) -> PolarizationLoss:
        """``margin``: ``m`` of the polarization hinge."""
        return PolarizationLoss(margin=margin, target_miner=target_miner)

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """``margin``, ``target_miner`` and the miner's own config keys (``p``,
        ``update_every``: those its registry entry lists as ``config_keys``)."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("margin", config.margin)
        return kwargs

    def retrieval_margin(self) -> float:
        return self.loss.margin
