"""The training engine behind ``accelerate launch recipes/train.py``: build, fit, report.

One CPU, several CPU processes or several GPUs run the same code: Accelerate splits each
global batch across processes (``split_batches=True``), so a run with N processes sees
exactly the batches of a one-process run with the same ``batch_size``.

Every piece of state that decides what the rest of a run computes is in its resumable
checkpoints (``runs/<name>/checkpoints/*``): the model, the optimizer and the schedule, the
method's state per process (target codes, DPN-A's votes, BDNN's ``B``), the callbacks' state
(validation history, best epoch and its weights), the position in the data (epoch and batch
within it) and every process's RNG states. All of it is stored as safetensors + JSON with
sha256 digests, so loading runs no code from the files.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import (
    DataLoaderConfiguration,
    ProjectConfiguration,
    broadcast_object_list,
    set_seed,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import Protocol, load_protocol, protocol_info, resize_protocol
from ..data.protocol import seen_items_for_unseen_vs_all  # FAMILY
from ..evaluation import select_ternary_threshold
from ..evaluation.retrieval_report import map_unseen_vs_all, retrieval_report  # FAMILY
from ..methods import EncodedTrainingSet, build_method, hash_batchnorm_of  # FAMILY
from ..models import HashingModel
from .checkpoint import (
    CHECKPOINT_NAME,
    read_state_manifest,
    read_state_part,
    replace_directory,
    save_checkpoint,
    seal_state_folder,
    write_state_part,
    write_text_atomic,
)
from .config import RESUME_MAY_CHANGE, ExperimentConfig
from .encoding import encode_dataset, encode_for_retrieval, indexed_for_loader
from .run_folder import RunFolder, describe_differences
from .threads import configure_threads
from .trackers import build_trackers

__all__ = [
    "Callback",
    "CheckpointCallback",
    "TrackingCallback",
    "Trainer",
    "ValidationCallback",
    "build_model",
    "build_protocol",
    "run_experiment",
]

TIMING_KEYS = ("train_seconds", "total_seconds", "epoch_seconds")


# ---------------------------------------------------------------------------- builders
def build_model(config: ExperimentConfig, in_chans: int) -> HashingModel:
    """The ``HashingModel`` of a config; a bad backbone name or weights file fails here,
    before any data is read or any training starts."""
    model = HashingModel(
        config.backbone,
        config.bits,
        pretrained=config.pretrained or False,
        in_chans=in_chans,
        hash_batchnorm=hash_batchnorm_of(config),  # FAMILY: OrthoHash's batch norm option
        **config.backbone_kwargs,
    )
    if config.freeze_backbone:
        model.freeze_backbone()
    return model


def build_protocol(config: ExperimentConfig, model: HashingModel | None = None):
    """Load the config's data set; file-based data sets get the backbone's timm transform."""
    kwargs = dict(config.data_kwargs)
    if config.validation_per_class:
        kwargs["validation_per_class"] = config.validation_per_class
    if config.unseen_classes is not None:
        kwargs["unseen_classes"] = config.unseen_classes
    takes_transform = protocol_info(config.dataset).takes_transform
    if takes_transform and model is not None:
        from timm.data import create_transform

        data_config = model.data_config()
        if config.image_size is not None:  # --image-size wins over the backbone's size
            data_config["input_size"] = (3, config.image_size, config.image_size)
        kwargs["transform"] = create_transform(**data_config)
    elif takes_transform and config.image_size is not None:
        kwargs["image_size"] = config.image_size
    try:
        protocol = load_protocol(
            config.dataset, root=config.root, seed=config.seed, split_file=config.split_file,
            **kwargs,
        )  # fmt: skip
    except TypeError as error:  # a data_kwargs key the loader does not take
        if "unexpected keyword argument" not in str(error):
            raise
        raise ValueError(f"data_kwargs: dataset {config.dataset!r} {error}") from None
    if config.image_size is not None and not takes_transform:
        resize_protocol(protocol, config.image_size)
    return protocol


def _in_chans(config: ExperimentConfig) -> int:
    return protocol_info(config.dataset).in_chans


def _protocol_from_datasets(train, query, database, validation=None) -> Protocol:
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
        num_classes = max(labels) + 1
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


def _make_accelerator(config: ExperimentConfig, run_name: str, run_dir: Path) -> Accelerator:
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
        log_with=_trackers(config, run_name, run_dir) or None,
        **kwargs,
    )


def _trackers(config: ExperimentConfig, run_name: str, run_dir: Path) -> list:
    """The trackers of ``log_with``; a tracker whose package is missing fails here."""
    return build_trackers(config.log_with, run_name, run_dir / "logs")


def _create_method(config: ExperimentConfig, protocol):
    """The method built from the config and the data facts (``HashingMethod.from_config``)."""
    method = build_method(config, protocol)
    return method, method.config_kwargs


def _rng_state() -> dict:
    name, keys, position, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global)
    return {
        "python": random.getstate(),
        "numpy": [name, [int(k) for k in keys], int(position), int(has_gauss), float(gauss)],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, gauss = state["numpy"]
    keys = np.asarray(keys, dtype=np.uint32)
    np.random.set_state((name, keys, position, has_gauss, gauss))  # noqa: NPY002 (global)
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _truncate_csv_log(path: Path, last_step: int) -> None:
    """Drop the rows a killed run logged after its last checkpoint (they are logged again)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = lines[:1] + [
        line
        for line in lines[1:]
        if not line.split(",", 1)[0].isdigit() or int(line.split(",", 1)[0]) <= last_step
    ]
    if len(keep) != len(lines):
        write_text_atomic(path, "".join(keep))


def _clone_state(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _progress_bar_wanted(config: ExperimentConfig, accelerator) -> bool:
    # tqdm redraws written to a log file are noise: draw only on a terminal.
    return bool(config.progress and accelerator.is_local_main_process and sys.stderr.isatty())


# ---------------------------------------------------------------------------- callbacks
class Callback:
    """Per-epoch behaviour of a :class:`Trainer` whose state is saved in its checkpoints.

    ``state_dict()`` may hold tensors (saved in safetensors) and JSON values; ``name``
    keys it in the checkpoint, so it must be unique among a trainer's callbacks.
    """

    name = "callback"

    def on_step_end(self, trainer: Trainer) -> None:
        """After every batch (``trainer.global_step``, ``trainer.batch_in_epoch``)."""

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        """After every finished epoch; ``logs`` (this epoch's numbers) may be added to."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` gave."""


class FunctionCallback(Callback):
    """A plain function ``fn(epoch, model, method)`` run after every epoch (``epoch`` counts
    from 1; ``model`` is the unwrapped ``HashingModel``), for studies that measure every
    epoch. It keeps no state, so it is simply called again on the epochs after a resume."""

    def __init__(self, function, name: str):
        self.function = function
        self.name = name

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        self.function(trainer.epoch, trainer.unwrapped, trainer.method)


def _as_callbacks(callbacks) -> list[Callback]:
    out = []
    for i, callback in enumerate(callbacks or []):
        if isinstance(callback, Callback):
            out.append(callback)
        elif callable(callback):
            out.append(FunctionCallback(callback, f"function_{i}"))
        else:
            raise TypeError(
                f"callbacks must be Callback objects or functions (epoch, model, method); "
                f"got {type(callback).__name__}"
            )
    return out


class ValidationCallback(Callback):
    """mAP on the validation split after every epoch, and the best epoch's model and method
    state (for ``best_by_validation``). Part of the checkpoint, so a resumed run selects the
    same best epoch as an uninterrupted one."""

    name = "validation"

    def __init__(self):
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.best_map = -1.0
        self.best_model: dict | None = None
        self.best_method: dict | None = None

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        if trainer.protocol.validation is None:
            return
        value = _validation_map(trainer.unwrapped, trainer.protocol, trainer.config, trainer)
        logs["validation/map"] = value
        self.history.append({"epoch": trainer.epoch, "map": value})
        if value > self.best_map:
            self.best_epoch, self.best_map = trainer.epoch, value
            self.best_model = _clone_state(trainer.unwrapped)
            self.best_method = _clone_state(trainer.method)

    def state_dict(self) -> dict:
        return {
            "history": self.history,
            "best_epoch": self.best_epoch,
            "best_map": self.best_map,
            "best_model": self.best_model,
            "best_method": self.best_method,
        }

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state["history"])
        self.best_epoch, self.best_map = state["best_epoch"], state["best_map"]
        self.best_model, self.best_method = state["best_model"], state["best_method"]


class TrackingCallback(Callback):
    """Logs each epoch's numbers to the trackers and prints one line per epoch."""

    name = "tracking"

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        trainer.accelerator.log(logs, step=trainer.global_step)
        line = f"epoch {trainer.epoch}/{trainer.config.epochs}: loss {logs['train/loss']:.4f}"
        if "validation/map" in logs:
            line += f", validation mAP {logs['validation/map']:.4f}"
        trainer.accelerator.print(line, flush=True)


class CheckpointCallback(Callback):
    """A resumable checkpoint every ``checkpoint_every`` epochs and after the last epoch
    (so that a finished run can be resumed with more epochs); the last callback."""

    name = "checkpoint"

    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None:
        every = trainer.config.checkpoint_every
        if every and (trainer.epoch % every == 0 or trainer.epoch >= trainer.config.epochs):
            trainer.save_state()


# ---------------------------------------------------------------------------- the trainer
class Trainer:
    """Train a hashing model on a protocol, keep its state resumable, report retrieval.

    Phases: :meth:`build` (validate, lock the run folder, build model, data, method, then
    claim the folder and build the optimizer; load a checkpoint when resuming), :meth:`fit`
    (the epochs, with the method's hooks and the callbacks), :meth:`report` (evaluate the
    last and the best-by-validation model, write ``metrics.json`` and
    ``checkpoint.safetensors``, free the folder). :meth:`run` does all three; a run stopped
    after :meth:`build` or :meth:`fit` frees its folder with :meth:`close`.

    Args:
        config: an :class:`ExperimentConfig` or a dict of its keys (checked first of all).
        protocol: your own data instead of ``config.dataset``: a
            :class:`~pml_hashing.data.Protocol`.
        train, query, database, validation: or your own ``(image, label)`` data sets.
        callbacks: more :class:`Callback` objects, run after validation and before the
            tracking and checkpoint callbacks.
    """

    def __init__(
        self,
        config: ExperimentConfig | dict,
        protocol: Protocol | None = None,
        *,
        train=None,
        query=None,
        database=None,
        validation=None,
        callbacks: list[Callback] | None = None,
    ):
        if isinstance(config, dict):
            config = ExperimentConfig.from_dict(config)
        elif not isinstance(config, ExperimentConfig):
            raise TypeError(f"config must be an ExperimentConfig or a dict; got {type(config)}")
        config.validate()
        if protocol is not None and any(d is not None for d in (train, query, database)):
            raise ValueError("give either protocol or train/query/database data sets, not both")
        if protocol is None and any(d is not None for d in (train, query, database, validation)):
            protocol = _protocol_from_datasets(train, query, database, validation)
        if protocol is not None and not isinstance(protocol, Protocol):
            raise TypeError(f"protocol must be a pml_hashing.data.Protocol; got {type(protocol)}")
        self.config = config
        self.user_protocol = protocol
        self.callbacks = [ValidationCallback(), *_as_callbacks(callbacks), TrackingCallback()]
        self.callbacks.append(CheckpointCallback())
        names = [c.name for c in self.callbacks]
        if len(set(names)) != len(names):
            raise ValueError(f"callback names must be unique; got {names}")
        # progress: finished epochs, batches of the unfinished one, optimizer steps
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.history: list[dict] = []
        # this epoch's global batch losses: 0-d tensors until the epoch's end (a float() per
        # step would wait for the device every step), floats once read back
        self.epoch_losses: list = []
        self.epoch_seconds = 0.0
        self.stopped_mid_epoch = False
        self._built = False

    # ------------------------------------------------------------------ names and places
    @property
    def run_name(self) -> str:
        if self.config.name or self.user_protocol is None:
            return self.config.run_name()
        default = self.config.run_name()
        return self.user_protocol.name + default[len(self.config.dataset) :]

    @property
    def run_dir(self) -> Path:
        return Path(self.config.output_dir) / self.run_name

    def _data_facts(self) -> dict:
        if self.user_protocol is None:
            return {}
        p = self.user_protocol
        return {
            "protocol": p.name,
            "sizes": [len(p.train), len(p.query), len(p.database)],
            "num_classes": p.num_classes,
        }

    def _on_main(self, action):
        """Run ``action`` on the main process; an error there is raised on every process."""
        message = None
        result = None
        if self.accelerator.is_main_process:
            try:
                result = action()
            except ValueError as error:
                message = str(error)
        shared = [message, result]
        if self.accelerator.num_processes > 1:
            broadcast_object_list(shared)
        if shared[0] is not None:
            raise ValueError(shared[0])
        return shared[1]

    # ------------------------------------------------------------------ build
    def build(self) -> Trainer:
        config = self.config
        self.start_time = time.perf_counter()
        if config.num_threads is not None:  # else the recipe's (or the caller's) setting
            configure_threads(config.num_threads)
        self.accelerator = _make_accelerator(config, self.run_name, self.run_dir)
        accelerator = self.accelerator
        if config.batch_size % accelerator.num_processes:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be divisible by the number of processes "
                f"({accelerator.num_processes}): it is the global batch, split across processes"
            )
        set_seed(config.seed)
        self.resume_from, manifest = self._on_main(self._check_resume) or (None, None)
        if self.resume_from is not None:
            self.resume_from = Path(self.resume_from)
        self.run_folder = RunFolder(self.run_dir, config, self._data_facts())
        self._on_main(lambda: self.run_folder.acquire(resuming=self.resume_from is not None))
        try:
            self._build_training(manifest)
        except BaseException:
            self.run_folder.release()
            raise
        self._built = True
        return self

    def _check_resume(self):
        """The checkpoint folder to resume from and its manifest, after checking that its
        config is this one (but for the keys that may change on resume)."""
        config = self.config
        if not config.resume:
            return None
        if config.resume == "latest":
            pointer = self.run_dir / "checkpoints" / "latest"
            if not pointer.is_file():
                raise ValueError(
                    f"resume='latest' but {pointer} does not exist (no checkpoint yet)"
                )
            path = self.run_dir / "checkpoints" / pointer.read_text().strip()
        else:
            path = Path(config.resume)
        if not path.is_dir():
            raise ValueError(f"resume must be a checkpoint folder; {path} is not a folder")
        manifest = read_state_manifest(path)
        saved = ExperimentConfig.from_dict(manifest["config"], source=f"checkpoint {path}")
        differences = saved.differences(config)
        if saved.epochs != config.epochs and config.scheduler != "none":
            differences["epochs"] = (saved.epochs, config.epochs)
        if manifest.get("data", {}) != self._data_facts():
            differences["data"] = (manifest.get("data"), self._data_facts())
        if differences:
            why = ""
            if "epochs" in differences:
                why = " (epochs may change only with scheduler none: the cosine schedule is laid "
                why += "out over the epochs)"
            raise ValueError(
                f"cannot resume from {path}: the config differs from the checkpoint's in "
                + describe_differences(differences, "checkpoint", "now")
                + f"{why}. Resume with the checkpoint's values, or start a new run (another "
                f"--name). Keys that may change on resume: {', '.join(RESUME_MAY_CHANGE)}"
            )
        if manifest["progress"]["epoch"] > config.epochs:
            raise ValueError(
                f"cannot resume from {path}: it has trained {manifest['progress']['epoch']} "
                f"epochs, more than epochs={config.epochs}"
            )
        if manifest.get("num_processes") != self.accelerator.num_processes:
            raise ValueError(
                f"cannot resume from {path}: it was saved by {manifest.get('num_processes')} "
                f"processes; resume with as many (now {self.accelerator.num_processes})"
            )
        return str(path), manifest

    def _build_training(self, manifest) -> None:
        config, accelerator = self.config, self.accelerator
        in_chans = self.user_protocol.in_chans if self.user_protocol else _in_chans(config)
        model = build_model(config, in_chans)
        if config.channels_last:  # measured: ~1.5x the CPU step rate of the small CNN
            model = model.to(memory_format=torch.channels_last)
        self.in_chans = in_chans
        if self.user_protocol is not None:
            protocol = self.user_protocol
        else:
            with accelerator.main_process_first():
                protocol = build_protocol(config, model)
        # a backbone that cannot take these images fails here, naming the flag that fixes it
        model.check_input_size(protocol.image_size, protocol.in_chans)
        self.protocol = protocol
        self.method, self.method_kwargs = _create_method(config, protocol)
        self.method.to(accelerator.device)
        # What the config can get wrong is built: only now are an earlier run's outputs
        # removed and the folder claimed (run.json), before anything is written into it.
        self._on_main(lambda: self.run_folder.claim(resuming=self.resume_from is not None))
        if accelerator.is_main_process:
            protocol.save_splits(self.run_dir / "splits.json")

        train_set, collate_fn = indexed_for_loader(protocol.train)
        train_loader = DataLoader(
            train_set,
            batch_size=config.batch_size,
            shuffle=True,
            # Full global batches only: a short last batch cannot be split evenly across
            # processes (Accelerate would pad it with repeated samples) and a batch of one
            # breaks batch norm. A different tail is dropped each epoch.
            drop_last=len(protocol.train) >= config.batch_size,
            num_workers=config.num_workers,
            generator=torch.Generator().manual_seed(config.seed),
            collate_fn=collate_fn,  # in-memory tensors: one index per batch, same batches
        )
        groups = model.parameter_groups(config.lr, config.backbone_lr_multiplier)
        method_parameters = [p for p in self.method.parameters() if p.requires_grad]
        if method_parameters:
            groups.append({"params": method_parameters, "lr": config.lr, "weight_decay": 0.0})
        weight_decay = config.weight_decay
        if weight_decay is None:  # BDNN's objective carries its own weight decay, l1
            weight_decay = float(getattr(self.method, "weight_decay", 1e-4))
        if config.optimizer == "adamw":
            optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=weight_decay)
        else:
            optimizer = torch.optim.SGD(
                groups, lr=config.lr, momentum=0.9, weight_decay=weight_decay
            )
        steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
        total_steps = steps_per_epoch * config.epochs
        if config.scheduler == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
        else:
            scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        self.model, self.optimizer, self.train_loader, self.scheduler = accelerator.prepare(
            model, optimizer, train_loader, scheduler
        )
        self.unwrapped = accelerator.unwrap_model(self.model)
        accelerator.init_trackers(
            self.run_name,
            config={
                k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))
            },
        )
        # a token shared by the processes: temporary folders are unique per run
        token = [f"{time.time_ns():x}"]
        if accelerator.num_processes > 1:
            broadcast_object_list(token)
        self._token = token[0]
        if self.resume_from is not None:
            self._load_state(self.resume_from, manifest)

    # ------------------------------------------------------------------ checkpoints
    def _progress(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
        }

    def save_state(self) -> Path:
        """Write a resumable checkpoint of everything (all processes call it)."""
        accelerator = self.accelerator
        folder = self.run_dir / "checkpoints"
        label = f"epoch_{self.epoch:04d}"
        if self.batch_in_epoch:
            label += f"_batch_{self.batch_in_epoch:05d}"
        tmp = folder / f".{label}.{self._token}.tmp"
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            shared = {
                "model": self.unwrapped.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "callbacks": {c.name: c.state_dict() for c in self.callbacks},
                "progress": self._progress(),
                "history": self.history,
                "epoch_losses": [float(loss) for loss in self.epoch_losses],
                "epoch_seconds": self.epoch_seconds,
            }
            write_state_part(tmp, "shared", shared)
        # per process: the method's buffers (DPN-A's votes are local until the epoch's end)
        # and the RNG states
        rank = accelerator.process_index
        write_state_part(
            tmp, f"rank{rank}", {"method": self.method.state_dict(), "rng": _rng_state()}
        )
        accelerator.wait_for_everyone()
        final = folder / label
        if accelerator.is_main_process:
            seal_state_folder(
                tmp,
                {
                    "config": self.config.to_dict(),
                    "progress": self._progress(),
                    "num_processes": accelerator.num_processes,
                    "data": self._data_facts(),
                },
            )
            replace_directory(tmp, final)
            write_text_atomic(folder / "latest", final.name)
        accelerator.wait_for_everyone()
        return final

    def _load_state(self, folder: Path, manifest: dict) -> None:
        accelerator = self.accelerator
        if manifest is None or not accelerator.is_main_process:
            manifest = read_state_manifest(folder)
        shared = read_state_part(folder, "shared", manifest)
        own = read_state_part(folder, f"rank{accelerator.process_index}", manifest)
        self.unwrapped.load_state_dict(shared["model"])
        self.optimizer.load_state_dict(shared["optimizer"])
        self.scheduler.load_state_dict(shared["scheduler"])
        self.method.load_state_dict(own["method"])
        for callback in self.callbacks:
            if callback.name in shared["callbacks"]:
                callback.load_state_dict(shared["callbacks"][callback.name])
        progress = shared["progress"]
        self.epoch, self.batch_in_epoch = progress["epoch"], progress["batch_in_epoch"]
        self.global_step = progress["global_step"]
        self.history = list(shared["history"])
        self.epoch_losses = list(shared["epoch_losses"])
        self.epoch_seconds = shared["epoch_seconds"]
        _set_rng_state(own["rng"])
        if accelerator.is_main_process:
            _truncate_csv_log(self.run_dir / "logs" / "metrics.csv", self.global_step)
        where = f"epoch {self.epoch}" + (
            f", batch {self.batch_in_epoch} of epoch {self.epoch + 1}"
            if self.batch_in_epoch
            else ""
        )
        accelerator.print(f"resumed from {folder} after {where}", flush=True)

    # ------------------------------------------------------------------ fit
    def _encode_training_set(self) -> EncodedTrainingSet:
        outputs, labels, inputs = encode_dataset(
            self.unwrapped,
            self.protocol.train,
            self.config.eval_batch_size,
            self.accelerator,
            with_inputs=True,
        )
        return EncodedTrainingSet(outputs, inputs, labels, torch.arange(len(outputs)))

    def fit(self) -> Trainer:
        """Train until ``epochs`` (or ``max_train_steps``), from wherever the state is."""
        if not self._built:
            self.build()
        config, accelerator = self.config, self.accelerator
        model, method, optimizer, scheduler = (
            self.model,
            self.method,
            self.optimizer,
            self.scheduler,
        )
        limit = config.max_train_steps
        self.stopped_mid_epoch = False
        if getattr(method, "fit_only", False):
            # LSH / ITQ: fitted once on the flattened training inputs, no epochs
            train_inputs, _ = encode_dataset(
                method.retrieval_encoder(self.unwrapped),
                self.protocol.train,
                config.eval_batch_size,
                accelerator,
                config.num_workers,
            )
            method.fit(train_inputs)
            return self
        while self.epoch < config.epochs:
            if limit is not None and self.global_step >= limit:
                break
            epoch = self.epoch  # 0-based index of the epoch being trained
            self.train_loader.set_epoch(epoch)
            skip = self.batch_in_epoch
            if skip == 0:
                self.epoch_losses, self.epoch_seconds = [], 0.0
                encode = self._encode_training_set if method.needs_training_set_encoding else None
                method.on_epoch_start(epoch, encode or (lambda: None))
            # Accelerate's accumulation counter: the batches of this epoch already seen
            accelerator.step = skip
            model.train()
            num_batches = len(self.train_loader)
            bar = tqdm(
                total=num_batches,
                initial=skip,
                desc=f"epoch {epoch + 1}/{config.epochs}",
                disable=not _progress_bar_wanted(config, accelerator),
                leave=False,
            )
            start = time.perf_counter()
            stop = False
            for i, (images, labels, indices) in enumerate(self.train_loader):
                if i < skip:  # resuming inside this epoch: the same order, these are done
                    continue
                if config.channels_last and images.dim() == 4:
                    images = images.contiguous(memory_format=torch.channels_last)
                with accelerator.accumulate(model):
                    with accelerator.autocast():
                        outputs = model(images)
                    loss = method.compute_loss(outputs.float(), labels, images, indices)
                    accelerator.backward(loss)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                # the global mean, identical on every process
                global_loss = accelerator.reduce(loss.detach().float(), reduction="mean")
                self.epoch_losses.append(global_loss)
                if accelerator.sync_gradients:
                    self.global_step += 1
                self.batch_in_epoch = i + 1
                bar.update(1)
                if not bar.disable:  # drawn on a terminal only: the one per-step read
                    bar.set_postfix(loss=f"{float(global_loss):.3f}", refresh=False)
                for callback in self.callbacks:
                    callback.on_step_end(self)
                if limit is not None and self.global_step >= limit and i + 1 < num_batches:
                    stop = True
                    break
            bar.close()
            self.epoch_seconds += time.perf_counter() - start
            if stop:  # mid-epoch: saved as such, the epoch's end has not happened
                self.stopped_mid_epoch = True
                accelerator.print(
                    f"stopped at max_train_steps={limit}, batch {self.batch_in_epoch} of "
                    f"epoch {epoch + 1}",
                    flush=True,
                )
                if config.checkpoint_every:
                    self.save_state()
                break
            self._end_epoch()
        return self

    def _end_epoch(self) -> None:
        losses = [float(loss) for loss in self.epoch_losses]
        logs = {"train/loss": sum(losses) / max(len(losses), 1), "epoch": self.epoch + 1}
        method_stats = self.method.on_epoch_end(self.epoch)
        logs.update(method_stats)
        self.history.append(
            {"epoch": self.epoch + 1, "losses": losses, "seconds": self.epoch_seconds}
            | {"method": method_stats}  # e.g. DPN-A's codebook distances and refusals
        )
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_losses = []
        limit = self.config.max_train_steps
        stopping = limit is not None and self.global_step >= limit
        for callback in self.callbacks:
            if (
                stopping
                and isinstance(callback, CheckpointCallback)
                and self.config.checkpoint_every
            ):
                self.save_state()  # a stop is always resumable, whatever checkpoint_every
                continue
            callback.on_epoch_end(self, logs)

    # ------------------------------------------------------------------ report
    def report(self) -> dict:
        """Evaluate, write ``metrics.json`` and the final checkpoint, and free the run
        folder; returns the metrics."""
        try:
            return self._report()
        finally:
            if self.accelerator.is_main_process:
                self.run_folder.release()

    def close(self) -> None:
        """Free the run folder (its lock) without reporting: after :meth:`build` or
        :meth:`fit` when the run goes no further. :meth:`report` and :meth:`run` free it."""
        if self._built and self.accelerator.is_main_process:
            self.run_folder.release()

    def _report(self) -> dict:
        config, accelerator = self.config, self.accelerator
        protocol = self.protocol
        train_seconds = time.perf_counter() - self.start_time
        last = self.history[-1] if self.history else None
        metrics = {
            "run": self.run_name,
            "dataset": protocol.name if self.user_protocol is not None else config.dataset,
            "method": config.method,
            "bits": config.bits,
            "backbone": config.backbone,
            "seed": config.seed,
            "num_processes": accelerator.num_processes,
            "epochs_trained": len(self.history),  # finished epochs
            "epoch_seconds": [h["seconds"] for h in self.history],
            "torch_threads": torch.get_num_threads(),
            "batch_size": config.batch_size,
            "steps_trained": self.global_step,  # optimizer steps, a mid-epoch stop included
            "train_seconds": train_seconds,
            # the epoch mean that the epoch's line printed
            "final_train_loss": sum(last["losses"]) / len(last["losses"])
            if last and last["losses"]
            else None,
            "sizes": {
                "train": len(protocol.train),
                "query": len(protocol.query),
                "database": len(protocol.database),
                "validation": 0 if protocol.validation is None else len(protocol.validation),
            },
        }
        if self.stopped_mid_epoch:
            metrics["stopped_mid_epoch"] = {
                "epoch": self.epoch + 1,
                "batches": self.batch_in_epoch,
                "global_step": self.global_step,
            }
        metrics["last_epoch"] = _evaluate(
            self.unwrapped, self.method, protocol, config, accelerator
        )
        validation = next(c for c in self.callbacks if isinstance(c, ValidationCallback))
        if validation.best_model is not None:
            metrics["validation"] = validation.history
            metrics["best_epoch_by_validation"] = validation.best_epoch
            if validation.best_epoch != self.epoch or self.stopped_mid_epoch:
                last_model, last_method = _clone_state(self.unwrapped), _clone_state(self.method)
                self.unwrapped.load_state_dict(validation.best_model)
                self.method.load_state_dict(validation.best_method)
                metrics["best_by_validation"] = _evaluate(
                    self.unwrapped, self.method, protocol, config, accelerator
                )
                self.unwrapped.load_state_dict(last_model)
                self.method.load_state_dict(last_method)
            else:
                metrics["best_by_validation"] = metrics["last_epoch"]
        metrics["total_seconds"] = time.perf_counter() - self.start_time
        if accelerator.is_main_process:
            save_checkpoint(
                self.run_dir / CHECKPOINT_NAME,
                self.unwrapped,
                self.method,
                config,
                protocol.num_classes,
                self.in_chans,
                self.method_kwargs,
                extra={"metrics": metrics, "data": self._data_facts()},
            )
            write_text_atomic(self.run_dir / "metrics.json", json.dumps(metrics, indent=2))
        accelerator.log(
            {f"test/{k}": v for k, v in metrics["last_epoch"].items() if isinstance(v, float)},
            step=self.global_step,
        )
        accelerator.end_training()
        metrics["history"] = self.history
        return metrics

    def run(self) -> dict:
        """:meth:`build`, :meth:`fit`, :meth:`report`; the run folder is freed in any case."""
        try:
            if not self._built:
                self.build()
            self.fit()
            return self.report()
        finally:
            self.close()  # build() frees the folder itself when it fails


def run_experiment(
    config: ExperimentConfig | dict,
    protocol: Protocol | None = None,
    *,
    train=None,
    query=None,
    database=None,
    validation=None,
    callbacks: list[Callback] | None = None,
) -> dict:
    """Train a hashing model, then encode query and database and report retrieval quality.

    ``Trainer(config, ...).run()``. Writes under ``runs/<name>/``: ``metrics.json``,
    ``checkpoint.safetensors`` (model + target codes + config, for ``load_checkpoint``),
    ``splits.json`` (the data split, reusable with ``split_file``), ``run.json`` (the config
    that owns the folder), ``checkpoints/epoch_*`` (resumable states) and ``logs/``.

    Args:
        config: an :class:`ExperimentConfig` or a dict of its keys.
        protocol: your own :class:`~pml_hashing.data.Protocol` instead of ``config.dataset``;
            or give ``train``, ``query``, ``database`` (and ``validation``) data sets of
            ``(image, label)``.
        callbacks: more :class:`Callback` objects, or functions ``fn(epoch, model, method)``
            called after every epoch.

    Returns:
        The metrics dict written to ``metrics.json`` (on every process), plus ``history``.
    """
    trainer = Trainer(
        config,
        protocol,
        train=train,
        query=query,
        database=database,
        validation=validation,
        callbacks=callbacks,
    )
    return trainer.run()


def _evaluate(model, method, protocol, config: ExperimentConfig, accelerator) -> dict:
    """Encode query and database and compute the one retrieval report; with
    ``ternary_threshold: auto`` the DPN-T threshold is chosen on the validation split."""
    query_out, query_labels = encode_for_retrieval(
        model, method, protocol.query, config.eval_batch_size, accelerator, config.num_workers
    )
    db_out, db_labels = encode_for_retrieval(
        model, method, protocol.database, config.eval_batch_size, accelerator, config.num_workers
    )
    topk = config.topk if config.topk is not None else protocol.topk
    margin = method.retrieval_margin()
    threshold, selection = config.ternary_threshold, None
    if threshold == "auto" and margin is not None:
        val_out, val_labels, val_db_out, val_db_labels = _validation_against_reference(
            model, method, protocol, config, accelerator, database=(db_out, db_labels)
        )
        selection = select_ternary_threshold(
            val_out,
            val_labels,
            val_db_out,
            val_db_labels,
            margin=margin,
            topk=topk,
            ties=config.ties,
            seed=config.seed,
        )
        threshold = selection.threshold
    report = retrieval_report(
        query_out,
        query_labels,
        db_out,
        db_labels,
        topk=topk,
        ties=config.ties,
        radius=config.radius,
        ternary_margin=margin,
        seed=config.seed,
        ternary_threshold=threshold if margin is not None else None,
    )
    if selection is not None:
        report["ternary_threshold_selection"] = {
            "split": "validation",
            "validation_map": {str(t): m for t, m in selection.validation_map.items()},
        }
    report["num_query"], report["num_database"] = len(query_out), len(db_out)
    seen_items = seen_items_for_unseen_vs_all(protocol)  # FAMILY: unseen queries vs all
    if seen_items is not None:  # FAMILY
        seen_out, seen_labels = encode_for_retrieval(  # FAMILY
            model, method, seen_items, config.eval_batch_size, accelerator, config.num_workers
        )  # FAMILY
        report["map_unseen_vs_all"] = map_unseen_vs_all(  # FAMILY
            query_out, query_labels, db_out, db_labels, seen_out, seen_labels,
            topk=topk, ties=config.ties, seed=config.seed,
        )  # FAMILY  # fmt: skip
        report["num_database_unseen_vs_all"] = len(db_out) + len(seen_out)  # FAMILY
    return report


def _validation_against_reference(model, method, protocol, config, accelerator, database=None):
    """Validation outputs, and the outputs of what they search: the database minus the
    validation items themselves (each would retrieve itself first), or, under the
    unseen-class protocol, whose database holds unseen classes only, the training set.
    Never the queries. ``database``: the database's ``(outputs, labels)`` when the caller
    has already encoded it."""
    unseen = protocol.info.get("unseen_classes")
    reference = protocol.train if unseen else protocol.database
    val_out, val_labels = encode_for_retrieval(
        model, method, protocol.validation, config.eval_batch_size, accelerator, config.num_workers
    )
    if database is not None and not unseen:
        ref_out, ref_labels = database
    else:
        ref_out, ref_labels = encode_for_retrieval(
            model, method, reference, config.eval_batch_size, accelerator, config.num_workers
        )
    val_ids = np.asarray(getattr(protocol.validation, "indices", []), dtype=np.int64)
    ref_ids = getattr(reference, "indices", None)
    if ref_ids is not None and val_ids.size:
        # one vectorized membership test (this runs every validated epoch)
        keep = torch.from_numpy(~np.isin(np.asarray(ref_ids, dtype=np.int64), val_ids))
        ref_out, ref_labels = ref_out[keep], ref_labels[keep]
    return val_out, val_labels, ref_out, ref_labels


def _validation_map(model, protocol, config: ExperimentConfig, trainer: Trainer) -> float:
    """mAP of validation items against the database minus themselves (never the queries)."""
    from ..codes import binarize
    from ..evaluation import mean_average_precision

    val_out, val_labels, ref_out, ref_labels = _validation_against_reference(
        model, trainer.method, protocol, config, trainer.accelerator
    )
    topk = config.topk if config.topk is not None else protocol.topk
    return mean_average_precision(
        binarize(val_out), val_labels, binarize(ref_out), ref_labels, topk=topk, ties=config.ties
    )
