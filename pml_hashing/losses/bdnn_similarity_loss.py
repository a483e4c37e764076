from __future__ import annotations

import torch

from ._loss_dict import element_loss
from .multi_label_loss import MultiLabelLoss


class BDNNSimilarityLoss(MultiLabelLoss):
    """Similarity term of SH-BDNN (Do, Doan, Cheung, ECCV 2016, eq. 7): ``||H H^T / L - S||^2 / m``.

    ``H`` is the ``(m, L)`` batch of real outputs (PML layout), ``H H^T / L`` the ``m x m``
    matrix of normalized code inner products (``1 - 2 d_H / L`` for +-1 codes), and
    ``S_ij = +1`` when samples ``i`` and ``j`` share a label, ``-1`` otherwise. The authors
    write ``||H^T H / L - S||^2`` with ``H`` in the MATLAB layout ``(L, m)``: the same matrix.

    Per-sample ``"element"`` losses ``sum_j (h_i . h_j / L - S_ij)^2`` (row sums) are
    returned, so the default ``MeanReducer`` gives ``(1/m) ||H H^T / L - S||^2``, the
    authors' normalization up to their ``1/2``. This loss computes the term **without**
    the ``1/2``; ``SHBDNNMethod`` multiplies it by ``l5 / 2``. On minibatches the term is
    an estimate of the full-data one; it sums over ``m`` partners per sample, so it scales
    with the batch size.

    * ``embeddings``: ``(N, L)`` real outputs.
    * ``labels``: integer ``(N,)`` or multi-hot ``(N, C)`` (0/1). A sample is always similar
      to itself (``S_ii = +1``, also for a multi-hot row with no label).
    * ``ref_emb`` / ``ref_labels`` (optional): compare ``embeddings`` with a reference set
      instead of with themselves (``(N, M)`` similarity, no diagonal rule); ``ref_labels``
      must be of the same kind as ``labels``. ``indices_tuple`` is refused (see
      :class:`~pml_hashing.losses.MultiLabelLoss`).
    """

    supports_ref = True

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        self_similarity = ref_emb is None
        if self_similarity:
            ref_emb, ref_labels = embeddings, labels
        num_bits = embeddings.shape[1]
        inner = embeddings @ ref_emb.T / num_bits
        similar = self.pair_similarity(labels, ref_labels, self_similarity)
        target = similar.to(embeddings.dtype) * 2 - 1
        losses = ((inner - target) ** 2).sum(dim=1)
        return {"loss": element_loss(losses, embeddings)}

    @staticmethod
    def pair_similarity(labels, ref_labels, self_similarity: bool = False) -> torch.Tensor:
        """Boolean ``(N, M)``: whether ``labels[i]`` and ``ref_labels[j]`` share a label."""
        if labels.ndim == 1:
            similar = labels[:, None] == ref_labels[None, :]
        else:
            # Float matmul counts shared labels; exact for counts below 2^24.
            similar = (labels.float() @ ref_labels.float().T) > 0
        if self_similarity:
            similar.fill_diagonal_(True)
        return similar
