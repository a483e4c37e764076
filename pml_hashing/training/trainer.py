"""The training engine behind ``accelerate launch recipes/train.py``: build, fit, report.

One CPU, several CPU processes or several GPUs run the same code: Accelerate splits each
global batch across processes (``split_batches=True``), so a run with N processes sees
exactly the batches of a one-process run with the same ``batch_size``.

The parts live beside it: :mod:`.builders` (model, data, method, optimizer, accelerator),
:mod:`.callbacks` (validation, tracking, checkpoints), :mod:`.state` (resume, the state
folders, RNG, the CSV log), :mod:`.evaluation` (the one evaluation path), :mod:`.run_folder`
(the lock, and a fresh run written aside until it has finished).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from accelerate.utils import broadcast_object_list, set_seed
from tqdm.auto import tqdm

from .._files import write_text_atomic
from ..data import Protocol, protocol_info
from ..methods import EncodedTrainingSet
from .builders import (
    build_accelerator,
    build_method,
    build_model,
    build_optimizer,
    build_protocol,
    build_scheduler,
    build_train_loader,
    process_state,
    protocol_from_datasets,
)
from .callbacks import CheckpointCallback, TrackingCallback, ValidationCallback, as_callbacks
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .config import ExperimentConfig
from .encoding import encode_dataset
from .evaluation import EvaluationSettings, evaluate_retrieval
from .run_folder import RunFolder
from .state import find_resume_point, load_trainer_state, save_trainer_state, truncate_csv_log
from .threads import configure_threads

__all__ = ["Trainer", "run_experiment"]


class Trainer:
    """Train a hashing model on a protocol, keep its state resumable, report retrieval.

    Phases: :meth:`build` (lock the run folder, check the resume point, build model, data,
    method, optimizer; load the checkpoint when resuming), :meth:`fit` (the epochs, with
    the method's hooks and the callbacks), :meth:`report` (evaluate the last and the
    best-by-validation model, write ``metrics.json`` and ``checkpoint.safetensors``, free
    the folder). :meth:`run` does all three; a run stopped after :meth:`build` or
    :meth:`fit` frees its folder with :meth:`close`.

    Args:
        config: an :class:`ExperimentConfig` (checked when it was made) or a dict of its
            keys (checked here, first of all).
        protocol: your own data instead of ``config.dataset``: a
            :class:`~pml_hashing.data.Protocol`.
        train, query, database, validation: or your own ``(image, label)`` data sets.
        callbacks: more :class:`~pml_hashing.training.Callback` objects (or functions
            ``fn(epoch, model, method)``), run after validation and before the tracking and
            checkpoint callbacks.
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
        callbacks=None,
    ):
        if isinstance(config, dict):
            config = ExperimentConfig.from_dict(config)
        elif not isinstance(config, ExperimentConfig):
            raise TypeError(f"config must be an ExperimentConfig or a dict; got {type(config)}")
        if protocol is not None and any(d is not None for d in (train, query, database)):
            raise ValueError("give either protocol or train/query/database data sets, not both")
        if protocol is None and any(d is not None for d in (train, query, database, validation)):
            protocol = protocol_from_datasets(train, query, database, validation)
        if protocol is not None and not isinstance(protocol, Protocol):
            raise TypeError(f"protocol must be a pml_hashing.data.Protocol; got {type(protocol)}")
        self.config = config
        self.user_protocol = protocol
        self.callbacks = [ValidationCallback(), *as_callbacks(callbacks), TrackingCallback()]
        self.callbacks.append(CheckpointCallback())
        names = [c.name for c in self.callbacks]
        if len(set(names)) != len(names):
            raise ValueError(f"callback names must be unique; got {names}")
        # progress: finished epochs, batches of the unfinished one, optimizer steps
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
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
        """``output_dir/run_name``: where the run's outputs are (once it has reported)."""
        return self.config.run_dir(self.run_name)

    @property
    def data_facts(self) -> dict:
        """What identifies data given from Python (empty for a registered data set)."""
        if self.user_protocol is None:
            return {}
        p = self.user_protocol
        return {
            "protocol": p.name,
            "sizes": [len(p.train), len(p.query), len(p.database)],
            "num_classes": p.num_classes,
        }

    @property
    def stop_requested(self) -> bool:
        """``max_train_steps`` is reached: the run stops after this step or epoch."""
        limit = self.config.max_train_steps
        return limit is not None and self.global_step >= limit

    def _on_main(self, action):
        """Run ``action`` on the main process; an error there, of any type, is raised on
        every process (the others would otherwise wait for the main one forever)."""
        state = process_state()
        error, result = None, None
        if state.is_main_process:
            try:
                result = action()
            except Exception as caught:
                error = caught
        shared = [None if error is None else (type(error).__name__, str(error)), result]
        if state.num_processes > 1:
            broadcast_object_list(shared)
        if error is not None:
            raise error
        if shared[0] is not None:
            kind, message = shared[0]
            raise (ValueError if kind.endswith("ValueError") else RuntimeError)(message)
        return shared[1]

    # ------------------------------------------------------------------ build
    def build(self) -> Trainer:
        """Check the resume point, lock the run folder, build every part, load the state."""
        config = self.config
        self.start_time = time.perf_counter()
        if config.num_threads is not None:  # else the recipe's (or the caller's) setting
            configure_threads(config.num_threads)
        processes = process_state().num_processes
        if config.batch_size % processes:
            raise ValueError(
                f"batch_size ({config.batch_size}) must be divisible by the number of processes "
                f"({processes}): it is the global batch, split across processes"
            )
        resume = self._on_main(
            lambda: find_resume_point(config, self.run_dir, self.data_facts, processes)
        )
        self.run_folder = RunFolder(self.run_dir, config, self.data_facts)
        self.work_dir = Path(self._on_main(lambda: self.run_folder.acquire(bool(resume))))
        self.run_folder.work_dir = self.work_dir
        try:
            if resume is not None:  # before the CSV tracker opens the log it appends to
                log = self.work_dir / "logs" / "metrics.csv"
                self._on_main(lambda: truncate_csv_log(log, resume[1].get("log_rows")))
            self.accelerator = build_accelerator(config, self.run_name, self.work_dir)
            set_seed(config.seed)
            self._build_parts()
            if resume is not None:
                load_trainer_state(self, Path(resume[0]), resume[1])
        except BaseException:
            self.run_folder.release()
            raise
        self._built = True
        return self

    def _build_parts(self) -> None:
        config, accelerator = self.config, self.accelerator
        protocol = self.user_protocol
        self.in_chans = protocol.in_chans if protocol else protocol_info(config.dataset).in_chans
        model = build_model(config, self.in_chans)
        if protocol is None:
            with accelerator.main_process_first():
                protocol = build_protocol(config, model)
        # a backbone that cannot take these images fails here, naming the flag that fixes it
        model.check_input_size(protocol.image_size, protocol.in_chans)
        self.protocol = protocol
        self.method = build_method(config, protocol)
        self.method.to(accelerator.device)
        # what the config can get wrong is built: only now is run.json written
        self._on_main(self.run_folder.claim)
        if accelerator.is_main_process:
            protocol.save_splits(self.work_dir / "splits.json")
        train_loader = build_train_loader(config, protocol.train)
        optimizer = build_optimizer(config, model, self.method)
        scheduler = build_scheduler(config, optimizer, len(train_loader))
        self.model, self.optimizer, self.train_loader, self.scheduler = accelerator.prepare(
            model, optimizer, train_loader, scheduler
        )
        self.unwrapped = accelerator.unwrap_model(self.model)
        scalars = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str))}
        accelerator.init_trackers(self.run_name, config=scalars)
        # a token shared by the processes: temporary folders are unique per run
        token = [f"{time.time_ns():x}"]
        if accelerator.num_processes > 1:
            broadcast_object_list(token)
        self.run_token = token[0]

    # ------------------------------------------------------------------ checkpoints
    def save_state(self) -> Path:
        """Write a resumable checkpoint of everything (all processes call it)."""
        return save_trainer_state(self)

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
        self.stopped_mid_epoch = False
        if getattr(self.method, "fit_only", False):
            # LSH / ITQ: fitted once on the flattened training inputs, no epochs
            config = self.config
            train_inputs, _ = encode_dataset(
                self.method.retrieval_encoder(self.unwrapped),
                self.protocol.train,
                config.eval_batch_size,
                self.accelerator,
                config.num_workers,
            )
            self.method.fit(train_inputs)
            return self
        while self.epoch < self.config.epochs and not self.stop_requested:
            if self.batch_in_epoch == 0:
                self.epoch_losses, self.epoch_seconds = [], 0.0
                encode = self._encode_training_set
                wanted = self.method.needs_training_set_encoding
                self.method.on_epoch_start(self.epoch, encode if wanted else (lambda: None))
            if not self._train_epoch():
                break
            self._end_epoch()
        return self

    def _train_epoch(self) -> bool:
        """The batches of the epoch not yet trained; False when a stop came mid-epoch."""
        config, accelerator = self.config, self.accelerator
        model, method, optimizer = self.model, self.method, self.optimizer
        self.train_loader.set_epoch(self.epoch)
        skip = self.batch_in_epoch  # resuming inside this epoch: these batches are done
        loader = (
            accelerator.skip_first_batches(self.train_loader, skip) if skip else self.train_loader
        )
        num_batches = len(self.train_loader)
        bar = tqdm(
            total=num_batches,
            initial=skip,
            desc=f"epoch {self.epoch + 1}/{config.epochs}",
            disable=not (config.progress and accelerator.is_local_main_process)
            or not sys.stderr.isatty(),  # tqdm redraws written to a log file are noise
            leave=False,
        )
        start = time.perf_counter()
        model.train()
        for images, labels, indices in loader:
            if config.channels_last and images.dim() == 4:
                images = images.contiguous(memory_format=torch.channels_last)
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    outputs = model(images)
                loss = method.compute_loss(outputs.float(), labels, images, indices)
                accelerator.backward(loss)
                optimizer.step()
                self.scheduler.step()
                optimizer.zero_grad()
            # the global mean, identical on every process
            global_loss = accelerator.reduce(loss.detach().float(), reduction="mean")
            self.epoch_losses.append(global_loss)
            self.global_step += int(accelerator.sync_gradients)
            self.batch_in_epoch += 1
            bar.update(1)
            if not bar.disable:  # drawn on a terminal only: the one per-step read
                bar.set_postfix(loss=f"{float(global_loss):.3f}", refresh=False)
            for callback in self.callbacks:
                callback.on_step_end(self)
            if self.stop_requested and self.batch_in_epoch < num_batches:
                break
        bar.close()
        self.epoch_seconds += time.perf_counter() - start
        if self.batch_in_epoch < num_batches:  # mid-epoch: saved as such, no epoch's end
            self.stopped_mid_epoch = True
            accelerator.print(
                f"stopped at max_train_steps={config.max_train_steps}, batch "
                f"{self.batch_in_epoch} of epoch {self.epoch + 1}",
                flush=True,
            )
            if config.checkpoint_every:
                self.save_state()
            return False
        return True

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
        for callback in self.callbacks:
            callback.on_epoch_end(self, logs)

    # ------------------------------------------------------------------ report
    def evaluate(self) -> dict:
        """The retrieval report of the model and method as they are now."""
        settings = EvaluationSettings.of(self.config)
        return evaluate_retrieval(
            self.unwrapped, self.method, self.protocol, settings, self.accelerator
        )

    def report(self) -> dict:
        """Evaluate, write ``metrics.json`` and the final checkpoint, publish a run written
        aside, and free the run folder; returns the metrics."""
        try:
            return self._report()
        finally:
            self.close()

    def close(self) -> None:
        """Free the run folder (its lock) without reporting: after :meth:`build` or
        :meth:`fit` when the run goes no further. :meth:`report` and :meth:`run` free it."""
        if self._built and self.accelerator.is_main_process:
            self.run_folder.release()

    def _metrics_head(self) -> dict:
        config, protocol = self.config, self.protocol
        last = self.history[-1]["losses"] if self.history else None
        return {
            "run": self.run_name,
            "dataset": protocol.name if self.user_protocol is not None else config.dataset,
            "method": config.method,
            "bits": config.bits,
            "backbone": config.backbone,
            "seed": config.seed,
            "num_processes": self.accelerator.num_processes,
            "epochs_trained": len(self.history),  # finished epochs
            "epoch_seconds": [h["seconds"] for h in self.history],
            "torch_threads": torch.get_num_threads(),
            "batch_size": config.batch_size,
            "steps_trained": self.global_step,  # optimizer steps, a mid-epoch stop included
            "train_seconds": time.perf_counter() - self.start_time,
            # the epoch mean that the epoch's line printed
            "final_train_loss": sum(last) / len(last) if last else None,
            "sizes": {
                "train": len(protocol.train),
                "query": len(protocol.query),
                "database": len(protocol.database),
                "validation": 0 if protocol.validation is None else len(protocol.validation),
            },
        }

    def _report(self) -> dict:
        accelerator = self.accelerator
        metrics = self._metrics_head()
        if self.stopped_mid_epoch:
            metrics["stopped_mid_epoch"] = {
                "epoch": self.epoch + 1,
                "batches": self.batch_in_epoch,
                "global_step": self.global_step,
            }
        metrics["last_epoch"] = self.evaluate()
        for callback in self.callbacks:
            callback.on_report(self, metrics)
        metrics["total_seconds"] = time.perf_counter() - self.start_time
        accelerator.log(
            {f"test/{k}": v for k, v in metrics["last_epoch"].items() if isinstance(v, float)},
            step=self.global_step,
        )
        if accelerator.is_main_process:
            save_checkpoint(
                self.work_dir / CHECKPOINT_NAME,
                self.unwrapped,
                self.method,
                self.config,
                self.protocol.num_classes,
                self.in_chans,
                self.method.config_kwargs,
                extra={"metrics": metrics, "data": self.data_facts},
            )
            write_text_atomic(self.work_dir / "metrics.json", json.dumps(metrics, indent=2))
            self.run_folder.publish()  # the log moves with its folder, still open
        accelerator.wait_for_everyone()
        accelerator.end_training()  # closes the trackers and the process group
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
    config: ExperimentConfig | dict, protocol: Protocol | None = None, **data
) -> dict:
    """Train a hashing model, then encode query and database and report retrieval quality.

    ``Trainer(config, protocol, **data).run()``. Writes under ``runs/<name>/``:
    ``metrics.json``, ``checkpoint.safetensors`` (model + target codes + config, for
    ``load_checkpoint``), ``splits.json`` (the data split, reusable with ``split_file``),
    ``run.json`` (the config that owns the folder), ``checkpoints/epoch_*`` (resumable
    states) and ``logs/``. A run over an earlier run's outputs replaces them only once it
    has finished.

    Args:
        config: an :class:`ExperimentConfig` or a dict of its keys.
        protocol: your own :class:`~pml_hashing.data.Protocol` instead of ``config.dataset``.
        **data: or ``train``, ``query``, ``database`` (and ``validation``) data sets of
            ``(image, label)``; and ``callbacks``: more
            :class:`~pml_hashing.training.Callback` objects, or functions
            ``fn(epoch, model, method)`` called after every epoch (see :class:`Trainer`).

    Returns:
        The metrics dict written to ``metrics.json`` (on every process), plus ``history``.
    """
    return Trainer(config, protocol, **data).run()
