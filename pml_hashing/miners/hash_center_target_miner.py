from __future__ import annotations

import math

import numpy as np
import torch
from scipy.linalg import hadamard

from .._validation import check_integer
from .base_target_miner import TARGET_MINERS, BaseTargetMiner
from .max_hamming_distance_target_miner import _hammings, _min_distance_to, _pack

# CSQ's tutorial notebook accepts Bernoulli centers at 64 bits with a minimum distance of 20
# (18 "for fast convergence"): the default floor is the same fraction of the code length.
CSQ_MIN_DISTANCE_FRACTION = 20 / 64


@TARGET_MINERS.register("hash-center", config_keys=())
class HashCenterTargetMiner(BaseTargetMiner):
    """CSQ's hash centers (Yuan et al., CVPR 2020, section 3.2), as the authors generate them.

    * ``num_classes <= 2K`` and ``K`` a power of two: rows of the Sylvester Hadamard matrix
      ``H_K`` for up to ``K`` classes, rows of ``[H_K; -H_K]`` beyond, taken in order
      (``ha_2d[:n_class]`` in yuanli2333/Hadamard-Matrix-for-hashing and DeepHash-pytorch's
      ``CSQ.py``: the all-ones row included; :class:`HadamardTargetMiner` drops it).
    * otherwise: balanced Bernoulli(0.5) centers (``K/2`` bits set, as the authors' notebook
      draws them) with a minimum-distance rejection: a center closer than ``min_distance``
      to an accepted one is drawn again. The authors redraw the *whole* codebook until its
      minimum distance passes, which never succeeds for tens of thousands of classes (their
      tracker reports it failing at 40k); here each center is redrawn on its own, in blocks
      over packed codes, and after ``max_draws_per_class`` draws per class without enough
      accepted centers the error says what to lower or to use
      (:class:`MaxHammingDistanceTargetMiner`, which maximizes the minimum instead).

    Args:
        num_classes, num_bits, seed: the codebook's size and seed (the seed orders the
            Bernoulli draws; Hadamard centers are the authors' fixed rows).
        min_distance: the rejection floor of Bernoulli centers. Default: ``round(K * 20 /
            64)``, the authors' 20 at 64 bits, lowered one bit at a time while the draws
            cannot reach it (``miner.min_distance`` says the floor used); a given floor that
            cannot be reached is an error.
        max_draws_per_class: the rejection's budget.
    """

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        min_distance: int | None = None,
        max_draws_per_class: int = 200,
        seed: int = 0,
        **kwargs,
    ):
        num_bits = check_integer(num_bits, "num_bits", minimum=1)
        self.floor_given = min_distance is not None
        if min_distance is None:
            min_distance = round(num_bits * CSQ_MIN_DISTANCE_FRACTION)
        self.min_distance = check_integer(min_distance, "min_distance", minimum=0, maximum=num_bits)
        self.max_draws_per_class = check_integer(
            max_draws_per_class, "max_draws_per_class", minimum=1
        )
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)
        self.add_to_recordable_attributes(name="min_distance")

    @property
    def uses_hadamard(self) -> bool:
        """Whether the centers are Hadamard rows (else balanced Bernoulli centers)."""
        k = self.num_bits
        return k >= 2 and k & (k - 1) == 0 and self.num_classes <= 2 * k

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        if self.uses_hadamard:
            rows = torch.from_numpy(hadamard(self.num_bits)).to(torch.float32)
            return torch.cat([rows, -rows])[: self.num_classes]
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        while True:
            try:
                return self._bernoulli_centers(rng)
            except ValueError:
                # the default floor is the authors' choice at 64 bits; lower it a bit at a
                # time where it cannot be reached (100 classes at 16 bits, say)
                if self.floor_given or self.min_distance <= 1:
                    raise
                self.min_distance -= 1

    def _bernoulli_centers(self, rng: np.random.Generator) -> torch.Tensor:
        num_classes, num_bits = self.num_classes, self.num_bits
        num_bytes = 8 * math.ceil(num_bits / 64)
        accepted_bits = np.empty((num_classes, num_bits), dtype=bool)
        accepted = np.empty((num_classes, num_bytes), dtype=np.uint8)
        done, draws = 0, 0
        budget = self.max_draws_per_class * num_classes
        while done < num_classes:
            if draws >= budget:
                raise ValueError(
                    f"min_distance={self.min_distance}: only {done} of {num_classes} Bernoulli "
                    f"centers of {num_bits} bits found after {draws} draws; lower min_distance "
                    "or use the max-hamming target miner (it maximizes the minimum distance)"
                )
            count = min(max(2 * (num_classes - done), 64), 4096)
            ranks = rng.random((count, num_bits)).argsort(axis=1).argsort(axis=1)
            bits = ranks < num_bits // 2 + (rng.random((count, 1)) < 0.5) * (num_bits % 2)
            draws += count
            packed = _pack(bits, num_bytes)
            far = np.ones(count, dtype=bool)
            if done:
                far = _min_distance_to(packed, accepted[:done]) >= self.min_distance
            candidates = np.flatnonzero(far)
            among = _hammings(packed[candidates], packed[candidates])
            # in draw order: a candidate is kept if it is far from the ones kept before it
            open_ = np.ones(len(candidates), dtype=bool)
            keep = []
            for position in range(len(candidates)):
                if done + len(keep) == num_classes:
                    break
                if open_[position]:
                    keep.append(position)
                    open_ &= among[position] >= self.min_distance
            chosen = candidates[keep]
            accepted_bits[done : done + len(chosen)] = bits[chosen]
            accepted[done : done + len(chosen)] = packed[chosen]
            done += len(chosen)
        return torch.from_numpy(np.where(accepted_bits, 1.0, -1.0).astype(np.float32))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", min_distance={self.min_distance}"
