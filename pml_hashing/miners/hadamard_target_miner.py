from __future__ import annotations

import torch
from scipy.linalg import hadamard

from .._validation import check_integer
from .base_target_miner import TARGET_MINERS, BaseTargetMiner


@TARGET_MINERS.register("hadamard", config_keys=())
class HadamardTargetMiner(BaseTargetMiner):
    """Target codes from the rows of a Sylvester Hadamard matrix (as in CSQ, Yuan et al. 2020).

    ``num_bits`` must be a power of two. The all-ones row is dropped (it is unbalanced),
    leaving ``K - 1`` balanced rows at distance exactly ``K / 2`` from each other. When more
    classes are needed, rows of ``[H; -H]`` are used (again without the all-ones and
    all-minus-ones rows): up to ``2K - 2`` classes, at distance ``K / 2`` or ``K``. A seeded
    permutation chooses which rows go to which class. ``num_bits <= 4096``.
    """

    def __init__(self, num_classes: int, num_bits: int, seed: int = 0, **kwargs):
        # scipy builds the full K x K int64 matrix: 128 MiB at 4096 bits.
        num_bits = check_integer(num_bits, "num_bits", minimum=1, maximum=4096)
        num_classes = check_integer(num_classes, "num_classes", minimum=1)
        if num_bits < 2 or num_bits & (num_bits - 1):
            raise ValueError(
                f"num_bits must be a power of two (>= 2) for Hadamard targets; got {num_bits}"
            )
        limit = 2 * num_bits - 2
        if num_classes > limit:
            raise ValueError(
                f"num_classes must be <= 2 * num_bits - 2 = {limit} for Hadamard targets "
                f"with num_bits={num_bits}; got {num_classes} (use RandomTargetMiner)"
            )
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        rows = torch.from_numpy(hadamard(self.num_bits)).to(torch.float32)[1:]
        if self.num_classes > rows.shape[0]:
            rows = torch.cat([rows, -rows])
        order = torch.randperm(rows.shape[0], generator=generator)[: self.num_classes]
        return rows[order]
