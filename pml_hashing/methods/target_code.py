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

    Subclasses fill in :meth:`build_loss` (a :class:`~pml_hashing.losses.TargetCodeLoss`
    over the codebook); its keyword arguments are the method's own (DPN's ``margin``,
    CSQ's ``quantization_weight``, OrthoHash's ``scale`` and ``margin``) and are given to
    the constructor by name.

    Args:
        target_miner: the codebook's target miner by name (default: the method's
            :attr:`default_target_miner`), built with ``target_miner_kwargs``.
        seed: seed of the codebook (and of any draw the loss makes).
        regularizers: added to the loss as PML ``embedding_regularizer``s would be, each
            with its weight: ``[(regularizer, weight), ...]``.
        **loss_kwargs: the arguments of :meth:`build_loss`.
    """

    #: The target miner a config's ``target_miner`` key names for this method.
    uses_target_miner = True
    default_target_miner = "random"

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        target_miner: str | None = None,
        seed: int = 0,
        target_miner_kwargs: dict | None = None,
        regularizers: list | None = None,
        **loss_kwargs,
    ):
        super().__init__(num_classes, num_bits)
        self.regularizers = torch.nn.ModuleList([r for r, _ in regularizers or []])
        self.regularizer_weights = [float(w) for _, w in regularizers or []]
        miner = create_target_miner(
            target_miner or self.default_target_miner,
            num_classes,
            num_bits,
            seed=seed,
            **(target_miner_kwargs or {}),
        )
        self.loss = self.build_loss(miner, seed, **loss_kwargs)

    def build_loss(self, target_miner, seed: int, **loss_kwargs) -> torch.nn.Module:
        """The method's loss over ``target_miner``'s codebook."""
        raise NotImplementedError

    @classmethod
    def accepted_arguments(cls) -> set[str]:
        """The constructor's arguments and those of :meth:`build_loss`."""
        import inspect

        own = inspect.signature(cls.__init__).parameters.values()
        loss = list(inspect.signature(cls.build_loss).parameters.values())[3:]
        return {p.name for p in (*own, *loss) if p.kind is p.POSITIONAL_OR_KEYWORD} - {"self"}

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
