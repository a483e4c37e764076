from __future__ import annotations

import torch
from pytorch_metric_learning.utils.module_with_records_and_reducer import (
    ModuleWithRecordsAndReducer,
)

from .._validation import check_hash_outputs, check_integer
from ._loss_dict import element_loss


class BDNNReconstructionLoss(ModuleWithRecordsAndReducer):
    """Reconstruction term of UH-BDNN (Do, Doan, Cheung, ECCV 2016, eq. 3), with its decoder.

    ``(1/m) ||X - W B - c||^2 + l1 ||W||^2``: the inputs ``X`` are reconstructed linearly from
    the binary codes ``B`` (as in the authors' code, from ``B``, not from the real outputs
    ``H``) by a trainable decoder ``W`` (``D x L``, stored as ``decoder.weight``) and ``c``
    (``D``, ``decoder.bias``); ``l1 ||W||^2`` is the decoder's weight decay.

    PML layout: ``codes`` ``(m, L)`` and ``inputs`` ``(m, D)`` hold one sample per row, so the
    residual is ``X - B W^T - 1 c^T``. Per-sample ``"element"`` losses
    ``||x_i - W b_i - c||^2`` go to the reducer (the default ``MeanReducer`` gives ``1/m``);
    the weight decay is ``"already_reduced"``; the two sub-losses are summed.

    Scale: computed **without** the paper's ``1/2`` (``UHBDNNMethod`` multiplies by ``1/2``).
    The codes receive no gradient (they are the auxiliary variables of the alternating
    optimization); only the decoder is trained by this loss.

    Args:
        input_dim: ``D``, the number of input features (flattened).
        num_bits: ``L``.
        l1: the weight decay ``l1`` of the authors' objective (default ``1e-5``).
        generator: optional ``torch.Generator`` for a reproducible decoder initialization.
    """

    def __init__(
        self,
        input_dim: int,
        num_bits: int,
        l1: float = 1e-5,
        generator: torch.Generator | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        input_dim = check_integer(input_dim, "input_dim", minimum=1)
        num_bits = check_integer(num_bits, "num_bits", minimum=1)
        l1 = float(l1)
        if not l1 >= 0:
            raise ValueError(f"l1 must be >= 0; got {l1}")
        self.input_dim = input_dim
        self.num_bits = num_bits
        self.l1 = l1
        self.decoder = torch.nn.Linear(num_bits, input_dim)
        bound = 1.0 / num_bits**0.5
        with torch.no_grad():
            self.decoder.weight.uniform_(-bound, bound, generator=generator)
            self.decoder.bias.zero_()
        self.add_to_recordable_attributes(name="l1")

    def sub_loss_names(self):
        return ["reconstruction_loss", "weight_decay_loss"]

    def forward(self, codes: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """The loss for ``codes`` ``(m, L)`` (+-1) and ``inputs`` ``(m, D)`` (or ``(m, ...)``)."""
        self.reset_stats()
        check_hash_outputs(codes, "codes")
        if codes.shape[1] != self.num_bits:
            raise ValueError(
                f"codes must have num_bits = {self.num_bits} columns; got {codes.shape[1]}"
            )
        if not isinstance(inputs, torch.Tensor) or inputs.shape[0] != codes.shape[0]:
            got = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs)
            raise ValueError(f"inputs must have one row per code: {codes.shape[0]}; got {got}")
        inputs = inputs.reshape(inputs.shape[0], -1)
        if inputs.shape[1] != self.input_dim:
            raise ValueError(
                f"inputs must have input_dim = {self.input_dim} features (flattened); "
                f"got {inputs.shape[1]}"
            )
        weight = self.decoder.weight
        codes = codes.detach().to(weight.dtype)
        inputs = inputs.to(device=weight.device, dtype=weight.dtype)
        if not bool(torch.isfinite(inputs).all()):
            raise ValueError("inputs contain NaN or infinite values")
        residual = inputs - self.decoder(codes)
        loss_dict = {
            "reconstruction_loss": element_loss((residual**2).sum(dim=1), codes),
            "weight_decay_loss": {
                "losses": self.l1 * (weight**2).sum(),
                "indices": None,
                "reduction_type": "already_reduced",
            },
        }
        return self.reducer(loss_dict, codes, None)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Reconstructed inputs ``B W^T + c`` ``(m, D)``."""
        return self.decoder(codes.to(self.decoder.weight.dtype))

    @torch.no_grad()
    def fit(self, codes: torch.Tensor, inputs: torch.Tensor) -> None:
        """Set ``W`` and ``c`` to the exact minimizer of the loss over ``(codes, inputs)``.

        Ridge regression: ``c = mean(x) - W mean(b)``,
        ``W^T = (Bc^T Bc + M l1 I)^+ Bc^T Xc`` with ``Bc``, ``Xc`` the centred codes and
        inputs of the ``M`` samples (the pseudo-inverse covers ``l1 = 0`` with a constant bit).
        """
        weight = self.decoder.weight
        codes = codes.to(device=weight.device, dtype=weight.dtype)
        inputs = inputs.reshape(inputs.shape[0], -1).to(device=weight.device, dtype=weight.dtype)
        code_mean, input_mean = codes.mean(dim=0), inputs.mean(dim=0)
        centred_codes, centred_inputs = codes - code_mean, inputs - input_mean
        gram = centred_codes.T @ centred_codes
        gram += (
            codes.shape[0]
            * self.l1
            * torch.eye(self.num_bits, dtype=gram.dtype, device=gram.device)
        )
        weight_t = torch.linalg.pinv(gram) @ (centred_codes.T @ centred_inputs)
        self.decoder.weight.copy_(weight_t.T)
        self.decoder.bias.copy_(input_mean - code_mean @ weight_t)
