from __future__ import annotations

import torch
from pytorch_metric_learning.losses import BaseMetricLossFunction
from pytorch_metric_learning.utils import common_functions as c_f

from .._validation import DeferredChecks, check_hash_outputs, label_tensor


class MultiLabelLoss(BaseMetricLossFunction):
    """Base of the losses that take integer ``(N,)`` or multi-hot ``(N, C)`` labels.

    PML's ``BaseMetricLossFunction.forward`` checks labels with ``c_f.check_shapes``, which
    refuses ``(N, C)`` labels; this ``forward`` accepts both kinds (as torch tensors or numpy
    arrays), checks them once through :mod:`pml_hashing._validation`, and otherwise behaves
    like PML's: ``compute_loss`` fills a loss dict, ``embedding_regularizer=`` is added and
    the ``reducer`` (any PML reducer: each loss dict also holds the ``"divisor"`` that
    ``DivisorReducer`` reads, the batch size) reduces it.

    What a subclass does not support it refuses out loud, as PML's own losses do:
    ``indices_tuple`` always (``c_f.indices_tuple_not_supported``: these losses are not
    pair- or triplet-based, a miner's tuples would be ignored), and ``ref_emb`` /
    ``ref_labels`` unless the class sets ``supports_ref = True``
    (``c_f.ref_not_supported``).

    An empty batch (``N = 0``) gives a zero loss connected to the graph, like PML's losses.

    On an accelerator the NaN/inf check of the embeddings and the value checks of the labels
    run on the device and are read every ``check_every`` calls and in :meth:`flush_checks`
    (no host sync per step); see :class:`pml_hashing._validation.DeferredChecks`.
    """

    #: Whether ``ref_emb`` / ``ref_labels`` are accepted.
    supports_ref = False
    #: The calls between two reads of the device-side checks (accelerators only).
    check_every = 100

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.deferred_checks = DeferredChecks(self.check_every)

    @property
    def num_classes(self) -> int | None:
        """The number of classes labels are checked against (``None``: not checked)."""
        return None

    def forward(self, embeddings, labels=None, indices_tuple=None, ref_emb=None, ref_labels=None):
        """The reduced loss of ``embeddings`` ``(N, K)`` with ``labels`` ``(N,)`` or ``(N, C)``."""
        self.reset_stats()
        name = type(self).__name__
        c_f.indices_tuple_not_supported(indices_tuple)
        if labels is None:
            raise ValueError(f"labels are required: {name} is a supervised loss")
        if not self.supports_ref and (ref_emb is not None or ref_labels is not None):
            c_f.ref_not_supported(embeddings, labels, ref_emb, ref_labels)
        check_hash_outputs(embeddings, min_rows=0, deferred=self.deferred_checks)
        self.check_embeddings(embeddings)
        labels = self._labels(labels, embeddings, "labels")
        if ref_emb is not None:
            check_hash_outputs(ref_emb, "ref_emb", deferred=self.deferred_checks)
            if ref_emb.shape[1] != embeddings.shape[1]:
                raise ValueError(
                    f"ref_emb must have {embeddings.shape[1]} bits like embeddings; "
                    f"got {ref_emb.shape[1]}"
                )
            if ref_labels is None:
                raise ValueError("ref_labels are required with ref_emb")
            ref_labels = self._labels(ref_labels, ref_emb, "ref_labels")
            if ref_labels.ndim != labels.ndim or (
                labels.ndim == 2 and ref_labels.shape[1] != labels.shape[1]
            ):
                raise ValueError(
                    f"ref_labels must be of the same kind as labels {tuple(labels.shape)}; "
                    f"got shape {tuple(ref_labels.shape)}"
                )
        elif ref_labels is not None:
            raise ValueError("ref_labels were given without ref_emb")
        if embeddings.shape[0] == 0:
            return self.reducer(self.zero_losses(), embeddings, labels)
        loss_dict = self.compute_loss(embeddings, labels, None, ref_emb, ref_labels)
        self.add_embedding_regularization_to_loss_dict(loss_dict, embeddings)
        for loss_info in loss_dict.values():
            if loss_info.get("reduction_type") == "element":
                loss_info.setdefault("divisor", len(loss_info["losses"]))
        return self.reducer(loss_dict, embeddings, labels)

    def check_embeddings(self, embeddings: torch.Tensor) -> None:
        """Hook: checks of ``embeddings`` beyond ``(N, K)`` finite floats (e.g. ``K``)."""

    def _labels(self, labels, embeddings: torch.Tensor, name: str) -> torch.Tensor:
        return label_tensor(
            labels,
            name,
            num_rows=embeddings.shape[0],
            num_classes=self.num_classes,
            device=embeddings.device,
            deferred=self.deferred_checks,
        )

    def flush_checks(self) -> None:
        """Read the device-side input checks now (raises ``ValueError`` if one failed).

        Call it where the host syncs anyway (end of epoch, logging); on the CPU it is a no-op
        because the checks ran at once.
        """
        self.deferred_checks.raise_if_set()
