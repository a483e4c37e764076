"""Input checks shared by the BDNN regularizers and losses (checked once, at the public call)."""

from __future__ import annotations

import torch


def check_hash_outputs(embeddings, name: str = "embeddings", min_rows: int = 1) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is finite float ``(N, K)``, ``N >= min_rows``."""
    if not isinstance(embeddings, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(embeddings).__name__}")
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must have shape (N, num_bits); got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor; got dtype {embeddings.dtype}")
    if embeddings.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} rows (samples) for a batch statistic; "
            f"got {embeddings.shape[0]}"
        )
    if embeddings.shape[1] < 1:
        raise ValueError(f"{name} must have at least one bit (column); got 0")
    if not bool(torch.isfinite(embeddings).all()):
        raise ValueError(f"{name} contain NaN or infinite values")
