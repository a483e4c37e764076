"""What LSH and ITQ share: input checks, and codes as the sign of a fitted linear projection."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer


def as_feature_matrix(x, name: str = "x", num_features: int | None = None) -> np.ndarray:
    """``x`` (a numpy array or torch tensor, ``(N, D)`` real) as C-contiguous float32."""
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D feature matrix (N, D); got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers; got dtype {x.dtype}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column; got {x.shape}")
    if num_features is not None and x.shape[1] != num_features:
        raise ValueError(
            f"{name} must have {num_features} features (the fitted dimension); got {x.shape[1]}"
        )
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite; got NaN or infinity")
    return x


def check_num_bits(num_bits) -> int:
    return check_integer(num_bits, "num_bits", minimum=1)


def sign_codes(projections: np.ndarray) -> np.ndarray:
    """``+1`` where a projection is ``>= 0``, else ``-1`` (the package's binarize rule), int8."""
    return np.where(projections >= 0, 1, -1).astype(np.int8)


class LinearProjectionHash:
    """The encoder LSH and ITQ share once fitted: ``b = sign((x - mean) @ projection)``.

    Subclasses set ``mean`` ``(D,)`` and ``projection`` ``(D, K)`` (float32) in ``fit``.
    """

    mean: np.ndarray | None = None
    projection: np.ndarray | None = None

    def project(self, x) -> np.ndarray:
        """The real projections ``(x - mean) @ projection`` ``(N, K)`` float32, before the sign."""
        if self.projection is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(x) first")
        x = as_feature_matrix(x, num_features=self.projection.shape[0])
        return (x - self.mean) @ self.projection

    def encode(self, x) -> np.ndarray:
        """``+-1`` int8 codes ``(N, K)``; a projection of exactly 0 gives ``+1``."""
        return sign_codes(self.project(x))
