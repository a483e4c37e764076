from __future__ import annotations

import torch

from .._validation import check_integer, check_real
from .base_target_miner import TARGET_MINERS, BaseTargetMiner


def check_bit_probability(p, num_classes) -> float:
    """``p`` as a float in ``[0, 1]``; 0 and 1 refused when there are two classes or more."""
    p = check_real(p, "p")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1]; got {p}")
    if p in (0.0, 1.0) and check_integer(num_classes, "num_classes", minimum=1) > 1:
        value = "+1" if p == 1.0 else "-1"
        raise ValueError(
            f"p must be strictly between 0 and 1 with num_classes={num_classes}; got {p}: every "
            f"bit of every target would be {value}, so all classes would share one target code"
        )
    return p


@TARGET_MINERS.register("random", config_keys=("p",))
class RandomTargetMiner(BaseTargetMiner):
    """Random target codes (DPN, section 2.4): each bit is +1 with probability ``p``.

    Two such codes are at expected Hamming distance ``2 K p (1 - p)``, largest (``K / 2``)
    at ``p = 0.5``. Seeded: the same ``seed`` gives the same codebook on every process.
    """

    def __init__(self, num_classes: int, num_bits: int, p: float = 0.5, seed: int = 0, **kwargs):
        self.p = check_bit_probability(p, num_classes)
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)
        self.add_to_recordable_attributes(name="p")

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        bits = torch.rand(self.num_classes, self.num_bits, generator=generator) < self.p
        return bits.to(torch.float32) * 2 - 1

    def expected_hamming_distance(self) -> float:
        """``E[D_h(t_x, t_y)] = 2 K p (1 - p)`` for two independent codes (the DPN Claim)."""
        return 2.0 * self.num_bits * self.p * (1.0 - self.p)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", p={self.p}"
