from __future__ import annotations

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f

from ..miners import BaseTargetMiner, RandomTargetMiner


class PolarizationLoss(BaseMetricLossFunction):
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

    When the target miner is adaptive (DPN-A), every call on outputs that require grad
    (training) hands the detached outputs to ``target_miner.observe``; call
    :meth:`end_epoch` once per epoch to apply the update.
    """

    def __init__(
        self,
        margin: float = 1.0,
        target_miner: BaseTargetMiner | None = None,
        num_classes: int | None = None,
        num_bits: int | None = None,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        margin = float(margin)
        if not margin > 0:
            raise ValueError(f"margin must be > 0; got {margin}")
        if target_miner is None:
            if num_classes is None or num_bits is None:
                raise ValueError(
                    "target_miner is required (or give num_classes and num_bits for random targets)"
                )
            target_miner = RandomTargetMiner(num_classes, num_bits, seed=seed)
        elif not isinstance(target_miner, BaseTargetMiner):
            raise ValueError(
                f"target_miner must be a BaseTargetMiner; got {type(target_miner).__name__}"
            )
        self.margin = margin
        self.target_miner = target_miner
        self.add_to_recordable_attributes(name="margin")

    @property
    def targets(self) -> torch.Tensor:
        """The ``(num_classes, num_bits)`` codebook of the target miner."""
        return self.target_miner.targets

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        # Same as BaseMetricLossFunction.forward, except that multi-hot (N, C) labels pass.
        self.reset_stats()
        labels = c_f.to_device(self._check_inputs(embeddings, labels), embeddings)
        loss_dict = self.compute_loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        return self.reducer(loss_dict, embeddings, labels)

    def _check_inputs(self, embeddings: torch.Tensor, labels) -> torch.Tensor:
        if labels is None:
            raise ValueError("labels are required: PolarizationLoss pulls each class to a target")
        if embeddings.ndim != 2:
            raise ValueError(
                f"embeddings must have shape (N, num_bits); got {tuple(embeddings.shape)}"
            )
        if embeddings.shape[1] != self.target_miner.num_bits:
            raise ValueError(
                f"embeddings have {embeddings.shape[1]} bits (embeddings.shape[1]) but "
                f"target_miner.num_bits is {self.target_miner.num_bits}"
            )
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"labels must have one row per embedding: {embeddings.shape[0]}; "
                f"got {labels.shape[0]}"
            )
        if not bool(torch.isfinite(embeddings).all()):
            raise ValueError("embeddings contain NaN or infinite values")
        return self.target_miner.check_labels(labels)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        targets = self.target_miner.targets.to(device=embeddings.device, dtype=embeddings.dtype)
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
        if embeddings.requires_grad:
            self.target_miner.observe(embeddings.detach(), labels)
        return {
            "loss": {
                "losses": losses,
                "indices": c_f.torch_arange_from_size(embeddings),
                "reduction_type": "element",
            }
        }

    def end_epoch(self) -> bool:
        """Tell the target miner an epoch ended (DPN-A updates here). Returns if it updated."""
        return self.target_miner.end_epoch()
