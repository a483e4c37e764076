from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import check_real
from ..miners import BaseTargetMiner
from .target_code_loss import TargetCodeLoss


class OrthoHashLoss(TargetCodeLoss):
    """OrthoHash (Hoe et al., NeurIPS 2021, "One Loss for All", eq. 5 and 8).

    ``L(v, y) = CE(s * (cos(v, t_c) - m [c = y])_c, y)``: a softmax over the cosine
    similarities between the output ``v`` and every class's target code ``t_c`` (a fixed
    codebook), scaled by ``s`` with the additive cosine margin ``m`` taken off the true
    class, as kamwoh/orthohash's ``OrthoHashLoss`` with ``m_type='cos'`` and its ``CosSim``
    head with ``learn_cent=False``.

    * ``embeddings``: ``(N, K)`` outputs of the hash layer. The authors put a
      ``BatchNorm1d`` after a bias-free linear hash layer; here that is
      ``HashingModel(..., hash_batchnorm=True)``, not part of the loss.
    * ``labels``: integer ``(N,)``; or multi-hot ``(N, C)``: the authors' ``multiclass``
      loss with its default ``multiclass_loss='label_smoothing'``: the margin comes off
      every positive class and the target distribution is ``y / sum(y)``,
      ``L = -sum_c (y_c / sum(y)) log softmax(s * (cos - m y))_c``. A sample with no label
      contributes 0 (the authors' code divides by zero there).

    The authors' optional quantization term (``quan``, 0 by default) is not included: add a
    :class:`~pml_hashing.regularizers.QuantizationRegularizer` as ``embedding_regularizer=``
    for one.

    Args:
        target_miner: the codebook (default: a ``RandomTargetMiner``, Bernoulli(0.5) codes,
            the authors' default ``codebook_method``).
        scale: ``s`` (the authors' default 8).
        margin: ``m`` (the authors' default 0.2).
        num_classes, num_bits, seed: used when ``target_miner`` is omitted.
    """

    def __init__(
        self,
        target_miner: BaseTargetMiner | None = None,
        scale: float = 8.0,
        margin: float = 0.2,
        **kwargs,
    ):
        super().__init__(target_miner=target_miner, **kwargs)
        self.scale = check_real(scale, "scale", minimum=0, strict=True)
        self.margin = check_real(margin, "margin", minimum=0)
        self.add_to_recordable_attributes(list_of_names=["scale", "margin"])

    def cosine_logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(N, C)`` cosine similarities between outputs and target codes."""
        targets = self._targets_like(embeddings)
        return F.normalize(embeddings, dim=1) @ F.normalize(targets, dim=1).T

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        cosine = self.cosine_logits(embeddings)
        if labels.ndim == 1:
            margins = F.one_hot(labels, cosine.shape[1]).to(cosine.dtype) * self.margin
            losses = F.cross_entropy(self.scale * (cosine - margins), labels, reduction="none")
        else:
            positives = labels.to(cosine.dtype)
            log_probabilities = F.log_softmax(
                self.scale * (cosine - self.margin * positives), dim=1
            )
            share = positives / positives.sum(dim=1, keepdim=True).clamp(min=1)
            losses = -(share * log_probabilities).sum(dim=1)
        return self.element_losses(losses, embeddings, labels)
