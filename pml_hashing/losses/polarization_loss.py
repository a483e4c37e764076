from __future__ import annotations

import torch

from .._validation import check_real
from ..miners import BaseTargetMiner
from .target_code_loss import TargetCodeLoss


class PolarizationLoss(TargetCodeLoss):
    """Polarization loss of the Deep Polarized Network (Fan et al., IJCAI 2020, eq. 3).

    ``L_P(v, t) = sum_k max(m - v_k t_k, 0)``: per sample, the sum over the K bits of a hinge
    that pushes each output ``v_k`` beyond ``m`` on the side of its class's target bit ``t_k``.

    * ``embeddings``: ``(N, K)`` raw outputs of a linear hash layer (no tanh).
    * ``labels``: integer ``(N,)`` or multi-hot ``(N, C)``. Multi-hot samples get the sum of
      the hinges against each of their labels' targets (as the DPN authors' code does); a
      sample with no label contributes 0.
    * Bits are **summed** (the paper's eq. 3, so Lemma 1 holds per sample); the default
      ``MeanReducer`` averages over the batch. Per-sample losses are returned as ``"element"``
      losses, so PML reducers, ``embedding_regularizer=`` and ``DistributedLossWrapper`` work.

    Args:
        margin: ``m``. Lemma 1 (Hamming distance to the target <= loss) needs ``m >= 1``.
        target_miner: a :class:`~pml_hashing.miners.BaseTargetMiner` that owns the codebook.
            If omitted, ``num_classes`` and ``num_bits`` build a ``RandomTargetMiner``.
        num_classes, num_bits, seed: used only when ``target_miner`` is omitted.

    Inputs are checked by :class:`~pml_hashing.losses.MultiLabelLoss` (labels as torch or
    numpy; ``indices_tuple`` and ``ref_emb`` are refused; an empty batch gives 0 with a
    gradient). NaN/inf outputs raise ``ValueError``: at once on the CPU; on a GPU the check
    runs on the device and is read every ``check_every`` (100) calls and in :meth:`end_epoch`,
    so that a training step makes no host sync (``bool(isfinite(...).all())`` per step would
    block the CPU until the GPU caught up).

    When the target miner is adaptive (DPN-A), every call on outputs that require grad
    (training) hands the detached outputs to ``target_miner.observe``; call
    :meth:`end_epoch` once per epoch to apply the update.
    """

    def __init__(
        self,
        margin: float = 1.0,
        target_miner: BaseTargetMiner | None = None,
        **kwargs,
    ):
        super().__init__(target_miner=target_miner, **kwargs)
        self.margin = check_real(margin, "margin", minimum=0, strict=True)
        self.add_to_recordable_attributes(name="margin")

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        targets = self._targets_like(embeddings)
        if labels.ndim == 1:
            hinge = torch.relu(self.margin - embeddings * targets[labels])
            losses = hinge.sum(dim=1)
        else:
            # One hinge row per (sample, positive label) pair: O(pairs * K), never O(N C K).
            sample_idx, class_idx = labels.nonzero(as_tuple=True)
            hinge = torch.relu(self.margin - embeddings[sample_idx] * targets[class_idx])
            losses = embeddings.new_zeros(embeddings.shape[0]).index_add(
                0, sample_idx, hinge.sum(dim=1)
            )
        return self.element_losses(losses, embeddings, labels)
