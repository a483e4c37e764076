from __future__ import annotations

from pytorch_metric_learning.regularizers import BaseRegularizer

from .._validation import check_hash_outputs


class BitBalanceRegularizer(BaseRegularizer):
    """Balance penalty of BDNN (Do, Doan, Cheung, ECCV 2016, eq. 3): ``||H^T 1||^2 / m``.

    In PML's ``(N, K)`` layout ``H^T 1`` is the per-bit sum over samples, so the penalty is
    ``(1/m) sum_k (sum_i h_ik)^2 = m sum_k mean_k^2``: zero when every bit is +1 on half of
    the samples and -1 on the other half (for +-1 codes). The authors write ``||H 1||^2`` with
    ``H`` in the MATLAB layout ``(L, m)``; it is the same number.

    * ``embeddings``: ``(N, K)`` with ``N >= 2``. A batch of one raises ``ValueError``: the
      balance of a single sample is not defined (its "penalty" would be ``||h||^2``).

    A batch statistic: the value is returned as ``"already_reduced"`` (the reducer does not
    average it again). On minibatches it is an estimate of the full-data term of the
    authors' code (which used the whole training set per step); note that the term scales
    with the batch size ``m`` (it is ``m`` times the squared bit means), so a weight tuned
    for the full training set of size ``M`` acts ``M / m`` times weaker on minibatches.

    Scale: computed **without** the paper's ``1/2``; use ``embedding_reg_weight = l4 / 2``
    to match the authors' ``(l4 / 2m) ||H 1||^2`` (the BDNN methods do).
    """

    def compute_loss(self, embeddings):
        check_hash_outputs(embeddings, min_rows=2)
        column_sums = embeddings.sum(dim=0)
        loss = (column_sums**2).sum() / embeddings.shape[0]
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}
