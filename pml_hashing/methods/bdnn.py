"""SH-BDNN and UH-BDNN (Do, Doan, Cheung, ECCV 2016) as hashing methods.

Both alternate, as the authors' code does, between fitting the network with the auxiliary
binary codes ``B`` fixed (the per-batch :meth:`compute_loss`) and setting ``B`` with the
network fixed (in :meth:`on_epoch_start`, from an encoding of the whole training set).

Every term is computed by a component that leaves out the paper's ``1/2``
(:mod:`pml_hashing.regularizers`, :class:`~pml_hashing.losses.BDNNSimilarityLoss`,
:class:`~pml_hashing.losses.BDNNReconstructionLoss`); the methods multiply their weighted sum
by ``1/2``, which gives the authors' objective exactly on a full batch.
"""

from __future__ import annotations

import torch

from .._validation import DeferredChecks, check_hash_outputs, check_integer, label_tensor
from ..codes import binarize
from ..losses import BDNNReconstructionLoss, BDNNSimilarityLoss
from ..regularizers import BitBalanceRegularizer, BitIndependenceRegularizer
from .base import METHODS, EncodedTrainingSet, HashingMethod, ProtocolInfo

UH_INITS = ("sign", "itq")

__all__ = ["SHBDNNMethod", "UHBDNNMethod", "coordinate_descent_codes", "uh_code_objective"]


def uh_code_objective(codes, inputs, outputs, weight, bias, l2: float) -> torch.Tensor:
    """Per-sample ``||x_i - W b_i - c||^2 + l2 ||h_i - b_i||^2`` (``(M,)``), UH-BDNN's B-step.

    Summed and divided by ``2M`` it is the part of the UH-BDNN objective that depends on ``B``.
    ``codes`` and ``outputs`` are ``(M, L)``, ``inputs`` ``(M, D)``, ``weight`` ``(D, L)``.
    """
    residual = inputs - codes @ weight.T - bias
    return (residual**2).sum(dim=1) + l2 * ((outputs - codes) ** 2).sum(dim=1)


@torch.no_grad()
def coordinate_descent_codes(
    codes: torch.Tensor,
    inputs: torch.Tensor,
    outputs: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    l2: float,
    num_sweeps: int = 3,
) -> tuple[torch.Tensor, int]:
    """UH-BDNN's B-step: minimize :func:`uh_code_objective` over ``B`` in {-1, +1}, bit by bit.

    With the other bits fixed, the best ``b_ik`` is ``sign(r_ik)``,
    ``r_ik = p_ik - sum_{j != k} Q_kj b_ij`` with ``Q = W^T W`` and
    ``P = (X - c) W + l2 H`` (the objective is ``b^T Q b - 2 b^T p`` + const per sample, as
    ``b^T b = L``). A bit keeps its value when ``r_ik = 0``, so no step increases the
    objective. Each sweep visits the ``L`` bits in order (all samples at once); sweeps stop
    early when no bit changes. A coordinate-wise minimum, not always the global one (exact when
    ``W^T W`` is diagonal).

    Returns:
        The new codes ``(M, L)`` (a copy, dtype of ``weight``) and the number of sweeps run.
    """
    if num_sweeps < 1:
        raise ValueError(f"num_sweeps must be >= 1; got {num_sweeps}")
    dtype, device = weight.dtype, weight.device
    codes = codes.to(device=device, dtype=dtype).clone()
    inputs = inputs.reshape(inputs.shape[0], -1).to(device=device, dtype=dtype)
    outputs = outputs.to(device=device, dtype=dtype)
    gram = weight.T @ weight
    linear = (inputs - bias) @ weight + l2 * outputs
    sweeps = 0
    for _ in range(num_sweeps):
        sweeps += 1
        changed = False
        for k in range(codes.shape[1]):
            residual = linear[:, k] - codes @ gram[:, k] + gram[k, k] * codes[:, k]
            new_bit = torch.where(
                residual > 0, 1.0, torch.where(residual < 0, -1.0, codes[:, k])
            ).to(dtype)
            changed = changed or bool((new_bit != codes[:, k]).any())
            codes[:, k] = new_bit
        if not changed:
            break
    return codes, sweeps


class _BDNNMethod(HashingMethod):
    """What SH-BDNN and UH-BDNN share: the code buffer B and the quantization/balance terms."""

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        l1: float,
        l2: float,
        l3: float,
        l4: float,
        seed: int,
        num_train: int | None,
        update_every: int,
        full_data_scale: bool,
    ):
        super().__init__(num_classes, num_bits)
        num_bits = check_integer(num_bits, "num_bits", minimum=1)
        for name, value in (("l1", l1), ("l2", l2), ("l3", l3), ("l4", l4)):
            if not float(value) >= 0:
                raise ValueError(f"{name} must be >= 0; got {value}")
        update_every = check_integer(update_every, "update_every", minimum=1)
        self.l1, self.l2, self.l3, self.l4 = float(l1), float(l2), float(l3), float(l4)
        self.seed = seed
        self.update_every = update_every
        self.full_data_scale = bool(full_data_scale)
        self.balance = BitBalanceRegularizer()
        self.independence = BitIndependenceRegularizer()
        # B as int8 (+-1) so that .to(dtype) on the model never rounds it; `code_known` marks
        # the training samples that B covers (the rest fall back to binarize(H)).
        self.register_buffer("codes", None)
        self.register_buffer("code_known", None)
        if num_train is not None:
            self._allocate_codes(num_train, torch.device("cpu"))
        self._term_sums: dict[str, torch.Tensor] = {}
        self._num_batches = 0
        self._last_update: dict[str, float] = {}
        self.deferred_checks = DeferredChecks()  # input checks of device tensors, read per epoch

    @property
    def weight_decay(self) -> float:
        """``l1``: the network's weight decay, for the optimizer (``(l1/2)||W||^2``)."""
        return self.l1

    @property
    def needs_training_set_encoding(self) -> bool:
        return True

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """Also ``num_train``: ``B`` holds one code per training sample."""
        kwargs = super().config_arguments(config, facts)
        kwargs.setdefault("num_train", facts.num_train)
        return kwargs

    def _allocate_codes(self, num_train: int, device) -> None:
        num_train = check_integer(num_train, "num_train", minimum=1)
        self.codes = torch.ones(num_train, self.num_bits, dtype=torch.int8, device=device)
        self.code_known = torch.zeros(num_train, dtype=torch.bool, device=device)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # B is allocated lazily; a checkpoint that has it must be loadable into a fresh method.
        if self.codes is None and prefix + "codes" in state_dict:
            saved = state_dict[prefix + "codes"]
            self._allocate_codes(saved.shape[0], saved.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _deferred(self, tensor: torch.Tensor) -> DeferredChecks | None:
        """Where the checks of ``tensor`` go: read at the epoch's end for a device tensor
        (reading a flag would wait for the device every step), at once on the CPU."""
        return None if tensor.device.type == "cpu" else self.deferred_checks

    def _check_outputs(self, outputs, indices) -> torch.Tensor:
        """Check a batch; returns ``indices``, clamped into B where a bad one is only
        recorded (on a device) so that indexing B cannot fail before the check is read."""
        check_hash_outputs(outputs, "outputs", deferred=self._deferred(outputs))
        if outputs.shape[1] != self.num_bits:
            raise ValueError(
                f"outputs must have num_bits = {self.num_bits} columns; got {outputs.shape[1]}"
            )
        if not isinstance(indices, torch.Tensor) or indices.shape != (outputs.shape[0],):
            got = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices)
            raise ValueError(
                f"indices must be a ({outputs.shape[0]},) tensor of training-set positions; "
                f"got {got}"
            )
        if indices.is_floating_point():
            raise ValueError("indices must be non-negative integer training-set positions")
        if not len(indices):
            return indices
        deferred = self._deferred(indices)
        if deferred is not None:
            deferred.add(indices.min() < 0, "indices must be non-negative training-set positions")
            if self.codes is None:
                return indices.clamp(min=0)
            message = f"indices must be < num_train = {len(self.codes)}"
            deferred.add(indices.max() >= len(self.codes), message)
            return indices.clamp(0, len(self.codes) - 1)
        if int(indices.min()) < 0:
            raise ValueError("indices must be non-negative integer training-set positions")
        if self.codes is not None and int(indices.max()) >= len(self.codes):
            raise ValueError(
                f"indices must be < num_train = {len(self.codes)}; got {int(indices.max())}"
            )
        return indices

    def _batch_codes(self, outputs, indices) -> torch.Tensor:
        fallback = binarize(outputs.detach())
        if self.codes is None:
            return fallback
        idx = indices.to(self.codes.device)
        codes = self.codes[idx].to(device=outputs.device, dtype=outputs.dtype)
        known = self.code_known[idx].to(outputs.device)
        return torch.where(known[:, None], codes, fallback)

    def full_data_factor(self, batch_size: int) -> float:
        """``M / m`` with ``full_data_scale`` (else 1): the factor of the pairwise terms.

        The similarity and balance terms of a batch of ``m`` samples sum over ``m`` partners
        per sample, where the authors' full-batch terms sum over all ``M`` training samples;
        times ``M / m`` they estimate the full-data terms, so the authors' weights keep their
        meaning on minibatches. Quantization, independence and reconstruction are means
        already and are never scaled.
        """
        if not self.full_data_scale:
            return 1.0
        if self.codes is None:
            raise ValueError(
                "full_data_scale needs the training-set size: give num_train, or call "
                "on_epoch_start (which encodes the training set) before compute_loss"
            )
        return len(self.codes) / batch_size

    def _code_terms(self, outputs, indices) -> dict[str, torch.Tensor]:
        codes = self._batch_codes(outputs, indices)
        terms = {"quantization": ((outputs - codes) ** 2).sum(dim=1).mean()}
        # Balance and independence are undefined for one sample: a batch of one (the last,
        # short batch of an epoch) is fitted without them rather than failing the run.
        if outputs.shape[0] >= 2:
            terms["balance"] = self.balance(outputs) * self.full_data_factor(outputs.shape[0])
            terms["independence"] = self.independence(outputs)
        return terms

    def _weighted(self, terms: dict[str, torch.Tensor], weights: dict[str, float]):
        total = 0.0
        for name, value in terms.items():
            total = total + weights[name] * value
            # summed on the device (float64: the sum a Python float would give) and read
            # once per epoch: a float() here would wait for the device every step
            term = value.detach().to(torch.float64)
            self._term_sums[name] = self._term_sums.get(name, 0.0) + term
        self._num_batches += 1
        return 0.5 * total

    def _store_codes(self, new_codes: torch.Tensor, indices: torch.Tensor) -> dict[str, float]:
        """Write ``new_codes`` at ``indices``; returns the fraction of known bits that flipped."""
        indices = indices.to(device=self.codes.device, dtype=torch.long)
        new_codes = new_codes.to(device=self.codes.device, dtype=torch.int8)
        known = self.code_known[indices]
        flipped = (self.codes[indices][known] != new_codes[known]).sum()
        num_known_bits = int(known.sum()) * self.num_bits
        self.codes[indices] = new_codes
        self.code_known[indices] = True
        return {"codes_flipped": float(flipped) / num_known_bits} if num_known_bits else {}

    def _prepare_encoding(self, encoded: EncodedTrainingSet) -> EncodedTrainingSet:
        check_hash_outputs(encoded.outputs, "encode_training_set().outputs")
        indices = torch.as_tensor(encoded.indices).reshape(-1).long()
        if len(indices) != encoded.outputs.shape[0]:
            raise ValueError(
                f"encode_training_set().indices must have one entry per output "
                f"({encoded.outputs.shape[0]}); got {len(indices)}"
            )
        if self.codes is None:
            self._allocate_codes(int(indices.max()) + 1, encoded.outputs.device)
        elif int(indices.max()) >= len(self.codes):
            raise ValueError(
                f"encode_training_set().indices must be < num_train = {len(self.codes)}; "
                f"got {int(indices.max())}"
            )
        return encoded._replace(indices=indices)

    def on_epoch_start(self, epoch, encode_training_set):
        if self.codes is not None and bool(self.code_known.all()) and epoch % self.update_every:
            return
        encoded = self._prepare_encoding(encode_training_set())
        with torch.no_grad():
            self._last_update = self._update_codes(encoded)

    def _update_codes(self, encoded: EncodedTrainingSet) -> dict[str, float]:
        raise NotImplementedError

    def on_epoch_end(self, epoch: int) -> dict:
        self.deferred_checks.raise_if_set()  # the device tensors' checks of the epoch
        similarity_loss = getattr(self, "similarity_loss", None)
        if similarity_loss is not None:
            similarity_loss.flush_checks()  # GPU-side input checks of the epoch (no-op on CPU)
        batches = max(self._num_batches, 1)
        stats = {f"bdnn/{k}": float(v) / batches for k, v in self._term_sums.items()}
        stats.update({f"bdnn/{k}": v for k, v in self._last_update.items()})
        self._term_sums, self._num_batches, self._last_update = {}, 0, {}
        return stats


@METHODS.register("sh-bdnn")
class SHBDNNMethod(_BDNNMethod):
    """Supervised BDNN (SH-BDNN, Do, Doan, Cheung, ECCV 2016, section 4).

    Per batch (``H`` the ``(m, L)`` outputs, ``B`` the auxiliary codes of its samples)::

        J = 1/2 [ l5 f ||H H^T / L - S||^2 / m + l2 ||H - B||^2 / m
                  + l3 ||H^T H / m - I||^2 + l4 f ||H^T 1||^2 / m ]

    with ``f = M / m`` (``full_data_scale``, the default; ``M`` the training-set size) or 1,
    and ``S_ij = +1`` when samples ``i`` and ``j`` share a label, ``-1`` otherwise. In the
    authors' MATLAB layout ``H`` is ``(L, m)`` and the terms read ``||H^T H / L - S||``,
    ``||H H^T / m - I||`` and ``||H 1||``. The weight decay ``(l1/2) sum ||W||^2`` of the
    network belongs to the optimizer: use ``weight_decay=method.weight_decay`` (``l1``).
    At the start of every ``update_every``-th epoch, ``B = binarize(H)`` over the whole
    training set (the network fixed).

    Minibatches: the authors fit full batches. On a batch of ``m`` of the ``M`` training
    samples, quantization and independence are means and estimate their full-data terms as
    they are; similarity and balance sum over the ``m`` partners of each sample, so with
    ``full_data_scale`` (default) they are multiplied by ``M / m`` (see
    :meth:`full_data_factor`) to estimate the full-data terms. Without it the authors' ``l5``
    acts ``M / m`` times weaker against ``l2`` on minibatches and the codes collapse (measured
    with ``benchmarks/bdnn_ablation.py``, the project's CNN on ``digits``, batch 64, 3 seeds:
    at 8 bits every bit is constant over the database and mAP drops from 0.92 to 0.11; at 32
    bits 27 bits are constant and mAP drops from 0.98 to 0.64).

    Args:
        num_classes: number of classes (width of multi-hot labels).
        num_bits: ``L``.
        l1, l2, l3, l4, l5: the weights of the authors' code (defaults theirs).
        seed: unused by SH-BDNN (nothing is random); accepted like every method's.
        num_train: size of the training set, to allocate ``B`` now (else at the first update).
        update_every: epochs between two updates of ``B``.
        full_data_scale: scale the similarity and balance terms by ``M / m`` (see above).
    """

    name = "sh-bdnn"

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        l1: float = 1e-5,
        l2: float = 5e-2,
        l3: float = 1e-2,
        l4: float = 5e-7,
        l5: float = 1e-2,
        seed: int = 0,
        num_train: int | None = None,
        update_every: int = 1,
        full_data_scale: bool = True,
    ):
        super().__init__(
            num_classes, num_bits, l1, l2, l3, l4, seed, num_train, update_every, full_data_scale
        )
        if not float(l5) >= 0:
            raise ValueError(f"l5 must be >= 0; got {l5}")
        self.l5 = float(l5)
        self.similarity_loss = BDNNSimilarityLoss()

    def _check_labels(self, labels) -> torch.Tensor:
        deferred = self._deferred(labels) if isinstance(labels, torch.Tensor) else None
        return label_tensor(labels, "labels", num_classes=self.num_classes, deferred=deferred)

    def compute_loss(self, outputs, labels, inputs, indices):
        indices = self._check_outputs(outputs, indices)
        labels = self._check_labels(labels).to(outputs.device)
        terms = self._code_terms(outputs, indices)
        factor = self.full_data_factor(outputs.shape[0])
        terms["similarity"] = self.similarity_loss(outputs, labels) * factor
        weights = {
            "similarity": self.l5,
            "quantization": self.l2,
            "independence": self.l3,
            "balance": self.l4,
        }
        return self._weighted(terms, weights)

    def _update_codes(self, encoded: EncodedTrainingSet) -> dict[str, float]:
        return self._store_codes(binarize(encoded.outputs.detach()), encoded.indices)


@METHODS.register("uh-bdnn")
class UHBDNNMethod(_BDNNMethod):
    """Unsupervised BDNN (UH-BDNN, Do, Doan, Cheung, ECCV 2016, section 3).

    Per batch (``X`` the flattened ``(m, D)`` inputs, ``H`` the ``(m, L)`` outputs, ``B`` the
    auxiliary codes of the batch's samples)::

        J = 1/2 [ ||X - B W^T - 1 c^T||^2 / m + l1 ||W||^2 + l2 ||H - B||^2 / m
                  + l3 ||H^T H / m - I||^2 + l4 f ||H^T 1||^2 / m ]

    (the authors' ``(1/2m)||X - W B - c||^2`` etc. in the MATLAB layout, ``X`` ``(D, m)``;
    ``f = M / m`` with ``full_data_scale``, else 1).
    The decoder ``W`` ``(D x L)``, ``c`` is :attr:`reconstruction_loss` ``.decoder``, trained
    with the network (its ``l1`` weight decay is in the loss; give the network's own weight
    decay ``l1`` to the optimizer, without the method's parameters).

    B-step, at the start of every ``update_every``-th epoch, with the network fixed: samples
    without a code get ``binarize(H)`` (and the decoder its exact ridge fit the first time);
    then ``num_sweeps`` sweeps of :func:`coordinate_descent_codes` minimize
    ``(1/2m)||X - W B - c||^2 + (l2/2m)||H - B||^2`` bit by bit; then, if ``refit_decoder``,
    ``W`` and ``c`` get their exact fit to the new ``B``. Batch statistics are minibatch
    estimates of the full-data terms; with ``full_data_scale`` (default) the balance term is
    multiplied by ``M / m`` as in :class:`SHBDNNMethod`.

    Args:
        num_classes: unused (no labels); accepted like every method's.
        num_bits: ``L``.
        input_dim: ``D``, the number of input features (``C * H * W`` for images).
        l1, l2, l3, l4: the weights of the authors' code (defaults theirs).
        seed: seeds the decoder's initialization.
        num_train: size of the training set, to allocate ``B`` now (else at the first update).
        update_every: epochs between two B-steps.
        num_sweeps: coordinate-descent sweeps per B-step.
        refit_decoder: refit ``W``, ``c`` exactly after each B-step.
        full_data_scale: scale the balance term by ``M / m``.
        init: how the first B-step starts ``B``: ``"sign"`` (``binarize(H)`` of the
            untrained network, then coordinate descent) or ``"itq"`` (the authors' choice:
            ``B`` = the :class:`~pml_hashing.baselines.ITQ` codes of the flattened training
            inputs, ``seed`` and ``itq_iterations``, with the decoder fitted to them and no
            coordinate descent in that step, so the network first learns to output the ITQ
            codes). The authors also initialize their MLP encoder with PCA; a convolutional
            backbone has no PCA counterpart, so the encoder keeps its timm initialization.
        itq_iterations: ITQ iterations for ``init="itq"``.
    """

    name = "uh-bdnn"

    needs_input_dim = True

    @classmethod
    def config_arguments(cls, config, facts: ProtocolInfo) -> dict:
        """Also ``input_dim``: the decoder reconstructs the flattened inputs."""
        kwargs = super().config_arguments(config, facts)
        if "input_dim" not in kwargs:
            if facts.input_dim is None:
                raise ValueError("UH-BDNN needs the protocol's input_dim (C * H * W)")
            kwargs["input_dim"] = facts.input_dim
        return kwargs

    def __init__(
        self,
        num_classes: int,
        num_bits: int,
        input_dim: int | None = None,
        l1: float = 1e-5,
        l2: float = 5e-2,
        l3: float = 1e-2,
        l4: float = 5e-7,
        seed: int = 0,
        num_train: int | None = None,
        update_every: int = 1,
        num_sweeps: int = 3,
        refit_decoder: bool = True,
        full_data_scale: bool = True,
        init: str = "sign",
        itq_iterations: int = 50,
    ):
        super().__init__(
            num_classes, num_bits, l1, l2, l3, l4, seed, num_train, update_every, full_data_scale
        )
        if init not in UH_INITS:
            raise ValueError(f"init must be one of {list(UH_INITS)}; got {init!r}")
        self.init = init
        self.itq_iterations = itq_iterations
        if input_dim is None:
            raise ValueError("input_dim is required: UH-BDNN reconstructs the (flattened) inputs")
        num_sweeps = check_integer(num_sweeps, "num_sweeps", minimum=1)
        generator = torch.Generator().manual_seed(seed)
        self.reconstruction_loss = BDNNReconstructionLoss(
            input_dim, num_bits, l1=l1, generator=generator
        )
        self.num_sweeps = num_sweeps
        self.refit_decoder = refit_decoder
        self.register_buffer("decoder_fitted", torch.tensor(False))

    @property
    def weight_decay(self) -> float:
        """``l1`` for the optimizer, on the network's weights (the decoder's is in the loss)."""
        return self.l1

    def compute_loss(self, outputs, labels, inputs, indices):
        indices = self._check_outputs(outputs, indices)
        terms = self._code_terms(outputs, indices)
        codes = self._batch_codes(outputs, indices)
        terms["reconstruction"] = self.reconstruction_loss(codes, inputs).to(outputs.device)
        weights = {
            "reconstruction": 1.0,
            "quantization": self.l2,
            "independence": self.l3,
            "balance": self.l4,
        }
        return self._weighted(terms, weights)

    def _update_codes(self, encoded: EncodedTrainingSet) -> dict[str, float]:
        weight = self.reconstruction_loss.decoder.weight
        indices = encoded.indices
        outputs = encoded.outputs.detach().to(device=weight.device, dtype=weight.dtype)
        inputs = encoded.inputs.reshape(len(indices), -1).to(
            device=weight.device, dtype=weight.dtype
        )
        if inputs.shape[1] != self.reconstruction_loss.input_dim:
            raise ValueError(
                f"encode_training_set().inputs must have input_dim = "
                f"{self.reconstruction_loss.input_dim} features; got {inputs.shape[1]}"
            )
        idx = indices.to(self.codes.device)
        known = self.code_known[idx].to(weight.device)
        start = torch.where(
            known[:, None],
            self.codes[idx].to(device=weight.device, dtype=weight.dtype),
            binarize(outputs),
        )
        if self.init == "itq" and not bool(known.any()):
            from ..baselines import ITQ  # only here: the method works without it otherwise

            itq = ITQ(self.num_bits, iterations=self.itq_iterations, seed=self.seed)
            codes = torch.from_numpy(itq.fit(inputs.cpu().numpy()).encode(inputs.cpu().numpy()))
            codes = codes.to(device=weight.device, dtype=weight.dtype)
            self.reconstruction_loss.fit(codes, inputs)
            self.decoder_fitted.fill_(True)
            return {**self._store_codes(codes, indices), "itq_init": 1.0}
        if not bool(self.decoder_fitted):
            self.reconstruction_loss.fit(start, inputs)
            self.decoder_fitted.fill_(True)
        bias = self.reconstruction_loss.decoder.bias
        before = uh_code_objective(start, inputs, outputs, weight, bias, self.l2).mean()
        new_codes, sweeps = coordinate_descent_codes(
            start, inputs, outputs, weight.detach(), bias.detach(), self.l2, self.num_sweeps
        )
        after = uh_code_objective(new_codes, inputs, outputs, weight, bias, self.l2).mean()
        stats = self._store_codes(new_codes, indices)
        if self.refit_decoder:
            self.reconstruction_loss.fit(new_codes, inputs)
        return {
            **stats,
            "code_objective_before": 0.5 * float(before),
            "code_objective_after": 0.5 * float(after),
            "code_sweeps": float(sweeps),
        }
