"""The base class of target miners: modules that own a per-class codebook of target codes."""

from __future__ import annotations

import torch
from pytorch_metric_learning.utils.module_with_records import ModuleWithRecords

from .._validation import MAX_CODEBOOK_ELEMENTS, MAX_NUM_BITS, check_integer, label_tensor
from ..registry import Registry

# Target miners by the name a config gives (``target_miner:``); each miner file registers
# its class with the config keys its constructor takes (``config_keys``).
TARGET_MINERS: Registry = Registry("target miner", "target_miner")

# Rows of the codebook per block when computing the min-distance stat (memory ~ rows * C).
STATS_CHUNK_ROWS = 1024


def pairwise_hamming_distances(codes: torch.Tensor) -> torch.Tensor:
    """All pairwise Hamming distances of +-1 codes, ``(K - C C^T) / 2``, by one matmul."""
    codes = codes.to(torch.float64)
    return (codes.shape[1] - codes @ codes.T) / 2


def min_pairwise_hamming_distance(codes: torch.Tensor) -> float:
    """The smallest Hamming distance between two distinct rows of +-1 ``codes`` (inf for < 2).

    Computed one block of rows at a time, never as a ``(C, C)`` matrix: 40k classes would
    need ~13 GB per float64 copy.
    """
    codes = codes.to(torch.float32)  # inner products of +-1 codes are exact in fp32
    num_classes, num_bits = codes.shape
    if num_classes < 2:
        return float("inf")
    largest = -float("inf")
    for start in range(0, num_classes, STATS_CHUNK_ROWS):
        block = codes[start : start + STATS_CHUNK_ROWS] @ codes.T
        rows = torch.arange(block.shape[0], device=block.device)
        block[rows, rows + start] = -float("inf")  # a class against itself
        largest = max(largest, float(block.max()))
    return (num_bits - largest) / 2


def _positive_int(value, name: str) -> int:
    # numpy integers are fine (a class count read from data often is one); bools are not
    return check_integer(value, name, minimum=1)


class BaseTargetMiner(ModuleWithRecords):
    """Owns a ``(num_classes, num_bits)`` codebook of +-1 target codes, ``.targets``.

    PML's ``BaseMiner.mine`` must return index tuples, and per-class target codes do not fit
    that contract, so a target miner is a small ``ModuleWithRecords`` that a loss receives as
    ``target_miner=`` (the way it receives ``distance=`` and ``reducer=``). The codebook is a
    buffer: saved in ``state_dict``, moved by ``.to()``, never trained.

    Subclasses fill in :meth:`make_targets`. Stats ``min_hamming_distance`` and
    ``mean_hamming_distance`` (over distinct class pairs) are recordable.
    """

    def __init__(self, num_classes: int, num_bits: int, seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = _positive_int(num_classes, "num_classes")
        self.num_bits = check_integer(num_bits, "num_bits", minimum=1, maximum=MAX_NUM_BITS)
        if self.num_classes * self.num_bits > MAX_CODEBOOK_ELEMENTS:
            raise ValueError(
                f"num_classes * num_bits must be <= 2**28 (a 1 GiB codebook); got "
                f"{self.num_classes} * {self.num_bits}"
            )
        self.seed = check_integer(seed, "seed", minimum=0, maximum=2**63 - 1)
        self.add_to_recordable_attributes(list_of_names=["num_classes", "num_bits"])
        self.add_to_recordable_attributes(
            list_of_names=["min_hamming_distance", "mean_hamming_distance"], is_stat=True
        )
        generator = torch.Generator().manual_seed(self.seed)
        targets = self.make_targets(generator)
        self._check_codebook(targets)
        self.register_buffer("targets", targets.to(torch.float32))
        self.update_stats()

    def make_targets(self, generator: torch.Generator) -> torch.Tensor:
        """Return the initial ``(num_classes, num_bits)`` codebook of +-1 values."""
        raise NotImplementedError

    def _check_codebook(self, targets: torch.Tensor) -> None:
        if targets.shape != (self.num_classes, self.num_bits):
            raise RuntimeError(
                f"{type(self).__name__}.make_targets returned shape {tuple(targets.shape)}; "
                f"expected ({self.num_classes}, {self.num_bits})"
            )
        if not bool(((targets == 1) | (targets == -1)).all()):
            raise RuntimeError(f"{type(self).__name__}.make_targets returned values other than +-1")

    # ---------------------------------------------------------------- codebook queries
    def check_labels(self, labels) -> torch.Tensor:
        """Validate integer ``(N,)`` or multi-hot ``(N, num_classes)`` labels; return them.

        Torch tensors or numpy arrays; integer labels come back as int64 tensors.
        """
        return label_tensor(labels, "labels", num_classes=self.num_classes)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """Targets of integer labels, ``(N, num_bits)``. Multi-hot labels: use ``.targets``."""
        labels = self.check_labels(labels)
        if labels.ndim != 1:
            raise ValueError("forward(labels) takes integer labels (N,); got multi-hot labels")
        return self.targets[labels.to(self.targets.device)]

    def pairwise_distances(self) -> torch.Tensor:
        """``(num_classes, num_classes)`` Hamming distances between target codes."""
        return pairwise_hamming_distances(self.targets)

    def update_stats(self) -> None:
        if self.num_classes < 2:
            self.min_hamming_distance = self.mean_hamming_distance = 0.0
            return
        codes = self.targets.to(torch.float32)  # inner products of +-1 codes are exact in fp32
        num_classes = codes.shape[0]
        # Mean over distinct pairs: bit k separates n1_k * (C - n1_k) pairs.
        ones = (codes > 0).sum(dim=0).to(torch.float64)
        num_pairs = num_classes * (num_classes - 1) / 2
        self.mean_hamming_distance = float((ones * (num_classes - ones)).sum() / num_pairs)
        self.min_hamming_distance = min_pairwise_hamming_distance(codes)

    def reset_stats(self) -> None:
        # The codebook stats describe the miner, not the last call: keep them across resets.
        saved = (self.min_hamming_distance, self.mean_hamming_distance)
        super().reset_stats()
        self.min_hamming_distance, self.mean_hamming_distance = saved

    # ---------------------------------------------------------------- adaptive hooks
    def observe(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Called by the loss with detached training outputs; static codebooks ignore it."""

    def end_epoch(self) -> bool:
        """Called once per epoch; returns whether the codebook changed (never, if static)."""
        return False

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self.update_stats()
        return result

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_bits={self.num_bits}, seed={self.seed}"
