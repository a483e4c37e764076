"""What a finished run writes: ``metrics.json`` (its head of facts about the run, then the
evaluations) and ``checkpoint.safetensors``, into the run's folder, then published."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import torch

from .._files import write_text_atomic
from .checkpoint import CHECKPOINT_NAME, save_checkpoint

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["metrics_head", "write_outputs"]


def metrics_head(trainer: Trainer) -> dict:
    """The facts of a run that open its ``metrics.json``: what ran, how long, on what."""
    config, protocol = trainer.config, trainer.protocol
    last = trainer.history[-1]["losses"] if trainer.history else None
    head = {
        "run": trainer.run_name,
        "dataset": protocol.name if trainer.user_protocol is not None else config.dataset,
        "method": config.method,
        "bits": config.bits,
        "backbone": config.backbone,
        "seed": config.seed,
        "num_processes": trainer.accelerator.num_processes,
        "epochs_trained": len(trainer.history),  # finished epochs
        "epoch_seconds": [h["seconds"] for h in trainer.history],
        "torch_threads": torch.get_num_threads(),
        "batch_size": config.batch_size,
        "steps_trained": trainer.global_step,  # optimizer steps, a mid-epoch stop included
        "train_seconds": time.perf_counter() - trainer.start_time,
        # the epoch mean that the epoch's line printed
        "final_train_loss": sum(last) / len(last) if last else None,
        "sizes": {
            "train": len(protocol.train),
            "query": len(protocol.query),
            "database": len(protocol.database),
            "validation": 0 if protocol.validation is None else len(protocol.validation),
        },
    }
    if trainer.stopped_mid_epoch:
        head["stopped_mid_epoch"] = {
            "epoch": trainer.epoch + 1,
            "batches": trainer.batch_in_epoch,
            "global_step": trainer.global_step,
        }
    return head


def write_outputs(trainer: Trainer, metrics: dict) -> None:
    """The final checkpoint and ``metrics.json`` (main process), then the run folder
    published: a run written aside replaces the earlier outputs only now."""
    save_checkpoint(
        trainer.work_dir / CHECKPOINT_NAME,
        trainer.unwrapped,
        trainer.method,
        trainer.config,
        trainer.protocol.num_classes,
        trainer.in_chans,
        trainer.method.config_kwargs,
        extra={"metrics": metrics, "data": trainer.data_identity},
    )
    write_text_atomic(trainer.work_dir / "metrics.json", json.dumps(metrics, indent=2))
    trainer.run_folder.publish()  # the log moves with its folder, still open
