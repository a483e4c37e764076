"""Input checks for every public boundary of pml-hashing (private; in the spirit of PML's
``common_functions``).

A public function or constructor checks its arguments once, here, and the helpers below it
trust them. Every check raises ``ValueError`` (a wrong value, shape or dtype, including a
wrong type where a number or array is expected), naming the argument, what was expected and
what came, so the command line can report it as ``pml-hashing: error: ...``.

Rules shared by the whole package:

* Integers: Python ``int`` and numpy integers (``np.int64(5)``); ``bool`` is not an integer.
* Labels: integer ``(N,)`` class ids or multi-hot ``(N, C)`` 0/1 rows, as torch tensors or
  numpy arrays. ``(N, 1)`` is refused as ambiguous: it may be class ids in a column (PML's
  ``AccuracyCalculator`` layout) or a one-class multi-hot matrix, which rank differently.
* Codes: ``{-1, +1}`` binary codes, ``{-1, 0, +1}`` ternary codes, or packed ``uint8``.
  Codes that hold only ``{-1, 0, +1}`` with some zeros (0/1 bits or ternary codes) are never
  binarized silently (``0 -> +1`` would make all distances wrong), and an array holding only
  0 and 1 is refused by every entry point that takes codes (:func:`refuse_zero_one`).
* Tie rules: :data:`TIE_RULES`.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
import os
import warnings

import numpy as np
import torch

__all__ = [
    "MAX_CODEBOOK_ELEMENTS",
    "MAX_NUM_BITS",
    "TIE_RULES",
    "DeferredChecks",
    "IdenticalCodesWarning",
    "allow_zero_one_codes",
    "check_code_spread",
    "refuse_zero_one",
    "binary_code_array",
    "check_finite",
    "check_hash_outputs",
    "check_input_file",
    "check_integer",
    "check_output_path",
    "check_real",
    "check_split_payload",
    "check_tie_rule",
    "code_array",
    "is_integer",
    "label_array",
    "label_tensor",
    "report_outputs",
]

#: How equal Hamming distances are ordered by the ranking metrics.
TIE_RULES = ("index", "random", "expected")
#: The longest code anything accepts: float32 distances are exact up to 2**24 bits.
MAX_NUM_BITS = 1 << 24
#: The largest target codebook (num_classes x num_bits), 1 GiB in float32.
MAX_CODEBOOK_ELEMENTS = 1 << 28


# ---------------------------------------------------------------------------- numbers
def is_integer(value) -> bool:
    """True for Python and numpy integers, False for bools (and everything else)."""
    return isinstance(value, (numbers.Integral, np.integer)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_integer(
    value,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """``int(value)`` for an integer in ``[minimum, maximum]``; ``ValueError`` otherwise."""
    if value is None and allow_none:
        return None
    if not is_integer(value):
        kind = "a positive integer" if minimum == 1 else "an integer"
        suffix = " or None" if allow_none else ""
        raise ValueError(f"{name} must be {kind}{suffix}; got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        if minimum == 1:
            raise ValueError(f"{name} must be a positive integer; got {value}")
        raise ValueError(f"{name} must be >= {minimum}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}; got {value}")
    return value


def check_real(value, name: str, *, minimum: float | None = None, strict: bool = False) -> float:
    """``float(value)`` for a finite real number (numpy scalars too; not bool), else ValueError."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.number)):
        raise ValueError(f"{name} must be a finite real number; got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number; got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {minimum}; got {value}")
    return value


def check_tie_rule(ties, name: str = "ties") -> str:
    """Return ``ties`` when it is one of :data:`TIE_RULES`."""
    if not isinstance(ties, str) or ties not in TIE_RULES:
        raise ValueError(f"{name} must be one of {TIE_RULES}; got {ties!r}")
    return ties


# ---------------------------------------------------------------------------- hash outputs
class DeferredChecks:
    """Input checks of accelerator tensors, kept on the device and read later.

    Reading a CUDA flag with ``bool()`` blocks the host until the GPU has caught up; doing it
    on every training step costs one sync per step. Here each failed-check flag is OR-ed into
    a device tensor (no sync) and the flags are read by :meth:`raise_if_set`: every ``every``
    calls of :meth:`add`, and whenever the owner reaches a point that syncs anyway (the end of
    an epoch). A NaN output therefore still raises ``ValueError``, at most ``every`` steps
    late. CPU tensors are checked at once by the callers (reading a CPU flag costs nothing).
    """

    def __init__(self, every: int = 100):
        self.every = check_integer(every, "every", minimum=1)
        self.calls = 0
        self.flags: dict[str, torch.Tensor] = {}

    def add(self, failed: torch.Tensor, message: str) -> None:
        """Record ``failed`` (a 0-d bool device tensor) under ``message``; no host sync."""
        previous = self.flags.get(message)
        self.flags[message] = failed if previous is None else previous | failed
        self.calls += 1
        if self.calls >= self.every:
            self.raise_if_set()

    def raise_if_set(self) -> None:
        """Read the flags (one sync); raise ``ValueError`` with the first failed message."""
        flags, self.flags, self.calls = self.flags, {}, 0
        for message, failed in flags.items():
            if bool(failed):
                raise ValueError(
                    f"{message} (in one of the last {self.every} calls or fewer: checked on "
                    "the device without a per-step sync)"
                )


def check_finite(tensor: torch.Tensor, name: str, deferred: DeferredChecks | None = None):
    """Raise ``ValueError`` if a floating tensor holds NaN or inf.

    On the CPU the check is immediate (reading the flag costs no device sync). On an
    accelerator with a ``deferred`` accumulator, the flag stays on the device and is read
    later (see :class:`DeferredChecks`), so a training step makes no host sync.
    """
    if not tensor.is_floating_point():
        return
    message = f"{name} contain NaN or infinite values"
    if deferred is not None and tensor.device.type != "cpu":
        deferred.add(~torch.isfinite(tensor.detach()).all(), message)
        return
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(message)


def check_hash_outputs(
    embeddings,
    name: str = "embeddings",
    min_rows: int = 1,
    deferred: DeferredChecks | None = None,
) -> None:
    """Raise ``ValueError`` unless ``embeddings`` is a finite float ``(N, K)`` tensor with
    ``N >= min_rows`` and ``K >= 1``."""
    if not isinstance(embeddings, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor; got {type(embeddings).__name__}")
    if embeddings.ndim != 2:
        raise ValueError(f"{name} must have shape (N, num_bits); got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor; got dtype {embeddings.dtype}")
    if embeddings.shape[0] < min_rows:
        raise ValueError(
            f"{name} must have at least {min_rows} rows (samples) for a batch statistic; "
            f"got {embeddings.shape[0]}"
        )
    if embeddings.shape[1] < 1:
        raise ValueError(f"{name} must have at least one bit (column); got 0")
    check_finite(embeddings, name, deferred)


# ---------------------------------------------------------------------------- labels
def _label_rules(shape: tuple, kind: str, name: str, num_rows, rows_name, num_classes):
    """Shape rules shared by torch and numpy labels; ``kind`` is 'int', 'float', 'bool', ''."""
    if len(shape) not in (1, 2):
        raise ValueError(f"{name} must be integer (N,) or multi-hot (N, C) labels; got {shape}")
    if len(shape) == 2 and shape[1] == 1:
        raise ValueError(
            f"{name} of shape (N, 1) are ambiguous (class ids in a column, or a one-class "
            f"multi-hot matrix?); pass class ids as shape (N,) ({name}.ravel()); got {shape}"
        )
    if num_rows is not None and shape[0] != num_rows:
        per = rows_name or "row"
        raise ValueError(f"{name} must have one row per {per} ({num_rows}); got shape {shape}")
    if kind == "":
        raise ValueError(f"{name} must be numeric; got a non-numeric dtype")
    if len(shape) == 2 and num_classes is not None and shape[1] != num_classes:
        raise ValueError(
            f"multi-hot {name} must have shape (N, num_classes) = (N, {num_classes}); got {shape}"
        )


def _kind_numpy(arr: np.ndarray) -> str:
    if arr.dtype == np.bool_:
        return "bool"
    if np.issubdtype(arr.dtype, np.integer):
        return "int"
    if np.issubdtype(arr.dtype, np.floating):
        return "float"
    return ""


def label_array(
    labels, name: str, num_rows: int | None = None, rows_name: str = "", num_classes=None
) -> np.ndarray:
    """Validated numpy labels: int64 ``(N,)`` class ids or float32 ``(N, C)`` multi-hot.

    Float labels holding integers are accepted (PML hands labels over as float32).
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu()
        if labels.dtype in (torch.bfloat16, torch.float16):
            labels = labels.float()
        arr = labels.numpy()
    elif isinstance(labels, (np.ndarray, list, tuple)):
        arr = np.asarray(labels)
    else:
        raise ValueError(
            f"{name} must be a numpy array or torch tensor of labels; got {type(labels).__name__}"
        )
    kind = _kind_numpy(arr)
    _label_rules(arr.shape, kind, name, num_rows, rows_name, num_classes)
    if kind == "bool":
        arr = arr.astype(np.int64)
    elif kind == "float":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} must be finite; got NaN or infinite values")
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{name} must hold integers (or 0/1 multi-hot); got fractional values")
    if arr.ndim == 2:
        if not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name} given as (N, C) must be multi-hot with values 0 and 1")
        return arr.astype(np.float32)
    if num_classes is not None and arr.size:
        _check_class_range(int(arr.min()), int(arr.max()), name, num_classes)
    return arr.astype(np.int64)


def _check_class_range(low: int, high: int, name: str, num_classes: int) -> None:
    if low < 0 or high >= num_classes:
        bad = low if low < 0 else high
        raise ValueError(f"{name} must be in [0, num_classes) = [0, {num_classes}); got {bad}")


def label_tensor(
    labels,
    name: str = "labels",
    num_rows: int | None = None,
    num_classes: int | None = None,
    device=None,
    deferred: DeferredChecks | None = None,
) -> torch.Tensor:
    """Validated torch labels for losses and miners (numpy labels are converted).

    Integer ``(N,)`` labels come back as int64 (a uint8 index would be a boolean mask);
    multi-hot ``(N, C)`` rows must hold only 0 and 1 and keep their dtype. Labels are moved
    to ``device`` after the checks. Labels already on an accelerator with a ``deferred``
    accumulator have their values checked there without a sync (see
    :class:`DeferredChecks`); out-of-range class ids are then clamped so that indexing with
    them cannot trigger a device-side assert before the deferred error is raised.
    """
    labels = _as_torch_labels(labels, name)
    kind = _torch_label_kind(labels)
    _label_rules(tuple(labels.shape), kind, name, num_rows, "embedding", None)
    # on an accelerator the values are checked there, without a sync
    deferred = deferred if deferred is not None and labels.device.type != "cpu" else None
    if labels.ndim == 1:
        if kind != "int":
            raise ValueError(
                f"integer {name} of shape (N,) must have an integer dtype; got {labels.dtype}"
            )
        labels = _checked_class_ids(labels.long(), name, num_classes, deferred)
    else:
        _check_multi_hot(labels, name, num_classes, deferred)
    return labels if device is None else labels.to(device)


def _as_torch_labels(labels, name: str) -> torch.Tensor:
    """``labels`` as a tensor: numpy arrays, lists and tuples are converted, not copied."""
    if labels is None:
        raise ValueError(f"{name} are required")
    if isinstance(labels, (np.ndarray, list, tuple)):
        arr = np.asarray(labels)
        if _kind_numpy(arr) == "":
            raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
        return torch.from_numpy(np.ascontiguousarray(arr))
    if not isinstance(labels, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch tensor or numpy array of labels; got {type(labels).__name__}"
        )
    return labels


def _torch_label_kind(labels: torch.Tensor) -> str:
    """``"bool"``, ``"float"``, ``"int"``, or ``""`` (complex), as :func:`_label_rules` reads."""
    if labels.dtype == torch.bool:
        return "bool"
    if labels.is_floating_point():
        return "float"
    if labels.is_complex():
        return ""
    return "int"


def _checked_class_ids(
    labels: torch.Tensor, name: str, num_classes: int | None, deferred: DeferredChecks | None
) -> torch.Tensor:
    """int64 ``labels`` checked to lie in ``[0, num_classes)``; with ``deferred``, checked on
    the device and clamped, so that indexing cannot assert before the deferred error."""
    if num_classes is None or labels.numel() == 0:
        return labels
    if deferred is None:
        _check_class_range(int(labels.min()), int(labels.max()), name, num_classes)
        return labels
    deferred.add(
        ((labels < 0) | (labels >= num_classes)).any(),
        f"{name} must be in [0, num_classes) = [0, {num_classes})",
    )
    return labels.clamp(0, num_classes - 1)


def _check_multi_hot(
    labels: torch.Tensor, name: str, num_classes: int | None, deferred: DeferredChecks | None
) -> None:
    if num_classes is not None and labels.shape[1] != num_classes:
        raise ValueError(
            f"multi-hot {name} must have shape (N, num_classes) = (N, {num_classes}); "
            f"got {tuple(labels.shape)}"
        )
    not_binary = ~((labels == 0) | (labels == 1)).all()
    message = f"multi-hot {name} must contain only 0 and 1"
    if deferred is not None:
        deferred.add(not_binary, message)
    elif bool(not_binary):
        raise ValueError(message)


# ---------------------------------------------------------------------------- codes
# Set by allow_zero_one_codes(): the caller vouches that {0, +1} arrays are ternary codes.
_ZERO_ONE_ALLOWED = contextvars.ContextVar("pml_hashing_zero_one_allowed", default=False)


@contextlib.contextmanager
def allow_zero_one_codes():
    """Within this block, code arrays holding only 0 and +1 are read as ternary (DPN-T) codes
    with no -1 instead of being refused as 0/1 bits (a ternary code of a model that polarized
    no output below ``-m``). The package's own ternary metrics use it for the codes they
    ternarize themselves."""
    token = _ZERO_ONE_ALLOWED.set(True)
    try:
        yield
    finally:
        _ZERO_ONE_ALLOWED.reset(token)


def refuse_zero_one(arr: np.ndarray, name: str) -> None:
    """``ValueError`` when ``arr`` holds only 0 and 1 (at least one 0): 0/1 bits.

    Binarizing (``v >= 0 -> +1``) maps every 0 to +1 and ternary ranking reads it as
    "unpolarized": either way every distance is wrong, so no entry point that takes codes
    reads them silently (a {0, 1} query set against a +-1 database scored 0.18 for 0.92).
    """
    if _ZERO_ONE_ALLOWED.get() or arr.size == 0:
        return
    zero = arr == 0
    if zero.any() and (zero | (arr == 1)).all():
        raise ValueError(
            f"{name} holds only 0s and 1s: 0/1 bits, which binarizing would turn into all +1 "
            "codes (and ternary ranking into 'unpolarized'); pass -1/+1 codes (2 * bits - 1) "
            "or the real outputs (ternary codes with no -1: within "
            "pml_hashing.evaluation.allow_zero_one_codes())"
        )


class IdenticalCodesWarning(UserWarning):
    """Every code is the same: every Hamming distance is 0 and a ranking metric only
    measures the tie order (a collapsed model)."""


def check_code_spread(arrays, names: str) -> None:
    """Refuse outputs that all binarize to +1 because none is negative, warn when every
    binarized code is otherwise identical.

    Hashing reads the sign of zero-centred outputs (``v >= 0 -> +1``): non-negative
    embeddings (post-ReLU features, sigmoid outputs) all become the all-ones code, and
    precision@1 of such codes says nothing about the model. Fewer than two rows in all
    (one code is trivially identical to itself) are not checked.
    """
    mats = [_as_numpy(a, names) for a in arrays]
    mats = [m.reshape(len(m), -1) if m.ndim else m.reshape(1, -1) for m in mats]
    if sum(len(m) for m in mats) < 2 or any(m.size == 0 for m in mats):
        return
    if all(bool((m >= 0).all()) for m in mats):
        raise ValueError(
            f"{names} are all non-negative, so every code binarizes to all +1 (v >= 0 -> +1) "
            "and every Hamming distance is 0: hashing expects zero-centred outputs (a linear "
            "hash layer, not post-ReLU features or sigmoid outputs; subtract the mean, or "
            "use 2 * p - 1 for probabilities)"
        )
    first = mats[0][0] >= 0
    if all(bool(((m >= 0) == first).all()) for m in mats):
        warnings.warn(
            f"every code of {names} is identical after binarization: every Hamming distance "
            "is 0, so a ranking metric only measures the tie order (a collapsed model?)",
            IdenticalCodesWarning,
            stacklevel=3,
        )


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype in (torch.bfloat16, torch.float16):
            x = x.float()
        return x.cpu().numpy()
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x)
    raise ValueError(f"{name} must be a numpy array or torch tensor; got {type(x).__name__}")


def _numeric_matrix(x, name: str, what: str) -> tuple[np.ndarray, str]:
    """``x`` as a finite numeric ``(N, K)`` numpy array of ``what``, and its kind (``"int"``
    or ``"float"``). Booleans and unsigned integers are refused: they are 0/1 bits or packed
    codes, which binarizing or reading as codes would turn into wrong distances."""
    arr = _as_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, num_bits) array; got shape {arr.shape}")
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.unsignedinteger):
        raise ValueError(
            f"{name} must hold {what}; got dtype {arr.dtype}, which "
            "looks like 0/1 bits or packed codes (use 2 * bits - 1, or codes.unpack_bits)"
        )
    kind = _kind_numpy(arr)
    if kind not in ("int", "float"):
        raise ValueError(f"{name} must be a numeric array of {what}; got dtype {arr.dtype}")
    if kind == "float" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got NaN or infinite values")
    return arr, kind


def code_array(x, name: str) -> np.ndarray:
    """``(N, K)`` int8 codes in {-1, 0, +1} (binary or ternary) for the ranking metrics."""
    arr, _ = _numeric_matrix(x, name, "-1/+1 codes (or ternary -1/0/+1)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must hold at least one code of at least one bit; got {arr.shape}")
    valid = (arr == -1) | (arr == 0) | (arr == 1)
    if not valid.all():
        bad = arr[~valid].ravel()[0]
        raise ValueError(
            f"{name} must contain only -1, 0 and +1 (binarize or ternarize the embeddings "
            f"first); got {bad}"
        )
    refuse_zero_one(arr, name)
    return arr.astype(np.int8)


def report_outputs(query, database, names=("query_outputs", "db_outputs")) -> tuple:
    """Real hash outputs, or +-1 / ternary codes, of a query and a database as tensors.

    What a report binarizes (``v >= 0 -> +1``) must not be 0/1 bits or packed bytes, which
    it would map to all +1 codes and all-zero distances: booleans and unsigned integers are
    refused, and so is either array when its values are only 0 and 1 (0/1 bits: see
    :func:`refuse_zero_one`). Integer codes must be in {-1, 0, +1}.
    """
    arrays = []
    for x, name in zip((query, database), names, strict=True):
        arr, kind = _numeric_matrix(x, name, "real outputs or -1/+1 codes (or ternary -1/0/+1)")
        if kind == "int" and arr.size and not np.isin(arr, (-1, 0, 1)).all():
            bad = arr[~np.isin(arr, (-1, 0, 1))].ravel()[0]
            raise ValueError(f"{name}: integer codes must be -1, 0 or +1; got {bad}")
        arrays.append(arr)
    if arrays[0].shape[1] != arrays[1].shape[1]:
        raise ValueError(
            f"{names[0]} has {arrays[0].shape[1]} bits per code but {names[1]} has "
            f"{arrays[1].shape[1]}: they must have the same number of bits"
        )
    for arr, name in zip(arrays, names, strict=True):
        refuse_zero_one(arr, name)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)


def binary_code_array(x, name: str, num_bits: int) -> np.ndarray:
    """Packed ``(N, num_bits / 8)`` uint8 codes for a binary index.

    Accepts ``+-1`` codes and raw network outputs (binarized, ``v >= 0 -> +1``), booleans
    (``True`` = +1) and packed ``uint8``. Refuses ternary codes and 0/1 bits (values in
    {-1, 0, +1} with zeros): binarizing them maps every 0 to +1 and makes distances wrong.
    """
    from .codes import binarize, pack_bits

    arr = _as_numpy(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, num_bits) array; got shape {arr.shape}")
    if arr.dtype == np.uint8:
        if arr.shape[1] * 8 != num_bits:
            raise ValueError(
                f"{name} is uint8, read as packed codes with {arr.shape[1]} bytes "
                f"({arr.shape[1] * 8} bits) per code, but the index has "
                f"num_bits={num_bits} ({num_bits // 8} bytes)"
            )
        return np.ascontiguousarray(arr)
    if arr.shape[1] != num_bits:
        raise ValueError(
            f"{name} has {arr.shape[1]} bits per code ({name}.shape[1]) but the index has "
            f"num_bits={num_bits}"
        )
    if arr.dtype == np.bool_:
        return pack_bits(arr)
    if _kind_numpy(arr) not in ("int", "float"):
        raise ValueError(f"{name} must be numeric codes or raw outputs; got dtype {arr.dtype}")
    if _kind_numpy(arr) == "float" and not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite; got NaN or infinite values")
    if arr.size and (arr == 0).any() and np.isin(arr, (-1, 0, 1)).all():
        what = "0/1 bits" if not (arr == -1).any() else "ternary codes (-1/0/+1)"
        raise ValueError(
            f"{name} look like {what}; a binary index takes +-1 codes or raw outputs "
            "(2 * bits - 1 for 0/1 bits; pml_hashing.index.TernaryFlatIndex for ternary codes)"
        )
    return pack_bits(binarize(arr))


# ---------------------------------------------------------------------------- splits
def check_split_payload(payload, name: str) -> dict:
    """A saved split (``Protocol.save_splits``): ``{"name": str, "seed": int, "splits":
    {split: [int, ...]}}``; returns it with ``seed`` as an int (0 when absent)."""
    if not isinstance(payload, dict):
        raise ValueError(f"{name} must hold a JSON object; got {type(payload).__name__}")
    if not isinstance(payload.get("name"), str):
        raise ValueError(f"{name}: 'name' must be a string; got {payload.get('name')!r}")
    splits = payload.get("splits", {})
    if not isinstance(splits, dict):
        raise ValueError(f"{name}: 'splits' must map split names to index lists")
    for key, indices in splits.items():
        if not isinstance(indices, list) or not all(is_integer(i) for i in indices):
            raise ValueError(f"{name}: split {key!r} must be a list of integer indices")
    seed = check_integer(payload.get("seed", 0), f"{name}: 'seed'")
    return {**payload, "splits": splits, "seed": seed}


# ---------------------------------------------------------------------------- files
def check_input_file(path, name: str) -> str:
    """``path`` as a string when it names an existing regular file, else ``ValueError``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{name} {path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"{name} {path}: not a regular file (a directory?)")
    return path


def check_output_path(path, name: str) -> str:
    """``path`` as a string when its folder exists and it is not a directory."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{name} {path}: the folder {folder} does not exist")
    if os.path.isdir(path):
        raise ValueError(f"{name} {path}: is a directory; give a file name")
    return path
