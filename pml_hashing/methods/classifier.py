"""The classifier baseline of Sablayrolles et al. (ICASSP 2017) as a hashing method."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validation import DeferredChecks, check_integer
from .base import METHODS, HashingMethod

__all__ = ["ClassifierMethod"]


class ClassifierMethod(HashingMethod):
    """A softmax classifier on the backbone; its code is the sign of the centred probabilities.

    Sablayrolles, Douze, Usunier and Jégou ("How should we evaluate supervised hashing?",
    ICASSP 2017) show that encoding a classifier's output beats supervised hashing methods
    when queries and database come from the training classes. This method is that
    classifier, built so that it runs through the same loop and report as every method:

    - Training: the hash layer's ``K`` real outputs ``v`` feed a linear classifier
      ``z = A v + a`` (``A`` ``(C, K)``, this method's parameters) trained by softmax
      cross-entropy (binary cross-entropy per class for multi-hot labels).
    - Code: ``p = softmax(z)`` (``sigmoid(z)`` for multi-hot), and bit ``k`` is
      ``sign(p_c - mean(p))`` with ``c = k mod C``: a one-vs-rest code of the classes above
      the mean probability ``1/C``, repeated to fill ``K`` bits (:meth:`retrieval_outputs`).
      A confident prediction gives the one-hot code of its class, so every item predicted
      as class ``c`` shares one code: retrieval on the training classes becomes
      classification, which is what the paper shows the usual protocol rewards. On unseen
      classes the code says which seen classes an item resembles.

    Why this form: centring at the mean (not at 0.5) is the paper's "probabilities minus
    their mean"; repeating the ``C`` bits keeps every class equally weighted in the Hamming
    distance for any ``K >= C`` (a ``K`` that is not a multiple of ``C`` weights the first
    ``K mod C`` classes once more); the paper's shorter codes (the class index in
    ``ceil(log2 C)`` bits) would not fill the ``K`` bits the other methods are compared at.

    Args:
        num_classes: ``C`` (of the training classes: the seen ones under the unseen-class
            protocol).
        num_bits: ``K``; at least ``C``.
        seed: seeds the classifier's initialization.
    """

    name = "classifier"

    def __init__(self, num_classes: int, num_bits: int, seed: int = 0):
        num_classes = check_integer(num_classes, "num_classes", minimum=1)
        num_bits = check_integer(num_bits, "num_bits", minimum=1)
        super().__init__(num_classes, num_bits)
        if num_bits < num_classes:
            raise ValueError(
                f"num_bits must be at least num_classes = {num_classes} (one bit per class); "
                f"got {num_bits}"
            )
        generator = torch.Generator().manual_seed(seed)
        self.classifier = torch.nn.Linear(num_bits, num_classes)
        with torch.no_grad():
            bound = 1.0 / num_bits**0.5
            self.classifier.weight.uniform_(-bound, bound, generator=generator)
            self.classifier.bias.zero_()
        self.register_buffer("bit_class", torch.arange(num_bits) % num_classes)
        # set by the first multi-hot batch; saved, so a checkpoint encodes as it was trained
        self.register_buffer("multi_label_trained", torch.tensor(False))
        self._checks = DeferredChecks()

    def on_epoch_end(self, epoch: int) -> dict:
        self._checks.raise_if_set()  # the label checks of the epoch's accelerator batches
        return {}

    def logits(self, outputs: torch.Tensor) -> torch.Tensor:
        if outputs.ndim != 2 or outputs.shape[1] != self.num_bits:
            raise ValueError(
                f"outputs must be (N, num_bits = {self.num_bits}); got {tuple(outputs.shape)}"
            )
        return self.classifier(outputs.to(self.classifier.weight.dtype))

    def compute_loss(self, outputs, labels, inputs, indices):
        logits = self.logits(outputs)
        if labels.ndim == 2:
            if labels.shape[1] != self.num_classes:
                raise ValueError(
                    f"multi-hot labels must have num_classes = {self.num_classes} columns; "
                    f"got {labels.shape[1]}"
                )
            self.multi_label_trained.fill_(True)
            return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        if labels.is_floating_point():
            raise ValueError(f"labels must be integer class ids; got dtype {labels.dtype}")
        if labels.device.type != "cpu":  # read at the epoch's end: no device sync per step
            outside = (labels.min() < 0) | (labels.max() >= self.num_classes)
            message = f"labels must be in [0, num_classes) = [0, {self.num_classes})"
            self._checks.add(outside, message)
        elif len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
            raise ValueError(
                f"labels must be in [0, num_classes) = [0, {self.num_classes}); got {bad}"
            )
        return F.cross_entropy(logits, labels.long())

    @torch.no_grad()
    def probabilities(self, outputs: torch.Tensor, multi_label: bool = False) -> torch.Tensor:
        """Class probabilities ``(N, C)``: softmax, or per-class sigmoid for multi-hot training."""
        logits = self.logits(outputs)
        return torch.sigmoid(logits) if multi_label else torch.softmax(logits, dim=1)

    @torch.no_grad()
    def retrieval_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """``p_c - mean(p)`` for bit ``k``'s class ``c = k mod C``, ``(N, K)``: the code's signs."""
        logits = self.logits(outputs)
        # a select on the saved flag rather than bool(flag): an exported graph keeps it
        probabilities = torch.where(
            self.multi_label_trained, torch.sigmoid(logits), torch.softmax(logits, dim=1)
        )
        centred = probabilities - probabilities.mean(dim=1, keepdim=True)
        return centred[:, self.bit_class.to(centred.device)]


METHODS.register("classifier", ClassifierMethod)
