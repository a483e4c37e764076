"""Every bad input gives a clear ValueError (or the CLI's exit status 2), never a
silent wrong number or a traceback from deep inside a library. One test per reported case."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_hashing import _validation
from pml_hashing.cli import main
from pml_hashing.codes import pack_bits
from pml_hashing.data.cifar10 import read_cifar10_batch
from pml_hashing.data.image_list_dataset import ImageListDataset, read_image_list
from pml_hashing.data.protocol import read_splits
from pml_hashing.evaluation import HashingAccuracyCalculator, mean_average_precision
from pml_hashing.index import BinaryIndex, TernaryFlatIndex
from pml_hashing.losses import BDNNSimilarityLoss, MultiLabelLoss, PolarizationLoss
from pml_hashing.miners import HadamardTargetMiner, RandomTargetMiner

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ silent wrong results
@pytest.mark.parametrize(
    "codes, what",
    [
        (np.array([[0, 1] * 8, [1, 0] * 8]), "0/1 bits"),
        (np.array([[0, 1, -1, 1] * 4, [1, 1, 1, -1] * 4]), "ternary codes"),
        (torch.tensor([[0.0, 1.0] * 8, [1.0, 0.0] * 8]), "0/1 bits"),
    ],
)
def test_binary_index_refuses_zero_one_and_ternary_codes(codes, what):
    index = BinaryIndex(16, device="cpu")
    with pytest.raises(ValueError, match=f"codes look like {what}"):
        index.add(codes)
    index.add(np.ones((2, 16)))
    with pytest.raises(ValueError, match=f"codes look like {what}"):
        index.search(codes, 1)
    with pytest.raises(ValueError, match=f"codes look like {what}"):
        index.range_search(codes, 1)


def test_binary_index_still_binarizes_raw_outputs_and_reads_packed_codes():
    rng = np.random.default_rng(0)
    outputs = rng.normal(size=(6, 16))
    outputs[0, 0] = 0.0  # an exact 0 among real outputs is binarized as +1
    signs = np.where(outputs >= 0, 1, -1)
    index = BinaryIndex(16, device="cpu")
    index.add(outputs)
    distances, ids = index.search(pack_bits(signs), 6)
    expected = (signs[:, None, :] != signs[None, :, :]).sum(axis=2)
    np.testing.assert_array_equal(np.take_along_axis(expected, ids, axis=1), distances)


def test_map_refuses_labels_of_shape_n_by_1():
    codes = np.where(np.random.default_rng(0).normal(size=(6, 8)) >= 0, 1, -1)
    labels = np.array([[0], [1], [0], [1], [1], [0]])
    with pytest.raises(ValueError, match=r"query_labels of shape \(N, 1\) are ambiguous"):
        mean_average_precision(codes, labels, codes, labels)
    flat = labels.ravel()
    value = mean_average_precision(codes, flat, codes, flat)
    assert 0 <= value <= 1


def test_accuracy_calculator_reads_n_by_1_labels_as_class_ids_like_pml():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(12, 8, generator=generator)
    labels = torch.randint(0, 3, (12,), generator=generator)
    calculator = HashingAccuracyCalculator(include=("hashing_map",))
    column = calculator.get_accuracy(embeddings, labels[:, None], embeddings, labels[:, None])
    flat = calculator.get_accuracy(embeddings, labels, embeddings, labels)
    assert column["hashing_map"] == flat["hashing_map"]
    codes = np.where(embeddings.numpy() >= 0, 1, -1)
    expected = mean_average_precision(codes, labels, codes, labels)
    assert flat["hashing_map"] == pytest.approx(expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("labels", [torch.zeros(0, dtype=torch.long), torch.zeros((0, 3))])
def test_polarization_loss_on_empty_batch_is_zero_with_a_gradient(dtype, labels):
    loss_fn = PolarizationLoss(num_classes=3, num_bits=8)
    embeddings = torch.zeros((0, 8), dtype=dtype, requires_grad=True)
    loss = loss_fn(embeddings, labels)
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert embeddings.grad.shape == (0, 8)


# ------------------------------------------------------------------ tracebacks
@pytest.mark.parametrize("k", [10**9, np.int64(10**12)])
def test_search_with_huge_k_is_clamped_not_allocated(k):
    index = BinaryIndex(16, device="cpu")
    index.add(np.ones((10, 16)))
    distances, ids = index.search(np.ones((3, 16)), k)
    assert ids.shape == (3, 10) and (distances == 0).all()
    ternary = TernaryFlatIndex(16)
    ternary.add(np.ones((10, 16)))
    assert ternary.search(np.ones((3, 16)), k)[1].shape == (3, 10)


def test_range_search_with_huge_radius_keeps_everything():
    index = BinaryIndex(16, device="cpu")
    index.add(np.ones((4, 16)))
    lims, distances, ids = index.range_search(-np.ones((2, 16)), 10**12)
    assert lims.tolist() == [0, 4, 8] and (distances == 16).all()


@pytest.mark.parametrize(
    "change",
    [
        {"kind": ["flat"]},
        {"kind": {"a": 1}},
        {"num_bits": "sixteen"},
        {"params": [1, 2]},
        {"params": {"nprobe": "x"}},
        {"ntotal": None},
    ],
)
def test_load_with_malformed_metadata_names_the_file(tmp_path, change):
    path = tmp_path / "db.index"
    index = BinaryIndex(16, device="cpu")
    index.add(np.ones((3, 16)))
    index.save(path)
    data = path.read_bytes()
    meta_len = struct.unpack_from("<Q", data, 8)[0]
    meta = json.loads(data[16 : 16 + meta_len])
    meta.update(change)
    new_meta = json.dumps(meta).encode()
    path.write_bytes(data[:8] + struct.pack("<Q", len(new_meta)) + new_meta + data[16 + meta_len :])
    with pytest.raises(ValueError, match=f"{path} is not a readable pml-hashing BinaryIndex"):
        BinaryIndex.load(path)


def test_load_of_a_missing_file_or_a_folder_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        BinaryIndex.load(tmp_path / "missing.index")
    with pytest.raises(ValueError, match="not a regular file"):
        BinaryIndex.load(tmp_path)


def test_polarization_loss_takes_numpy_labels():
    loss_fn = PolarizationLoss(num_classes=3, num_bits=8)
    embeddings = torch.randn(4, 8)
    expected = loss_fn(embeddings, torch.tensor([0, 1, 2, 0]))
    np.testing.assert_allclose(float(loss_fn(embeddings, np.array([0, 1, 2, 0]))), float(expected))
    multi_hot = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 1], [1, 0, 0]])
    assert torch.isfinite(loss_fn(embeddings, multi_hot))


def test_numpy_integers_are_integers_and_bools_are_not():
    miner = HadamardTargetMiner(num_classes=np.int64(5), num_bits=np.int64(16))
    assert miner.num_bits == 16 and isinstance(miner.num_bits, int)
    with pytest.raises(ValueError, match="num_bits must be a power of two"):
        HadamardTargetMiner(num_classes=3, num_bits=np.int64(12))
    calculator = HashingAccuracyCalculator(hashing_topk=np.int64(5))
    assert calculator.hashing_topk == 5 and isinstance(calculator.hashing_topk, int)
    assert RandomTargetMiner(np.int32(3), np.uint8(8)).num_classes == 3
    index = BinaryIndex(np.int64(16), device="cpu", kind="ivf", nlist=np.int16(2))
    assert index.params["nlist"] == 2
    for bad in (True, np.bool_(True), 2.0, "8"):
        with pytest.raises(ValueError, match="num_bits must be"):
            HadamardTargetMiner(num_classes=3, num_bits=bad)
        with pytest.raises(ValueError, match="hashing_topk must be"):
            HashingAccuracyCalculator(hashing_topk=bad)


def test_losses_refuse_indices_tuple_and_ref_emb_out_loud():
    embeddings, labels = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    pairs = (torch.tensor([0]), torch.tensor([3]), torch.tensor([0]), torch.tensor([1]))
    for loss_fn in (PolarizationLoss(num_classes=3, num_bits=8), BDNNSimilarityLoss()):
        assert isinstance(loss_fn, MultiLabelLoss)
        with pytest.raises(ValueError, match="indices_tuple is not supported"):
            loss_fn(embeddings, labels, indices_tuple=pairs)
    with pytest.raises(ValueError, match="ref_emb is not supported"):
        PolarizationLoss(num_classes=3, num_bits=8)(embeddings, labels, ref_emb=embeddings)
    # BDNNSimilarityLoss supports a reference set.
    assert torch.isfinite(BDNNSimilarityLoss()(embeddings, labels, None, embeddings, labels))


def test_polarization_nan_raises_at_once_on_cpu():
    loss_fn = PolarizationLoss(num_classes=3, num_bits=8)
    embeddings = torch.randn(4, 8)
    embeddings[1, 2] = float("nan")
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        loss_fn(embeddings, torch.tensor([0, 1, 2, 0]))


class _FlagTensor:
    """Stands in for a 0-d CUDA flag: counts host reads (``bool()``), the sync to avoid."""

    reads = 0

    def __init__(self, value: bool):
        self.value = value

    def __or__(self, other):
        return _FlagTensor(self.value or other.value)

    def __bool__(self):
        _FlagTensor.reads += 1
        return self.value


def test_deferred_checks_raise_on_the_nth_call_and_on_flush():
    _FlagTensor.reads = 0
    checks = _validation.DeferredChecks(every=5)
    for _ in range(4):
        checks.add(_FlagTensor(False), "embeddings contain NaN or infinite values")
    assert _FlagTensor.reads == 0
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        checks.add(_FlagTensor(True), "embeddings contain NaN or infinite values")
    assert _FlagTensor.reads == 1
    checks.add(_FlagTensor(True), "embeddings contain NaN or infinite values")
    assert _FlagTensor.reads == 1
    with pytest.raises(ValueError, match="last 5 calls"):
        checks.raise_if_set()  # what PolarizationLoss.end_epoch does


def test_polarization_loss_defers_its_checks_on_a_non_cpu_device(monkeypatch):
    """The device path without a GPU: the meta device has no data, so any host read of a
    flag would raise; the loss must only queue its checks on it."""
    loss_fn = PolarizationLoss(num_classes=3, num_bits=8)
    embeddings = torch.randn(4, 8, device="meta")
    loss_fn.check_embeddings(embeddings)
    _validation.check_hash_outputs(embeddings, deferred=loss_fn.deferred_checks)
    labels = _validation.label_tensor(
        torch.tensor([0, 1, 2, 5], device="meta"),
        num_classes=3,
        deferred=loss_fn.deferred_checks,
    )
    assert labels.device.type == "meta"
    assert set(loss_fn.deferred_checks.flags) == {
        "embeddings contain NaN or infinite values",
        "labels must be in [0, num_classes) = [0, 3)",
    }


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_polarization_loss_makes_no_host_sync_per_step_on_cuda():
    loss_fn = PolarizationLoss(num_classes=3, num_bits=8)
    embeddings = torch.randn(4, 8, device="cuda", requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0], device="cuda")
    loss_fn(embeddings, labels)  # warm-up (lazy CUDA init, codebook copy)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            loss_fn(embeddings, labels).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    bad = embeddings.detach().clone()
    bad[0, 0] = float("nan")
    loss_fn(bad, labels)
    with pytest.raises(ValueError, match="embeddings contain NaN or infinite values"):
        loss_fn.end_epoch()


# ------------------------------------------------------------------ the command line
def _write(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _cli_error(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pml-hashing: error: ") and "Traceback" not in err
    return err


def test_cli_errors_exit_2_with_a_message(tmp_path, capsys):
    codes = _write(tmp_path / "c.npz", codes=np.ones((3, 16)), labels=np.arange(3))
    index_path = str(tmp_path / "db.index")
    assert main(["index", "build", "--codes", codes, "--out", index_path]) == 0
    capsys.readouterr()
    out = str(tmp_path / "r.npz")
    search = ["index", "search", "--codes", codes, "--out", out]
    assert "no such file" in _cli_error(
        [*search, "--index", str(tmp_path / "no"), "-k", "1"], capsys
    )
    assert "not a regular file" in _cli_error(
        [*search, "--index", str(tmp_path), "-k", "1"], capsys
    )
    truncated = tmp_path / "t.npz"
    truncated.write_bytes(Path(codes).read_bytes()[:100])
    err = _cli_error(["index", "build", "--codes", str(truncated), "--out", index_path], capsys)
    assert f"{truncated} is not a readable .npz file" in err
    npy = tmp_path / "c.npy"
    np.save(npy, np.ones((3, 16)))
    err = _cli_error(["index", "build", "--codes", str(npy), "--out", index_path], capsys)
    assert "an .npz archive of named arrays is expected" in err
    strings = _write(tmp_path / "s.npz", codes=np.array([["a"] * 16] * 2))
    err = _cli_error(["index", "build", "--codes", strings, "--out", index_path], capsys)
    assert "codes must be a numeric array" in err
    missing_folder = str(tmp_path / "nowhere" / "x.npz")
    err = _cli_error([*search[:-1], missing_folder, "--index", index_path, "-k", "1"], capsys)
    assert "--out" in err and "does not exist" in err
    empty = _write(tmp_path / "e.npz", codes=np.ones((0, 16)))
    err = _cli_error(
        ["index", "search", "--codes", empty, "--out", out, "--index", index_path, "-k", "-3"],
        capsys,
    )
    assert "-k must be a positive integer; got -3" in err


def test_cli_evaluate_checks_the_json_path_before_printing(tmp_path, capsys):
    codes = _write(tmp_path / "c.npz", codes=np.ones((3, 16)), labels=np.arange(3))
    argv = ["index", "evaluate", "--query", codes, "--database", codes]
    err = _cli_error([*argv, "--json", str(tmp_path / "no" / "m.json")], capsys)
    assert "--json" in err
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------ file loaders
@pytest.mark.parametrize(
    "content, match",
    [
        (b"", "is not readable as a CIFAR-10 python batch"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})[:40], "is not"),
        (pickle.dumps([1, 2, 3]), "got a list"),
        (pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}), "labels"),
    ],
)
def test_cifar10_bad_batches_name_the_file(tmp_path, content, match):
    path = tmp_path / "data_batch_1"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as error:
        read_cifar10_batch(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    "content",
    ["not json", "[1, 2]", '{"name": 3}', '{"name": "digits", "splits": {"train": ["a"]}}'],
)
def test_bad_split_file_names_the_file(tmp_path, content):
    path = tmp_path / "splits.json"
    path.write_text(content)
    with pytest.raises(ValueError, match="split_file") as error:
        read_splits(path, "digits", 10, {"train": 1})
    assert str(path) in str(error.value)


def test_corrupt_jpeg_in_a_list_dataset_names_the_file(tmp_path):
    image = tmp_path / "broken.jpg"
    image.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    dataset = ImageListDataset([str(image)], torch.tensor([[1, 0]]), [0])
    with pytest.raises(ValueError, match=f"image {image} .* is not a readable image file"):
        dataset[0]


def test_binary_list_file_names_the_file(tmp_path):
    path = tmp_path / "list.txt"
    path.write_bytes(b"\xff\xfe\x00img.jpg 1 0\n")
    with pytest.raises(ValueError, match=f"image list {path} is not a text file"):
        read_image_list(path, 2)


# ------------------------------------------------------------------ the structure
def test_one_tie_rule_tuple_one_packer_one_label_check():
    """The rules live in pml_hashing/_validation.py (and the one packer in codes.py)."""
    package = REPO / "pml_hashing"
    sources = {p: p.read_text() for p in package.rglob("*.py")}
    tie_tuple = '("index", "random", "expected")'
    assert [p.name for p, s in sources.items() if tie_tuple in s] == ["_validation.py"]
    packers = [p.name for p, s in sources.items() if "np.packbits(" in s]
    assert packers == ["codes.py"]
    assert not (package / "regularizers" / "_validation.py").exists()
    label_checks = [p.name for p, s in sources.items() if "must contain only 0 and 1" in s]
    assert label_checks == ["_validation.py"]


def test_polarization_loss_follows_in_place_and_replaced_codebooks():
    miner = RandomTargetMiner(3, 8)
    loss_fn = PolarizationLoss(target_miner=miner)
    embeddings, labels = torch.randn(4, 8, dtype=torch.float64), torch.tensor([0, 1, 2, 0])

    def naive():
        t = miner.targets.double()
        return float(sum(torch.relu(1 - embeddings[i] * t[labels[i]]).sum() for i in range(4)) / 4)

    assert float(loss_fn(embeddings, labels)) == pytest.approx(naive())
    with torch.no_grad():
        miner.targets.mul_(-1)  # in place, as an update could do
    assert float(loss_fn(embeddings, labels)) == pytest.approx(naive())
    miner.targets = -miner.targets  # a new tensor
    assert float(loss_fn(embeddings, labels)) == pytest.approx(naive())


# ------------------------------------------------------------------ found in review
def _report_problem(rng):
    q = rng.choice([-1, 1], size=(20, 16)).astype(np.int8)
    db = rng.choice([-1, 1], size=(50, 16)).astype(np.int8)
    return q, rng.integers(0, 3, 20), db, rng.integers(0, 3, 50)


ZERO_ONE_BITS = [
    lambda c: (c > 0).astype(np.uint8),
    lambda c: c > 0,
    lambda c: (c > 0).astype(np.int64),
    lambda c: torch.from_numpy((c > 0).astype(np.float32)),
]


@pytest.mark.parametrize("as_bits", ZERO_ONE_BITS)
def test_report_refuses_zero_one_bits_it_would_binarize_to_all_ones(as_bits):
    from pml_hashing.evaluation import retrieval_report

    q, ql, db, dl = _report_problem(np.random.default_rng(0))
    with pytest.raises(ValueError, match="0/1 bits"):
        retrieval_report(as_bits(q), ql, as_bits(db), dl)


def test_report_checks_labels_and_returns_plain_ints():
    from pml_hashing.evaluation import retrieval_report

    q, ql, db, dl = _report_problem(np.random.default_rng(1))
    with pytest.raises(ValueError, match="query_labels must be numeric"):
        retrieval_report(q, np.array(list("abcde" * 4)), db, dl)
    with pytest.raises(ValueError, match="db_labels must have one row per db_outputs"):
        retrieval_report(q, ql, db, dl[:-1])
    with pytest.raises(ValueError, match="same number of bits"):
        retrieval_report(q, ql, db[:, :8], dl)
    report = retrieval_report(q, ql, db, dl, topk=np.int64(5), radius=np.int64(2))
    assert type(report["topk"]) is int and type(report["radius"]) is int
    json.dumps(report)
    assert report["map"] == mean_average_precision(q, ql, db, dl, topk=5)


def test_cli_evaluate_refuses_uint8_codes_naming_the_file(tmp_path, capsys):
    q, ql, db, dl = _report_problem(np.random.default_rng(2))
    query = _write(tmp_path / "q.npz", codes=(q > 0).astype(np.uint8), labels=ql)
    database = _write(tmp_path / "d.npz", codes=db, labels=dl)
    err = _cli_error(["index", "evaluate", "--query", query, "--database", database], capsys)
    assert f"{query}: codes are uint8" in err


def test_cli_npz_outputs_must_be_named_npz(tmp_path, capsys):
    codes = _write(tmp_path / "c.npz", codes=np.ones((3, 16)), labels=np.arange(3))
    index_path = str(tmp_path / "db.index")
    assert main(["index", "build", "--codes", codes, "--out", index_path]) == 0
    out = str(tmp_path / "r.txt")  # numpy.savez would write r.txt.npz
    err = _cli_error(
        ["index", "search", "--codes", codes, "--out", out, "--index", index_path, "-k", "1"],
        capsys,
    )
    assert "--out must be an .npz file name" in err and not list(tmp_path.glob("r.txt*"))


def test_a_negative_seed_of_random_ties_is_named():
    q, ql, db, dl = _report_problem(np.random.default_rng(3))
    with pytest.raises(ValueError, match="seed must be >= 0"):
        mean_average_precision(q, ql, db, dl, ties="random", seed=-1)


def test_multihash_nhash_is_checked_before_its_default_b_uses_it():
    for bad in (None, 0, "3"):
        with pytest.raises(ValueError, match="nhash must be a positive integer"):
            BinaryIndex(16, kind="multihash", nhash=bad)


def test_target_miners_take_a_numpy_seed():
    a = RandomTargetMiner(3, 16, seed=np.int64(1)).targets
    assert torch.equal(a, RandomTargetMiner(3, 16, seed=1).targets)


@pytest.mark.parametrize("dtype, bits", [(torch.bfloat16, 1024), (torch.float16, 4096)])
def test_half_precision_hamming_distances_are_not_rounded(dtype, bits):
    from pml_hashing.distances import HammingDistance

    rng = torch.Generator().manual_seed(0)
    q, r = torch.randn(4, bits, generator=rng), torch.randn(6, bits, generator=rng)
    plain = ((q[:, None, :] >= 0) != (r[None, :, :] >= 0)).sum(-1).float()  # count by hand
    got = HammingDistance()(q.to(dtype), r.to(dtype))
    assert got.dtype == torch.float32 and torch.equal(got, plain)
    small = HammingDistance()(q[:, :200].to(dtype), r[:, :200].to(dtype))
    plain_small = ((q[:, None, :200] >= 0) != (r[None, :, :200] >= 0)).sum(-1).float()
    assert small.dtype == dtype and torch.equal(small.float(), plain_small)


# ------------------------------------------------------------------ 0/1 codes, one side at a time
def _pm1_problem(rng, dtype):
    """+-1 codes near 5 class centres (10% of bits flipped), query and database."""
    centres = np.where(rng.random((5, 32)) < 0.5, 1, -1)

    def noisy(labels):
        codes = centres[labels].copy()
        codes[rng.random(codes.shape) < 0.1] *= -1
        return codes.astype(dtype)

    ql, dl = rng.integers(0, 5, 40), rng.integers(0, 5, 120)
    return noisy(ql), ql, noisy(dl), dl


def _map_by_loop(q, ql, db, dl):
    """mAP over the whole database, ties by database index, written plainly."""
    aps = []
    for code, label in zip(q, ql, strict=True):
        d = [(int(np.sum(code != row)), i) for i, row in enumerate(db)]
        hits, total = 0, 0.0
        for rank, (_, i) in enumerate(sorted(d), start=1):
            if dl[i] == label:
                hits += 1
                total += hits / rank
        aps.append(total / hits if hits else 0.0)
    return float(np.mean(aps))


def _zero_one_entry_points():
    from pml_hashing.evaluation import (
        precision_at_k,
        precision_within_radius,
        retrieval_report,
    )

    return {
        "retrieval_report": lambda q, ql, db, dl: retrieval_report(q, ql, db, dl),
        "mean_average_precision": lambda q, ql, db, dl: mean_average_precision(q, ql, db, dl),
        "precision_within_radius": lambda q, ql, db, dl: precision_within_radius(q, ql, db, dl),
        "precision_at_k": lambda q, ql, db, dl: precision_at_k(q, ql, db, dl, k=5),
        "TernaryFlatIndex": lambda q, ql, db, dl: TernaryFlatIndex(32).add(q),
        "BinaryIndex": lambda q, ql, db, dl: BinaryIndex(32).add(q),
    }


@pytest.mark.parametrize("entry_point", sorted(_zero_one_entry_points()))
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_a_zero_one_query_set_is_refused_next_to_a_plus_minus_one_database(entry_point, dtype):
    q, ql, db, dl = _pm1_problem(np.random.default_rng(3), dtype)
    call = _zero_one_entry_points()[entry_point]
    if entry_point == "retrieval_report":
        # the +-1 codes themselves are read right (the naive loop's number)
        assert call(q, ql, db, dl)["map"] == pytest.approx(_map_by_loop(q, ql, db, dl))
    with pytest.raises(ValueError, match="0/1 bits"):
        call(((q + 1) / 2).astype(dtype), ql, db, dl)


def test_index_evaluate_refuses_zero_one_query_codes_against_plus_minus_one_database(
    tmp_path, capsys
):
    q, ql, db, dl = _pm1_problem(np.random.default_rng(4), np.int8)
    np.savez(tmp_path / "q01.npz", codes=((q + 1) // 2).astype(np.int64), labels=ql)
    np.savez(tmp_path / "db.npz", codes=db, labels=dl)
    argv = ["index", "evaluate", "--query", str(tmp_path / "q01.npz")]
    assert main([*argv, "--database", str(tmp_path / "db.npz")]) == 2
    assert "q01.npz: codes holds only 0s and 1s" in capsys.readouterr().err


def test_ternary_codes_with_no_minus_one_are_read_within_allow_zero_one_codes():
    from pml_hashing.evaluation import allow_zero_one_codes

    q, ql, db, dl = _pm1_problem(np.random.default_rng(5), np.float64)
    ternary_query = np.maximum(q, 0)  # 0 = unpolarized, a legitimate DPN-T code
    with allow_zero_one_codes():
        value = mean_average_precision(ternary_query, ql, db, dl)
    assert 0.0 <= value <= 1.0
    with pytest.raises(ValueError, match="0/1 bits"):
        mean_average_precision(ternary_query, ql, db, dl)


# ------------------------------------------------------------------ non-negative embeddings
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("squash", ["relu", "sigmoid"])
def test_non_negative_embeddings_are_refused_by_the_pml_entry_points(dtype, squash):
    from pml_hashing.index import HammingKNN

    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(30, 16, generator=gen, dtype=dtype)
    labels = torch.arange(30) % 3
    emb = emb.relu() if squash == "relu" else emb.sigmoid()
    with pytest.raises(ValueError, match="zero-centred"):
        HammingKNN()(emb[:5], 1, emb)
    with pytest.raises(ValueError, match="zero-centred"):
        HammingKNN().train(emb)
    calc = HashingAccuracyCalculator(include=("hashing_map",), device=torch.device("cpu"))
    with pytest.raises(ValueError, match="zero-centred"):
        calc.get_accuracy(emb[:5], labels[:5], emb, labels)
    # centred, the same embeddings are accepted and rank as the naive loop does
    centred = emb - emb.mean(dim=0)
    codes = np.where(centred.numpy() >= 0, 1, -1)
    result = calc.get_accuracy(centred[:5], labels[:5], centred, labels)
    expected = _map_by_loop(codes[:5], labels[:5].numpy(), codes, labels.numpy())
    assert result["hashing_map"] == pytest.approx(expected)


def test_identical_codes_of_a_collapsed_model_warn():
    from pml_hashing.evaluation import IdenticalCodesWarning
    from pml_hashing.index import HammingKNN

    emb = torch.tensor([[0.5, -0.5] * 4] * 6)
    with pytest.warns(IdenticalCodesWarning, match="identical"):
        HammingKNN()(emb[:2], 1, emb)


# ------------------------------------------------------------------ command line: outputs, radius
def _write_pm1_files(tmp_path):
    q, ql, db, dl = _pm1_problem(np.random.default_rng(6), np.int8)
    np.savez(tmp_path / "q.npz", codes=q, labels=ql)
    np.savez(tmp_path / "db.npz", codes=db, labels=dl)
    assert main(["index", "build", "--codes", str(tmp_path / "db.npz"), "--out",
                 str(tmp_path / "db.index")]) == 0  # fmt: skip
    return q, ql, db, dl


@pytest.mark.parametrize(
    "argv",
    [
        ["index", "build", "--codes", "{t}/db.npz", "--out", "{t}/db.npz"],
        ["index", "search", "--index", "{t}/db.index", "--codes", "{t}/q.npz", "-k", "3",
         "--out", "{t}/q.npz"],
        ["index", "search", "--index", "{t}/db.index", "--codes", "{t}/q.npz", "-k", "3",
         "--out", "{t}/../{n}/q.npz"],
        ["index", "build", "--codes", "{t}/db.npz", "--out", "{t}/./db.npz"],
        ["index", "evaluate", "--query", "{t}/q.npz", "--database", "{t}/db.npz",
         "--json", "{t}/db.npz"],
    ],
)  # fmt: skip
def test_an_output_that_is_one_of_the_inputs_is_refused_and_the_input_kept(tmp_path, argv, capsys):
    _write_pm1_files(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    argv = [a.format(t=tmp_path, n=tmp_path.name) for a in argv]
    assert main(argv) == 2
    assert "is the input" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_output_next_to_a_run_folders_files_is_allowed_but_not_over_them(tmp_path):
    from pml_hashing.cli import _same_file

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.safetensors").write_bytes(b"x")
    assert _same_file(str(run / "checkpoint.safetensors"), str(run))
    assert _same_file(str(run / "run.json"), str(run))
    assert not _same_file(str(run / "query.npz"), str(run))


@pytest.mark.parametrize("radius", [0, 1, 3])
def test_index_evaluate_takes_an_integer_radius(tmp_path, radius, capsys):
    q, ql, db, dl = _write_pm1_files(tmp_path)
    capsys.readouterr()
    argv = ["index", "evaluate", "--query", str(tmp_path / "q.npz"), "--database",
            str(tmp_path / "db.npz"), "--radius", str(radius),
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(argv) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    precisions = []
    for code, label in zip(q, ql, strict=True):
        inside = [i for i, row in enumerate(db) if np.sum(code != row) <= radius]
        precisions.append(np.mean(dl[inside] == label) if inside else 0.0)
    assert report["radius"] == radius
    assert report["precision_within_radius"] == pytest.approx(np.mean(precisions))


@pytest.mark.parametrize("radius", ["-1", "1.5", "two"])
def test_index_evaluate_refuses_a_radius_that_is_not_a_non_negative_integer(radius, capsys):
    try:
        status = main(["index", "evaluate", "--query", "q.npz", "--database", "db.npz",
                       "--radius", radius])  # fmt: skip
    except SystemExit as e:  # argparse's own refusal
        status = e.code
    assert status == 2
    assert "--radius" in capsys.readouterr().err


# ------------------------------------------------------------------ channels of image files
@pytest.fixture(scope="module")
def grayscale_checkpoint(tiny_run):
    return tiny_run  # trained on digits: one channel


def _image_folder(root, mode, num_classes=3, per_class=6):
    from PIL import Image

    rng = np.random.default_rng(7)
    for c in range(num_classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            shape = (14, 14) if mode == "L" else (14, 14, 3)
            pixels = rng.integers(0, 255, shape, dtype=np.uint8)
            Image.fromarray(pixels, mode).save(root / f"c{c}" / f"{i}.png")
    return root


@pytest.mark.parametrize("file_mode", ["RGB", "L"])
def test_a_grayscale_checkpoint_encodes_an_image_folder_in_its_own_channels(
    grayscale_checkpoint, tmp_path, file_mode
):
    from PIL import Image
    from timm.data import create_transform

    from pml_hashing.training import encode_checkpoint, load_checkpoint
    from pml_hashing.training.builders import build_protocol

    root = str(_image_folder(tmp_path / "images", file_mode))
    arrays = encode_checkpoint(grayscale_checkpoint, "query", dataset="image-folder", root=root)
    model, _, config, _ = load_checkpoint(grayscale_checkpoint)
    config = type(config).from_dict(config.to_dict() | {"dataset": "image-folder", "root": root})
    query = build_protocol(config, model).query
    transform = create_transform(**model.data_config())
    images = [transform(Image.open(query.path(i)).convert("L")) for i in range(len(query))]
    with torch.no_grad():
        outputs = model.eval()(torch.stack(images)).numpy()
    np.testing.assert_array_equal(arrays["codes"], np.where(outputs >= 0, 1, -1))


# ---------------------------------------------------------- backbone_kwargs of the small CNN
@pytest.mark.parametrize("kwargs", [{"batchnorm": False}, {"width": [8]}, {"dropout": 0.1}])
def test_small_cnn_refuses_backbone_kwargs_it_does_not_take(kwargs):
    from pml_hashing.models import HashingModel

    with pytest.raises(ValueError, match=f"does not take {next(iter(kwargs))}.*batch_norm"):
        HashingModel("hashing_cnn_small", 16, in_chans=1, **kwargs)


def test_small_cnn_backbone_kwargs_it_takes_change_the_network():
    from pml_hashing.models import HashingModel

    plain = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(8, 16))
    changed = HashingModel(
        "hashing_cnn_small", 16, in_chans=1, widths=(8, 16), batch_norm=False, drop_rate=0.5
    )
    norms = [type(m).__name__ for m in changed.modules() if "BatchNorm" in type(m).__name__]
    assert norms == [] and any("BatchNorm" in type(m).__name__ for m in plain.modules())
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.5 for m in changed.modules())


# ------------------------------------------------------------------ sizes that cannot work
@pytest.mark.parametrize("rows", [2, 5, 16])
def test_itq_refuses_fewer_rows_than_bits_plus_one_with_the_reason(rows):
    from pml_hashing.baselines import ITQ

    x = np.random.default_rng(0).normal(size=(rows, 64)).astype(np.float32)
    with pytest.raises(ValueError, match=r"at least num_bits \+ 1 = 17 rows.*got " + str(rows)):
        ITQ(16).fit(x)


def test_itq_fits_with_bits_plus_one_rows_and_its_codes_are_the_signs_of_its_projection():
    from pml_hashing.baselines import ITQ

    x = np.random.default_rng(1).normal(size=(17, 64))
    itq = ITQ(16).fit(x)
    projected = (x - x.mean(axis=0)) @ itq.projection.astype(np.float64)
    np.testing.assert_array_equal(itq.encode(x), np.where(projected >= 0, 1, -1))


def test_a_stray_huge_class_id_is_refused_before_any_allocation(tmp_path):
    from torch.utils.data import TensorDataset

    from pml_hashing.training import run_experiment

    images = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(24) % 4
    labels[0] = 10**7
    data = TensorDataset(images, labels)
    config = dict(name="big", output_dir=str(tmp_path), bits=16, epochs=1, log_with="none",
                  backbone_kwargs={"widths": [8]}, progress=False, checkpoint_every=0)  # fmt: skip
    with pytest.raises(ValueError, match="ids up to 10000000 for 5 distinct classes"):
        run_experiment(config, train=data, query=data, database=data)


# ------------------------------------------------------------------ IVF list count
@pytest.mark.parametrize("num_codes", [500, 4000])
def test_index_build_ivf_scales_its_default_list_count_with_the_database(
    tmp_path, capfd, num_codes
):
    codes = np.where(np.random.default_rng(8).random((num_codes, 32)) < 0.5, 1, -1)
    np.savez(tmp_path / "db.npz", codes=codes)
    argv = ["index", "build", "--codes", str(tmp_path / "db.npz"), "--kind", "ivf"]
    assert main([*argv, "--out", str(tmp_path / "db.index")]) == 0
    err = capfd.readouterr().err
    assert "training points" not in err  # faiss's warning about too few points per list
    index = BinaryIndex.load(tmp_path / "db.index")
    expected = max(1, min(round(4 * np.sqrt(num_codes)), num_codes // 39))
    assert index.params["nlist"] == expected
    assert main([*argv, "--param", "nlist=7", "--out", str(tmp_path / "b.index")]) == 0
    assert BinaryIndex.load(tmp_path / "b.index").params["nlist"] == 7
