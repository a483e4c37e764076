"""Training and encoding: the package side of ``recipes/train.py``.

``run_experiment(config)`` (a thin wrapper of ``Trainer(config).run()``) trains, evaluates
and writes ``runs/<name>/``;
``encode_dataset(model, dataset)`` runs a model over a data set; ``load_checkpoint(path)``
gives back the model and its target codes.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

# Names load on first use, so that building the recipe's parser (``--help``, usage errors)
# imports neither Accelerate nor timm nor faiss.
_EXPORTS = {
    "Callback": ".callbacks",
    "CheckpointCallback": ".callbacks",
    "EvaluationSettings": ".evaluation",
    "TrackingCallback": ".callbacks",
    "Trainer": ".trainer",
    "ValidationCallback": ".callbacks",
    "ExperimentConfig": ".config",
    "IndexedDataset": ".encoding",
    "build_model": ".builders",
    "build_protocol": ".builders",
    "encode_checkpoint": ".checkpoint_jobs",
    "encode_dataset": ".encoding",
    "encode_for_retrieval": ".encoding",
    "evaluate_checkpoint": ".checkpoint_jobs",
    "evaluate_retrieval": ".evaluation",
    "load_checkpoint": ".checkpoint",
    "parse_config": ".config",
    "retrieval_report": "..evaluation.retrieval_report",
    "run_experiment": ".trainer",
    "save_checkpoint": ".checkpoint",
}
__all__ = [
    "Callback",
    "CheckpointCallback",
    "TrackingCallback",
    "Trainer",
    "ValidationCallback",
    "EvaluationSettings",
    "ExperimentConfig",
    "IndexedDataset",
    "build_model",
    "build_protocol",
    "encode_checkpoint",
    "encode_dataset",
    "encode_for_retrieval",
    "evaluate_checkpoint",
    "evaluate_retrieval",
    "load_checkpoint",
    "parse_config",
    "retrieval_report",
    "run_experiment",
    "save_checkpoint",
]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from ..evaluation.retrieval_report import retrieval_report
    from .builders import build_model, build_protocol
    from .callbacks import Callback, CheckpointCallback, TrackingCallback, ValidationCallback
    from .checkpoint import load_checkpoint, save_checkpoint
    from .checkpoint_jobs import encode_checkpoint, evaluate_checkpoint
    from .config import ExperimentConfig, parse_config
    from .encoding import IndexedDataset, encode_dataset, encode_for_retrieval
    from .evaluation import EvaluationSettings, evaluate_retrieval
    from .trainer import Trainer, run_experiment
