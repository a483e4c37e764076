"""Model checkpoints (model + target codes + config) and atomic writes."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch

from ..methods import create_method
from ..models import HashingModel
from .config import ExperimentConfig

CHECKPOINT_FORMAT = "pml-hashing-checkpoint-v1"


def atomic_torch_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace``: an
    interrupted save never leaves a half-written file in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def replace_directory(tmp_dir: Path, final_dir: Path) -> None:
    """Move a fully written folder into place; the old one is removed only afterwards."""
    old = final_dir.with_name(final_dir.name + ".old")
    if final_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old.exists():
        shutil.rmtree(old)


def save_checkpoint(
    path, model, method, config: ExperimentConfig, num_classes, in_chans, method_kwargs, extra=None
):
    """Save what is needed to encode new data: model weights, method state (target codes),
    the config and the data facts the model was built with."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "num_classes": int(num_classes),
        "in_chans": int(in_chans),
        "model": model.state_dict(),
        "method": method.state_dict(),
        "method_kwargs": method_kwargs,
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint written by :func:`save_checkpoint`.

    Returns:
        ``(model, method, config, payload)``: the ``HashingModel`` in eval mode with its
        weights, the hashing method with its target codes, the ``ExperimentConfig``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # a truncated or foreign file: say which file
        raise ValueError(f"{path} is not a readable pml-hashing checkpoint ({error})") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pml-hashing checkpoint (no {CHECKPOINT_FORMAT!r} tag)")
    config = ExperimentConfig.from_dict(payload["config"], source=f"checkpoint {path}")
    model = HashingModel(
        config.backbone, config.bits, in_chans=payload["in_chans"], **config.backbone_kwargs
    )
    model.load_state_dict(payload["model"])
    model.eval()
    method = create_method(
        config.method, payload["num_classes"], config.bits, **payload["method_kwargs"]
    )
    method.load_state_dict(payload["method"])
    return model, method, config, payload


def method_arguments(config: ExperimentConfig, protocol) -> dict:
    """Keyword arguments of ``create_method`` for a config and its data."""
    kwargs = dict(config.method_kwargs)
    if config.method == "dpn":
        miner_kwargs = dict(kwargs.pop("target_miner_kwargs", {}))
        if config.target_miner in ("random", "adaptive"):
            miner_kwargs.setdefault("p", config.p)
        if config.target_miner == "adaptive":
            miner_kwargs.setdefault("update_every", config.update_every)
            miner_kwargs.setdefault("warmup_epochs", config.warmup_epochs)
            miner_kwargs.setdefault("min_distance_floor", config.min_distance_floor)
        kwargs.setdefault("margin", config.margin)
        kwargs.setdefault("target_miner", config.target_miner)
        kwargs["target_miner_kwargs"] = miner_kwargs
    kwargs.setdefault("seed", config.seed)
    if config.method in ("sh-bdnn", "uh-bdnn"):  # B has one code per training sample
        kwargs.setdefault("num_train", len(protocol.train))
    if config.method == "uh-bdnn":
        kwargs.setdefault("input_dim", int(protocol.train[0][0].numel()))
    return kwargs
