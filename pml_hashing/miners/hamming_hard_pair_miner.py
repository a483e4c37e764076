from __future__ import annotations

import torch
from pytorch_metric_learning.miners import BaseMiner
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from ..distances import HammingDistance


class HammingHardPairMiner(BaseMiner):
    """Hamming-hard pairs for PML pair losses (e.g. ``ContrastiveLoss``).

    Keeps the positive pairs with ``D_h(b_a, b_p) > pos_margin`` (same label, codes still far
    apart) and the negative pairs with ``D_h(b_a, b_n) < neg_margin`` (different labels, codes
    too close), where ``D_h`` is the Hamming distance between binarized embeddings
    (:class:`~pml_hashing.distances.HammingDistance`; margins are in bits). ``mine`` returns
    PML's pair tuple ``(a1, p, a2, n)``. Labels are integer ``(N,)`` (PML's miners do not take
    multi-hot labels). Like PML's ``PairMarginMiner``, with ``ref_emb`` the pairs run from
    ``embeddings`` to ``ref_emb``; without it, self pairs are excluded.

    Args:
        pos_margin: positives farther than this many bits are kept.
        neg_margin: negatives closer than this many bits are kept.
        **kwargs: passed to PML's ``BaseMiner`` (``collect_stats=``; ``distance=`` must be a
            ``HammingDistance`` if given).
    """

    def __init__(self, pos_margin: float = 0.0, neg_margin: float = float("inf"), **kwargs):
        distance = kwargs.get("distance")
        if distance is not None and not isinstance(distance, HammingDistance):
            raise ValueError(f"distance must be a HammingDistance; got {type(distance).__name__}")
        super().__init__(**kwargs)
        for name, value in (("pos_margin", pos_margin), ("neg_margin", neg_margin)):
            if not float(value) >= 0:
                raise ValueError(f"{name} must be >= 0 (a number of bits); got {value}")
        self.pos_margin = float(pos_margin)
        self.neg_margin = float(neg_margin)
        self.add_to_recordable_attributes(list_of_names=["pos_margin", "neg_margin"], is_stat=False)
        self.add_to_recordable_attributes(
            list_of_names=["pos_pair_dist", "neg_pair_dist"], is_stat=True
        )

    def get_default_distance(self) -> HammingDistance:
        return HammingDistance()

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        if labels.ndim != 1:
            raise ValueError(
                f"labels must be integer class labels of shape (N,); got {tuple(labels.shape)}"
            )
        mat = self.distance(embeddings, ref_emb)
        a1, p, a2, n = lmu.get_all_pairs_indices(labels, ref_labels)
        pos_dist, neg_dist = mat[a1, p], mat[a2, n]
        if self.collect_stats:
            self.pos_pair_dist = torch.mean(pos_dist).item() if len(pos_dist) else 0.0
            self.neg_pair_dist = torch.mean(neg_dist).item() if len(neg_dist) else 0.0
        pos_mask = pos_dist > self.pos_margin
        neg_mask = neg_dist < self.neg_margin
        return a1[pos_mask], p[pos_mask], a2[neg_mask], n[neg_mask]
