"""Binary and ternary codes, and their packed form in faiss's byte order.

Conventions used throughout pml-hashing:

* A *binary code* is a vector in {-1, +1}^K. ``binarize`` maps ``v >= 0`` to ``+1``;
  ``torch.sign`` is never used, because ``sign(0) == 0`` would silently create ternary codes.
* A *ternary code* (DPN-T) is a vector in {-1, 0, +1}^K: outputs with ``|v| <= margin`` map to 0.
* A *packed code* is a ``(N, K / 8)`` ``uint8`` array: bit ``j`` lives in byte ``j // 8``
  with value ``1 << (j % 8)`` and is set when the code is ``+1`` (numpy's
  ``packbits(..., bitorder="little")``, the layout faiss's binary indexes use).
"""

from __future__ import annotations

import numpy as np
import torch

from ._validation import MAX_NUM_BITS, check_integer

ArrayLike = torch.Tensor | np.ndarray

__all__ = [
    "binarize",
    "ternarize",
    "pack_bits",
    "pack_bool",
    "unpack_bits",
    "check_num_bits",
    "to_numpy",
    "read_codes",
]


def to_numpy(x: ArrayLike) -> np.ndarray:
    """A numpy view of ``x`` (a torch tensor is detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.dtype == torch.bfloat16 or x.dtype == torch.float16:
            x = x.float()
        return x.cpu().numpy()
    return np.asarray(x)


def _check_finite(v: ArrayLike, name: str) -> None:
    if isinstance(v, torch.Tensor):
        finite = bool(torch.isfinite(v).all()) if v.is_floating_point() else True
    else:
        arr = np.asarray(v)
        finite = bool(np.isfinite(arr).all()) if np.issubdtype(arr.dtype, np.floating) else True
    if not finite:
        raise ValueError(f"{name} must be finite; got NaN or infinite values")


def binarize(v: ArrayLike) -> ArrayLike:
    """Binary codes: ``+1`` where ``v >= 0``, ``-1`` elsewhere.

    Returns the same kind of array as ``v`` (torch tensor or numpy array) with the same
    floating dtype (integer inputs give ``int8``), so codes can be multiplied directly.
    Raises ``ValueError`` on NaN or infinite outputs rather than coding them silently.
    """
    _check_finite(v, "v")
    if isinstance(v, torch.Tensor):
        dtype = v.dtype if v.is_floating_point() else torch.int8
        return torch.where(v >= 0, 1, -1).to(dtype)
    arr = np.asarray(v)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.int8
    return np.where(arr >= 0, 1, -1).astype(dtype)


def ternarize(v: ArrayLike, margin: float = 1.0) -> ArrayLike:
    """Ternary codes (DPN-T, eq. 9 of the DPN paper): 0 where ``|v| <= margin``, else ``sign(v)``.

    The paper writes ``-1 if v <= -m``; we map the boundary ``v == -m`` to 0 so that the
    rule is symmetric (``|v| <= m`` is "unpolarized"). The two differ on a set of measure
    zero. Ternary codes are for retrieval only: ternarizing inside a loss has zero gradient.
    """
    if isinstance(margin, (bool, np.bool_)) or not isinstance(margin, (int, float, np.number)):
        raise ValueError(f"margin must be a real number >= 0; got {margin!r}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0; got {margin}")
    _check_finite(v, "v")
    if isinstance(v, torch.Tensor):
        dtype = v.dtype if v.is_floating_point() else torch.int8
        out = torch.where(v > margin, 1, torch.where(v < -margin, -1, 0))
        return out.to(dtype)
    arr = np.asarray(v)
    dtype = arr.dtype if np.issubdtype(arr.dtype, np.floating) else np.int8
    return np.where(arr > margin, 1, np.where(arr < -margin, -1, 0)).astype(dtype)


def check_num_bits(num_bits: int, name: str = "num_bits") -> int:
    """Validate a code length that faiss can pack: a positive multiple of 8, at most 2**24."""
    num_bits = check_integer(num_bits, name, maximum=MAX_NUM_BITS)
    if num_bits <= 0 or num_bits % 8 != 0:
        raise ValueError(
            f"{name} must be a positive multiple of 8 (faiss packs codes into bytes); "
            f"got {num_bits}"
        )
    return num_bits


def pack_bits(codes: ArrayLike) -> np.ndarray:
    """Pack ``(N, K)`` codes in {-1, +1} (or booleans, ``True`` = +1) into ``(N, K/8)`` uint8.

    ``K`` must be a multiple of 8. Zeros (ternary codes) are refused: pack their sign and
    their mask as two separate planes instead.
    """
    arr = to_numpy(codes)
    if arr.ndim != 2:
        raise ValueError(f"codes must be a 2-D (N, num_bits) array; got shape {arr.shape}")
    check_num_bits(arr.shape[1], "codes.shape[1] (the number of bits)")
    if arr.dtype == np.bool_:
        bits = arr
    else:
        _check_finite(arr, "codes")
        bits = arr == 1
        if not np.all(bits | (arr == -1)):
            raise ValueError(
                "codes must contain only -1 and +1 (use binarize() first; ternary codes "
                "need a sign plane and a mask plane)"
            )
    return pack_bool(bits)


def pack_bool(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean ``(N, K)`` array (any ``K``) into ``(N, ceil(K / 8))`` uint8.

    The package's one bit packer (faiss's byte order, see the module docstring); the last
    byte is padded with zero bits, which add no Hamming distance between two packed codes.
    """
    bits = np.asarray(bits)
    if bits.dtype != np.bool_ or bits.ndim != 2:
        raise ValueError(f"bits must be a 2-D boolean array; got {bits.dtype} {bits.shape}")
    return np.packbits(bits, axis=1, bitorder="little")


def unpack_bits(packed: ArrayLike, num_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(N, num_bits / 8)`` uint8 -> ``(N, num_bits)`` int8 +-1."""
    check_num_bits(num_bits)
    arr = to_numpy(packed)
    if arr.dtype != np.uint8:
        raise ValueError(f"packed must be a uint8 array; got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] * 8 != num_bits:
        raise ValueError(
            f"packed must have shape (N, num_bits / 8) = (N, {num_bits // 8}); got {arr.shape}"
        )
    bits = np.unpackbits(arr, axis=1, bitorder="little", count=num_bits)
    return bits.astype(np.int8) * 2 - 1


def read_codes(path, outputs: bool = False) -> dict[str, np.ndarray]:
    """The arrays of a code file: an ``.npz`` (``numpy.savez``) or a shard folder written by
    ``pml-hashing encode --out DIR`` (its manifest and every shard's digest are checked
    first; the shards are read in order).

    Args:
        path: the ``.npz`` file or the shard folder.
        outputs: for a shard folder, also read the real outputs (when it has them).

    Returns:
        a dict of arrays; from a shard folder: ``codes`` (N, K) int8 in {-1, +1},
        ``packed`` (N, K/8) uint8, ``ids`` (N,), ``labels`` (N,) or (N, C) and, if asked
        and present, ``outputs`` (N, K) float32.
    """
    import os

    if os.path.isdir(path):
        from .shards import read_shards

        return read_shards(path, outputs=outputs)
    if not os.path.isfile(path):
        raise ValueError(f"code file {path}: no such file or shard folder")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as e:  # not an .npz archive, a damaged member: name the file
        raise ValueError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from None
