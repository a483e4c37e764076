"""LSH and ITQ as fit-only hashing methods: fitted once on the training inputs, never trained.

``--method lsh`` / ``--method itq`` in the recipe: the training loop fits the baseline on the
flattened training images (no epochs, no network) and reports the same metrics as for a
trained model, so a learned model and the classical baselines share one table.
"""

from __future__ import annotations

import torch

from ..baselines import ITQ, LSH
from .base import METHODS, HashingMethod

__all__ = ["FitOnlyMethod", "ITQMethod", "LSHMethod"]


class FitOnlyMethod(HashingMethod):
    """A hashing method whose codes are ``sign((x - mean) @ W)`` of the flattened inputs.

    ``fit_only = True`` tells the training loop to call :meth:`fit` with the flattened
    training inputs ``(M, D)`` instead of training, and to encode images by flattening them
    and passing them through :meth:`retrieval_outputs`. ``mean`` and ``projection`` are
    buffers, so a checkpoint holds the fitted baseline.
    """

    name = "fit-only"
    fit_only = True

    def __init__(self, num_classes: int, num_bits: int, seed: int = 0):
        super().__init__(num_classes, num_bits)
        self.seed = seed
        self.register_buffer("mean", None)
        self.register_buffer("projection", None)

    def make_baseline(self):
        raise NotImplementedError

    @torch.no_grad()
    def fit(self, inputs: torch.Tensor) -> FitOnlyMethod:
        """Fit the baseline to the flattened training inputs ``(M, D)``; returns ``self``."""
        baseline = self.make_baseline().fit(torch.as_tensor(inputs).flatten(1))
        self.mean = torch.from_numpy(baseline.mean).float()
        self.projection = torch.from_numpy(baseline.projection).float()
        self.baseline = baseline
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the buffers exist only after fit(); a checkpoint that has them must load into a fresh
        # method
        for name in ("mean", "projection"):
            if getattr(self, name) is None and prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def retrieval_encoder(self, model: torch.nn.Module) -> torch.nn.Module:
        """Flattened pixels: the projections are fitted on them, not on a network's outputs."""
        return torch.nn.Flatten()

    def retrieval_outputs(self, outputs: torch.Tensor) -> torch.Tensor:
        """Projections ``(x - mean) @ W`` of flattened inputs ``x``; their signs are the codes."""
        if self.projection is None:
            raise RuntimeError(f"{self.name} is not fitted: call fit(training_inputs) first")
        x = outputs.flatten(1).to(self.projection)
        if x.shape[1] != self.projection.shape[0]:
            raise ValueError(
                f"inputs must have {self.projection.shape[0]} features (the fitted dimension); "
                f"got {x.shape[1]}"
            )
        return (x - self.mean) @ self.projection

    def compute_loss(self, outputs, labels, inputs, indices):
        raise RuntimeError(
            f"{self.name} is fit-only: it has no loss to train; the training loop fits it "
            "with fit(training_inputs)"
        )


class LSHMethod(FitOnlyMethod):
    """:class:`~pml_hashing.baselines.LSH` on the flattened inputs (``--method lsh``)."""

    name = "lsh"

    def make_baseline(self):
        return LSH(self.num_bits, seed=self.seed)


class ITQMethod(FitOnlyMethod):
    """:class:`~pml_hashing.baselines.ITQ` on the flattened inputs (``--method itq``).

    Args:
        iterations: ITQ iterations (50).
    """

    name = "itq"

    def __init__(self, num_classes: int, num_bits: int, seed: int = 0, iterations: int = 50):
        super().__init__(num_classes, num_bits, seed=seed)
        self.iterations = iterations

    def make_baseline(self):
        return ITQ(self.num_bits, iterations=self.iterations, seed=self.seed)


METHODS.register("lsh", LSHMethod)
METHODS.register("itq", ITQMethod)
