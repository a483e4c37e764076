"""The loss term PML's reducers read for per-sample losses."""

from __future__ import annotations

import torch
from pytorch_metric_learning.utils import common_functions as c_f


def element_loss(losses: torch.Tensor, embeddings: torch.Tensor) -> dict:
    """One loss per sample (row of ``embeddings``), for PML's reducers to reduce (and
    ``DistributedLossWrapper`` to gather)."""
    return {
        "losses": losses,
        "indices": c_f.torch_arange_from_size(embeddings),
        "reduction_type": "element",
    }
