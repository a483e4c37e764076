"""What a training loop needs from a hashing method (DPN, SH-BDNN, UH-BDNN, ...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from ..data.protocol_registry import ProtocolInfo
from ..registry import Registry

# Hashing methods by the name a config gives (``method:``); each method's file registers it.
METHODS: Registry = Registry("hashing method", "method")


class EncodedTrainingSet(NamedTuple):
    """Outputs of the hash layer for the whole (local) training set, in dataset order."""

    outputs: torch.Tensor  # (M, K) real outputs v / H
    inputs: torch.Tensor  # (M, D) flattened inputs X (for reconstruction methods)
    labels: torch.Tensor  # (M,) or (M, C)
    indices: torch.Tensor  # (M,) dataset indices


class HashingMethod(torch.nn.Module):
    """A hashing objective with the hooks a training loop calls.

    The loop calls, per batch, ``compute_loss(outputs, labels, inputs, indices)`` (a scalar),
    with ``indices`` the positions of the batch's samples in the training set; and per epoch
    ``on_epoch_start(epoch, encode_training_set)`` and ``on_epoch_end(epoch)``.
    ``encode_training_set()`` runs the current network over the whole training set (no
    grad) and returns an :class:`EncodedTrainingSet`: methods that alternate with a
    discrete step (BDNN's update of B) call it; others ignore it.

    A method's own parameters (a decoder, say) are trained with the network: the loop adds
    ``method.parameters()`` to the optimizer. Its buffers (target codes, B) are saved in
    the checkpoint through ``state_dict``.
    """

    name = "base"

    def __init__(self, num_classes: int, num_bits: int):
        super().__init__()
        self.num_classes = num_classes
        self.num_bits = num_bits

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict[str, Any]:
        """The constructor's keyword arguments for an ``ExperimentConfig`` and its data.

        ``config.method_kwargs`` come first; config keys the method reads (``seed`` here,
        more in subclasses) fill what they leave out. The dict is what a checkpoint stores
        to build the method again.
        """
        kwargs = dict(config.method_kwargs)
        kwargs.setdefault("seed", config.seed)
        return kwargs

    @classmethod
    def accepted_arguments(cls) -> set[str] | None:
        """The keyword arguments the constructor takes (a config's ``method_kwargs`` may
        set only these); None when it takes any."""
        import inspect

        parameters = inspect.signature(cls).parameters.values()
        if any(p.kind is p.VAR_KEYWORD for p in parameters):
            return None
        return {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}

    @classmethod
    def from_config(cls, config, protocol) -> HashingMethod:
        """Build the method of an ``ExperimentConfig`` for a protocol (or its
        :class:`ProtocolInfo`); ``method.config_kwargs`` keeps the arguments used."""
        facts = ProtocolInfo.of(protocol, with_input_dim=cls.needs_input_dim)
        kwargs = cls.config_arguments(config, facts)
        method = cls(facts.num_classes, config.bits, **kwargs)
        method.config_kwargs = kwargs
        return method

    # Whether config_arguments reads ProtocolInfo.input_dim (reading it loads an item).
    needs_input_dim = False

    def compute_loss(
        self,
        outputs: torch.Tensor,
        labels: torch.Tensor,
        inputs: torch.Tensor,
        indices: torch.Tensor,
    ) -> torch.Tensor:
        raise NotImplementedError

    def on_epoch_start(self, epoch: int, encode_training_set: Callable[[], EncodedTrainingSet]):
        """Before each epoch (0-based); a discrete step may run here."""

    def on_epoch_end(self, epoch: int) -> dict:
        """After each epoch; returns numbers worth logging (may be empty)."""
        return {}

    @property
    def needs_training_set_encoding(self) -> bool:
        """Whether :meth:`on_epoch_start` calls ``encode_training_set`` (it costs a pass)."""
        return False

    def retrieval_encoder(self, model: torch.nn.Module) -> torch.nn.Module:
        """The module that maps a batch of images to what :meth:`retrieval_outputs` takes:
        the trained network for learned methods; fit-only baselines (LSH, ITQ) read the
        flattened pixels instead."""
        return model

    def retrieval_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """The real values whose signs are the retrieval codes, from the encoder's outputs.

        The identity for methods whose hash layer outputs the codes (DPN, BDNN); the
        classifier baseline maps outputs to centred class probabilities, and fit-only
        baselines (LSH, ITQ) map flattened inputs to their projections.
        """
        return outputs

    def retrieval_margin(self) -> float | None:
        """The margin for ternary (DPN-T) retrieval, or None if the method has none."""
        return None
