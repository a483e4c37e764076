"""The training loop behind ``accelerate launch recipes/train.py``.

One CPU, several CPU processes or several GPUs run the same code: Accelerate splits each
global batch across processes (``split_batches=True``), so a run with N processes sees
exactly the batches of a one-process run with the same ``batch_size``.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import FILE_PROTOCOLS, load_protocol
from ..methods import EncodedTrainingSet, create_method
from ..models import HashingModel
from .checkpoint import method_arguments, replace_directory, save_checkpoint
from .config import ExperimentConfig
from .csv_tracker import CSVTracker
from .encoding import IndexedDataset, encode_dataset
from .retrieval_report import retrieval_report

TRAINING_STATE = "training_state.json"


def build_model(config: ExperimentConfig, in_chans: int) -> HashingModel:
    """The ``HashingModel`` of a config; a bad backbone name or weights file fails here,
    before any data is read or any training starts."""
    model = HashingModel(
        config.backbone,
        config.bits,
        pretrained=config.pretrained or False,
        in_chans=in_chans,
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
    if config.dataset in FILE_PROTOCOLS and model is not None:
        from timm.data import create_transform, resolve_data_config

        data_config = resolve_data_config({}, model=model.backbone)
        kwargs["transform"] = create_transform(**data_config)
    return load_protocol(
        config.dataset, root=config.root, seed=config.seed, split_file=config.split_file, **kwargs
    )


def _in_chans(config: ExperimentConfig) -> int:
    return 3 if config.dataset in FILE_PROTOCOLS else 1


def _make_accelerator(config: ExperimentConfig) -> Accelerator:
    run_dir = config.run_dir()
    log_with = []
    if config.log_with == "csv":
        log_with = [CSVTracker(config.run_name(), run_dir / "logs")]
    elif config.log_with == "tensorboard":
        log_with = ["tensorboard"]
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
        log_with=log_with or None,
        **kwargs,
    )


def _resolve_resume(config: ExperimentConfig) -> Path | None:
    if not config.resume:
        return None
    if config.resume == "latest":
        pointer = config.run_dir() / "checkpoints" / "latest"
        if not pointer.is_file():
            raise ValueError(f"resume='latest' but {pointer} does not exist (no checkpoint yet)")
        path = config.run_dir() / "checkpoints" / pointer.read_text().strip()
    else:
        path = Path(config.resume)
    if not (path / TRAINING_STATE).is_file():
        raise ValueError(f"resume must be a checkpoint folder with {TRAINING_STATE}; got {path}")
    return path


def _save_training_state(accelerator, config, epoch: int, step: int, history: list) -> None:
    """A resumable checkpoint: written to a temporary folder, then moved into place."""
    folder = config.run_dir() / "checkpoints"
    final = folder / f"epoch_{epoch:04d}"
    tmp = folder / f".epoch_{epoch:04d}.tmp"
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))  # model, optimizer, scheduler, method, RNG states
    if accelerator.is_main_process:
        state = {"epoch": epoch, "step": step, "history": history}
        (tmp / TRAINING_STATE).write_text(json.dumps(state))
        replace_directory(tmp, final)
        pointer_tmp = folder / ".latest.tmp"
        pointer_tmp.write_text(final.name)
        os.replace(pointer_tmp, folder / "latest")
    accelerator.wait_for_everyone()


def _encode_training_set_fn(model, dataset, config, accelerator):
    def encode() -> EncodedTrainingSet:
        outputs, labels, inputs = encode_dataset(
            model, dataset, config.eval_batch_size, accelerator, with_inputs=True
        )
        return EncodedTrainingSet(outputs, inputs, labels, torch.arange(len(outputs)))

    return encode


def run_experiment(config: ExperimentConfig | dict) -> dict:
    """Train a hashing model, then encode query and database and report retrieval quality.

    Writes under ``runs/<name>/``: ``metrics.json``, ``checkpoint.pt`` (model + target codes
    + config), ``splits.json`` (the data split, reusable with ``split_file``),
    ``checkpoints/epoch_*`` (resumable: model, optimizer, scheduler, target codes, RNG
    states) and ``logs/`` (tracker output).

    Returns:
        The metrics dict written to ``metrics.json`` (on every process).
    """
    if isinstance(config, dict):
        config = ExperimentConfig.from_dict(config)
    config.validate()
    start_time = time.perf_counter()
    accelerator = _make_accelerator(config)
    set_seed(config.seed)
    resume_from = _resolve_resume(config)
    model = build_model(config, _in_chans(config))
    with accelerator.main_process_first():
        protocol = build_protocol(config, model)
    method_kwargs = method_arguments(config, protocol)
    method = create_method(config.method, protocol.num_classes, config.bits, **method_kwargs)
    method.to(accelerator.device)
    run_dir = config.run_dir()
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        protocol.save_splits(run_dir / "splits.json")
    # Fit-only baselines (LSH, ITQ): fitted once on the flattened training inputs, no epochs;
    # retrieval encodes flattened images through method.retrieval_outputs.
    fit_only = bool(getattr(method, "fit_only", False))
    if fit_only:
        train_inputs, _ = encode_dataset(
            torch.nn.Flatten(), protocol.train, config.eval_batch_size, accelerator
        )
        method.fit(train_inputs)
    num_processes = accelerator.num_processes
    if config.batch_size % num_processes:
        raise ValueError(
            f"batch_size ({config.batch_size}) must be divisible by the number of processes "
            f"({num_processes}): it is the global batch, split across processes"
        )

    train_loader = DataLoader(
        IndexedDataset(protocol.train),
        batch_size=config.batch_size,
        shuffle=True,
        # Full global batches only: a short last batch cannot be split evenly across
        # processes (Accelerate would pad it with repeated samples) and a batch of one
        # breaks batch norm. A different tail is dropped each epoch.
        drop_last=len(protocol.train) >= config.batch_size,
        num_workers=config.num_workers,
        generator=torch.Generator().manual_seed(config.seed),
    )
    groups = model.parameter_groups(config.lr, config.backbone_lr_multiplier)
    method_parameters = [p for p in method.parameters() if p.requires_grad]
    if method_parameters:
        groups.append({"params": method_parameters, "lr": config.lr, "weight_decay": 0.0})
    weight_decay = config.weight_decay
    if weight_decay is None:  # BDNN's objective carries its own weight decay, l1
        weight_decay = float(getattr(method, "weight_decay", 1e-4))
    if config.optimizer == "adamw":
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=weight_decay)
    else:
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=0.9, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
    total_steps = steps_per_epoch * config.epochs
    if config.scheduler == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model, optimizer, train_loader, scheduler = accelerator.prepare(
        model, optimizer, train_loader, scheduler
    )
    accelerator.register_for_checkpointing(method)
    accelerator.init_trackers(
        config.run_name(),
        config={
            k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str, bool))
        },
    )

    first_epoch, step, history = 0, 0, []
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        state = json.loads((resume_from / TRAINING_STATE).read_text())
        first_epoch, step, history = state["epoch"], state["step"], state["history"]
        accelerator.print(f"resumed from {resume_from} at epoch {first_epoch}")

    unwrapped = accelerator.unwrap_model(model)
    best = {"epoch": None, "map": -1.0, "state": None}
    validation_history = []
    encode_train = _encode_training_set_fn(unwrapped, protocol.train, config, accelerator)
    stop = False
    for epoch in range(first_epoch, 0 if fit_only else config.epochs):
        train_loader.set_epoch(epoch)
        if method.needs_training_set_encoding:
            method.on_epoch_start(epoch, encode_train)
        else:
            method.on_epoch_start(epoch, lambda: None)
        model.train()
        bar = tqdm(
            train_loader,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and accelerator.is_local_main_process),
            leave=False,
        )
        epoch_losses = []
        epoch_start = time.perf_counter()
        for images, labels, indices in bar:
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
            epoch_losses.append(float(global_loss))
            if accelerator.sync_gradients:
                step += 1
            bar.set_postfix(loss=f"{epoch_losses[-1]:.3f}")
            if config.max_train_steps is not None and step >= config.max_train_steps:
                stop = True
                break
        epoch_seconds = time.perf_counter() - epoch_start
        logs = {"train/loss": sum(epoch_losses) / max(len(epoch_losses), 1), "epoch": epoch + 1}
        logs.update(method.on_epoch_end(epoch))
        history.append({"epoch": epoch + 1, "losses": epoch_losses, "seconds": epoch_seconds})
        if protocol.validation is not None:
            logs["validation/map"] = _validation_map(
                unwrapped, protocol, config, accelerator, method
            )
            validation_history.append({"epoch": epoch + 1, "map": logs["validation/map"]})
            if logs["validation/map"] > best["map"]:
                best = {
                    "epoch": epoch + 1,
                    "map": logs["validation/map"],
                    "state": {k: v.detach().clone() for k, v in unwrapped.state_dict().items()},
                    "method": {k: v.detach().clone() for k, v in method.state_dict().items()},
                }
        accelerator.log(logs, step=step)
        accelerator.print(
            f"epoch {epoch + 1}/{config.epochs}: loss {logs['train/loss']:.4f}"
            + (f", validation mAP {logs['validation/map']:.4f}" if "validation/map" in logs else "")
        )
        if config.checkpoint_every and (epoch + 1) % config.checkpoint_every == 0:
            _save_training_state(accelerator, config, epoch + 1, step, history)
        if stop:
            break
    train_seconds = time.perf_counter() - start_time

    metrics = {
        "run": config.run_name(),
        "dataset": config.dataset,
        "method": config.method,
        "bits": config.bits,
        "backbone": config.backbone,
        "seed": config.seed,
        "num_processes": num_processes,
        "epochs_trained": len(history),
        "train_seconds": train_seconds,
        "final_train_loss": history[-1]["losses"][-1]
        if history and history[-1]["losses"]
        else None,
        "sizes": {
            "train": len(protocol.train),
            "query": len(protocol.query),
            "database": len(protocol.database),
            "validation": 0 if protocol.validation is None else len(protocol.validation),
        },
    }
    encoder = torch.nn.Flatten() if fit_only else unwrapped
    metrics["last_epoch"] = _evaluate(encoder, method, protocol, config, accelerator)
    if best["state"] is not None:
        metrics["validation"] = validation_history
        metrics["best_epoch_by_validation"] = best["epoch"]
        if best["epoch"] != len(history) + first_epoch and best["epoch"] is not None:
            last_state = {k: v.detach().clone() for k, v in unwrapped.state_dict().items()}
            last_method = {k: v.detach().clone() for k, v in method.state_dict().items()}
            unwrapped.load_state_dict(best["state"])
            method.load_state_dict(best["method"])
            metrics["best_by_validation"] = _evaluate(
                unwrapped, method, protocol, config, accelerator
            )
            unwrapped.load_state_dict(last_state)
            method.load_state_dict(last_method)
        else:
            metrics["best_by_validation"] = metrics["last_epoch"]
    metrics["total_seconds"] = time.perf_counter() - start_time
    if accelerator.is_main_process:
        save_checkpoint(
            run_dir / "checkpoint.pt",
            unwrapped,
            method,
            config,
            protocol.num_classes,
            _in_chans(config),
            method_kwargs,
            extra={"metrics": metrics},
        )
        tmp = run_dir / "metrics.json.tmp"
        tmp.write_text(json.dumps(metrics, indent=2))
        os.replace(tmp, run_dir / "metrics.json")
    accelerator.log(
        {f"test/{k}": v for k, v in metrics["last_epoch"].items() if isinstance(v, float)},
        step=step,
    )
    accelerator.end_training()
    metrics["history"] = history
    return metrics


def _evaluate(model, method, protocol, config: ExperimentConfig, accelerator) -> dict:
    query_out, query_labels = encode_dataset(
        model, protocol.query, config.eval_batch_size, accelerator, config.num_workers
    )
    db_out, db_labels = encode_dataset(
        model, protocol.database, config.eval_batch_size, accelerator, config.num_workers
    )
    query_out, db_out = method.retrieval_outputs(query_out), method.retrieval_outputs(db_out)
    topk = config.topk if config.topk is not None else protocol.topk
    report = retrieval_report(
        query_out,
        query_labels,
        db_out,
        db_labels,
        topk=topk,
        ties=config.ties,
        radius=config.radius,
        ternary_margin=method.retrieval_margin(),
        seed=config.seed,
    )
    report["num_query"], report["num_database"] = len(query_out), len(db_out)
    return report


def _validation_map(model, protocol, config: ExperimentConfig, accelerator, method=None) -> float:
    """mAP of validation items against the database minus themselves (never the queries).

    Under the unseen-class protocol the database holds unseen classes only, so the
    (seen-class) validation items search the training set instead.
    """
    from ..codes import binarize
    from ..evaluation import mean_average_precision

    val_out, val_labels = encode_dataset(
        model, protocol.validation, config.eval_batch_size, accelerator, config.num_workers
    )
    reference = protocol.train if protocol.info.get("unseen_classes") else protocol.database
    db_out, db_labels = encode_dataset(
        model, reference, config.eval_batch_size, accelerator, config.num_workers
    )
    if method is not None:
        val_out, db_out = method.retrieval_outputs(val_out), method.retrieval_outputs(db_out)
    val_ids = set(int(i) for i in getattr(protocol.validation, "indices", []))
    db_ids = getattr(reference, "indices", None)
    if db_ids is not None and val_ids:
        keep = torch.tensor([int(i) not in val_ids for i in db_ids])
        db_out, db_labels = db_out[keep], db_labels[keep]
    topk = config.topk if config.topk is not None else protocol.topk
    return mean_average_precision(
        binarize(val_out), val_labels, binarize(db_out), db_labels, topk=topk, ties=config.ties
    )
