"""A pairwise baseline assembled from PML's own parts: ``--method pairwise``."""

from __future__ import annotations

from pytorch_metric_learning import losses

from ..regularizers import QuantizationRegularizer
from .base import METHODS, HashingMethod, ProtocolInfo

__all__ = ["PAIR_LOSSES", "PairwiseMethod"]

#: ``pair_loss`` names and the PML loss each builds (with PML's default distance).
PAIR_LOSSES = {
    "contrastive": losses.ContrastiveLoss,
    "multi-similarity": losses.MultiSimilarityLoss,
}


@METHODS.register("pairwise")
class PairwiseMethod(HashingMethod):
    """A PML pair loss on the hash outputs plus the package's quantization regularizer.

    The family that compares pairs of samples instead of pulling samples to class codes,
    built the way a PML user would: ``ContrastiveLoss()`` or ``MultiSimilarityLoss()`` with
    PML's defaults (all pairs of the batch; Lp distance on normalized outputs for the
    contrastive loss, cosine similarity for multi-similarity) and
    ``embedding_regularizer=QuantizationRegularizer()`` weighted by ``quantization_weight``
    (``sum_k (|v_k| - 1)^2`` per sample, averaged: it pulls the outputs to +-1 so that their
    signs keep the learned geometry). Integer labels only (PML's pair losses refuse
    multi-hot ones).

    Args:
        pair_loss: ``contrastive`` or ``multi-similarity``.
        quantization_weight: weight of the quantization regularizer (0.01; 0 turns it off).
        pair_loss_kwargs: more arguments of the PML loss (``pos_margin``, ``alpha``, ...).
    """

    name = "pairwise"
    default_quantization_weight = 0.01

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        pair_loss: str = "contrastive",
        quantization_weight: float = default_quantization_weight,
        seed: int = 0,
        pair_loss_kwargs: dict | None = None,
    ):
        super().__init__(num_classes, num_bits)
        if pair_loss not in PAIR_LOSSES:
            raise ValueError(f"pair_loss must be one of {sorted(PAIR_LOSSES)}; got {pair_loss!r}")
        weight = float(quantization_weight)
        if not weight >= 0:
            raise ValueError(f"quantization_weight must be >= 0; got {quantization_weight!r}")
        self.pair_loss = pair_loss
        self.seed = seed
        self.loss = PAIR_LOSSES[pair_loss](
            embedding_regularizer=QuantizationRegularizer() if weight else None,
            embedding_reg_weight=weight if weight else 1,
            **(pair_loss_kwargs or {}),
        )

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """Also ``pair_loss`` and ``quantization_weight`` (config keys; none: 0.01)."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("pair_loss", config.pair_loss)
        weight = config.quantization_weight
        kwargs.setdefault(
            "quantization_weight", cls.default_quantization_weight if weight is None else weight
        )
        return kwargs

    def compute_loss(self, outputs, labels, inputs, indices):
        if labels.ndim != 1:
            raise ValueError(
                "the pairwise method takes integer labels (N,); PML's pair losses refuse "
                f"multi-hot labels, got shape {tuple(labels.shape)}"
            )
        return self.loss(outputs, labels)
