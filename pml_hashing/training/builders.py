"""The parts of a run, each built from the config: model, protocol, method, data loader,
optimizer, schedule, accelerator. A part the config gets wrong fails here, before training."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration
from torch.utils.data import DataLoader

from ..data import Protocol, load_protocol, protocol_info, resize_protocol
from ..methods import build_method, hash_batchnorm_of
from ..models import HashingModel
from .config import ExperimentConfig
from .encoding import indexed_for_loader
from .trackers import build_trackers

__all__ = [
    "build_accelerator",
    "build_method",
    "build_model",
    "build_optimizer",
    "build_protocol",
    "build_scheduler",
    "build_train_loader",
    "check_process_count",
    "user_data_identity",
    "protocol_from_datasets",
    "user_protocol",
]


def build_model(config: ExperimentConfig, in_chans: int) -> HashingModel:
    """The ``HashingModel`` of a config; a bad backbone name or weights file fails here,
    before any data is read or any training starts."""
    model = HashingModel(
        config.backbone,
        config.bits,
        pretrained=config.pretrained or False,
        in_chans=in_chans,
        hash_batchnorm=hash_batchnorm_of(config),  # OrthoHash's batch norm option
        **config.backbone_kwargs,
    )
    if config.freeze_backbone:
        model.freeze_backbone()
    if config.channels_last:  # measured: ~1.5x the CPU step rate of the small CNN
        model = model.to(memory_format=torch.channels_last)
    return model


def build_protocol(config: ExperimentConfig, model: HashingModel | None = None) -> Protocol:
    """Load the config's data set; file-based data sets get the backbone's timm transform."""
    kwargs = dict(config.data_kwargs)
    if config.validation_per_class:
        kwargs["validation_per_class"] = config.validation_per_class
    if config.unseen_classes is not None:
        kwargs["unseen_classes"] = config.unseen_classes
    takes_transform = protocol_info(config.dataset).takes_transform
    if takes_transform and model is not None:
        from timm.data import create_transform

        from ..data.transforms import channels_transform

        data_config = model.data_config()
        channels = data_config["input_size"][0]
        if config.image_size is not None:  # --image-size wins over the backbone's size
            data_config["input_size"] = (channels, config.image_size, config.image_size)
        # the files' channels are converted to the model's (a grayscale checkpoint on RGB
        # files and the reverse), rather than failing inside the first convolution
        kwargs["transform"] = channels_transform(create_transform(**data_config), channels)
    elif takes_transform and config.image_size is not None:
        kwargs["image_size"] = config.image_size
    protocol = load_protocol(
        config.dataset, root=config.root, seed=config.seed, split_file=config.split_file, **kwargs
    )
    if config.image_size is not None and not takes_transform:
        resize_protocol(protocol, config.image_size)
    return protocol


def _dense_class_count(labels: list[int]) -> int:
    """``max + 1`` of integer class ids that number the classes from 0 without large gaps.

    Every id up to the largest gets a target code and a codebook row, so one stray id of
    10**7 among a few classes would allocate tens of GB before anything else failed.
    """
    ids = np.unique(np.asarray(labels, dtype=np.int64))
    if ids[0] < 0:
        raise ValueError(f"labels must be class ids >= 0; got {int(ids[0])}")
    num_classes = int(ids[-1]) + 1
    if num_classes > 2 * len(ids):
        raise ValueError(
            f"labels must number the classes 0..C-1: got ids up to {num_classes - 1} for "
            f"{len(ids)} distinct classes, and every id up to the largest gets a target code; "
            "renumber them (np.unique(labels, return_inverse=True)[1])"
        )
    return num_classes


def user_protocol(protocol, train=None, query=None, database=None, validation=None):
    """The data a user gave from Python: a :class:`~pml_hashing.data.Protocol`, or data
    sets of ``(image, label)`` made into one; None when the config's data set is meant."""
    datasets = (train, query, database)
    if protocol is not None and any(d is not None for d in datasets):
        raise ValueError("give either protocol or train/query/database data sets, not both")
    if protocol is None and any(d is not None for d in (*datasets, validation)):
        protocol = protocol_from_datasets(train, query, database, validation)
    if protocol is not None and not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a pml_hashing.data.Protocol; got {type(protocol)}")
    return protocol


def user_data_identity(protocol: Protocol | None) -> dict:
    """What identifies data given from Python, kept with the run (empty for a registered
    data set): a resume or a rerun over other data is refused."""
    if protocol is None:
        return {}
    return {
        "protocol": protocol.name,
        "sizes": [len(protocol.train), len(protocol.query), len(protocol.database)],
        "num_classes": protocol.num_classes,
    }


def protocol_from_datasets(train, query, database, validation=None) -> Protocol:
    """A :class:`Protocol` around the user's own ``(image, label)`` data sets."""
    for split, data in (("train", train), ("query", query), ("database", database)):
        if data is None:
            raise ValueError(
                f"{split} is required with the data sets form (train, query, database)"
            )
        if len(data) == 0:
            raise ValueError(f"{split} must not be empty")
    image, label = train[0]
    image, label = torch.as_tensor(image), torch.as_tensor(label)
    if image.ndim != 3:
        raise ValueError(f"train items must be (image (C, H, W), label); got {tuple(image.shape)}")
    multi_label = label.ndim == 1
    if multi_label:
        num_classes = int(label.shape[0])
    else:
        labels = [int(d[i][1]) for d in (train, query, database) for i in range(len(d))]
        num_classes = _dense_class_count(labels)
    return Protocol(
        name="custom",
        train=train,
        query=query,
        database=database,
        num_classes=num_classes,
        in_chans=int(image.shape[0]),
        image_size=(int(image.shape[1]), int(image.shape[2])),
        multi_label=multi_label,
        validation=validation,
    )


def check_process_count(config: ExperimentConfig, processes: int) -> int:
    """The number of processes, checked against the global batch that they split."""
    if config.batch_size % processes:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be divisible by the number of processes "
            f"({processes}): it is the global batch, split across processes"
        )
    return processes


def build_accelerator(config: ExperimentConfig, run_name: str, run_dir: Path) -> Accelerator:
    """The run's ``Accelerator``: global batches split across processes, seeded sampling,
    the ``log_with`` trackers (a tracker whose package is missing fails here)."""
    kwargs = {}
    if config.mixed_precision is not None:
        kwargs["mixed_precision"] = config.mixed_precision
    # Accelerate keeps one global state per process; a second run in the same process (a
    # notebook, a sweep, the tests) with other settings must start from a clean one. The
    # process group (PartialState) is kept.
    AcceleratorState._reset_state()
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        dataloader_config=DataLoaderConfiguration(split_batches=True, use_seedable_sampler=True),
        project_config=ProjectConfiguration(project_dir=str(run_dir), logging_dir=str(run_dir)),
        log_with=build_trackers(config.tracker_names, run_name, run_dir / "logs") or None,
        **kwargs,
    )


def build_train_loader(config: ExperimentConfig, train) -> DataLoader:
    dataset, collate_fn = indexed_for_loader(train)
    return DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        # Full global batches only: a short last batch cannot be split evenly across
        # processes (Accelerate would pad it with repeated samples) and a batch of one
        # breaks batch norm. A different tail is dropped each epoch.
        drop_last=len(train) >= config.batch_size,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
        collate_fn=collate_fn,  # in-memory tensors: one index per batch, same batches
    )


@functools.cache
def fused_supported(optimizer_class: type, device_type: str) -> bool:
    """Whether this PyTorch has ``optimizer_class``'s fused kernel on ``device_type``.

    Asked of PyTorch itself, by one step of a one-element parameter: CPU kernels came in
    PyTorch 2.4, CUDA ones earlier, and which devices have them is not public API.
    """
    device = torch.device(device_type)
    if device.type == "cuda" and not torch.cuda.is_available():
        return False
    try:
        probe = torch.zeros(1, device=device, requires_grad=True)
        optimizer = optimizer_class([probe], lr=0.1, fused=True)
        probe.grad = torch.ones_like(probe)
        optimizer.step()
    except (RuntimeError, TypeError, ValueError):  # no kernel / no `fused` argument
        return False
    return True


def build_optimizer(
    config: ExperimentConfig, model: HashingModel, method, device=None
) -> torch.optim.Optimizer:
    """AdamW or SGD (momentum 0.9) over the model's parameter groups and the method's own
    parameters (no weight decay on those).

    The update runs as PyTorch's fused kernel where ``device`` (default: CUDA if present,
    else CPU, as the trainer's Accelerator chooses) has one for the optimizer: the same
    update, in one pass over all parameters instead of a dozen small operations per tensor
    (about 1.2x the steps per second of the main job on a CPU).
    """
    groups = model.parameter_groups(config.lr, config.backbone_lr_multiplier)
    method_parameters = [p for p in method.parameters() if p.requires_grad]
    if method_parameters:
        groups.append({"params": method_parameters, "lr": config.lr, "weight_decay": 0.0})
    weight_decay = config.weight_decay
    if weight_decay is None:  # BDNN's objective carries its own weight decay, l1
        weight_decay = float(getattr(method, "weight_decay", 1e-4))
    if config.optimizer == "adamw":
        optimizer_class, kwargs = torch.optim.AdamW, {}
    else:
        optimizer_class, kwargs = torch.optim.SGD, {"momentum": 0.9}
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    floating = all(p.is_floating_point() for group in groups for p in group["params"])
    fused = floating and fused_supported(optimizer_class, device.type)
    if fused:
        kwargs["fused"] = True
    optimizer = optimizer_class(groups, lr=config.lr, weight_decay=weight_decay, **kwargs)
    if fused:
        optimizer.register_step_pre_hook(_lay_out_as_parameters)
    return optimizer


def _lay_out_as_parameters(optimizer, args, kwargs) -> None:
    """Give every gradient and state tensor its parameter's strides before a fused step.

    The fused kernels walk a parameter, its gradient and its states as one flat buffer. On
    a CPU (PyTorch 2.14) a gradient or state in another memory layout (a channels-last
    convolution weight with a contiguous gradient, or with moments read back from a
    checkpoint) is silently updated wrong; on CUDA it is an error. Autograd usually gives a
    gradient its parameter's strides, but not always (pytorch/pytorch#106951).
    """
    for group in optimizer.param_groups:
        for p in group["params"]:
            if p.grad is not None and p.grad.stride() != p.stride():
                p.grad = torch.empty_like(p).copy_(p.grad)  # empty_like keeps p's strides
            state = optimizer.state.get(p)
            for key, value in (state or {}).items():
                if value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping ``optimizer``'s update kernel: a state
    saved where PyTorch had no fused kernel (or by pml-hashing 0.1) resumes fused where it has
    one, and back. The flags are set before loading, which places the step counts by them."""
    if len(state["param_groups"]) == len(optimizer.param_groups):  # else load_state_dict says
        for saved, group in zip(state["param_groups"], optimizer.param_groups, strict=True):
            saved["fused"], saved["foreach"] = group.get("fused"), group.get("foreach")
    optimizer.load_state_dict(state)


def build_scheduler(config: ExperimentConfig, optimizer, batches_per_epoch: int):
    steps_per_epoch = math.ceil(batches_per_epoch / config.gradient_accumulation_steps)
    if config.scheduler == "cosine":
        total_steps = steps_per_epoch * config.epochs
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
