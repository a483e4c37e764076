"""Model checkpoints (model + target codes + config) in safetensors files.

Nothing pml-hashing writes needs unpickling to be read back: tensors go into safetensors
files, everything else into JSON, and every file carries (or is listed with) a sha256
digest that is checked before anything in it is used.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import safetensors
import safetensors.torch
import torch

from .._files import write_atomic
from ..methods import create_method, hash_batchnorm_of
from ..methods.base import HashingMethod
from ..models import HashingModel
from .config import ExperimentConfig

CHECKPOINT_FORMAT = "pml-hashing-checkpoint-v2"
CHECKPOINT_NAME = "checkpoint.safetensors"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------- tensors + JSON, no pickle
def to_tree(obj, tensors: dict, prefix: str = "t"):
    """A JSON-able tree of ``obj`` with every tensor moved into ``tensors`` (by key).

    Dicts with non-string keys (an optimizer's parameter ids) and tuples keep their types;
    anything else that JSON cannot hold is refused rather than pickled.
    """
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: to_tree(v, tensors, f"{prefix}.{k}") for k, v in obj.items()}
        return {
            "__items__": [
                [k, to_tree(v, tensors, f"{prefix}.{i}")] for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, tuple):
        return {"__tuple__": [to_tree(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_tree(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return to_tree(torch.from_numpy(obj.copy()), tensors, prefix)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot save {type(obj).__name__} at {prefix} without pickling it")


def from_tree(tree, tensors: dict):
    """The inverse of :func:`to_tree`."""
    if isinstance(tree, dict):
        if set(tree) == {"__tensor__"}:
            return tensors[tree["__tensor__"]]
        if set(tree) == {"__items__"}:
            return {
                (tuple(k) if isinstance(k, list) else k): from_tree(v, tensors)
                for k, v in tree["__items__"]
            }
        if set(tree) == {"__tuple__"}:
            return tuple(from_tree(v, tensors) for v in tree["__tuple__"])
        return {k: from_tree(v, tensors) for k, v in tree.items()}
    if isinstance(tree, list):
        return [from_tree(v, tensors) for v in tree]
    return tree


def _tensor_digest(tensors: dict, text: str) -> str:
    digest = hashlib.sha256(text.encode())
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _not_safetensors_reason(path: Path) -> str:
    head = path.read_bytes()[:8] if path.is_file() else b""
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return (
            "it is a pickle / torch.save file, and such files are never loaded because "
            "unpickling can run code: load it yourself with torch.load(weights_only=True) "
            "if you trust it"
        )
    return "it is not a safetensors file"


def write_safetensors(path, tensors: dict, meta: dict) -> Path:
    """Write tensors and a JSON ``meta`` dict to one safetensors file, atomically, with a
    sha256 digest of both in its header (checked by :func:`read_safetensors`)."""
    text = json.dumps(meta, sort_keys=True)
    header = {"meta": text, "sha256": _tensor_digest(tensors, text)}
    return write_atomic(
        path, lambda tmp: safetensors.torch.save_file(tensors, tmp, metadata=header)
    )


def read_safetensors(path) -> tuple[dict, dict]:
    """``(tensors, meta)`` of a file written by :func:`write_safetensors`; never unpickles.

    Raises:
        ValueError: naming the file, when it is not such a file or its digest does not
            match (a flipped byte, a truncated copy).
    """
    path = Path(path)
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as error:  # SafetensorError, OSError, ...
        raise ValueError(
            f"{path} is not a readable pml-hashing checkpoint: {_not_safetensors_reason(path)} "
            f"({type(error).__name__}: {error})"
        ) from None
    if "meta" not in header or "sha256" not in header:
        raise ValueError(f"{path} is not a readable pml-hashing checkpoint (no pml-hashing header)")
    if _tensor_digest(tensors, header["meta"]) != header["sha256"]:
        raise ValueError(
            f"{path} is corrupted: its sha256 digest does not match its contents (a changed or "
            "truncated file); it was not loaded"
        )
    try:
        meta = json.loads(header["meta"])
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} has an unreadable header ({error})") from None
    return tensors, meta


def save_checkpoint(
    path, model, method, config: ExperimentConfig, num_classes, in_chans, method_kwargs, extra=None
):
    """Save what is needed to encode new data: model weights, method state (target codes),
    the config and the data facts the model was built with.

    One safetensors file (``runs/<name>/checkpoint.safetensors``): the tensors, and in its
    header the config and the rest as JSON with a sha256 digest of everything. Loading it
    runs no code from the file.
    """
    tensors: dict = {}
    tree = {
        "model": to_tree(model.state_dict(), tensors, "model"),
        "method": to_tree(method.state_dict(), tensors, "method"),
    }
    meta = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "num_classes": int(num_classes),
        "in_chans": int(in_chans),
        "method_kwargs": method_kwargs,
        "extra": extra or {},
        "tree": tree,
    }
    return write_safetensors(path, tensors, meta)


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint written by :func:`save_checkpoint` (the file, or the run folder that
    holds ``checkpoint.safetensors``). Nothing in the file is executed: a pickle file is
    refused, a file whose digest does not match is refused.

    Returns:
        ``(model, method, config, payload)``: the ``HashingModel`` in eval mode with its
        weights, the hashing method with its target codes, the ``ExperimentConfig``, and the
        payload dict (``model`` and ``method`` state dicts, ``config``, ``num_classes``,
        ``in_chans``, ``method_kwargs``, ``extra``).
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    tensors, meta = read_safetensors(path)
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a pml-hashing checkpoint (no {CHECKPOINT_FORMAT!r} tag)")
    tensors = {k: v.to(map_location) for k, v in tensors.items()}
    payload = dict(meta)
    payload.update(from_tree(meta.pop("tree"), tensors))
    payload.pop("tree", None)
    config = ExperimentConfig.from_dict(payload["config"], source=f"checkpoint {path}")
    model = HashingModel(
        config.backbone,
        config.bits,
        in_chans=payload["in_chans"],
        hash_batchnorm=hash_batchnorm_of(config),  # OrthoHash's batch norm option
        **config.backbone_kwargs,
    )
    model.load_state_dict(payload["model"])
    model.eval()
    method = create_method(
        config.method, payload["num_classes"], config.bits, **payload["method_kwargs"]
    )
    method.load_state_dict(payload["method"])
    maps = ("retrieval_encoder", "retrieval_outputs")
    if any(getattr(type(method), f) is not getattr(HashingMethod, f) for f in maps):
        # its codes are not the model's outputs: exports without the method refuse it
        model.retrieval_method = config.method
    return model, method, config, payload
