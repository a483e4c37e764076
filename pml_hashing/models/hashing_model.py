from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .._validation import MAX_NUM_BITS, check_integer
from ..codes import binarize, ternarize
from .small_cnn import OWN_BACKBONES  # (and registers them with timm once it is imported)

# Arguments that timm.create_model consumes itself rather than passing to the model: a
# backbone of the package's own is built through timm when one is given.
TIMM_FACTORY_ARGUMENTS = {
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
    "cache_dir",
    "scriptable",
    "exportable",
    "no_jit",
}

# Backbone names timm resolves itself (a model config and weights on the Hugging Face Hub,
# or in a local folder) rather than through its registry.
HUB_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")
TRUE = ("1", "true", "yes", "on")  # how huggingface_hub reads a boolean variable
LOCAL_WEIGHTS_HINT = (
    "pass a local weights file instead (pretrained='path/to/weights.safetensors' or .pth; "
    "--pretrained PATH on the command line), or fetch the weights once where there is a "
    "network: timm caches them in the Hugging Face cache (HF_HOME, default "
    "~/.cache/huggingface), where an offline run finds them"
)


def _is_network_error(error: BaseException) -> bool:
    """An error of the download layer (huggingface_hub, httpx, requests, urllib), not of the
    model arguments, anywhere in the chain of causes."""
    while error is not None:
        module = type(error).__module__.split(".")[0]
        if module in ("huggingface_hub", "httpx", "httpcore", "requests", "urllib3", "urllib"):
            return True
        if isinstance(error, (ConnectionError, TimeoutError)):
            return True
        error = error.__cause__ or error.__context__
    return False


def _hub_unreachable(timeout: float = 3.0) -> bool:
    """True when no connection to the Hub's host opens within ``timeout`` seconds.

    huggingface_hub retries a failed connection with backoff for about a minute per file;
    one short probe lets a machine without a network fail at once instead."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError:
        return True
    return False


def _timm():
    import timm  # the import registers the package's own backbones (small_cnn)

    return timm


def _create_backbone(backbone: str, downloads: bool, **kwargs) -> nn.Module:
    """``timm.create_model``; when it must reach the Hub (``pretrained=True``, an ``hf-hub:``
    name) and cannot, a ValueError that names the local-file option.

    A backbone of the package's own (``hashing_cnn_small``) is built as timm would build it
    (its entry point with the arguments that are not None), without importing timm.

    Offline (``HF_HUB_OFFLINE=1``, or the Hub's host unreachable) files come from the
    Hugging Face cache only, and a file missing there fails at once."""
    if backbone in OWN_BACKBONES and not TIMM_FACTORY_ARGUMENTS & set(kwargs):
        return OWN_BACKBONES[backbone](**{k: v for k, v in kwargs.items() if v is not None})
    timm = _timm()
    if not downloads:
        return timm.create_model(backbone, **kwargs)
    from huggingface_hub import constants

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").lower() in TRUE
    unreachable = not offline and _hub_unreachable()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline or unreachable  # the cache only, no retries
    try:
        return timm.create_model(backbone, **kwargs)
    except Exception as error:
        if not _is_network_error(error):
            raise
        why = (
            "HF_HUB_OFFLINE is set"
            if offline
            else "the Hub could not be reached (no network)"
            if unreachable
            else "the Hub could not be reached"
        )
        raise ValueError(
            f"backbone {backbone!r} with pretrained={kwargs.get('pretrained')!r} needs files "
            f"from the Hugging Face Hub that are not in the local cache and {why} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            f"{LOCAL_WEIGHTS_HINT}"
        ) from error
    finally:
        constants.HF_HUB_OFFLINE = saved


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
    """A timm backbone followed by a linear K-bit hash layer (no tanh; batch norm optional).

    ``forward(x)`` returns the real outputs ``v`` (N, K) that the polarization loss pushes
    away from zero; ``encode(x)`` returns binary codes (``v >= 0 -> +1``), and
    ``encode(x, ternary_margin=m)`` ternary codes (DPN-T).

    Args:
        backbone: any timm model name (``timm.list_models()``), or ``hashing_cnn_small``
            registered by this package for small images;
            ``hf-hub:timm/<name>`` loads a model config (and with ``pretrained=True`` its
            weights) from the Hugging Face Hub, as ``timm.create_model`` does.
        num_bits: K, the code length.
        pretrained: ``False``; ``True`` for timm's published weights (downloaded into the
            Hugging Face cache the first time, read from it afterwards, also offline); or a
            path to a local weights file (``.pth``/``.safetensors``) for the backbone.
            Without a network and without the weights in the cache this fails at once with
            an error that names the local-file option.
        in_chans: input channels (1 for MNIST-like data; timm adapts the first layer of
            pretrained weights).
        hash_batchnorm: end the hash layer in ``BatchNorm1d(K)`` after a bias-free linear
            layer, as OrthoHash's authors do (``nn.Linear(d, K, bias=False)``,
            ``nn.BatchNorm1d(K, momentum=0.1)``): the outputs are centred and scaled per
            bit, which balances the bits. Off by default (DPN's outputs are an unbounded
            linear layer). ``hash_layer`` is then an ``nn.Sequential`` of the two.
        **timm_kwargs: passed to ``timm.create_model`` (``drop_rate``, ``img_size``, ...).
    """

    def __init__(
        self,
        backbone: str,
        num_bits: int,
        pretrained: bool | str | Path = False,
        in_chans: int = 3,
        hash_batchnorm: bool = False,
        **timm_kwargs,
    ):
        super().__init__()
        if not isinstance(hash_batchnorm, bool):
            raise TypeError(f"hash_batchnorm must be True or False; got {hash_batchnorm!r}")
        num_bits = check_integer(num_bits, "num_bits", minimum=1, maximum=MAX_NUM_BITS)
        if (
            backbone not in OWN_BACKBONES
            and not backbone.startswith(HUB_PREFIXES)
            and not _timm().is_model(backbone)
        ):
            close = _timm().list_models(f"*{backbone.split('_')[0]}*")[:5]
            raise ValueError(
                f"backbone {backbone!r} is not a timm model name"
                + (f" (similar names: {close})" if close else "")
            )
        if not isinstance(pretrained, (bool, str, Path)):
            raise TypeError(
                f"pretrained must be True, False or the path of a weights file; got "
                f"{type(pretrained).__name__} {pretrained!r}"
            )
        weights = Path(pretrained) if isinstance(pretrained, (str, Path)) else None
        if weights is not None and not weights.is_file():
            raise ValueError(f"pretrained weights file not found: {weights}")
        self.backbone_name = backbone
        self.num_bits = num_bits
        self.in_chans = in_chans
        self.timm_kwargs = dict(timm_kwargs)
        self.backbone = _create_backbone(
            backbone,
            downloads=pretrained is True or backbone.startswith(HUB_PREFIXES[:2]),
            pretrained=pretrained is True,
            num_classes=0,
            in_chans=in_chans,
            **timm_kwargs,
        )
        if weights is not None:
            _load_weights_file(self.backbone, weights, backbone)
        self.hash_batchnorm = hash_batchnorm
        if hash_batchnorm:
            self.hash_layer = nn.Sequential(
                nn.Linear(self.backbone.num_features, num_bits, bias=False),
                nn.BatchNorm1d(num_bits, momentum=0.1),
            )
        else:
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
        """timm's data config of the backbone (input size, mean, std, interpolation).

        ``input_size`` is ``(in_chans, H, W)`` of the backbone as built: ``img_size=``
        given to the constructor wins over the size of the published weights (timm's
        ``resolve_data_config`` reads only the latter), and for one input channel the mean
        and standard deviation are those of the channels averaged.
        """
        config = _timm().data.resolve_data_config({}, model=self.backbone)
        height, width = config["input_size"][-2:]
        if self.timm_kwargs.get("img_size") is not None:
            size = self.timm_kwargs["img_size"]
            height, width = (size, size) if isinstance(size, int) else tuple(size)
        config["input_size"] = (self.in_chans, int(height), int(width))
        for key in ("mean", "std"):
            if len(config[key]) != self.in_chans and self.in_chans == 1:
                config[key] = (sum(config[key]) / len(config[key]),)
        return config

    @torch.no_grad()
    def check_input_size(self, image_size, in_chans: int | None = None) -> None:
        """Run one image of ``image_size`` (an int or ``(H, W)``) through the backbone and
        raise a ValueError that says how to fix a mismatch, before any training.

        ViTs accept only the size they were built for, and deep CNNs fail on images that
        their downsampling shrinks below one pixel; both surface here with the flags that
        fix them (``--image-size`` to resize the data, ``--backbone-kwargs '{img_size: S}'``
        to build a ViT for the data's size).
        """
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        chans = self.in_chans if in_chans is None else in_chans
        if chans != self.in_chans:
            raise ValueError(
                f"backbone {self.backbone_name!r} is built for in_chans={self.in_chans}; the "
                f"images have {chans} channel(s)"
            )
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        try:
            self(torch.zeros(1, chans, int(height), int(width), device=device))
        except (AssertionError, RuntimeError, ValueError) as error:
            expected = self.data_config()["input_size"]
            fixes = f"resize the data with --image-size {expected[1]} (config key image_size)"
            if hasattr(self.backbone, "patch_embed"):  # ViT-like: built for one input size
                fixes += (
                    f", or build the backbone for the data's size with --backbone-kwargs "
                    f"'{{img_size: {height}}}' (HashingModel(..., img_size={height}))"
                )
            else:  # a CNN: any size its downsampling does not shrink below one pixel
                fixes = "the images are probably too small for its downsampling; " + fixes
            said = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ValueError(
                f"backbone {self.backbone_name!r} does not accept {chans}x{height}x{width} "
                f"images (it is built for {expected[0]}x{expected[1]}x{expected[2]}): {fixes}. "
                f"timm said: {said}"
            ) from error
        finally:
            self.train(was_training)
