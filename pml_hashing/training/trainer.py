"""The training engine behind ``accelerate launch recipes/train.py``: build, fit, report.

One CPU, several CPU processes or several GPUs run the same code: Accelerate splits each
global batch across processes (``split_batches=True``), so a run with N processes sees
exactly the batches of a one-process run with the same ``batch_size``.

The parts live beside it: :mod:`.builders` (model, data, method, optimizer, accelerator),
:mod:`.callbacks` (validation, tracking, checkpoints), :mod:`.state` (resume, the state
folders, RNG, the CSV log), :mod:`.evaluation` (the one evaluation path), :mod:`.run_folder`
(the lock, and a fresh run written aside until it has finished), :mod:`.outputs` (what a
finished run writes), :mod:`.distributed` (what the processes share).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from accelerate.utils import set_seed
from tqdm.auto import tqdm

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
    check_process_count,
    user_data_identity,
    user_protocol,
)
from .callbacks import trainer_callbacks
from .config import ExperimentConfig
from .distributed import on_main, process_state, shared_token
from .encoding import encode_dataset, encode_training_set
from .evaluation import EvaluationSettings, evaluate_retrieval
from .outputs import metrics_head, write_outputs
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
        self.config = ExperimentConfig.of(config)
        self.user_protocol = user_protocol(protocol, train, query, database, validation)
        self.data_identity = user_data_identity(self.user_protocol)
        self.callbacks = trainer_callbacks(callbacks)
        # progress: finished epochs, batches of the unfinished one, optimizer steps
        self.epoch, self.batch_in_epoch, self.global_step = 0, 0, 0
        self.history: list[dict] = []
        # this epoch's global batch losses: 0-d tensors until the epoch's end (a float() per
        # step would wait for the device every step), floats once read back
        self.epoch_losses: list = []
        self.epoch_seconds = 0.0
        self.stopped_mid_epoch = False
        self._built = False

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
    def stop_requested(self) -> bool:
        """``max_train_steps`` is reached: the run stops after this step or epoch."""
        limit = self.config.max_train_steps
        return limit is not None and self.global_step >= limit

    # ------------------------------------------------------------------ build
    def build(self) -> Trainer:
        """Check the resume point, lock the run folder, build every part, load the state."""
        config = self.config
        self.start_time = time.perf_counter()
        if config.num_threads is not None:  # else the recipe's (or the caller's) setting
            configure_threads(config.num_threads)
        processes = check_process_count(config, process_state().num_processes)
        resume = on_main(
            lambda: find_resume_point(config, self.run_dir, self.data_identity, processes)
        )
        self.run_folder = RunFolder(self.run_dir, config, self.data_identity)
        self.work_dir = Path(on_main(lambda: self.run_folder.acquire(bool(resume))))
        self.run_folder.work_dir = self.work_dir
        try:
            if resume is not None:  # before the CSV tracker opens the log it appends to
                log = self.work_dir / "logs" / "metrics.csv"
                on_main(lambda: truncate_csv_log(log, resume[1].get("log_rows")))
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
        on_main(self.run_folder.claim)
        if accelerator.is_main_process:
            protocol.save_splits(self.work_dir / "splits.json")
        train_loader = build_train_loader(config, protocol.train)
        optimizer = build_optimizer(config, model, self.method, accelerator.device)
        scheduler = build_scheduler(config, optimizer, len(train_loader))
        self.model, self.optimizer, self.train_loader, self.scheduler = accelerator.prepare(
            model, optimizer, train_loader, scheduler
        )
        self.unwrapped = accelerator.unwrap_model(self.model)
        scalars = {k: v for k, v in config.to_dict().items() if isinstance(v, (int, float, str))}
        accelerator.init_trackers(self.run_name, config=scalars)
        self.run_token = shared_token()  # temporary folders are unique per run

    # ------------------------------------------------------------------ checkpoints
    def save_state(self) -> Path:
        """Write a resumable checkpoint of everything (all processes call it)."""
        return save_trainer_state(self)

    # ------------------------------------------------------------------ fit
    def _encode_training_set(self) -> EncodedTrainingSet:
        size = self.config.eval_batch_size
        return encode_training_set(self.unwrapped, self.protocol.train, size, self.accelerator)

    def fit(self) -> Trainer:
        """Train until ``epochs`` (or ``max_train_steps``), from wherever the state is."""
        if not self._built:
            self.build()
        self.stopped_mid_epoch = False
        if getattr(self.method, "fit_only", False):
            # LSH / ITQ: fitted once on the flattened training inputs, no epochs
            encoder, config = self.method.retrieval_encoder(self.unwrapped), self.config
            size, workers = config.eval_batch_size, config.num_workers
            inputs, _ = encode_dataset(
                encoder, self.protocol.train, size, self.accelerator, workers
            )
            self.method.fit(inputs)
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
        bar = self._progress_bar(num_batches, skip)
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

    def _progress_bar(self, total: int, initial: int) -> tqdm:
        shown = self.config.progress and self.accelerator.is_local_main_process
        return tqdm(
            total=total,
            initial=initial,
            desc=f"epoch {self.epoch + 1}/{self.config.epochs}",
            disable=not shown or not sys.stderr.isatty(),  # redraws in a log file are noise
            leave=False,
        )

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

    def _report(self) -> dict:
        accelerator = self.accelerator
        metrics = metrics_head(self)
        metrics["last_epoch"] = self.evaluate()
        for callback in self.callbacks:
            callback.on_report(self, metrics)
        metrics["total_seconds"] = time.perf_counter() - self.start_time
        accelerator.log(
            {f"test/{k}": v for k, v in metrics["last_epoch"].items() if isinstance(v, float)},
            step=self.global_step,
        )
        if accelerator.is_main_process:
            write_outputs(self, metrics)
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
