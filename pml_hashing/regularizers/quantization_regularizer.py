from __future__ import annotations

from pytorch_metric_learning.regularizers import BaseRegularizer

from .._validation import check_hash_outputs
from ..codes import binarize
from ..losses._loss_dict import element_loss


class QuantizationRegularizer(BaseRegularizer):
    """Quantization loss of BDNN (Do, Doan, Cheung, ECCV 2016, eq. 3 and 7): ``||H - B||^2 / m``.

    ``B = binarize(H)`` (``v >= 0 -> +1``), detached: the penalty pulls each output towards
    its own sign, ``sum_k (|h_ik| - 1)^2`` per sample. Per-sample ``"element"`` losses
    ``||h_i - b_i||^2`` are returned, so the default ``MeanReducer`` gives ``/ m``.

    * ``embeddings``: ``(N, K)`` real outputs ``H`` of the hash layer (PML layout; the
      authors' MATLAB layout is its transpose, ``(L, m)``, with the same norm).

    Scale: this regularizer computes the term **without** the paper's ``1/2``. To reproduce
    the authors' ``(l2 / 2m) ||H - B||^2``, use ``embedding_reg_weight = l2 / 2``
    (``SHBDNNMethod`` and ``UHBDNNMethod`` do exactly that). The BDNN methods use their own
    auxiliary codes ``B`` (fixed for an epoch) rather than the current sign of ``H``.
    """

    def compute_loss(self, embeddings):
        check_hash_outputs(embeddings)
        codes = binarize(embeddings.detach())
        losses = ((embeddings - codes) ** 2).sum(dim=1)
        return {"loss": element_loss(losses, embeddings)}
