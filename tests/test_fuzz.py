"""Fuzzing the public boundaries: codes, metrics, distances, losses, miners, the
index (with truncated and bit-flipped files), the command line and the file loaders.

Each case either returns the same answer as a plain reference written here, or raises the
documented exception type (``ValueError``; ``FileNotFoundError`` for a missing file; exit
status 2 with ``pml-hashing: error:`` on the command line) whose message names the argument
or the file. Anything else (a ``TypeError`` from deep inside numpy, faiss or pickle, an
``IndexError``, a hang) fails the test. Memory: every input is at most a few kilobytes and the
functions under test are bounded by their input (``k`` and ``radius`` are clamped), so a case
that allocated more would be a bug; the files are read whole into memory before parsing.

Run ``python -m pytest -q -s tests/test_fuzz.py`` to print the number of inputs tried per
target. The suite is derandomized (the same inputs every run, so CI is reproducible); set
``PML_HASHING_FUZZ_EXAMPLES=500`` to search further with fresh random inputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pml_hashing.cli import main
from pml_hashing.codes import binarize, pack_bits, ternarize, unpack_bits
from pml_hashing.data.cifar10 import read_cifar10_batch
from pml_hashing.data.image_list_dataset import read_image_list
from pml_hashing.data.protocol import read_splits
from pml_hashing.distances import HammingDistance
from pml_hashing.evaluation import mean_average_precision
from pml_hashing.index import BinaryIndex, TernaryFlatIndex
from pml_hashing.losses import BDNNSimilarityLoss, PolarizationLoss
from pml_hashing.miners import (
    AdaptiveTargetMiner,
    HadamardTargetMiner,
    RandomTargetMiner,
)
from tests.recipe_arguments import parse_recipe_main

COUNTS: Counter = Counter()
_EXAMPLES = os.environ.get("PML_HASHING_FUZZ_EXAMPLES")
FUZZ = settings(
    max_examples=int(_EXAMPLES or 40),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=_EXAMPLES is None,
)


@pytest.fixture(scope="module", autouse=True)
def print_counts():
    yield
    print("\nfuzz inputs tried per target:")
    for target, count in sorted(COUNTS.items()):
        print(f"  {target:<22} {count}")


def expect_value_error(call, *names):
    """``call()``; a ValueError must name one of ``names``. Returns (ok, result)."""
    try:
        return True, call()
    except ValueError as error:
        message = str(error)
        assert any(name in message for name in names), f"{message!r} names none of {names}"
        return False, None


# Scalars a user might pass where an integer is expected.
SCALARS = st.one_of(
    st.integers(-3, 70),
    st.integers(-3, 70).map(np.int64),
    st.integers(0, 70).map(np.uint8),
    st.sampled_from([True, False, np.bool_(True), 2.0, 8.0, float("nan"), "8", None, 10**12]),
)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# ------------------------------------------------------------------ codes
FLOAT_VALUES = st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.3, 1.0, 4.0, np.nan, np.inf, -np.inf])
DTYPES = st.sampled_from(["float32", "float64", "int8", "int64", "uint8", "bool"])


@st.composite
def arrays(draw, max_dim=2, max_side=17):
    ndim = draw(st.integers(0, max_dim))
    shape = tuple(draw(st.integers(0, max_side)) for _ in range(ndim))
    dtype = draw(DTYPES)
    values = draw(
        st.lists(FLOAT_VALUES, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))
    )
    with np.errstate(invalid="ignore"):
        arr = np.array(values, dtype=np.float64).reshape(shape)
        if dtype == "bool":
            return np.asarray(arr > 0)
        if dtype != "float32" and dtype != "float64":
            arr = np.nan_to_num(arr, nan=0, posinf=1, neginf=-1)
        return np.asarray(arr.astype(dtype))


@FUZZ
@given(arr=arrays(), as_tensor=st.booleans(), margin=st.sampled_from([0.0, 0.5, 1.0, -1.0]))
def test_fuzz_codes(arr, as_tensor, margin):
    COUNTS["codes"] += 1
    x = torch.from_numpy(arr.copy()) if as_tensor and arr.dtype != np.uint8 else arr
    finite = not np.issubdtype(arr.dtype, np.floating) or np.isfinite(arr).all()
    ok, out = expect_value_error(lambda: binarize(x), "v")
    assert ok == bool(finite)
    if ok:
        np.testing.assert_array_equal(np.asarray(out), np.where(arr >= 0, 1, -1))
    ok, out = expect_value_error(lambda: ternarize(x, margin), "v", "margin")
    assert ok == bool(finite and margin >= 0)
    if ok:
        expected = np.where(arr > margin, 1, np.where(arr < -margin, -1, 0))
        np.testing.assert_array_equal(np.asarray(out), expected)
    ok, packed = expect_value_error(lambda: pack_bits(x), "codes")
    valid = (
        arr.ndim == 2
        and arr.shape[1] > 0
        and arr.shape[1] % 8 == 0
        and (arr.dtype == np.bool_ or bool(np.isin(arr, (-1, 1)).all()) and finite)
    )
    assert ok == valid
    if ok:
        bits = arr if arr.dtype == np.bool_ else arr == 1
        expected = np.zeros((arr.shape[0], arr.shape[1] // 8), dtype=np.uint8)
        for i in range(arr.shape[0]):
            for j in range(arr.shape[1]):
                if bits[i, j]:
                    expected[i, j // 8] |= 1 << (j % 8)
        np.testing.assert_array_equal(packed, expected)
        np.testing.assert_array_equal(unpack_bits(packed, arr.shape[1]), np.where(bits, 1, -1))


@FUZZ
@given(arr=arrays(), num_bits=SCALARS)
def test_fuzz_unpack_bits(arr, num_bits):
    COUNTS["codes.unpack_bits"] += 1
    ok, out = expect_value_error(lambda: unpack_bits(arr, num_bits), "num_bits", "packed")
    valid = (
        is_int(num_bits)
        and num_bits > 0
        and num_bits % 8 == 0
        and arr.dtype == np.uint8
        and arr.ndim == 2
        and arr.shape[1] * 8 == num_bits
    )
    assert ok == valid
    if ok:
        assert out.shape == (arr.shape[0], num_bits)


# ------------------------------------------------------------------ distances
@FUZZ
@given(q=arrays(), r=arrays())
def test_fuzz_hamming_distance(q, r):
    COUNTS["distances"] += 1
    distance = HammingDistance()
    if q.dtype == np.uint8 or r.dtype == np.uint8 or q.dtype == np.bool_ or r.dtype == np.bool_:
        return  # PML distances take torch float embeddings; PML itself checks those
    query, ref = torch.from_numpy(q.astype(np.float64)), torch.from_numpy(r.astype(np.float64))
    if q.ndim != 2 or r.ndim != 2:
        return  # PML's BaseDistance asserts 2-D inputs itself
    finite = np.isfinite(q).all() and np.isfinite(r).all()
    ok, out = expect_value_error(lambda: distance(query, ref), "ref_emb", "v")
    assert ok == bool(finite and q.shape[1] == r.shape[1])
    if ok:
        bq, br = np.where(q >= 0, 1, -1), np.where(r >= 0, 1, -1)
        expected = (bq[:, None, :] != br[None, :, :]).sum(axis=2)
        np.testing.assert_array_equal(out.numpy(), expected)


# ------------------------------------------------------------------ metrics
def naive_map(q, ql, db, dl, topk):
    aps = []
    for i in range(len(q)):
        d = [sum((1 - a * b) / 2 for a, b in zip(q[i], db[j], strict=True)) for j in range(len(db))]
        order = sorted(range(len(db)), key=lambda j: (d[j], j))[: topk or len(db)]
        if ql.ndim == 1:
            rel = [ql[i] == dl[j] for j in order]
        else:
            rel = [bool((ql[i] * dl[j]).sum() > 0) for j in order]
        hits, total = 0, 0.0
        for rank, relevant in enumerate(rel, start=1):
            if relevant:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return sum(aps) / len(aps)


MAP_MUTATIONS = [
    None,
    ("query_codes", "nan"),
    ("db_codes", "value 2"),
    ("query_codes", "bits"),
    ("db_labels", "length"),
    ("query_labels", "column"),
    ("query_labels", "fraction"),
    ("db_labels", "strings"),
    ("topk", 0),
    ("topk", True),
    ("topk", 2.5),
    ("ties", "best"),
    ("db_codes", "empty"),
]


@FUZZ
@given(
    seed=st.integers(0, 2**16),
    nq=st.integers(1, 4),
    ndb=st.integers(1, 7),
    bits=st.integers(1, 9),
    multi=st.booleans(),
    ternary=st.booleans(),
    topk=st.one_of(st.none(), st.integers(1, 9), st.integers(1, 9).map(np.int64)),
    mutation=st.sampled_from(MAP_MUTATIONS),
    as_tensor=st.booleans(),
)
def test_fuzz_mean_average_precision(
    seed, nq, ndb, bits, multi, ternary, topk, mutation, as_tensor
):
    COUNTS["metrics.mAP"] += 1
    rng = np.random.default_rng(seed)
    values = (-1, 0, 1) if ternary else (-1, 1)
    q = rng.choice(values, size=(nq, bits)).astype(np.float32)
    db = rng.choice(values, size=(ndb, bits)).astype(np.float32)
    if multi:
        ql, dl = rng.integers(0, 2, (nq, 3)), rng.integers(0, 2, (ndb, 3))
    else:
        ql, dl = rng.integers(0, 3, nq), rng.integers(0, 3, ndb)
    args = dict(query_codes=q, query_labels=ql, db_codes=db, db_labels=dl, topk=topk)
    if mutation is not None:
        name, how = mutation
        if how == "nan":
            args[name] = q.copy()
            args[name][0, 0] = np.nan
        elif how == "value 2":
            args[name] = db * 0 + 2
        elif how == "bits":
            args[name] = np.ones((nq, bits + 1))
        elif how == "length":
            args[name] = dl[:-1] if len(dl) > 1 else np.concatenate([dl, dl])
        elif how == "column":
            args[name] = rng.integers(0, 3, (nq, 1))
        elif how == "fraction":
            args[name] = ql + 0.5
        elif how == "strings":
            args[name] = np.array(["a"] * ndb)
        elif how == "empty":
            args[name] = np.zeros((0, bits))
        else:
            args[name] = how
    if as_tensor:
        args = {
            k: torch.as_tensor(v) if isinstance(v, np.ndarray) and v.dtype.kind != "U" else v
            for k, v in args.items()
        }
    names = [mutation[0]] if mutation else ["?"]
    if mutation and mutation[0] == "query_codes" and mutation[1] == "bits":
        names.append("db_codes")
    # ternary codes with no -1 on one side look like 0/1 bits: refused, unless declared
    zero_one = [
        n for n, a in (("query_codes", q), ("db_codes", db))
        if (a == 0).any() and np.isin(a, (0, 1)).all() and not (mutation and mutation[0] == n)
    ]  # fmt: skip
    names += zero_one
    ok, value = expect_value_error(lambda: mean_average_precision(**args), *names)
    assert ok == (mutation is None and not zero_one)
    if ok:
        assert value == pytest.approx(naive_map(q, ql, db, dl, topk), abs=1e-9)
    if mutation is None and zero_one:
        from pml_hashing.evaluation import allow_zero_one_codes

        with allow_zero_one_codes():
            value = mean_average_precision(**args)
        assert value == pytest.approx(naive_map(q, ql, db, dl, topk), abs=1e-9)


# ------------------------------------------------------------------ losses
LOSS_MUTATIONS = [
    None,
    "numpy labels",
    "empty",
    "nan",
    "wrong bits",
    "label length",
    "label range",
    "float labels",
    "column labels",
    "multi-hot 2",
    "indices_tuple",
    "ref_emb",
    "3-D",
]


@FUZZ
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(1, 6),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    multi=st.booleans(),
    mutation=st.sampled_from(LOSS_MUTATIONS),
)
def test_fuzz_losses(seed, n, dtype, multi, mutation):
    COUNTS["losses"] += 1
    generator = torch.Generator().manual_seed(seed)
    miner = RandomTargetMiner(3, 8)
    embeddings = torch.randn(n, 8, generator=generator, dtype=dtype)
    labels = (
        torch.randint(0, 2, (n, 3), generator=generator)
        if multi
        else torch.randint(0, 3, (n,), generator=generator)
    )
    call = dict(embeddings=embeddings, labels=labels)
    names = {
        "nan": "embeddings",
        "wrong bits": "embeddings",
        "3-D": "embeddings",
        "indices_tuple": "indices_tuple",
        "ref_emb": "ref_emb",
    }
    if mutation == "numpy labels":
        call["labels"] = labels.numpy()
    elif mutation == "empty":
        call = dict(embeddings=embeddings[:0], labels=labels[:0])
    elif mutation == "nan":
        call["embeddings"] = embeddings.clone()
        call["embeddings"][0, 0] = float("nan")
    elif mutation == "wrong bits":
        call["embeddings"] = torch.randn(n, 9, dtype=dtype)
    elif mutation == "label length":
        call["labels"] = torch.cat([labels, labels[:1]])
    elif mutation == "label range":
        call["labels"] = labels * 0 + 7 if not multi else labels * 0 + 2
    elif mutation == "float labels":
        call["labels"] = torch.zeros(n, dtype=dtype)
    elif mutation == "column labels":
        call["labels"] = labels.reshape(-1, 1)[:n] if not multi else labels[:, :1]
    elif mutation == "multi-hot 2":
        call["labels"] = torch.full((n, 3), 2)
    elif mutation == "indices_tuple":
        call["indices_tuple"] = (torch.tensor([0]),) * 3
    elif mutation == "ref_emb":
        call["ref_emb"] = embeddings
    elif mutation == "3-D":
        call["embeddings"] = embeddings[:, :, None]
    polarization = PolarizationLoss(margin=1.0, target_miner=miner)
    valid = mutation in (None, "numpy labels", "empty")
    ok, loss = expect_value_error(lambda: polarization(**call), names.get(mutation, "labels"))
    assert ok == valid
    if ok:
        if mutation == "empty":
            assert float(loss) == 0.0
        else:
            targets = miner.targets.to(dtype)
            per_sample = []
            for i in range(n):
                rows = [int(labels[i])] if not multi else torch.nonzero(labels[i]).ravel().tolist()
                per_sample.append(
                    sum(float(torch.relu(1.0 - embeddings[i] * targets[c]).sum()) for c in rows)
                )
            assert float(loss) == pytest.approx(sum(per_sample) / n, rel=1e-5)
    similarity = BDNNSimilarityLoss()
    bdnn_valid = valid or mutation in ("wrong bits", "label range", "ref_emb")
    if mutation == "ref_emb":
        call["ref_labels"] = call["labels"]
    ok, loss = expect_value_error(lambda: similarity(**call), names.get(mutation, "labels"))
    assert ok == bdnn_valid or (mutation == "label range" and multi)
    if ok:
        assert torch.isfinite(loss)


# ------------------------------------------------------------------ miners
@FUZZ
@given(num_classes=SCALARS, num_bits=SCALARS, seed=st.integers(0, 5))
def test_fuzz_target_miners(num_classes, num_bits, seed):
    COUNTS["miners"] += 1
    for miner_class in (RandomTargetMiner, HadamardTargetMiner, AdaptiveTargetMiner):
        ok, miner = expect_value_error(
            lambda mc=miner_class: mc(num_classes, num_bits, seed=seed), "num_classes", "num_bits"
        )
        valid = is_int(num_classes) and is_int(num_bits) and num_classes >= 1 and num_bits >= 1
        # Stated memory bounds: num_bits <= 2**24, a codebook of at most 2**28 entries.
        valid = valid and num_bits <= 2**24 and int(num_classes) * int(num_bits) <= 2**28
        if miner_class is HadamardTargetMiner and valid:
            valid = 2 <= num_bits <= 4096 and not num_bits & (num_bits - 1)
            valid = valid and num_classes <= 2 * num_bits - 2
        assert ok == valid, (miner_class, num_classes, num_bits)
        if ok:
            targets = miner.targets
            assert targets.shape == (int(num_classes), int(num_bits))
            assert bool(((targets == 1) | (targets == -1)).all())


# ------------------------------------------------------------------ the index
@FUZZ
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(0, 12),
    nq=st.integers(0, 3),
    k=SCALARS,
    radius=SCALARS,
    ternary_query=st.booleans(),
)
def test_fuzz_binary_index_search(seed, n, nq, k, radius, ternary_query):
    COUNTS["index.search"] += 1
    rng = np.random.default_rng(seed)
    db = rng.choice((-1, 1), size=(n, 16))
    q = rng.choice((-1, 0, 1) if ternary_query else (-1, 1), size=(nq, 16))
    index = BinaryIndex(16, device="cpu")
    index.add(db)
    query_is_ternary = nq > 0 and bool((q == 0).any())
    expected = (q[:, None, :] != db[None, :, :]).sum(axis=2)
    ok, result = expect_value_error(lambda: index.search(q, k), "k", "codes")
    assert ok == (is_int(k) and k >= 1 and not query_is_ternary)
    if ok:
        distances, ids = result
        kept = min(int(k), n)
        assert ids.shape == (nq, kept)
        for i in range(nq):
            order = sorted(range(n), key=lambda j: (expected[i, j], j))[:kept]
            assert ids[i].tolist() == order
            assert distances[i].tolist() == [expected[i, j] for j in order]
    ok, result = expect_value_error(lambda: index.range_search(q, radius), "radius", "codes")
    assert ok == (is_int(radius) and radius >= 0 and not query_is_ternary)
    if ok:
        lims, distances, ids = result
        for i in range(nq):
            found = ids[lims[i] : lims[i + 1]].tolist()
            assert found == [
                j
                for j in sorted(range(n), key=lambda j: (expected[i, j], j))
                if expected[i, j] <= radius
            ]
    ternary = TernaryFlatIndex(16)
    ternary.add(db)
    ok, result = expect_value_error(lambda: ternary.search(q, k), "k", "codes")
    assert ok == (is_int(k) and k >= 1)
    if ok:
        assert result[1].shape == (nq, min(int(k), n))


def _saved_index_bytes() -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    index = BinaryIndex(16, device="cpu")
    index.add(rng.choice((-1, 1), size=(6, 16)), ids=np.arange(100, 106))
    queries = rng.choice((-1, 1), size=(2, 16))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db.index"
        index.save(path)
        return path.read_bytes(), queries, index.search(queries, 6)


SAVED_INDEX, SAVED_QUERIES, SAVED_RESULT = _saved_index_bytes()


@FUZZ
@given(
    cut=st.integers(0, len(SAVED_INDEX)),
    flip=st.one_of(st.none(), st.integers(0, 8 * len(SAVED_INDEX) - 1)),
)
def test_fuzz_index_load_truncated_and_bit_flipped(cut, flip):
    COUNTS["index.load"] += 1
    data = bytearray(SAVED_INDEX if flip is not None else SAVED_INDEX[:cut])
    if flip is not None:
        data[flip // 8] ^= 1 << (flip % 8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "db.index"
        path.write_bytes(bytes(data))
        ok, index = expect_value_error(lambda: BinaryIndex.load(path), str(path))
    if ok:
        # A file that loads answers like the original (a flip in the JSON's free space, if any).
        distances, ids = index.search(SAVED_QUERIES, 6)
        np.testing.assert_array_equal(distances, SAVED_RESULT[0])
        np.testing.assert_array_equal(ids, SAVED_RESULT[1])
    else:
        assert flip is not None or cut < len(SAVED_INDEX)


# ------------------------------------------------------------------ the command line
CLI_CODES = st.sampled_from(
    ["ok", "ternary", "zero-one", "strings", "1-D", "empty", "truncated", "npy", "nan", "12 bits"]
)


def _write_codes(folder: Path, kind: str, rng) -> str:
    path = folder / f"{kind}.npz"
    codes = rng.choice((-1, 1), size=(5, 16)).astype(np.float32)
    labels = rng.integers(0, 3, 5)
    if kind == "ternary":
        codes[0, 0] = 0
    elif kind == "zero-one":
        codes = (codes > 0).astype(np.int64)
    elif kind == "strings":
        codes = np.array([["x"] * 16] * 5)
    elif kind == "1-D":
        codes = codes[0]
    elif kind == "empty":
        codes = codes[:0]
        labels = labels[:0]
    elif kind == "nan":
        codes[1, 1] = np.nan
    elif kind == "12 bits":
        codes = codes[:, :12]
    if kind == "npy":
        path = folder / "codes.npy"
        np.save(path, codes)
        return str(path)
    np.savez(path, codes=codes, labels=labels)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:150])
    return str(path)


def run_cli(argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code
    return code, err.getvalue()


@settings(FUZZ, max_examples=max(FUZZ.max_examples * 3 // 4, 1))
@given(
    seed=st.integers(0, 2**16),
    db_kind=CLI_CODES,
    query_kind=CLI_CODES,
    k=st.sampled_from(["1", "3", "0", "-3", "1000000000", "x", None]),
    out_folder=st.sampled_from(["here", "missing", "is a folder", "an input"]),
    action=st.sampled_from(["search", "evaluate"]),
)
def test_fuzz_cli(seed, db_kind, query_kind, k, out_folder, action):
    COUNTS["cli"] += 1
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        db, query = _write_codes(folder, db_kind, rng), _write_codes(folder, query_kind, rng)
        index = str(folder / "db.index")
        code, err = run_cli(["index", "build", "--codes", db, "--out", index])
        assert code in (0, 2), err
        good_db = db_kind in ("ok", "nan")  # NaN outputs are binarized... or refused
        if code == 2:
            assert err.startswith("pml-hashing: error: ") and "Traceback" not in err
            assert db in err or "codes" in err, err
        elif not good_db:
            # Only valid inputs build an index; empty codes give an empty index.
            assert db_kind == "empty", (db_kind, err)
        out = {"here": folder / "r.npz", "missing": folder / "no" / "r.npz", "is a folder": folder}
        out["an input"] = Path(query if action == "search" else db)
        before = out["an input"].read_bytes() if out["an input"].is_file() else None
        if action == "search":
            argv = ["index", "search", "--index", index, "--codes", query]
            argv += ["--out", str(out[out_folder])] + (["-k", k] if k is not None else [])
        else:
            argv = ["index", "evaluate", "--query", query, "--database", db]
            argv += ["--json", str(out[out_folder])] + (["--topk", k] if k is not None else [])
        code, err = run_cli(argv)
        assert code in (0, 2), err
        if code == 2:
            assert err.startswith(("pml-hashing: error: ", "usage: ")), err
            assert "Traceback" not in err
        else:
            assert out_folder == "here"
        if before is not None:  # an output that names an input never replaces it
            assert out["an input"].read_bytes() == before


# ------------------------------------------------------------------ file loaders
def _cifar_batch() -> bytes:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    return pickle.dumps({b"data": data, b"labels": [0, 3, 9, 1]}, protocol=2)


CIFAR_BATCH = _cifar_batch()


@FUZZ
@given(
    cut=st.integers(0, len(CIFAR_BATCH)),
    flip=st.one_of(st.none(), st.integers(0, 8 * len(CIFAR_BATCH) - 1)),
)
def test_fuzz_cifar10_batch(cut, flip):
    COUNTS["loader.cifar10"] += 1
    data = bytearray(CIFAR_BATCH if flip is not None else CIFAR_BATCH[:cut])
    if flip is not None:
        data[flip // 8] ^= 1 << (flip % 8)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "data_batch_1"
        path.write_bytes(bytes(data))
        ok, result = expect_value_error(lambda: read_cifar10_batch(path), str(path))
    if ok:
        images, labels = result
        assert images.dtype == np.uint8 and images.shape[1:] == (32, 32, 3)
        assert labels.dtype == np.int64 and labels.shape == (images.shape[0],)
        assert ((labels >= 0) & (labels < 10)).all()
    else:
        assert flip is not None or cut < len(CIFAR_BATCH)


LIST_TOKENS = st.sampled_from(["img.jpg", "a/b.png", "0", "1", "2", "x", "", " ", "\t", "é", "1.0"])


@FUZZ
@given(
    lines=st.lists(st.lists(LIST_TOKENS, max_size=5).map(" ".join), max_size=6),
    num_classes=st.integers(1, 3),
    garbage=st.sampled_from([b"", b"\xff\xfe", b"\x00"]),
)
def test_fuzz_image_list(lines, num_classes, garbage):
    COUNTS["loader.list file"] += 1
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "list.txt"
        path.write_bytes(garbage + "\n".join(lines).encode("utf-8"))
        ok, result = expect_value_error(lambda: read_image_list(path, num_classes), str(path))
    expected_paths, expected_labels, valid = [], [], True
    try:
        text = (garbage + "\n".join(lines).encode()).decode("utf-8")
    except UnicodeDecodeError:
        valid = False
        text = ""
    for line in text.split("\n"):
        parts = line.split()
        if not parts:
            continue
        if len(parts) - 1 != num_classes or any(t not in ("0", "1") for t in parts[1:]):
            valid = False
            break
        expected_paths.append(parts[0])
        expected_labels.append([int(t) for t in parts[1:]])
    assert ok == valid
    if ok:
        paths, labels = result
        assert paths == expected_paths
        np.testing.assert_array_equal(
            labels.reshape(-1, num_classes), np.array(expected_labels).reshape(-1, num_classes)
        )


JSON_VALUES = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-2, 12),
        st.floats(allow_nan=False),
        st.text(max_size=3),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    name=st.one_of(st.just("digits"), JSON_VALUES),
    train=st.one_of(st.lists(st.integers(-2, 12), max_size=4), JSON_VALUES),
    seed=st.one_of(st.integers(0, 5), JSON_VALUES),
    wrap=st.sampled_from(["object", "list", "truncated"]),
)
def test_fuzz_split_file(name, train, seed, wrap):
    COUNTS["loader.split file"] += 1
    payload = {"name": name, "seed": seed, "splits": {"train": train}}
    text = json.dumps(payload if wrap != "list" else [payload])
    if wrap == "truncated":
        text = text[: len(text) // 2]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "splits.json"
        path.write_text(text)
        ok, result = expect_value_error(
            lambda: read_splits(path, "digits", 10, {"train": 2}), str(path)
        )
    valid = (
        wrap == "object"
        and name == "digits"
        and is_int(seed)
        and isinstance(train, list)
        and len(train) == 2
        and all(is_int(i) and 0 <= i < 10 for i in train)
    )
    assert ok == valid
    if ok:
        splits, got_seed = result
        assert splits["train"].tolist() == sorted(train) and got_seed == seed


# ------------------------------------------------------------------ encode
def _encode_model(channels: int):
    from pml_hashing.models import HashingModel

    torch.manual_seed(0)
    return HashingModel("hashing_cnn_small", 16, in_chans=channels, widths=(4, 8)).eval()


ENCODE_MODELS = {channels: _encode_model(channels) for channels in (1, 3)}


def _encode_reference(model, images: torch.Tensor, margin) -> np.ndarray:
    """+1 where v >= 0, else -1; 0 where |v| <= margin, written plainly."""
    with torch.no_grad():
        v = model(images).numpy()
    codes = np.where(v >= 0, 1, -1)
    if margin is not None:
        codes[np.abs(v) <= margin] = 0
    return codes.astype(np.int8)


def _image_file(folder: Path, i: int, kind: str, rng) -> Path:
    from PIL import Image

    path = folder / f"{i}.png"
    mode = {"gray": "L", "rgb": "RGB", "rgba": "RGBA", "truncated": "RGB"}.get(kind, "RGB")
    shape = (9, 11) if mode == "L" else (9, 11, len(mode))
    Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(path)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif kind == "garbage":
        path.write_bytes(b"not an image at all")
    elif kind == "missing":
        path.unlink()
    return path


@FUZZ
@given(
    seed=st.integers(0, 2**16),
    channels=st.sampled_from([1, 3]),
    kind=st.sampled_from(["tensor", "files", "pil", "dataset"]),
    shape=st.sampled_from([(2, 1, 12, 12), (3, 3, 12, 12), (1, 12, 12), (12, 12), (0, 1, 8, 8)]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64]),
    files=st.lists(
        st.sampled_from(["gray", "rgb", "rgba", "truncated", "garbage", "missing"]), max_size=3
    ),
    batch_size=SCALARS,
    margin=st.sampled_from([None, 0.0, 0.1, -1.0, float("nan"), "abc"]),
)
def test_fuzz_encode(seed, channels, kind, shape, dtype, files, batch_size, margin):
    """pml_hashing.encode: the plain reference's codes, or an error naming the argument or
    the file (TypeError only for a kind of data it does not take)."""
    from PIL import Image
    from torch.utils.data import TensorDataset

    from pml_hashing.export import encode

    COUNTS["encode"] += 1
    rng = np.random.default_rng(seed)
    model = ENCODE_MODELS[channels]
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        paths = [_image_file(folder, i, f, rng) for i, f in enumerate(files)]
        if kind == "tensor":
            data = torch.from_numpy(rng.normal(size=shape)).to(dtype)
        elif kind == "dataset":  # a dataset of the other channel count when shape says 3
            data_channels = 3 if shape[-3:-2] == (3,) else channels
            images = torch.from_numpy(rng.normal(size=(4, data_channels, 12, 12))).float()
            data = TensorDataset(images, torch.arange(4))
        elif kind == "pil":
            data = [Image.fromarray(rng.integers(0, 255, (9, 11, 3), dtype=np.uint8))]
        else:
            data = paths
        names = ["batch_size", "ternary_margin", "data", "cannot be read", "channels"]
        try:
            codes = encode(data, model=model, batch_size=batch_size, ternary_margin=margin)
        except ValueError as error:
            assert any(n in str(error) for n in names), str(error)
            return
        except TypeError as error:
            assert "data must be" in str(error) or "list items must be" in str(error)
            return
    assert is_int(batch_size) and batch_size >= 1
    assert margin is None or (isinstance(margin, float) and margin >= 0)
    assert codes.dtype == torch.int8
    if kind == "tensor":
        batch = data if data.ndim == 4 else data.unsqueeze(0)
        expected = _encode_reference(model, batch.float(), margin)
    elif kind == "dataset":
        expected = _encode_reference(model, images, margin)
    else:
        assert kind == "pil" or all(f in ("gray", "rgb", "rgba") for f in files), files
        assert codes.shape == (len(data), 16)
        return  # the transform's reference is tested in test_export.py
    np.testing.assert_array_equal(codes.numpy(), expected)


# ------------------------------------------------------------------ the recipes' arguments
RECIPE_FLAGS = {
    "recipes/train.py": [
        "--bits", "--epochs", "--dataset", "--method", "--target-miner", "--unseen-classes",
        "--backbone-kwargs", "--data-kwargs", "--lr", "--radius", "--topk", "--seed",
        "--num-workers", "--ternary-threshold", "--resume", "--bogus", "--overwrite",
    ],
    "recipes/evaluate.py": [
        "--checkpoint", "--topk", "--ties", "--radius", "--batch-size", "--out", "--bogus",
    ],
    "recipes/encode.py": ["--checkpoint", "--split", "--out", "--batch-size", "--bogus"],
}  # fmt: skip
RECIPE_VALUES = st.sampled_from(
    ["8", "64", "0", "-1", "1.5", "x", "", "digits", "dpn", "lsh", "auto", "[3]", "1,1",
     "{widths: [8]}", "{batchnorm: false}", "{: }", "none", "latest", "expected", "query",
     "10000000", "nan", "inf"]
)  # fmt: skip


def _parse_recipe(program: str, argv: list[str]):
    """The recipe's own parsing, stopped before any work: train.py's parse_config (flags,
    then the config's checks); evaluate.py and encode.py's parser, built in their main()."""
    if program == "recipes/train.py":
        from pml_hashing.training import parse_config

        return parse_config(argv)
    return parse_recipe_main(program, argv)


@FUZZ
@given(
    program=st.sampled_from(sorted(RECIPE_FLAGS)),
    data=st.data(),
)
def test_fuzz_recipe_arguments(program, data):
    """Any argv: parsed, or exit 2 with one "error:" line from argparse, or a ValueError
    naming a key or flag of the argv (train.py's recipe turns it into that exit 2)."""
    COUNTS["recipe arguments"] += 1
    pairs = data.draw(
        st.lists(st.tuples(st.sampled_from(RECIPE_FLAGS[program]), RECIPE_VALUES), max_size=4)
    )
    argv = [token for flag, value in pairs for token in (flag, value)]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            _parse_recipe(program, argv)
        except SystemExit as exit_:
            assert exit_.code == 2, (argv, exit_.code)
            message = err.getvalue()
            assert "error:" in message and "Traceback" not in message, message
        except ValueError as error:
            keys = {flag.lstrip("-").replace("-", "_") for flag, _ in pairs}
            keys |= {flag for flag, _ in pairs}
            assert any(key in str(error) for key in keys), (argv, str(error))


# ------------------------------------------------------------------ shard folders (engines)
SHARD_FILES = ("shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet", "_manifest.json")
# JSON values a hand-edited or half-written manifest may hold where the encode wrote others
JSON_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 70), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _shard_folder(folder: Path) -> dict:
    """A 2-shard folder of 16-bit codes as ``pml-hashing encode --num-shards 2`` writes it."""
    from pml_hashing.codes import pack_bits as pack
    from pml_hashing.shards import ShardWriter, write_manifest_if_complete

    rng = np.random.default_rng(0)
    codes = rng.choice((-1, 1), size=(7, 16)).astype(np.int8)
    labels = rng.integers(0, 3, size=7)
    info = {"num_bits": 16, "checkpoint_sha256": "0" * 64}
    for shard, rows in enumerate((range(0, 4), range(4, 7))):
        writer = ShardWriter(folder, shard, 2, 16, multi_label=False, with_outputs=False, info=info)
        rows = np.asarray(rows)
        writer.write(rows, labels[rows], pack(codes[rows]))
        writer.close()
    assert write_manifest_if_complete(folder, 2, info) is not None
    return {"codes": codes, "labels": labels, "ids": np.arange(7)}


@FUZZ
@given(
    target=st.sampled_from(SHARD_FILES),
    damage=st.sampled_from(["truncate", "flip", "delete", "manifest-key"]),
    where=st.floats(0, 1, exclude_max=True),
    key=st.sampled_from(["shards", "num_bits", "rows", "format", "outputs"]),
    junk=JSON_JUNK,
)
def test_fuzz_shard_folder(target, damage, where, key, junk):
    from pml_hashing.codes import read_codes

    COUNTS["read_codes(shards)"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "codes"
        expected = _shard_folder(folder)
        path = folder / target
        data = bytearray(path.read_bytes())
        if damage == "truncate":
            path.write_bytes(bytes(data[: int(where * len(data))]))
        elif damage == "flip":
            bit = int(where * 8 * len(data))
            data[bit // 8] ^= 1 << (bit % 8)
            path.write_bytes(bytes(data))
        elif damage == "delete":
            path.unlink()
        else:
            manifest = json.loads((folder / "_manifest.json").read_text())
            manifest[key] = junk
            (folder / "_manifest.json").write_text(json.dumps(manifest))
        ok, read = expect_value_error(lambda: read_codes(str(folder)), str(folder))
    if ok:
        # what reads must be the codes that were written (a flip the digests cannot see is
        # one inside the manifest's free text, which changes nothing read)
        for name in ("codes", "labels", "ids"):
            np.testing.assert_array_equal(read[name], expected[name])
