"""Experiment configuration: defaults < YAML config file < command-line flags."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ExperimentConfig:
    """Everything a training run needs; every field is a YAML key and a ``--flag``.

    The defaults are the main job: DPN at 64 bits on the bundled MNIST-5k, on one CPU.
    """

    name: str | None = None  # run name; runs/<name>/ (default: dataset-method-bits-seed)
    output_dir: str = "runs"
    dataset: str = "mnist-5k"
    root: str | None = None  # folder of a standard data set (cifar10-*, nuswide-21, ...)
    split_file: str | None = None  # reuse a saved split (splits.json of an earlier run)
    validation_per_class: int = 0  # held out of training for model selection
    data_kwargs: dict = field(default_factory=dict)  # more load_protocol arguments, e.g.
    # image_root / strip_prefix for list files, validation_size for multi-label NUS-WIDE
    # unseen-class protocol (Sablayrolles et al.): train on the seen classes, query and search
    # the unseen ones; a count drawn by the seed, "auto" (a quarter, rounded up) or ids "1,4,7"
    unseen_classes: str | None = None
    method: str = "dpn"  # dpn | sh-bdnn | uh-bdnn | classifier | lsh | itq (fit-only)
    bits: int = 64
    backbone: str = "hashing_cnn_small"
    pretrained: str | None = None  # local weights file for the backbone
    backbone_kwargs: dict = field(default_factory=dict)
    backbone_lr_multiplier: float = 1.0  # 0.1 is usual for a pretrained backbone
    freeze_backbone: bool = False
    margin: float = 1.0
    target_miner: str = "random"  # random | hadamard | max-hamming | adaptive
    p: float = 0.5  # ratio of +1 bits in random targets
    update_every: int = 1  # epochs between adaptive (DPN-A) target updates
    method_kwargs: dict = field(default_factory=dict)
    epochs: int = 15
    batch_size: int = 64  # global batch, split across processes
    lr: float = 3e-3
    weight_decay: float | None = None  # None: BDNN's l1 for BDNN methods, else 1e-4
    optimizer: str = "adamw"  # adamw | sgd
    scheduler: str = "cosine"  # cosine | none
    gradient_accumulation_steps: int = 1
    mixed_precision: str | None = None  # no | fp16 | bf16 (None: accelerate's setting)
    seed: int = 0
    num_workers: int = 0
    eval_batch_size: int = 512
    topk: int | None = None  # R of mAP@R (None: the protocol's, e.g. all for MNIST)
    ties: str = "index"  # tie rule of the reported mAP: index | random | expected
    radius: int = 2  # Hamming radius of the precision-within-radius metric
    checkpoint_every: int = 1  # epochs between resumable checkpoints (0: never)
    resume: str | None = None  # a checkpoint folder, or "latest" of this run
    log_with: str = "csv"  # csv | tensorboard | none
    max_train_steps: int | None = None  # stop early (tests, smoke runs)
    progress: bool = True

    def run_name(self) -> str:
        return self.name or f"{self.dataset}-{self.method}-{self.bits}b-seed{self.seed}"

    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.run_name()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ExperimentConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        normalized = {str(k).replace("-", "_"): v for k, v in values.items()}
        unknown = sorted(set(normalized) - known)
        if unknown:
            raise ValueError(f"{source} has unknown key(s) {unknown}; known keys: {sorted(known)}")
        config = cls(**normalized)
        config.validate()
        return config

    def validate(self) -> None:
        from ..codes import check_num_bits

        check_num_bits(self.bits, "bits")
        choices = {
            "optimizer": ("adamw", "sgd"),
            "scheduler": ("cosine", "none"),
            "ties": ("index", "random", "expected"),
            "log_with": ("csv", "tensorboard", "none"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                got = getattr(self, key)
                raise ValueError(f"{key} must be one of {list(allowed)}; got {got!r}")
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ValueError(
                f"mixed_precision must be no, fp16 or bf16; got {self.mixed_precision!r}"
            )
        for key in ("epochs", "batch_size", "gradient_accumulation_steps", "eval_batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1; got {getattr(self, key)}")
        if not self.margin > 0:
            raise ValueError(f"margin must be > 0; got {self.margin}")
        from ..data.protocol import parse_unseen_classes

        parse_unseen_classes(self.unseen_classes)  # a malformed value fails before any work


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Train a hashing model and report retrieval quality. With no arguments: DPN at "
            "64 bits on the bundled MNIST-5k. Values: defaults < --config file < flags."
        )
    )
    parser.add_argument("--config", help="YAML file of ExperimentConfig keys")
    for f in dataclasses.fields(ExperimentConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool",):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction)
        elif f.type in ("dict",):
            parser.add_argument(flag, dest=f.name, type=yaml.safe_load, help="YAML mapping")
        else:
            parser.add_argument(flag, dest=f.name, type=_parse_scalar(f.type))
    return parser


def _parse_scalar(type_name: str):
    if type_name.startswith("int"):
        return _nullable(int)
    if type_name.startswith("float"):
        return float
    return _nullable(str)


def _nullable(cast):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else cast(text)

    parse.__name__ = cast.__name__
    return parse


def parse_config(argv: list[str] | None = None) -> ExperimentConfig:
    """Defaults, then the ``--config`` YAML file, then the flags given on the command line."""
    args = build_parser().parse_args(argv)
    values: dict[str, Any] = {}
    if args.config:
        values.update(load_config_file(args.config))
        source = f"config file {args.config}"
    else:
        source = "config"
    flags = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
    values.update(flags)
    return ExperimentConfig.from_dict(values, source=source)
