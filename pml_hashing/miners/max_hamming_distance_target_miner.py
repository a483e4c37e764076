from __future__ import annotations

import torch

from .base_target_miner import TARGET_MINERS, BaseTargetMiner


@TARGET_MINERS.register("max-hamming", config_keys=())
class MaxHammingDistanceTargetMiner(BaseTargetMiner):
    """A greedy codebook that maximizes the minimum pairwise Hamming distance.

    Draws ``candidates_per_class * num_classes`` balanced random codes and adds, one class at
    a time, the candidate whose minimum distance to the codes chosen so far is largest (ties
    to the smaller mean inner product). Every step is matrix algebra over the candidate pool,
    so it stays usable for tens of thousands of classes.
    """

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        candidates_per_class: int = 20,
        seed: int = 0,
        **kwargs,
    ):
        if candidates_per_class < 1:
            raise ValueError(f"candidates_per_class must be >= 1; got {candidates_per_class}")
        self.candidates_per_class = int(candidates_per_class)
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        num_candidates = max(self.candidates_per_class * self.num_classes, self.num_classes)
        # Balanced candidates: each has floor(K/2) or ceil(K/2) positive bits.
        noise = torch.rand(num_candidates, self.num_bits, generator=generator)
        ranks = noise.argsort(dim=1).argsort(dim=1)
        threshold = torch.full((num_candidates, 1), self.num_bits // 2)
        if self.num_bits % 2:
            threshold += (torch.rand(num_candidates, 1, generator=generator) < 0.5).long()
        candidates = torch.where(ranks < threshold, 1.0, -1.0)
        chosen = torch.empty(self.num_classes, dtype=torch.long)
        chosen[0] = 0
        # min distance from every candidate to the chosen set, and sum of inner products
        min_distance = (self.num_bits - candidates @ candidates[0]) / 2
        inner_sum = (candidates @ candidates[0]).clone()
        available = torch.ones(num_candidates, dtype=torch.bool)
        available[0] = False
        for c in range(1, self.num_classes):
            score = min_distance * (num_candidates * self.num_bits + 1) - inner_sum
            score[~available] = float("-inf")
            best = int(score.argmax())
            chosen[c] = best
            available[best] = False
            inner = candidates @ candidates[best]
            min_distance = torch.minimum(min_distance, (self.num_bits - inner) / 2)
            inner_sum += inner
        return candidates[chosen]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", candidates_per_class={self.candidates_per_class}"
