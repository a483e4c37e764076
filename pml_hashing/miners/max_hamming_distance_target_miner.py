from __future__ import annotations

import math

import numpy as np
import torch

from .._validation import check_integer
from ..codes import pack_bool
from .base_target_miner import TARGET_MINERS, BaseTargetMiner

# Codes of at most this many bits are drawn from the enumerated code space (2**20 codes,
# 1 MiB of flags), so that every distinct code can be reached when balanced ones run out.
ENUMERATE_MAX_BITS = 20
# Classes picked per block: each block's candidates are compared with every code chosen
# before it in one faiss call, then picked greedily among themselves.
BLOCK_CLASSES = 512


def _pack(bits: np.ndarray, num_bytes: int) -> np.ndarray:
    """``(n, K)`` booleans -> ``(n, num_bytes)`` uint8, faiss's bit order, zero padding.

    Padding bits are 0 in every code, so they never add to a distance.
    """
    packed = pack_bool(np.ascontiguousarray(bits, dtype=bool))
    out = np.zeros((bits.shape[0], num_bytes), dtype=np.uint8)
    out[:, : packed.shape[1]] = packed
    return out


def _hammings(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` int32 Hamming distances of packed codes (faiss)."""
    import faiss

    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.int32)
    if a.shape[0] and b.shape[0]:
        faiss.hammings(
            faiss.swig_ptr(a),
            faiss.swig_ptr(b),
            a.shape[0],
            b.shape[0],
            a.shape[1],
            faiss.swig_ptr(out),
        )
    return out


def _min_distance_to(candidates: np.ndarray, chosen: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """For each packed candidate, its smallest distance to the packed ``chosen`` codes."""
    best = np.full(candidates.shape[0], np.iinfo(np.int32).max, dtype=np.int32)
    for start in range(0, chosen.shape[0], chunk):
        np.minimum(best, _hammings(candidates, chosen[start : start + chunk]).min(axis=1), out=best)
    return best


def count_balanced_codes(num_bits: int) -> int:
    """How many +-1 codes of ``num_bits`` have ``floor(K/2)`` or ``ceil(K/2)`` positive bits."""
    count = math.comb(num_bits, num_bits // 2)
    return count if num_bits % 2 == 0 else 2 * count


@TARGET_MINERS.register("max-hamming", config_keys=())
class MaxHammingDistanceTargetMiner(BaseTargetMiner):
    """A greedy codebook that maximizes the minimum pairwise Hamming distance.

    Classes are added in blocks of ``BLOCK_CLASSES``: a block draws
    ``candidates_per_class`` candidates per class, measures each candidate's minimum
    distance to every code chosen before the block (packed codes, ``faiss.hammings``, in
    chunks), then picks the block's classes one at a time, each time the candidate farthest
    from everything chosen so far (ties to the earlier draw). 40,000 classes at 64 bits
    take seconds, not the hours of an ``O(C^2)`` loop (``benchmarks/bench_target_miners.py``).

    Candidates are balanced codes (``floor(K/2)`` or ``ceil(K/2)`` positive bits) while
    there are plenty of them; when the balanced codes run short (fewer than
    ``candidates_per_class * num_classes`` of them, possible only for short codes) every
    code of ``K <= 20`` bits is a candidate, balanced ones first, so that the codes stay
    distinct. More classes than the ``2**K`` distinct codes are refused. The codebook's
    minimum distance is the recordable stat ``min_hamming_distance``.

    Args:
        num_classes, num_bits, seed: the codebook's size and its seed.
        candidates_per_class: candidates drawn per class (more: a larger minimum distance,
            slower).
    """

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        candidates_per_class: int = 20,
        seed: int = 0,
        **kwargs,
    ):
        self.candidates_per_class = check_integer(
            candidates_per_class, "candidates_per_class", minimum=1
        )
        num_classes = check_integer(num_classes, "num_classes", minimum=1)
        num_bits = check_integer(num_bits, "num_bits", minimum=1)
        if num_bits < 63 and num_classes > 2**num_bits:
            raise ValueError(
                f"num_classes must be <= 2**num_bits = {2**num_bits} (the number of distinct "
                f"{num_bits}-bit codes); got {num_classes}: use more bits"
            )
        super().__init__(num_classes, num_bits, seed=seed, **kwargs)
        if num_classes > 1 and self.min_hamming_distance == 0:
            raise ValueError(
                f"num_bits={num_bits} leaves too few distinct balanced codes for "
                f"num_classes={num_classes} (two classes drew the same code): use more bits"
            )

    # ---------------------------------------------------------------- candidates
    def _enumerated(self) -> bool:
        wanted = self.candidates_per_class * self.num_classes
        return self.num_bits <= ENUMERATE_MAX_BITS and count_balanced_codes(self.num_bits) < wanted

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=generator)))
        num_bits, num_classes = self.num_bits, self.num_classes
        num_bytes = 8 * math.ceil(num_bits / 64)  # whole 64-bit words for faiss
        enumerated = self._enumerated()
        if enumerated:
            universe = np.arange(2**num_bits, dtype=np.int64)
            universe_bits = ((universe[:, None] >> np.arange(num_bits)) & 1).astype(bool)
            ones = universe_bits.sum(axis=1)
            balanced = (ones == num_bits // 2) | (ones == (num_bits + 1) // 2)
            used = np.zeros(len(universe), dtype=bool)
        chosen_bits = np.empty((num_classes, num_bits), dtype=bool)
        chosen_packed = np.empty((num_classes, num_bytes), dtype=np.uint8)
        done = 0
        while done < num_classes:
            block = min(BLOCK_CLASSES, num_classes - done)
            wanted = block * self.candidates_per_class
            if enumerated:
                ids = self._draw_enumerated(rng, balanced, used, wanted)
                bits = universe_bits[ids]
            else:
                ids = None
                bits = self._draw_balanced(rng, wanted)
            packed = _pack(bits, num_bytes)
            if done:
                score = _min_distance_to(packed, chosen_packed[:done]).astype(np.int64)
            else:
                score = np.full(len(bits), num_bits + 1, dtype=np.int64)
            for j in range(block):
                best = int(np.argmax(score))
                chosen_bits[done + j] = bits[best]
                chosen_packed[done + j] = packed[best]
                if ids is not None:
                    used[ids[best]] = True
                # one row of distances per pick, never the (candidates x candidates) matrix
                np.minimum(score, _hammings(packed[best : best + 1], packed)[0], out=score)
                score[best] = -1  # never twice
            done += block
        targets = np.where(chosen_bits, 1.0, -1.0).astype(np.float32)
        return torch.from_numpy(targets)

    def _draw_balanced(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """``count`` random balanced codes as ``(count, K)`` booleans (repeats possible)."""
        num_bits = self.num_bits
        ranks = rng.random((count, num_bits)).argsort(axis=1).argsort(axis=1)
        positives = np.full((count, 1), num_bits // 2)
        if num_bits % 2:
            positives += rng.random((count, 1)) < 0.5
        return ranks < positives

    @staticmethod
    def _draw_enumerated(rng, balanced: np.ndarray, used: np.ndarray, count: int) -> np.ndarray:
        """Ids of ``count`` unused codes, balanced ones first, without repeats."""
        free_balanced = np.flatnonzero(balanced & ~used)
        if len(free_balanced) >= count:
            return rng.choice(free_balanced, size=count, replace=False)
        free_other = np.flatnonzero(~balanced & ~used)
        size = min(count - len(free_balanced), len(free_other))
        extra = rng.choice(free_other, size=size, replace=False)
        return np.concatenate([rng.permutation(free_balanced), extra])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", candidates_per_class={self.candidates_per_class}"
