"""ITQ: PCA to K dimensions, then the iterative rotation of Gong and Lazebnik, with faiss."""

from __future__ import annotations

import numpy as np

from .._validation import check_integer
from ._common import LinearProjectionHash, as_feature_matrix, check_num_bits, sign_codes


class ITQ(LinearProjectionHash):
    """Iterative quantization (Gong and Lazebnik, CVPR 2011 / TPAMI 2013).

    ``b = sign((x - mean) @ P @ R)``: ``P`` ``(D, K)`` holds the top ``K`` principal
    directions of the training features (:class:`faiss.PCAMatrix`), ``R`` ``(K, K)`` is the
    orthogonal rotation that minimizes the quantization loss ``||B - V R||_F^2`` of the
    projected training data ``V = (X - mean) P``: ``iterations`` alternations of
    ``B = sign(V R)`` and the orthogonal Procrustes fit ``R = U W^T`` with
    ``V^T B = U S W^T`` (an SVD), from faiss's random rotation
    (:class:`faiss.RandomRotationMatrix`) drawn with ``seed``. Neither step can increase
    the loss; :attr:`loss_history` records it before each iteration and at the end.

    Why not :class:`faiss.ITQMatrix` / :class:`faiss.ITQTransform`: in faiss 1.15.1 their
    rotation update does not decrease the quantization loss (measured: on Gaussian data
    with decaying variances, 50 iterations end above the loss of the initial random
    rotation, while the Procrustes update above decreases it at every step), the
    transposed-Procrustes slip several ITQ ports share. ``ITQTransform`` also L2-normalizes
    each centred vector before its PCA, which changes the directions PCA finds; the paper
    centres only. The PCA is faiss's.

    Args:
        num_bits: ``K``, the code length; at most the feature dimension ``D``.
        iterations: ITQ iterations (the paper uses 50).
        seed: seed of the initial random rotation.

    Attributes (after :meth:`fit`):
        mean: ``(D,)`` float32; pca: ``P`` ``(D, K)``; rotation: ``R`` ``(K, K)``;
        projection: ``P @ R`` ``(D, K)``; loss_history: the quantization loss
        ``||B - V R||_F^2 / N`` on the training data, ``iterations + 1`` values.
    """

    def __init__(self, num_bits: int, iterations: int = 50, seed: int = 0):
        self.num_bits = check_num_bits(num_bits)
        self.iterations = check_integer(iterations, "iterations", minimum=0)
        self.seed = check_integer(seed, "seed")
        self.mean: np.ndarray | None = None
        self.pca: np.ndarray | None = None
        self.rotation: np.ndarray | None = None
        self.projection: np.ndarray | None = None
        self.loss_history: list[float] = []

    def fit(self, x) -> ITQ:
        """Fit the mean, the PCA and the rotation to the training features; returns ``self``."""
        x = as_feature_matrix(x)
        n, dim = x.shape
        if self.num_bits > dim:
            raise ValueError(
                f"num_bits must be at most the feature dimension {dim} (PCA to K dims); "
                f"got {self.num_bits}"
            )
        if n < self.num_bits + 1:
            # centred, n rows span at most n - 1 directions: PCA cannot give K of them
            raise ValueError(
                f"x must have at least num_bits + 1 = {self.num_bits + 1} rows to fit a PCA to "
                f"{self.num_bits} dimensions (n centred rows span at most n - 1); got {n}"
            )
        self.mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
        centered = np.ascontiguousarray(x - self.mean)
        import faiss  # here, not at the top: the recipe's parser must not load faiss

        pca = faiss.PCAMatrix(dim, self.num_bits)
        pca.have_bias = False  # the data are centred above
        pca.train(centered)
        # faiss's LinearTransform applies y = A x with A (d_out, d_in) row-major.
        self.pca = np.ascontiguousarray(
            faiss.vector_to_array(pca.A).reshape(-1, dim)[: self.num_bits].T
        )
        projected = (centered @ self.pca).astype(np.float64)
        self.rotation, self.loss_history = itq_rotation(
            projected, self.iterations, initial_rotation(self.num_bits, self.seed)
        )
        self.rotation = self.rotation.astype(np.float32)
        self.projection = np.ascontiguousarray(self.pca @ self.rotation, dtype=np.float32)
        return self

    def quantization_loss(self, x) -> float:
        """``||B - V R||_F^2 / N`` on ``x`` with ``V = (x - mean) P`` and ``B = sign(V R)``."""
        rotated = self.project(x)
        return float(((sign_codes(rotated) - rotated) ** 2).sum() / len(rotated))


def initial_rotation(num_bits: int, seed: int) -> np.ndarray:
    """A seeded random ``(K, K)`` orthogonal matrix from :class:`faiss.RandomRotationMatrix`."""
    import faiss

    rotation = faiss.RandomRotationMatrix(num_bits, num_bits)
    rotation.init(seed)
    return faiss.vector_to_array(rotation.A).reshape(num_bits, num_bits).T.astype(np.float64)


def itq_rotation(
    projected: np.ndarray, iterations: int, rotation: np.ndarray
) -> tuple[np.ndarray, list[float]]:
    """ITQ's alternation from ``rotation``; returns ``(R, losses)`` (``iterations + 1`` losses).

    ``B = sign(V R)`` is the best code for a fixed ``R``; ``R = U W^T`` from the SVD
    ``V^T B = U S W^T`` is the best rotation for a fixed ``B`` (it maximizes
    ``tr(R^T V^T B)``), so the loss never increases.
    """
    losses = []
    for _ in range(iterations):
        rotated = projected @ rotation
        codes = np.where(rotated >= 0, 1.0, -1.0)
        losses.append(float(((codes - rotated) ** 2).sum() / len(projected)))
        u, _, wt = np.linalg.svd(projected.T @ codes)
        rotation = u @ wt
    rotated = projected @ rotation
    codes = np.where(rotated >= 0, 1.0, -1.0)
    losses.append(float(((codes - rotated) ** 2).sum() / len(projected)))
    return rotation, losses
