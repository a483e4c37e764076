"""Jobs on a trained checkpoint: encode a split of its data set, evaluate retrieval."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..codes import binarize
from .builders import build_protocol
from .checkpoint import load_checkpoint
from .config import ExperimentConfig
from .encoding import encode_for_retrieval
from .evaluation import EvaluationSettings, evaluate_retrieval

SPLITS = ("train", "query", "database", "validation")


def _protocol_for(config: ExperimentConfig, model, dataset, root, split_file, payload):
    own = payload.get("extra", {}).get("data") or {}
    if own and dataset is None:
        # The config's dataset key is not what the run trained on: rebuilding it would
        # encode or evaluate other data and return a number that looks like the run's.
        raise ValueError(
            f"this checkpoint was trained on data given from Python (protocol "
            f"{own.get('protocol')!r}, {own.get('sizes')} train/query/database items), which "
            "cannot be rebuilt from the checkpoint: pass dataset= (and root=) to evaluate "
            "on a registered data set, or encode your own data with "
            "pml_hashing.encode(data, checkpoint) and evaluate with retrieval_report"
        )
    overrides = {}
    if dataset is not None:
        overrides["dataset"] = dataset
    if root is not None:
        overrides["root"] = root
    if split_file is not None:
        overrides["split_file"] = str(split_file)
    values = config.to_dict() | overrides
    return build_protocol(ExperimentConfig.from_dict(values), model)


def encode_checkpoint(
    checkpoint,
    split: str = "database",
    out=None,
    dataset: str | None = None,
    root: str | None = None,
    split_file=None,
    batch_size: int = 512,
    accelerator=None,
) -> dict:
    """Encode one split of the checkpoint's data set (or another one) with its model.

    Args:
        checkpoint: ``runs/<name>/checkpoint.safetensors``.
        split: ``train``, ``query``, ``database`` or ``validation``.
        out: if given, an ``.npz`` file with ``codes`` (+-1 int8), ``outputs`` (float32),
            ``labels`` and ``ids`` (source-data indices), the input of
            ``pml-hashing index build``.
        dataset, root, split_file: override the checkpoint's data (default: the same
            data set and seed, so the split is the one the model was evaluated on).
            A run trained on data given from Python (``run_experiment(config, protocol)``)
            cannot be rebuilt: ``dataset`` is then required, else a ValueError.

    Returns:
        The arrays as a dict.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}; got {split!r}")
    model, method, config, payload = load_checkpoint(checkpoint)
    protocol = _protocol_for(config, model, dataset, root, split_file, payload)
    data = getattr(protocol, split)
    if data is None:
        raise ValueError(f"the protocol has no {split} split (set validation_per_class)")
    outputs, labels = encode_for_retrieval(model, method, data, batch_size, accelerator)
    arrays = {
        "codes": binarize(outputs.numpy()).astype(np.int8),
        "outputs": outputs.numpy(),
        "labels": labels.numpy(),
        "ids": np.asarray(getattr(data, "indices", np.arange(len(outputs)))),
    }
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(out, **arrays)
    return arrays


def evaluate_checkpoint(
    checkpoint,
    dataset: str | None = None,
    root: str | None = None,
    split_file=None,
    topk: int | None = None,
    ties: str = "index",
    radius: int = 2,
    batch_size: int = 512,
    accelerator=None,
    seed: int | None = None,
) -> dict:
    """Encode query and database with a checkpoint's model and report retrieval quality
    (binary and, for DPN, ternary mAP@R; precision within Hamming radius ``radius``).

    Like :func:`encode_checkpoint`, it rebuilds the run's data set from its config; a run
    trained on data given from Python needs ``dataset`` (else a ValueError).

    Returns:
        The :func:`~pml_hashing.evaluation.retrieval_report` of the query and database
        (``topk`` defaults to the protocol's R; ``seed``, of ``ties="random"``, to the
        run's; the DPN-T threshold is the run's, the one it chose for ``auto``), plus
        ``checkpoint``, ``dataset``, ``num_query`` and ``num_database``.
    """
    model, method, config, payload = load_checkpoint(checkpoint)
    protocol = _protocol_for(config, model, dataset, root, split_file, payload)
    threshold = config.ternary_threshold
    if threshold == "auto":  # the threshold the run chose on its validation split
        last = payload.get("extra", {}).get("metrics", {}).get("last_epoch", {})
        threshold = last.get("ternary_threshold")
    settings = EvaluationSettings(
        topk=topk,
        ties=ties,
        radius=radius,
        seed=config.seed if seed is None else seed,
        ternary_threshold=threshold,
        batch_size=batch_size,
    )
    report = evaluate_retrieval(model, method, protocol, settings, accelerator)
    report["checkpoint"] = str(checkpoint)
    report["dataset"] = protocol.name
    return report
