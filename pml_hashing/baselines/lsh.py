"""LSH: the sign of random projections (Charikar 2002), with faiss's random rotation."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer
from ._common import LinearProjectionHash, as_feature_matrix, check_num_bits


class LSH(LinearProjectionHash):
    """Sign-random-projection LSH: ``b = sign((x - mean) @ W)``, ``W`` random and orthonormal.

    ``W`` ``(D, K)`` is faiss's :class:`faiss.RandomRotationMatrix` (the projection
    :class:`faiss.IndexLSH` uses) drawn with ``seed``: orthonormal columns when ``K <= D``,
    orthonormal rows otherwise (Gaussian directions made orthogonal; for ``K <= D`` this
    only removes the redundancy of correlated hyperplanes). ``IndexLSH`` itself fixes its
    seed, so the rotation is built here to honour ``seed``. The data are centred on the
    training mean first (``center=True``), as in the LSH baseline of Gong and Lazebnik's ITQ
    paper: raw pixels are all positive, and hyperplanes through the origin then split them
    unevenly.

    Args:
        num_bits: ``K``, the code length.
        seed: seed of the random projection.
        center: subtract the mean of the training features before projecting.

    Attributes (after :meth:`fit`):
        mean: ``(D,)`` float32 (zeros when ``center`` is False).
        projection: ``W``, ``(D, K)`` float32.
    """

    def __init__(self, num_bits: int, seed: int = 0, center: bool = True):
        self.num_bits = check_num_bits(num_bits)
        self.seed = check_integer(seed, "seed")
        self.center = bool(center)
        self.mean: np.ndarray | None = None
        self.projection: np.ndarray | None = None

    def fit(self, x) -> LSH:
        """Draw the projection for ``x``'s dimension (and take its mean); returns ``self``."""
        x = as_feature_matrix(x)
        dim = x.shape[1]
        self.mean = x.mean(axis=0) if self.center else np.zeros(dim, dtype=np.float32)
        import faiss  # here, not at the top: the recipe's parser must not load faiss

        rotation = faiss.RandomRotationMatrix(dim, self.num_bits)
        rotation.init(self.seed)
        # faiss applies y = A x with A (K, D) row-major; W = A^T.
        matrix = faiss.vector_to_array(rotation.A).reshape(self.num_bits, dim)
        self.projection = np.ascontiguousarray(matrix.T, dtype=np.float32)
        return self
