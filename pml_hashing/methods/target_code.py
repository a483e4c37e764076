"""What the target-code family (DPN, CSQ, OrthoHash) shares as hashing methods."""

from __future__ import annotations

import torch

from ..miners import TARGET_MINERS
from .base import HashingMethod, ProtocolInfo


def create_target_miner(name: str, num_classes: int, num_bits: int, seed: int = 0, **kwargs):
    """A target miner by recipe name: ``random``, ``hadamard``, ``hash-center``,
    ``max-hamming``, ``adaptive`` (any name in :data:`~pml_hashing.miners.TARGET_MINERS`)."""
    return TARGET_MINERS.create(name, num_classes, num_bits, seed=seed, **kwargs)


class TargetCodeMethod(HashingMethod):
    """A loss that pulls each output to its class's code, over a target miner's codebook.

    Subclasses build ``self.loss`` (a :class:`~pml_hashing.losses.TargetCodeLoss`) in their
    constructor from ``self.make_target_miner(...)``. ``regularizers`` (optional) are added
    to the loss as PML ``embedding_regularizer``s would be, each with its weight:
    ``[(regularizer, weight), ...]``.
    """

    #: The target miner a config's ``target_miner`` key names for this method.
    uses_target_miner = True

    def __init__(self, num_classes: int, num_bits: int, regularizers: list | None = None):
        super().__init__(num_classes, num_bits)
        self.regularizers = torch.nn.ModuleList([r for r, _ in regularizers or []])
        self.regularizer_weights = [float(w) for _, w in regularizers or []]

    @staticmethod
    def make_target_miner(name, num_classes, num_bits, seed, target_miner_kwargs):
        return create_target_miner(
            name, num_classes, num_bits, seed=seed, **(target_miner_kwargs or {})
        )

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """``target_miner`` and the miner's own config keys (``p``, ``update_every``: those
        its registry entry lists as ``config_keys``)."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("target_miner", config.target_miner)
        miner_kwargs = dict(kwargs.pop("target_miner_kwargs", None) or {})
        for key in TARGET_MINERS.info(kwargs["target_miner"]).get("config_keys", ()):
            miner_kwargs.setdefault(key, getattr(config, key))
        kwargs["target_miner_kwargs"] = miner_kwargs
        return kwargs

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
