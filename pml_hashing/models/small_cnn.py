"""A small CNN for 8x8 to 32x32 grey or colour images, registered in timm's model registry.

timm's families are built for ImageNet-sized inputs; on MNIST-sized images a few conv
layers train in seconds on a CPU and are what the hashing literature uses there. Being
registered, it is created like any timm model: ``timm.create_model("hashing_cnn_small")``.

It is registered when timm is imported (at once if it already is), not by importing timm
here: timm loads torchvision and ``torch._dynamo`` (about two seconds), which a run of
this backbone never uses (:class:`~pml_hashing.models.HashingModel` builds it directly).
"""

from __future__ import annotations

import inspect

import torch
import wrapt
from torch import nn


class SmallCNN(nn.Module):
    """conv(32) - conv(64) - conv(128) with batch norm, ReLU and pooling, then global pooling.

    Unknown keyword arguments are an error, as for timm's own models (a misspelled
    ``batchnorm=False`` must not train the default network). ``drop_rate`` is timm's
    dropout before the classifier (features when headless).

    ``batch_norm=False`` gives a network whose outputs do not depend on how a batch is split
    across processes (batch norm statistics are per process), used to check distributed
    training against a one-process run.

    Follows timm's model interface: ``num_features``, ``forward_features``,
    ``forward_head(pre_logits=...)``, ``reset_classifier`` and ``num_classes=0`` for a
    headless backbone.
    """

    def __init__(
        self,
        num_classes: int = 0,
        in_chans: int = 1,
        widths=(32, 64, 128),
        batch_norm: bool = True,
        drop_rate: float = 0.0,
    ):
        super().__init__()
        layers, channels = [], in_chans
        for i, width in enumerate(widths):
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=not batch_norm),
                nn.BatchNorm2d(width) if batch_norm else nn.Identity(),
                nn.ReLU(inplace=True),
            ]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels
        self.drop = nn.Dropout(drop_rate) if drop_rate else nn.Identity()
        self.head = nn.Linear(channels, num_classes) if num_classes else nn.Identity()
        self.pretrained_cfg = {"input_size": (in_chans, 28, 28), "mean": (0.0,), "std": (1.0,)}
        self.default_cfg = self.pretrained_cfg

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool=None) -> None:
        self.head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


def _create(pretrained: bool = False, **kwargs) -> SmallCNN:
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    kwargs.pop("pretrained_cfg", None)
    kwargs.pop("cache_dir", None)  # timm's builder passes its download folder to every model
    taken = set(inspect.signature(SmallCNN).parameters)
    unknown = sorted(set(kwargs) - taken)
    if unknown:
        raise ValueError(
            f"backbone_kwargs: hashing_cnn_small does not take {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(taken - {'num_classes', 'in_chans'}))}"
        )
    model = SmallCNN(**kwargs)
    if pretrained:
        path = overlay.get("file")
        if not path:
            raise ValueError(
                "hashing_cnn_small has no published weights: pass a local file as pretrained"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=False)
    return model


def hashing_cnn_small(pretrained: bool = False, **kwargs) -> SmallCNN:
    """Three conv blocks (32, 64, 128 channels): ~0.1 M parameters."""
    kwargs.setdefault("widths", (32, 64, 128))
    return _create(pretrained, **kwargs)


# The package's own backbones by name: built without timm, registered with it.
OWN_BACKBONES = {"hashing_cnn_small": hashing_cnn_small}


def _register_with_timm(timm) -> None:
    for name, entrypoint in OWN_BACKBONES.items():
        if not timm.models.is_model(name):
            timm.models.register_model(entrypoint)


wrapt.register_post_import_hook(_register_with_timm, "timm")
