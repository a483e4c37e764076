from __future__ import annotations

import torch
from pytorch_metric_learning.regularizers import BaseRegularizer

from .._validation import check_hash_outputs


class BitIndependenceRegularizer(BaseRegularizer):
    """Independence penalty of BDNN (Do, Doan, Cheung, ECCV 2016, eq. 3): ``||H^T H / m - I||^2``.

    In PML's ``(N, K)`` layout ``H^T H / m`` is the ``K x K`` matrix of bit second moments;
    the squared Frobenius distance to the identity is zero when the bits are uncorrelated
    (for +-1 codes, every pair of bits agrees on exactly half of the samples). The authors
    write ``||H H^T / m - I||^2`` with ``H`` in the MATLAB layout ``(L, m)``; it is the same
    matrix.

    * ``embeddings``: ``(N, K)`` with ``N >= 2``. A batch of one raises ``ValueError``: the
      correlation of bits over one sample is not defined.

    A batch statistic: returned as ``"already_reduced"``. On minibatches it is an estimate of
    the full-data term (biased: the sample second moments of ``m`` samples fluctuate around
    the full-data ones, so even exactly independent bits give a positive penalty on average).

    Scale: computed **without** the paper's ``1/2``; use ``embedding_reg_weight = l3 / 2``
    to match the authors' ``(l3 / 2) ||H H^T / m - I||^2`` (the BDNN methods do).
    """

    def compute_loss(self, embeddings):
        check_hash_outputs(embeddings, min_rows=2)
        num_samples, num_bits = embeddings.shape
        second_moments = embeddings.T @ embeddings / num_samples
        identity = torch.eye(num_bits, dtype=embeddings.dtype, device=embeddings.device)
        loss = ((second_moments - identity) ** 2).sum()
        return {"loss": {"losses": loss, "indices": None, "reduction_type": "already_reduced"}}
