from __future__ import annotations

import torch

from ..losses import PolarizationLoss
from ..miners import (
    AdaptiveTargetMiner,
    HadamardTargetMiner,
    MaxHammingDistanceTargetMiner,
    RandomTargetMiner,
)
from .base import HashingMethod

TARGET_MINERS = {
    "random": RandomTargetMiner,
    "hadamard": HadamardTargetMiner,
    "max-hamming": MaxHammingDistanceTargetMiner,
    "adaptive": AdaptiveTargetMiner,
}


def create_target_miner(name: str, num_classes: int, num_bits: int, seed: int = 0, **kwargs):
    """A target miner by recipe name: ``random``, ``hadamard``, ``max-hamming``, ``adaptive``."""
    if name not in TARGET_MINERS:
        raise ValueError(f"target_miner must be one of {sorted(TARGET_MINERS)}; got {name!r}")
    return TARGET_MINERS[name](num_classes, num_bits, seed=seed, **kwargs)


class DPNMethod(HashingMethod):
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
        super().__init__(num_classes, num_bits)
        miner = create_target_miner(
            target_miner, num_classes, num_bits, seed=seed, **(target_miner_kwargs or {})
        )
        self.loss = PolarizationLoss(margin=margin, target_miner=miner)
        self.regularizers = torch.nn.ModuleList([r for r, _ in regularizers or []])
        self.regularizer_weights = [float(w) for _, w in regularizers or []]

    @property
    def target_miner(self):
        return self.loss.target_miner

    def compute_loss(self, outputs, labels, inputs, indices):
        loss = self.loss(outputs, labels)
        for regularizer, weight in zip(self.regularizers, self.regularizer_weights, strict=True):
            loss = loss + weight * regularizer(outputs)
        return loss

    def on_epoch_end(self, epoch: int) -> dict:
        updated = self.loss.end_epoch()
        miner = self.target_miner
        stats = {
            "targets/min_hamming_distance": miner.min_hamming_distance,
            "targets/mean_hamming_distance": miner.mean_hamming_distance,
        }
        if updated:
            stats["targets/changed_bits"] = getattr(miner, "num_changed_bits", 0)
        if hasattr(miner, "num_refused_updates"):  # DPN-A's guard (AdaptiveTargetMiner)
            stats["targets/refused_updates"] = miner.num_refused_updates
        return stats

    def retrieval_margin(self) -> float:
        return self.loss.margin
