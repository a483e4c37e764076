from __future__ import annotations

import torch

from ..miners import BaseTargetMiner, RandomTargetMiner
from ._loss_dict import element_loss
from .multi_label_loss import MultiLabelLoss


class TargetCodeLoss(MultiLabelLoss):
    """Base of the losses that pull each output to its class's target code (DPN, CSQ, OrthoHash).

    The codebook belongs to a target miner (:class:`~pml_hashing.miners.BaseTargetMiner`,
    ``target_miner=``), as a distance belongs to a PML loss: random, Hadamard, hash-center,
    max-Hamming or adaptive targets work with every such loss. When ``target_miner`` is
    omitted, ``num_classes`` and ``num_bits`` build :attr:`default_target_miner`.

    Subclasses fill ``compute_loss`` and end it with :meth:`element_losses`, which hands the
    outputs whose signs are the codes to :meth:`observe`, so that an adaptive miner (DPN-A) can
    vote; :meth:`end_epoch` applies its update.
    """

    #: The miner built from ``num_classes`` and ``num_bits`` when none is given.
    default_target_miner: type[BaseTargetMiner] = RandomTargetMiner

    def __init__(
        self,
        target_miner: BaseTargetMiner | None = None,
        num_classes: int | None = None,
        num_bits: int | None = None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if target_miner is None:
            if num_classes is None or num_bits is None:
                kind = self.default_target_miner.__name__
                raise ValueError(
                    f"target_miner is required (or give num_classes and num_bits for a {kind})"
                )
            target_miner = self.default_target_miner(num_classes, num_bits, seed=seed)
        elif not isinstance(target_miner, BaseTargetMiner):
            raise ValueError(
                f"target_miner must be a BaseTargetMiner; got {type(target_miner).__name__}"
            )
        self.target_miner = target_miner

    @property
    def targets(self) -> torch.Tensor:
        """The ``(num_classes, num_bits)`` codebook of the target miner."""
        return self.target_miner.targets

    @property
    def num_classes(self) -> int:
        """Labels are class ids in ``[0, target_miner.num_classes)``."""
        return self.target_miner.num_classes

    def check_embeddings(self, embeddings: torch.Tensor) -> None:
        if embeddings.shape[1] != self.target_miner.num_bits:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} bits (embeddings.shape[1]) but "
                f"target_miner.num_bits is {self.target_miner.num_bits}"
            )

    def _targets_like(self, embeddings: torch.Tensor) -> torch.Tensor:
        # A copy on the outputs' device, made once per codebook version: copying a CPU
        # codebook to the GPU on every step would block the host like a sync.
        # The key holds the source tensor itself (not its id, which a new codebook could reuse)
        # and its version counter, which in-place updates bump.
        targets = self.target_miner.targets
        cached = getattr(self, "_targets_cache", None)
        if (
            cached is None
            or cached[0] is not targets
            or cached[1] != targets._version
            or cached[2].device != embeddings.device
            or cached[2].dtype != embeddings.dtype
        ):
            copy = targets.to(device=embeddings.device, dtype=embeddings.dtype)
            cached = self._targets_cache = (targets, targets._version, copy)
        return cached[2]

    def observe(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Hand training outputs (detached) to the target miner; evaluation calls are skipped."""
        if embeddings.requires_grad:
            self.target_miner.observe(embeddings.detach(), labels)

    def element_losses(
        self, losses: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor
    ) -> dict:
        """``compute_loss``'s return value for per-sample ``losses``, after :meth:`observe`."""
        self.observe(embeddings, labels)
        return {"loss": element_loss(losses, embeddings)}

    def end_epoch(self) -> bool:
        """Tell the target miner an epoch ended (DPN-A updates here). Returns if it updated.

        Also reads the input checks deferred on an accelerator, so a NaN output raises here
        at the latest.
        """
        self.flush_checks()
        return self.target_miner.end_epoch()
