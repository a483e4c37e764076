from __future__ import annotations

from ..losses import PolarizationLoss
from .base import METHODS, ProtocolInfo
from .target_code import TargetCodeMethod, create_target_miner

__all__ = ["DPNMethod", "create_target_miner"]


@METHODS.register("dpn")
class DPNMethod(TargetCodeMethod):
    """Deep Polarized Network: the polarization loss against per-class target codes.

    ``regularizers`` (optional) are added to the loss as PML ``embedding_regularizer``s would
    be, each with its weight: ``[(regularizer, weight), ...]``.
    """

    name = "dpn"

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        margin: float = 1.0,
        target_miner: str = "random",
        seed: int = 0,
        target_miner_kwargs: dict | None = None,
        regularizers: list | None = None,
    ):
        super().__init__(num_classes, num_bits, regularizers)
        miner = self.make_target_miner(
            target_miner, num_classes, num_bits, seed, target_miner_kwargs
        )
        self.loss = PolarizationLoss(margin=margin, target_miner=miner)

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """``margin``, ``target_miner`` and the miner's own config keys (``p``,
        ``update_every``: those its registry entry lists as ``config_keys``)."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("margin", config.margin)
        return kwargs

    def retrieval_margin(self) -> float:
        return self.loss.margin
