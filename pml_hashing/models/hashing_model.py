from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from .._validation import MAX_NUM_BITS, check_integer
from ..codes import binarize, ternarize
from . import small_cnn  # noqa: F401  (registers hashing_cnn_small with timm)


def _load_weights_file(backbone: nn.Module, path: Path, name: str) -> None:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"pretrained file {path} does not hold a state dict")
    own = backbone.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    mismatched = sorted(k for k, v in state.items() if k in own and own[k].shape != v.shape)
    if not usable:
        raise ValueError(
            f"pretrained file {path} does not match backbone {name!r}: no parameter name and "
            f"shape in common (its keys start with {sorted(state)[:3]})"
        )
    missing = [k for k in own if k not in usable]
    # A classifier head or a stem adapted to another in_chans may legitimately differ;
    # a file that matches less than half of the backbone is the wrong file.
    if len(missing) > len(own) / 2:
        raise ValueError(
            f"pretrained file {path} matches only {len(usable)} of {len(own)} tensors of "
            f"backbone {name!r} (shape mismatches: {mismatched[:5]})"
        )
    backbone.load_state_dict(usable, strict=False)


class HashingModel(nn.Module):
    """A timm backbone followed by a linear K-bit hash layer (no tanh, no batch norm).

    ``forward(x)`` returns the real outputs ``v`` (N, K) that the polarization loss pushes
    away from zero; ``encode(x)`` returns binary codes (``v >= 0 -> +1``), and
    ``encode(x, ternary_margin=m)`` ternary codes (DPN-T).

    Args:
        backbone: any timm model name (``timm.list_models()``), or ``hashing_cnn_small``
            registered by this package for small images.
        num_bits: K, the code length.
        pretrained: ``False``, or a path to a local weights file (``.pth``/``.safetensors``)
            for the backbone. ``True`` is refused, because it would download weights.
        in_chans: input channels (1 for MNIST-like data).
        **timm_kwargs: passed to ``timm.create_model`` (``drop_rate``, ``img_size``, ...).
    """

    def __init__(
        self,
        backbone: str,
        num_bits: int,
        pretrained: bool | str | Path = False,
        in_chans: int = 3,
        **timm_kwargs,
    ):
        super().__init__()
        num_bits = check_integer(num_bits, "num_bits", minimum=1, maximum=MAX_NUM_BITS)
        if not timm.is_model(backbone):
            close = timm.list_models(f"*{backbone.split('_')[0]}*")[:5]
            raise ValueError(
                f"backbone {backbone!r} is not a timm model name"
                + (f" (similar names: {close})" if close else "")
            )
        if pretrained is True:
            raise ValueError(
                "pretrained=True would download weights; pass the path of a local weights file"
            )
        weights = Path(pretrained) if pretrained else None
        if weights is not None and not weights.is_file():
            raise ValueError(f"pretrained weights file not found: {weights}")
        self.backbone_name = backbone
        self.num_bits = num_bits
        self.in_chans = in_chans
        self.backbone = timm.create_model(
            backbone, pretrained=False, num_classes=0, in_chans=in_chans, **timm_kwargs
        )
        if weights is not None:
            _load_weights_file(self.backbone, weights, backbone)
        self.hash_layer = nn.Linear(self.backbone.num_features, num_bits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hash_layer(self.backbone(x))

    @torch.no_grad()
    def encode(self, x: torch.Tensor, ternary_margin: float | None = None) -> torch.Tensor:
        """Codes of a batch: binary, or ternary when ``ternary_margin`` is given."""
        v = self(x)
        return binarize(v) if ternary_margin is None else ternarize(v, ternary_margin)

    def parameter_groups(self, lr: float, backbone_lr_multiplier: float = 1.0) -> list[dict]:
        """Optimizer groups: the backbone at ``lr * backbone_lr_multiplier``, the hash layer at
        ``lr`` (the usual fine-tuning recipe uses 0.1 for a pretrained backbone)."""
        groups = [{"params": list(self.hash_layer.parameters()), "lr": lr}]
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        if backbone:
            groups.append({"params": backbone, "lr": lr * backbone_lr_multiplier})
        return groups

    def freeze_backbone(self, frozen: bool = True) -> None:
        """Freeze (or unfreeze) the backbone so that only the hash layer trains."""
        for p in self.backbone.parameters():
            p.requires_grad_(not frozen)

    def data_config(self) -> dict:
        """timm's data config of the backbone (input size, mean, std, interpolation)."""
        return timm.data.resolve_data_config({}, model=self.backbone)
