from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance

from ..codes import binarize


class HammingDistance(BaseDistance):
    """Hamming distance between binarized embeddings, as a PML distance.

    ``D(q, r) = (K - b(q) . b(r)) / 2`` with ``b(v) = +1 where v >= 0, else -1`` and ``K`` the
    embedding size: the number of bits on which the two codes differ (DPN, section 2.1).

    * Accepts ``(N, K)`` float embeddings (any ``K``); the result has their dtype where that
      dtype holds every distance exactly (float32 and float64 up to ``K = 2**24``; float16
      up to ``K = 2048``, bfloat16 up to ``K = 256``), float32 otherwise (and for integer
      inputs): a half-precision distance past those lengths would be rounded, merging
      distinct distances into ties.
    * ``is_inverted=False`` (smaller is closer); ``normalize_embeddings=False`` by default
      (normalizing does not change signs, so it would only cost time).
    * No gradient: binarization is a step function. Use it for evaluation, mining (e.g.
      :class:`~pml_hashing.miners.HammingHardPairMiner`) and PML testers, not inside a loss
      being trained.
    """

    def __init__(self, **kwargs):
        if kwargs.get("is_inverted", False):
            raise ValueError("is_inverted must be False for HammingDistance (a distance); got True")
        kwargs["is_inverted"] = False
        kwargs.setdefault("normalize_embeddings", False)
        super().__init__(**kwargs)

    @staticmethod
    def _codes(embeddings: torch.Tensor) -> torch.Tensor:
        codes = binarize(embeddings.detach())
        # +-1 codes are exact in any float type, their sums of K terms are not
        exact_up_to = {torch.float16: 2048, torch.bfloat16: 256}.get(codes.dtype)
        if not codes.is_floating_point() or (exact_up_to and codes.shape[-1] > exact_up_to):
            return codes.to(torch.float32)
        return codes

    def compute_mat(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        query_codes, ref_codes = self._codes(query_emb), self._codes(ref_emb)
        if query_codes.shape[1] != ref_codes.shape[1]:
            raise ValueError(
                f"ref_emb must have {query_codes.shape[1]} bits like query_emb; "
                f"got {ref_codes.shape[1]}"
            )
        ref_codes = ref_codes.to(query_codes.dtype)
        return (query_codes.shape[1] - query_codes @ ref_codes.T) / 2

    def pairwise_distance(self, query_emb: torch.Tensor, ref_emb: torch.Tensor) -> torch.Tensor:
        """Distances between matched rows: ``(N, K), (N, K) -> (N,)``."""
        query_codes, ref_codes = self._codes(query_emb), self._codes(ref_emb)
        if query_codes.shape != ref_codes.shape:
            raise ValueError(
                f"ref_emb must have the shape of query_emb {tuple(query_codes.shape)}; "
                f"got {tuple(ref_codes.shape)}"
            )
        ref_codes = ref_codes.to(query_codes.dtype)
        return (query_codes.shape[1] - (query_codes * ref_codes).sum(dim=1)) / 2
