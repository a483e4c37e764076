from __future__ import annotations

import os

import numpy as np
import torch

from .._validation import check_code_spread
from .binary_index import BinaryIndex


class HammingKNN:
    """A PML ``knn_func`` that ranks by Hamming distance between binarized embeddings.

    For ``AccuracyCalculator(knn_func=HammingKNN())`` and
    ``InferenceModel(trunk, knn_func=HammingKNN())``. Embeddings are binarized with
    ``v >= 0 -> +1`` (PML hands over float32 embeddings), packed, and searched with a
    :class:`~pml_hashing.index.BinaryIndex` of the given ``kind`` (exact ``"flat"`` by
    default; equal distances are then ordered by reference position). The embedding size must
    be a positive multiple of 8.

    The protocol (as PML's ``FaissKNN``):
    ``__call__(query, k, reference=None, ref_includes_query=False) -> (distances, indices)``,
    float32 Hamming distances and int64 indices into the reference, ``(Q, k)`` tensors on
    ``query``'s device.

    * ``reference`` given: a fresh index is built on it for this call.
    * ``reference=None``: the index filled by :meth:`train` / :meth:`add` (as
      ``InferenceModel.train_knn`` / ``add_to_knn`` do) is searched; if none was filled, the
      reference is the query itself.
    * ``ref_includes_query=True``: the query ``i`` is the reference item ``i``; it is removed
      from its own results (``k + 1`` neighbours are searched; when the query is not among
      them, because more than ``k`` exact duplicates precede it, the last one is dropped).

    Embeddings must be zero-centred: when every value is non-negative (post-ReLU features,
    sigmoid outputs), every code binarizes to all +1 and ``ValueError`` says so; codes that
    are all identical otherwise (a collapsed model) give an ``IdenticalCodesWarning``.

    ``k`` larger than the number of reference items (less the query itself) raises
    ``ValueError`` rather than returning padding indices that PML would read as real items.

    Args:
        kind: the :class:`BinaryIndex` kind.
        device: as in :class:`BinaryIndex`.
        **index_params: the kind's parameters.
    """

    def __init__(self, kind: str = "flat", device: str = "auto", **index_params):
        self.kind = kind
        self.device = device
        self.index_params = index_params
        self.index: BinaryIndex | None = None
        # Build one throw-away index now so that a bad kind or parameter fails here.
        BinaryIndex(8 * 64, kind=kind, device=device, **index_params)

    def _new_index(self, embeddings: torch.Tensor, name: str) -> BinaryIndex:
        if embeddings.ndim != 2:
            raise ValueError(
                f"{name} must be a 2-D (N, embedding_size) tensor; got {tuple(embeddings.shape)}"
            )
        num_bits = embeddings.shape[1]
        if num_bits <= 0 or num_bits % 8 != 0:
            raise ValueError(
                f"{name}.shape[1] (the code length) must be a positive multiple of 8; "
                f"got {num_bits}"
            )
        return BinaryIndex(num_bits, kind=self.kind, device=self.device, **self.index_params)

    def __call__(
        self,
        query: torch.Tensor,
        k: int,
        reference: torch.Tensor | None = None,
        ref_includes_query: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hamming k-NN of ``query`` in ``reference`` (see the class docstring)."""
        if reference is not None:
            check_code_spread([query, reference], "query and reference embeddings")
            index = self._new_index(reference, "reference")
            index.add(reference)
        elif self.index is not None:
            index = self.index
        else:
            check_code_spread([query], "query embeddings")
            index = self._new_index(query, "query")
            index.add(query)
        if query.ndim != 2 or query.shape[1] != index.num_bits:
            raise ValueError(
                f"query must have shape (Q, {index.num_bits}) to match the reference; "
                f"got {tuple(query.shape)}"
            )
        available = index.ntotal - int(ref_includes_query)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= available:
            raise ValueError(
                f"k must be an integer in [1, {available}] (the reference items"
                f"{', less the query itself' if ref_includes_query else ''}); got {k!r}"
            )
        k = int(k)
        distances, indices = index.search(query, k + 1 if ref_includes_query else k)
        distances = torch.from_numpy(distances.astype("float32"))
        indices = torch.from_numpy(indices)
        if ref_includes_query:
            distances, indices = _drop_self_matches(distances, indices)
        return distances.to(query.device), indices.to(query.device)

    def train(self, embeddings: torch.Tensor) -> None:
        """Start a new stored index holding ``embeddings`` (``InferenceModel.train_knn``)."""
        check_code_spread([embeddings], "embeddings")
        self.index = self._new_index(embeddings, "embeddings")
        self.index.add(embeddings)

    def add(self, embeddings: torch.Tensor) -> None:
        """Add ``embeddings`` to the stored index (``InferenceModel.add_to_knn``)."""
        if self.index is None:
            self.train(embeddings)
        else:
            check_code_spread([embeddings], "embeddings")
            self.index.add(embeddings)

    def reset(self) -> None:
        """Forget the stored index."""
        self.index = None

    def save(self, filename: str | os.PathLike) -> None:
        """Save the stored index (see :meth:`BinaryIndex.save`)."""
        if self.index is None:
            raise ValueError("there is no stored index to save; call train() or add() first")
        self.index.save(filename)

    def load(self, filename: str | os.PathLike) -> None:
        """Load a stored index written by :meth:`save`."""
        self.index = BinaryIndex.load(filename, kind=self.kind, device=self.device)


def _drop_self_matches(
    distances: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    # Row i must lose exactly one entry: its own index if present, else its last neighbour.
    is_self = indices == torch.arange(len(indices)).unsqueeze(1)
    is_self[~is_self.any(dim=1), -1] = True
    # A query may appear twice only if the reference repeats ids; keep the first match only.
    first = is_self & (is_self.cumsum(dim=1) == 1)
    keep = ~first
    shape = (indices.shape[0], indices.shape[1] - 1)
    return distances[keep].view(shape), indices[keep].view(shape)
