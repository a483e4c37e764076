from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import check_real
from ..miners import BaseTargetMiner, HashCenterTargetMiner
from .target_code_loss import TargetCodeLoss


class CSQLoss(TargetCodeLoss):
    """Central Similarity Quantization (Yuan et al., CVPR 2020, eq. 7 and 8).

    ``L(v, c) = mean_k BCE((u_k + 1) / 2, (c_k + 1) / 2) + lambda * mean_k (|u_k| - 1)^2`` with
    ``u = tanh(v)`` and ``c`` the sample's hash center: per sample, the binary cross-entropy
    between the tanh outputs and the center (both mapped to [0, 1]) plus the quantization
    term, both averaged over the K bits. With the default ``MeanReducer`` this is, to the
    last digit, DeepHash-pytorch's ``CSQLoss`` (``BCELoss`` and ``Q_loss`` averaged over
    batch and bits; ``lambda`` 1e-4 there). ``(tanh(v) + 1) / 2 = sigmoid(2 v)``, so the
    cross-entropy is computed from the logits ``2 v`` (``binary_cross_entropy_with_logits``):
    the same value, without the saturated logarithms of a tanh near +-1.

    * ``embeddings``: ``(N, K)`` raw outputs of the hash layer, before the tanh (the
      retrieval code is ``sign(v) = sign(tanh(v))``).
    * ``labels``: integer ``(N,)``: the center is the class's target code. Multi-hot
      ``(N, C)``: as the authors' ``Hash_center_multilables``, the sign of the sum of the
      label's centers, each 0 (a tie) taken from one random center drawn once (seeded;
      ``tie_break_center``, a buffer). A sample with no label gets the random center.

    Args:
        target_miner: the codebook (default: :class:`~pml_hashing.miners.HashCenterTargetMiner`,
            the authors' Hadamard or Bernoulli centers, built from ``num_classes`` and
            ``num_bits``).
        quantization_weight: ``lambda`` (default 1e-4, DeepHash-pytorch's).
        num_classes, num_bits, seed: used when ``target_miner`` is omitted; ``seed`` also
            draws the tie-break center.
    """

    default_target_miner = HashCenterTargetMiner

    def __init__(
        self,
        target_miner: BaseTargetMiner | None = None,
        quantization_weight: float = 1e-4,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(target_miner=target_miner, seed=seed, **kwargs)
        self.quantization_weight = check_real(quantization_weight, "quantization_weight", minimum=0)
        generator = torch.Generator().manual_seed(int(seed))
        bits = torch.randint(0, 2, (self.target_miner.num_bits,), generator=generator)
        self.register_buffer("tie_break_center", bits.to(torch.float32) * 2 - 1)
        self.add_to_recordable_attributes(name="quantization_weight")

    def hash_centers(self, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The ``(N, K)`` +-1 center of each sample (integer or multi-hot labels)."""
        targets = self._targets_like(like)
        if labels.ndim == 1:
            return targets[labels]
        summed = labels.to(targets.dtype) @ targets
        tie = self.tie_break_center.to(device=like.device, dtype=like.dtype)
        return torch.where(summed == 0, tie.expand_as(summed), torch.sign(summed))

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        centers = self.hash_centers(labels, embeddings)
        center_loss = F.binary_cross_entropy_with_logits(
            2 * embeddings, (centers + 1) / 2, reduction="none"
        ).mean(dim=1)
        quantization = ((torch.tanh(embeddings).abs() - 1) ** 2).mean(dim=1)
        losses = center_loss + self.quantization_weight * quantization
        return self.element_losses(losses, embeddings, labels)
