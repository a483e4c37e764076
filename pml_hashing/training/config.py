"""Experiment configuration: defaults < YAML config file < command-line flags.

Every key is declared once, as a dataclass field whose metadata says its help text, its
choices, its range and the methods it applies to (:func:`key`). The same declaration gives
the ``--flag`` of ``recipes/train.py`` (with its help, default and choices), the YAML key and
the check that :meth:`ExperimentConfig.validate` runs before any model or data is built.
Adding a key is one field::

    ternary_threshold: float | None = key(None, "DPN-T threshold (None: the margin)",
                                          minimum=0.0, methods=("dpn",))

Types are strict: an ``int`` key refuses ``"2"`` (a quoted YAML value is a string) and
``2.5``; a ``float`` key takes an int or a float but not a string, NaN or infinity; a ``bool``
key takes only ``true``/``false``.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import numbers
import re
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .._validation import TIE_RULES

PRETRAINED_WORDS = {"true": True, "yes": True, "false": False, "no": False}

_NO_DEFAULT = object()

# The methods whose loss pulls outputs to a target miner's class codes: the target-miner
# keys apply to them.
TARGET_CODE_METHODS = ("dpn", "csq", "orthohash")


def as_flags(message: str) -> str:
    """A library message for the command line: the config keys it names in backticks
    (`overwrite`) written as the recipe's flags (--overwrite)."""

    def flag(match: re.Match) -> str:
        name = match.group(1)
        known = name in {f.name for f in dataclasses.fields(ExperimentConfig)}
        return "--" + name.replace("_", "-") if known else match.group(0)

    return re.sub(r"`([a-z_]+)`", flag, message)


class ConfigValueError(ValueError):
    """A bad config value; ``key`` names the key."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


def key(
    default=_NO_DEFAULT,
    help: str = "",
    *,
    default_factory=None,
    choices=None,
    minimum=None,
    maximum=None,
    greater_than=None,
    methods: tuple[str, ...] | None = None,
    resume_may_change: bool = False,
):
    """Declare a config key: a dataclass field with the metadata the parser and checks read.

    Args:
        default / default_factory: the value when neither the file nor a flag sets it.
        help: one line for ``--help``.
        choices: the allowed values, or a function returning them (a registry's names).
        minimum, maximum: inclusive bounds; greater_than: an exclusive lower bound.
        methods: the methods the key applies to; a non-default value with another method is
            an error naming the key.
        resume_may_change: whether ``--resume`` accepts a value that differs from the
            checkpoint's (where, how long, how verbose; never what is trained).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "greater_than": greater_than,
        "methods": methods,
        "resume_may_change": resume_may_change,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


class RegisteredNames:
    """The names of a registry, for a key's choices, without importing the registry for
    ``--help``.

    The built-in names are listed here: importing the methods loads pytorch-metric-learning
    and, through it, ``scipy.stats``, a second of every ``--help`` and usage error. A
    registry that is already imported (a plugin registered its own names) is read itself,
    and so is one needed to check a name that is not built in. A test checks that the
    listed names are the registry's built-in ones.
    """

    def __init__(self, module: str, registry: str, builtin: tuple[str, ...]):
        self.module, self.registry, self.builtin = module, registry, tuple(sorted(builtin))

    def __call__(self, value=None) -> tuple[str, ...]:
        loaded = sys.modules.get(self.module)
        if loaded is None and value is not None and value not in self.builtin:
            loaded = importlib.import_module(self.module)
        if loaded is None:
            return self.builtin
        return tuple(sorted(getattr(loaded, self.registry)))


_method_names = RegisteredNames(
    "pml_hashing.methods",
    "METHODS",
    ("classifier", "csq", "dpn", "itq", "lsh", "orthohash", "pairwise", "sh-bdnn", "uh-bdnn"),
)
_target_miner_names = RegisteredNames(
    "pml_hashing.methods",
    "TARGET_MINERS",
    ("adaptive", "hadamard", "hash-center", "max-hamming", "random"),
)


# A protocol registered by the user is accepted too: the names are read at check time.
def _dataset_names() -> tuple[str, ...]:
    from ..data import PROTOCOL_NAMES

    return tuple(sorted(PROTOCOL_NAMES))


@dataclass
class ExperimentConfig:
    """Everything a training run needs; every field is a YAML key and a ``--flag``.

    The defaults are the main job: DPN at 64 bits on the bundled MNIST-5k, on one CPU.
    """

    name: str | None = key(
        None,
        "run name: the run writes runs/<name>/ (default: dataset-method[-target miner]-bits-seed)",
        resume_may_change=True,
    )
    output_dir: str = key("runs", "folder that holds the run folders", resume_may_change=True)
    dataset: str = key("mnist-5k", "data set and its protocol", choices=_dataset_names)
    root: str | None = key(
        None,
        "data folder of a file-based data set: image-folder (one subfolder per class), "
        "cifar10-*, nuswide-21, imagenet-100",
    )
    split_file: str | None = key(None, "reuse a saved split (the splits.json of an earlier run)")
    validation_per_class: int = key(
        0, "items per class held out of training for model selection (0: none)", minimum=0
    )
    data_kwargs: dict = key(
        default_factory=dict,
        help="more load_protocol arguments as a YAML mapping, e.g. '{image_root: data/img}'",
    )
    unseen_classes: str | int | list | None = key(
        None,
        "unseen-class protocol (Sablayrolles et al.): train on the seen classes, query and "
        "search the unseen ones; a count drawn by the seed, 'auto' (a quarter of the classes, "
        "rounded up) or class ids '1,4,7' (default: none, the usual protocol)",
    )
    method: str = key(
        "dpn",
        "hashing method (lsh and itq are fit on the training split, not trained; classifier "
        "is the sign-coded softmax baseline)",
        choices=_method_names,
    )
    bits: int = key(64, "code length K (a positive multiple of 8)", minimum=8)
    backbone: str = key("hashing_cnn_small", "timm model name of the backbone")
    pretrained: str | bool | None = key(
        None,
        "true: timm's published weights (Hugging Face cache; downloaded once where there is a "
        "network; offline, an error naming the local-file option), or a local weights file",
    )
    image_size: int | None = key(
        None,
        "resize every image to image_size x image_size (any data set; ImageNet backbones "
        "need more than MNIST's 28 pixels)",
        minimum=1,
    )
    backbone_kwargs: dict = key(
        default_factory=dict, help="more timm.create_model arguments as a YAML mapping"
    )
    backbone_lr_multiplier: float = key(
        1.0,
        "backbone learning rate / head learning rate (0.1 is usual when pretrained)",
        minimum=0.0,
    )
    freeze_backbone: bool = key(False, "train the hash layer only")
    margin: float = key(
        1.0,
        "DPN's polarization margin m (also the DPN-T threshold)",
        greater_than=0.0,
        methods=("dpn",),
    )
    target_miner: str = key(
        "random",
        "target codes of the target-code methods (CSQ's own: hash-center)",
        choices=_target_miner_names,
        methods=TARGET_CODE_METHODS,
    )
    p: float = key(
        0.5,
        "ratio of +1 bits in random (and adaptive initial) targets",
        minimum=0.0,
        maximum=1.0,
        methods=TARGET_CODE_METHODS,
    )
    update_every: int = key(
        3,
        "epochs between adaptive (DPN-A) target updates, after the warm-up",
        minimum=1,
        methods=TARGET_CODE_METHODS,
    )
    warmup_epochs: int = key(
        2,
        "adaptive (DPN-A): epochs before the first epoch whose votes count",
        minimum=0,
        methods=TARGET_CODE_METHODS,
    )
    min_distance_floor: str | float | None = key(
        "initial",
        "adaptive (DPN-A) guard: an update that brings the codebook's minimum pairwise "
        "distance below this floor is refused; 'initial' (the initial codebook's minimum), "
        "a number of bits, or 0 / none (no guard). Algorithm 1 as written: --warmup-epochs 0 "
        "--update-every 1 --min-distance-floor 0",
        methods=TARGET_CODE_METHODS,
    )
    ternary_threshold: str | float | None = key(
        None,
        "DPN-T threshold, |v| <= threshold -> 0: none (the margin m, the paper), a number "
        ">= 0 (0: binary codes), or 'auto' (chosen on the validation split from a small grid "
        "that includes binary; needs validation_per_class)",
        methods=("dpn",),
    )
    quantization_weight: float | None = key(
        None,
        "weight of the quantization term: CSQ's lambda (none: 1e-4, DeepHash-pytorch's) or "
        "the pairwise method's quantization regularizer (none: 0.01)",
        minimum=0.0,
        methods=("csq", "pairwise"),
    )
    scale: float = key(8.0, "OrthoHash's scale s", greater_than=0.0, methods=("orthohash",))
    cosine_margin: float = key(
        0.2, "OrthoHash's additive cosine margin m", minimum=0.0, methods=("orthohash",)
    )
    pair_loss: str = key(
        "contrastive",
        "the PML pair loss of the pairwise method",
        choices=("contrastive", "multi-similarity"),
        methods=("pairwise",),
    )
    hash_batchnorm: bool | None = key(
        None,
        "a BatchNorm1d after a bias-free hash layer (OrthoHash's authors' model); none: the "
        "method's default (true for orthohash, false otherwise)",
    )
    method_kwargs: dict = key(
        default_factory=dict, help="more arguments of the method as a YAML mapping"
    )
    epochs: int = key(
        10,
        "training epochs (may grow on resume with scheduler none)",
        minimum=1,
        resume_may_change=True,
    )
    batch_size: int = key(64, "global batch, split across processes", minimum=1)
    lr: float = key(
        1.5e-2,
        "learning rate (the main job's, chosen on its validation split with 10 epochs)",
        greater_than=0.0,
    )
    weight_decay: float | None = key(
        None, "weight decay (None: BDNN's l1 for BDNN methods, else 1e-4)", minimum=0.0
    )
    optimizer: str = key("adamw", "optimizer", choices=("adamw", "sgd"))
    scheduler: str = key(
        "cosine", "learning-rate schedule over all steps", choices=("cosine", "none")
    )
    gradient_accumulation_steps: int = key(1, "batches per optimizer step", minimum=1)
    mixed_precision: str | None = key(
        None, "mixed precision (None: accelerate's setting)", choices=("no", "fp16", "bf16")
    )
    channels_last: bool = key(
        True,
        "channels-last memory format for the model and its 4-D inputs (convolutions run "
        "~1.5x faster on CPU; no effect on models without 4-D weights)",
    )
    seed: int = key(0, "seed of the split, the initialization and the data order", minimum=0)
    num_workers: int = key(0, "DataLoader worker processes", minimum=0, resume_may_change=True)
    num_threads: int | None = key(
        None,
        "CPU threads per process (None: PML_HASHING_NUM_THREADS, else OMP_NUM_THREADS unless "
        "accelerate launch set it to 1, else cores / local processes; see training/threads.py)",
        minimum=1,
        resume_may_change=True,
    )
    eval_batch_size: int = key(
        # 256, not 512: a CPU encodes the main job's 5,000 images in about half the time
        # (activations that fit the caches); the outputs do not depend on it
        256,
        "batch size of encoding (evaluation)",
        minimum=1,
        resume_may_change=True,
    )
    topk: int | None = key(None, "R of mAP@R (None: the protocol's, e.g. all for MNIST)", minimum=1)
    ties: str = key("index", "tie rule of the reported mAP", choices=TIE_RULES)
    radius: int = key(2, "Hamming radius of the precision-within-radius metric", minimum=0)
    checkpoint_every: int = key(
        # 5, not 1: a write costs ~0.3 s, 7% of the main job at 1; the last epoch and a stop
        # at max_train_steps are written anyway
        5,
        "epochs between resumable checkpoints, and the last epoch (0: never)",
        minimum=0,
        resume_may_change=True,
    )
    resume: str | None = key(
        None, "a checkpoint folder, or 'latest' of this run", resume_may_change=True
    )
    overwrite: bool = key(
        False,
        "replace a run folder that holds another config's run or is locked",
        resume_may_change=True,
    )
    log_with: str = key(
        "csv",
        "experiment tracker(s), comma-separated: csv, none or any tracker Accelerate supports "
        "(tensorboard, wandb, mlflow, comet_ml, aim, ...); a missing package fails before "
        "training",
        resume_may_change=True,
    )
    max_train_steps: int | None = key(
        None,
        "stop after this many optimizer steps in all (tests, smoke runs); resumable",
        minimum=1,
        resume_may_change=True,
    )
    progress: bool = key(
        True,
        "progress bar (drawn only on a terminal; else one line per epoch)",
        resume_may_change=True,
    )

    def run_name(self) -> str:
        if self.name:
            return self.name
        method = self.method
        if self.method in TARGET_CODE_METHODS:  # the codebook is part of what is trained
            method = f"{self.method}-{self.target_miner}"
        return f"{self.dataset}-{method}-{self.bits}b-seed{self.seed}"

    @classmethod
    def of(cls, config: ExperimentConfig | dict) -> ExperimentConfig:
        """``config`` itself, or the config of a dict of keys (checked as it is made)."""
        if isinstance(config, dict):
            return cls.from_dict(config)
        if not isinstance(config, cls):
            raise TypeError(f"config must be an ExperimentConfig or a dict; got {type(config)}")
        return config

    def run_dir(self, run_name: str | None = None) -> Path:
        """``output_dir/<run name>``: the run folder (``run_name`` default: :meth:`run_name`;
        a :class:`~pml_hashing.training.Trainer` on data from Python passes its own)."""
        return Path(self.output_dir) / (run_name or self.run_name())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> ExperimentConfig:
        if not isinstance(values, dict):
            raise ValueError(f"{source} must be a mapping of keys to values; got {values!r}")
        normalized = _known_keys(values, source)
        try:
            return cls(**normalized)  # validated once, by __post_init__
        except ConfigValueError as error:
            if source == "config":
                raise
            raise ConfigValueError(error.key, f"{source}: {error}") from None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, source: str = "config") -> None:
        """Check every key's type, range and choice; floats given as ints become floats.

        Raises:
            ValueError: naming the key, what it must be and what it got (and ``source``).
        """
        from ..codes import check_num_bits

        if isinstance(self.pretrained, str) and self.pretrained.lower() in PRETRAINED_WORDS:
            self.pretrained = PRETRAINED_WORDS[self.pretrained.lower()]  # --pretrained true
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _check_value(f.name, getattr(self, f.name), hints[f.name], f.metadata)
            setattr(self, f.name, value)
        try:
            check_num_bits(self.bits, "bits")
        except ValueError as error:
            raise ConfigValueError("bits", str(error)) from None
        self._validate_dpn_variants()
        from ..data.protocol import parse_unseen_classes

        try:  # a malformed value fails before any work
            self.unseen_classes = parse_unseen_classes(self.unseen_classes)
        except (TypeError, ValueError) as error:
            raise ConfigValueError("unseen_classes", str(error)) from None
        from .trackers import parse_log_with

        try:  # names only: a missing package fails at build
            self.tracker_names = parse_log_with(self.log_with)
        except ValueError as error:
            raise ConfigValueError("log_with", str(error)) from None
        if self.name is not None and (
            not self.name or Path(self.name).name != self.name or self.name in (".", "..")
        ):
            raise ConfigValueError(
                "name", f"name must be a plain folder name (no '/'); got {self.name!r}"
            )
        self._validate_kwargs()
        from .threads import max_loader_workers

        if self.num_workers > max_loader_workers():
            # every worker is a process: an unbounded count forks until memory runs out. The
            # bound is generous (a config written for a larger machine still loads here);
            # past the CPUs, workers only share them
            raise ConfigValueError(
                "num_workers",
                f"num_workers must be at most {max_loader_workers()} (4 per CPU this process "
                f"may use, at least 8); got {self.num_workers}",
            )
        for f in dataclasses.fields(self):
            methods = f.metadata.get("methods")
            if methods and self.method not in methods and getattr(self, f.name) != _default(f):
                raise ConfigValueError(
                    f.name,
                    f"{f.name} applies to method {' / '.join(methods)} only; got "
                    f"{f.name}={getattr(self, f.name)!r} with method {self.method!r}",
                )

    def _validate_kwargs(self) -> None:
        """``method_kwargs`` / ``data_kwargs``: only arguments the method or the data loader
        takes, and never a config key (it would train with a value other than the one the
        config, the run name and the metrics record)."""

        from ..data import PROTOCOLS
        from ..methods import METHODS

        # config keys, and what the data (num_classes) and bits (num_bits) set
        reserved = {f.name for f in dataclasses.fields(self)} | {"num_classes", "num_bits"}
        for name, target, what in (
            ("method_kwargs", METHODS.get_or_raise(self.method), f"method {self.method!r}"),
            ("data_kwargs", PROTOCOLS.get_or_raise(self.dataset), f"dataset {self.dataset!r}"),
        ):
            given = getattr(self, name)
            clash = sorted(set(given) & reserved)
            if clash:
                keys = ", ".join(
                    {"num_bits": "`bits`", "num_classes": "the data"}.get(k) or f"`{k}`"
                    for k in clash
                )
                raise ConfigValueError(
                    name,
                    f"{name} must not set config keys ({', '.join(clash)}): set them as keys "
                    f"({keys}), which the run's config, name and metrics record",
                )
            if name == "data_kwargs":
                _check_data_kwargs(given)
            taken = _accepted_arguments(target)
            if taken is None:  # no signature to check against, or any keyword taken
                continue
            taken -= reserved
            unknown = sorted(set(given) - taken)
            if unknown:
                raise ConfigValueError(
                    name,
                    f"{name} has keys that {what} does not take: {', '.join(unknown)}; it "
                    f"takes {', '.join(sorted(taken)) or 'none'}",
                )

    def _validate_dpn_variants(self) -> None:
        # Flags arrive as text: "0.5" is a number, "initial" / "auto" are the named choices.
        for name, word in (("min_distance_floor", "initial"), ("ternary_threshold", "auto")):
            value = getattr(self, name)
            if isinstance(value, str) and value.strip().lower() in ("none", "null"):
                # YAML reads `none` as text (only `null` / `~` are its None)
                setattr(self, name, None)
                continue
            if isinstance(value, str) and value != word:
                try:
                    value = float(value)
                except ValueError:
                    raise ConfigValueError(
                        name, f"{name} must be {word!r}, a number or none; got {value!r}"
                    ) from None
                if not math.isfinite(value):
                    raise ConfigValueError(name, f"{name} must be a finite number; got {value}")
                setattr(self, name, value)
            if isinstance(getattr(self, name), float) and getattr(self, name) < 0:
                raise ConfigValueError(name, f"{name} must be >= 0; got {getattr(self, name)}")
        has_validation = self.validation_per_class or self.data_kwargs.get("validation_size")
        if self.ternary_threshold == "auto" and not has_validation:
            raise ConfigValueError(
                "ternary_threshold",
                'ternary_threshold "auto" chooses the threshold on the validation split, and '
                "none is configured: set validation_per_class (e.g. 5), or "
                "data_kwargs.validation_size for multi-label data",
            )

    def differences(self, other: ExperimentConfig, ignore_resumable: bool = True) -> dict:
        """The keys whose values differ: ``{key: (self's value, other's value)}``."""
        out = {}
        for f in dataclasses.fields(self):
            if ignore_resumable and f.metadata.get("resume_may_change"):
                continue
            a, b = getattr(self, f.name), getattr(other, f.name)
            if a != b:
                out[f.name] = (a, b)
        return out


def _known_keys(values: dict, source: str) -> dict:
    """``values`` with ``-`` in keys read as ``_``; an unknown key is an error naming it."""
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    normalized = {str(k).replace("-", "_"): v for k, v in values.items()}
    unknown = sorted(set(normalized) - known)
    if unknown:
        raise ValueError(f"{source} has unknown key(s) {unknown}; known keys: {sorted(known)}")
    return normalized


def _check_data_kwargs(values: dict) -> None:
    """Data loader arguments are numbers, text, booleans or null: a mapping or a list
    (nested YAML) would reach a loader as something it cannot use."""
    for name, value in values.items():
        if value is not None and not isinstance(value, (str, int, float, bool)):
            kind = "a mapping" if isinstance(value, dict) else f"a {type(value).__name__}"
            raise ConfigValueError(
                "data_kwargs",
                f"data_kwargs.{name} must be a number, text, true/false or null; got {kind} "
                f"{value!r}",
            )


def describe_differences(differences: dict, first: str, second: str) -> str:
    """``key (first a, second b), ...`` of :meth:`ExperimentConfig.differences`."""
    return ", ".join(f"{k} ({first} {a!r}, {second} {b!r})" for k, (a, b) in differences.items())


RESUME_MAY_CHANGE = tuple(
    f.name for f in dataclasses.fields(ExperimentConfig) if f.metadata.get("resume_may_change")
)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()


def _accepted_arguments(target) -> set[str] | None:
    """The keyword arguments a method class or a data loader takes; None when it takes any
    (or has no signature)."""
    import inspect

    if hasattr(target, "accepted_arguments"):  # a method: its own hook (HashingMethod)
        return target.accepted_arguments()
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is not p.VAR_POSITIONAL}


def _choices(metadata, value=None) -> tuple | None:
    """A key's choices; for a registry's names, those that can tell whether ``value`` is
    one (:class:`RegisteredNames`)."""
    choices = metadata.get("choices")
    if isinstance(choices, RegisteredNames):
        return choices(value)
    return tuple(choices()) if callable(choices) else choices


def _describe(value) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{value!r} ({type(value).__name__})"


def _check_union(name: str, value, alternatives: tuple[type, ...]):
    """A key that takes one of several kinds of value (its own checks come after, in
    ``validate``; such keys declare no choices or bounds)."""
    if float in alternatives and isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = float(value)
        if not math.isfinite(value):
            raise ConfigValueError(name, f"{name} must be a finite number; got {value}")
        return value
    if isinstance(value, alternatives):
        return value
    kinds = " or ".join(a.__name__ for a in alternatives)
    raise ConfigValueError(name, f"{name} must be {kinds}; got {_describe(value)}")


def _check_value(name: str, value, hint, metadata):
    args = typing.get_args(hint)
    nullable = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None:
        if nullable:
            return None
        raise ConfigValueError(name, f"{name} must not be None (null)")
    alternatives = tuple(a for a in args if isinstance(a, type) and a is not type(None))
    if len(alternatives) > 1:  # pretrained: true | path, ternary_threshold: 0.5 | auto, ...
        return _check_union(name, value, alternatives)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigValueError(name, f"{name} must be true or false; got {_describe(value)}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ConfigValueError(name, f"{name} must be an integer; got {_describe(value)}")
        value = int(value)
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ConfigValueError(name, f"{name} must be a number; got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigValueError(name, f"{name} must be a finite number; got {value}")
    elif base is str:
        if not isinstance(value, str):
            raise ConfigValueError(name, f"{name} must be a string; got {_describe(value)}")
    elif base is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigValueError(
                name, f"{name} must be a mapping with string keys; got {_describe(value)}"
            )
    choices = _choices(metadata, value)
    if choices is not None and value not in choices:
        raise ConfigValueError(name, f"{name} must be one of {list(choices)}; got {value!r}")
    low, high, above = (
        metadata.get("minimum"),
        metadata.get("maximum"),
        metadata.get("greater_than"),
    )
    if low is not None and value < low:
        raise ConfigValueError(name, f"{name} must be >= {low}; got {value}")
    if high is not None and value > high:
        raise ConfigValueError(name, f"{name} must be <= {high}; got {value}")
    if above is not None and not value > above:
        raise ConfigValueError(name, f"{name} must be > {above}; got {value}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain
    YAML keeps the last value, so the first one would be silently ignored)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            name = self.construct_object(key_node, deep=True)
            if name in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {name!r}", key_node.start_mark
                )
            seen[name] = key_node
        return super().construct_mapping(node, deep)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)


def load_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file not found: {path}")
    try:
        values = _load_yaml(path.read_text())
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"config file {path} is not valid YAML{at}: {problem}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of keys to values")
    return values


def _yaml_mapping(text: str) -> dict:
    try:
        value = _load_yaml(text)
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or type(error).__name__
        raise argparse.ArgumentTypeError(
            f"not a valid YAML mapping ({problem}): {text!r}"
        ) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a YAML mapping like '{{a: 1}}'; got {text!r}")
    return value


def _scalar_parser(name: str, base, nullable: bool, metadata):
    def parse(text: str):
        if nullable and text.lower() in ("none", "null"):
            return None
        try:
            value = base(text)
        except ValueError:
            kind = {int: "an integer", float: "a number"}.get(base, base.__name__)
            raise argparse.ArgumentTypeError(f"must be {kind}; got {text!r}") from None
        choices = _choices(metadata, value)
        if choices is not None and value not in choices:
            raise argparse.ArgumentTypeError(
                f"must be one of {', '.join(map(str, choices))}; got {text!r}"
            )
        return value

    parse.__name__ = name
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(
            "Train a hashing model and report retrieval quality. With no arguments: DPN at "
            "64 bits on the bundled MNIST-5k. Values: defaults < --config file < flags."
        ),
        # only the flags given appear: `--min-distance-floor none` is a None that counts,
        # not a flag left out (which would keep the default or the config file's value)
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("--config", help="YAML file of ExperimentConfig keys")
    hints = typing.get_type_hints(ExperimentConfig)
    for f in dataclasses.fields(ExperimentConfig):
        flag = "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        choices = _choices(f.metadata)
        default = _default(f)
        shown = "none" if default is None else default
        help_text = f.metadata.get("help", "")
        if choices is not None:
            help_text += f"; choices: {', '.join(map(str, choices))}"
        if f.metadata.get("methods"):
            help_text += f"; method {' / '.join(f.metadata['methods'])} only"
        if "(default:" not in help_text:  # a help that explains its own default keeps it
            help_text += f" (default: {shown})"
        help_text = help_text.replace("%", "%%")
        if base is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text
            )
        elif base is dict:
            parser.add_argument(
                flag, dest=f.name, type=_yaml_mapping, metavar="YAML", help=help_text
            )
        else:
            metavar = {int: "INT", float: "FLOAT"}.get(base, "TEXT")
            parser.add_argument(
                flag,
                dest=f.name,
                type=_scalar_parser(f.name, base, nullable, f.metadata),
                metavar=metavar,
                help=help_text,
            )
    return parser


def parse_config(
    argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None
) -> ExperimentConfig:
    """Defaults, then the ``--config`` YAML file, then the flags given on the command line.

    A malformed flag exits with argparse's usage error; a value that parses but is out of
    range (or a bad config file) raises ``ValueError`` naming the key and the file.
    ``parser``: the :func:`build_parser` parser the caller already holds.
    """
    args = (parser or build_parser()).parse_args(argv)
    config_file = getattr(args, "config", None)
    values: dict[str, Any] = {}
    if config_file:
        source = f"config file {config_file}"
        values.update(_known_keys(load_config_file(config_file), source))
    else:
        source = "config"
    flags = {k: v for k, v in vars(args).items() if k != "config"}
    values.update(flags)
    try:
        return ExperimentConfig.from_dict(values, source="config")
    except ConfigValueError as error:
        if config_file and error.key not in flags:  # the file's value, not a flag's
            raise ConfigValueError(error.key, f"{source}: {error}") from None
        raise
