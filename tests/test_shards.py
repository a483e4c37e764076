"""Sharded streaming encode and shard folders: codes equal the one-process encode bit for
bit, whatever the sharding; reruns resume; damaged folders are refused before any work."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pyarrow")

from pml_hashing.cli import main  # noqa: E402
from pml_hashing.codes import read_codes  # noqa: E402
from pml_hashing.sharded_encode import encode_to_shards  # noqa: E402
from pml_hashing.shards import (  # noqa: E402
    MANIFEST_NAME,
    ShardWriter,
    check_shard_folder,
    iter_shard_batches,
    write_manifest_if_complete,
)
from pml_hashing.training import encode_checkpoint, run_experiment  # noqa: E402
from tests.launch import accelerate_launch  # noqa: E402


def _train(out, name, bits):
    run_experiment(
        dict(
            name=name,
            output_dir=str(out),
            dataset="digits",
            bits=bits,
            epochs=1,
            backbone_kwargs={"widths": [8, 16]},
            log_with="none",
            progress=False,
            checkpoint_every=0,
        )
    )
    return out / name


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("runs"), "shards16", 16)


@pytest.fixture(scope="module")
def one_process(checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "db"
    encode_to_shards(checkpoint, out, outputs=True)
    return out


def _naive_unpack(packed, num_bits):
    # bit j of a code lives in byte j // 8 with value 1 << (j % 8); set means +1
    codes = np.empty((len(packed), num_bits), dtype=np.int64)
    for row in range(len(packed)):
        for j in range(num_bits):
            codes[row, j] = 1 if packed[row, j // 8] >> (j % 8) & 1 else -1
    return codes


# ------------------------------------------------------------------ writer and reader
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("multi_label", [False, True])
def test_shard_round_trip_matches_plain_packing(tmp_path, dtype, multi_label):
    rng = np.random.default_rng(0)
    num_bits, sizes = 24, (7, 0, 12)
    outputs = rng.normal(size=(sum(sizes), num_bits)).astype(dtype)
    labels = (
        rng.integers(0, 2, size=(sum(sizes), 5)) if multi_label else rng.integers(0, 9, sum(sizes))
    )
    info = {"num_bits": num_bits, "checkpoint_sha256": "x", "input": {}, "outputs": True}
    start = 0
    for shard, size in enumerate(sizes):
        writer = ShardWriter(tmp_path, shard, len(sizes), num_bits, multi_label, True, info)
        rows = slice(start, start + size)
        bits = outputs[rows] >= 0
        packed = np.packbits(bits, axis=1, bitorder="little")
        writer.write(np.arange(start, start + size), labels[rows], packed, outputs[rows])
        writer.close()
        start += size
    assert write_manifest_if_complete(tmp_path, len(sizes), info)["rows"] == sum(sizes)
    arrays = read_codes(str(tmp_path), outputs=True)
    expected = np.where(outputs >= 0, 1, -1)
    assert np.array_equal(arrays["codes"], expected)
    assert np.array_equal(_naive_unpack(arrays["packed"], num_bits), expected)
    assert np.array_equal(arrays["ids"], np.arange(sum(sizes)))
    assert np.array_equal(arrays["labels"], labels)
    assert np.array_equal(arrays["outputs"], outputs.astype(np.float32))
    streamed = list(iter_shard_batches(tmp_path, batch_size=4))
    assert all(len(b["ids"]) <= 4 for b in streamed)
    assert np.array_equal(np.concatenate([b["packed"] for b in streamed]), arrays["packed"])


def test_manifest_waits_for_every_shard(tmp_path):
    info = {"num_bits": 8, "checkpoint_sha256": "x", "input": {}, "outputs": False}
    writer = ShardWriter(tmp_path, 1, 2, 8, False, False, info)
    writer.write(np.arange(3), np.zeros(3), np.zeros((3, 1), np.uint8))
    writer.close()
    assert write_manifest_if_complete(tmp_path, 2, info) is None
    assert not (tmp_path / MANIFEST_NAME).exists()
    with pytest.raises(ValueError, match="no readable _manifest.json"):
        check_shard_folder(tmp_path)


# ------------------------------------------------------------------ sharded encode
def test_one_process_shards_equal_the_in_memory_encode(checkpoint, one_process):
    reference = encode_checkpoint(checkpoint, split="database")
    arrays = read_codes(str(one_process), outputs=True)
    assert np.array_equal(arrays["codes"], reference["codes"])
    assert np.array_equal(arrays["labels"], reference["labels"])
    assert np.allclose(arrays["outputs"], reference["outputs"], atol=1e-5)
    # id: the item's index in the split
    assert np.array_equal(arrays["ids"], np.arange(len(reference["codes"])))
    manifest = json.loads((one_process / MANIFEST_NAME).read_text())
    assert manifest["rows"] == len(reference["codes"]) and manifest["num_bits"] == 16


@pytest.mark.parametrize("num_shards", [2, 3])
def test_job_array_shards_concatenate_to_the_one_process_codes(
    checkpoint, one_process, tmp_path, num_shards
):
    out = tmp_path / "db"
    order = list(range(num_shards))[::-1]  # tasks finish in any order
    results = [
        encode_to_shards(checkpoint, out, shard=i, num_shards=num_shards, batch_size=50)
        for i in order
    ]
    # the last task to finish writes the manifest
    assert [r["manifest"] is not None for r in results] == [False] * (num_shards - 1) + [True]
    sharded, single = read_codes(str(out)), read_codes(str(one_process))
    for key in ("codes", "ids", "labels"):
        assert np.array_equal(sharded[key], single[key]), key
    assert len(list(out.glob(f"shard-*-of-{num_shards:05d}.parquet"))) == num_shards


@pytest.mark.slow
def test_two_launched_processes_write_the_one_process_codes(checkpoint, one_process, tmp_path):
    out = tmp_path / "db"
    recipe = Path(__file__).parents[1] / "recipes" / "encode.py"
    done = accelerate_launch(recipe, "--checkpoint", checkpoint, "--out", out, num_processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [s["file"] for s in manifest["shards"]] == [
        "shard-00000-of-00002.parquet",
        "shard-00001-of-00002.parquet",
    ]
    sharded, single = read_codes(str(out)), read_codes(str(one_process))
    for key in ("codes", "ids", "labels"):
        assert np.array_equal(sharded[key], single[key]), key


def test_rerun_skips_finished_shards_and_redoes_the_rest(checkpoint, tmp_path):
    clean = tmp_path / "clean"
    for i in range(2):
        encode_to_shards(checkpoint, clean, shard=i, num_shards=2)
    out = tmp_path / "crashed"
    encode_to_shards(checkpoint, out, shard=0, num_shards=2)
    # shard 1 died mid-write: a partial file and no record
    (out / "shard-00001-of-00002.parquet.partial").write_bytes(b"PAR1 half a file")
    assert encode_to_shards(checkpoint, out, shard=0, num_shards=2)["skipped"]
    redone = encode_to_shards(checkpoint, out, shard=1, num_shards=2)
    assert not redone["skipped"] and redone["rows_written"] > 0
    assert (out / MANIFEST_NAME).read_text() == (clean / MANIFEST_NAME).read_text()
    assert not list(out.glob("*.partial"))


@pytest.mark.slow
def test_a_killed_encode_then_a_rerun_gives_the_same_manifest(checkpoint, one_process, tmp_path):
    out = tmp_path / "db"
    command = [
        sys.executable,
        "-m",
        "pml_hashing.cli",
        "encode",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        "--outputs",
        "--batch-size",
        "1",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out / "shard-00000-of-00001.parquet.partial"
    deadline = time.monotonic() + 120
    while not partial.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / MANIFEST_NAME).exists()
    assert main(["encode", "--checkpoint", str(checkpoint), "--out", str(out), "--outputs"]) == 0
    assert (out / MANIFEST_NAME).read_text() == (one_process / MANIFEST_NAME).read_text()


def test_rerun_with_another_checkpoint_or_bit_count_is_refused(checkpoint, tmp_path, capsys):
    out = tmp_path / "db"
    encode_to_shards(checkpoint, out, shard=0, num_shards=2)
    other = _train(tmp_path / "runs", "shards8", 8)
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(ValueError, match="another num_bits"):
        encode_to_shards(other, out, shard=1, num_shards=2)
    assert main(["encode", "--checkpoint", str(other), "--out", str(out)]) == 2
    assert "num_shards" in capsys.readouterr().err  # 1 process against a 2-shard folder
    with pytest.raises(ValueError, match="another input"):
        encode_to_shards(checkpoint, out, split="query", shard=1, num_shards=2)
    assert sorted(p.name for p in out.iterdir()) == before


def test_rerun_with_another_checkpoint_of_the_same_bits_is_refused(checkpoint, tmp_path):
    out = tmp_path / "db"
    encode_to_shards(checkpoint, out, shard=0, num_shards=2)
    record = out / "shard-00000-of-00002.json"
    record.write_text(
        record.read_text().replace('"checkpoint_sha256": "', '"checkpoint_sha256": "0')
    )
    with pytest.raises(ValueError, match="another checkpoint_sha256"):
        encode_to_shards(checkpoint, out, shard=1, num_shards=2)


def test_image_folder_and_image_list_give_the_same_codes(checkpoint, tmp_path):
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    root = tmp_path / "images"
    for i in range(12):
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 16).astype(np.uint8)).save(folder / f"{i:02d}.png")
    files = sorted(root.rglob("*.png"))
    (tmp_path / "list.txt").write_text(
        "".join(f"{f.relative_to(root)} {f.parent.name}\n" for f in files)
    )
    by_folder = tmp_path / "folder"
    by_list = tmp_path / "list"
    assert main(["encode", "--checkpoint", str(checkpoint), "--images", str(root),
                 "--out", str(by_folder)]) == 0  # fmt: skip
    listed = ["--images", str(tmp_path / "list.txt"), "--root", str(root)]
    assert main(["encode", "--checkpoint", str(checkpoint), *listed, "--out", str(by_list)]) == 0
    a, b = read_codes(str(by_folder)), read_codes(str(by_list))
    assert np.array_equal(a["codes"], b["codes"]) and len(a["codes"]) == 12
    assert np.array_equal(a["labels"], [int(f.parent.name) for f in files])


# ------------------------------------------------------------------ damaged shard folders
@pytest.fixture
def copied(one_process, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(one_process, out)
    return out


def _build(folder, tmp_path, capsys):
    index = tmp_path / "db.index"
    status = main(["index", "build", "--codes", str(folder), "--out", str(index)])
    return status, capsys.readouterr().err, index.exists()


def test_missing_shard_is_named_and_nothing_is_written(copied, tmp_path, capsys):
    (copied / "shard-00000-of-00001.parquet").unlink()
    status, err, written = _build(copied, tmp_path, capsys)
    assert status == 2 and "shard-00000-of-00001.parquet is missing" in err and not written


def test_altered_shard_is_named_and_nothing_is_written(copied, tmp_path, capsys):
    shard = copied / "shard-00000-of-00001.parquet"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    status, err, written = _build(copied, tmp_path, capsys)
    assert status == 2 and "was altered" in err and not written


def test_mixed_bit_widths_are_refused(copied, tmp_path, capsys):
    info = {"num_bits": 8, "checkpoint_sha256": "x", "input": {}, "outputs": False}
    writer = ShardWriter(tmp_path / "other", 0, 1, 8, False, False, info)
    writer.write(np.arange(2), np.zeros(2), np.zeros((2, 1), np.uint8))
    record = writer.close()
    shard = copied / "shard-00000-of-00001.parquet"
    shard.write_bytes((tmp_path / "other" / "shard-00000-of-00001.parquet").read_bytes())
    manifest = json.loads((copied / MANIFEST_NAME).read_text())
    manifest["shards"][0]["sha256"] = record["sha256"]
    (copied / MANIFEST_NAME).write_text(json.dumps(manifest))
    status, err, written = _build(copied, tmp_path, capsys)
    assert status == 2 and "mixed bit widths" in err and not written


def test_index_commands_read_shard_folders_like_npz(checkpoint, one_process, tmp_path, capsys):
    npz_db, npz_q, shard_q = tmp_path / "db.npz", tmp_path / "q.npz", tmp_path / "q"
    for split, out in (("database", npz_db), ("query", npz_q), ("query", shard_q)):
        args = ["encode", "--checkpoint", str(checkpoint), "--split", split, "--out", str(out)]
        assert main(args) == 0
    capsys.readouterr()
    reports = []
    for query, database in ((npz_q, npz_db), (shard_q, one_process)):
        assert main(["index", "evaluate", "--query", str(query), "--database", str(database)]) == 0
        reports.append(capsys.readouterr().out)
    assert reports[0] == reports[1]
    results = []
    for codes, name in ((npz_db, "a"), (one_process, "b")):
        index = tmp_path / f"{name}.index"
        assert main(["index", "build", "--codes", str(codes), "--out", str(index)]) == 0
        out = tmp_path / f"{name}.npz"
        assert main(["index", "search", "--index", str(index), "--codes", str(shard_q),
                     "-k", "7", "--out", str(out)]) == 0  # fmt: skip
        results.append(np.load(out)["distances"])
    assert np.array_equal(results[0], results[1])


def test_encode_refuses_missing_checkpoint_and_missing_out_folder_before_work(checkpoint, tmp_path):
    recipe = Path(__file__).parents[1] / "recipes" / "encode.py"
    for args, message in (
        (["--checkpoint", str(tmp_path / "missing"), "--out", str(tmp_path / "db")],
         "checkpoint not found"),
        (["--checkpoint", str(checkpoint), "--out", str(tmp_path / "no" / "db")],
         "does not exist"),
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, str(recipe), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
    missing_npz = [
        "encode",
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(tmp_path / "x" / "q.npz"),
    ]
    assert main(missing_npz) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.integration
def test_encode_into_a_lance_table_gives_the_shard_codes(checkpoint, one_process, tmp_path):
    pytest.importorskip("lancedb", reason="lancedb is not installed (pml-hashing[lance])")
    from pml_hashing.engines import LanceIndex

    for i in range(2):
        out = f"lance://{tmp_path}/db"
        assert main(["encode", "--checkpoint", str(checkpoint), "--out", out,
                     "--shard", str(i), "--num-shards", "2"]) == 0  # fmt: skip
    table = LanceIndex(str(tmp_path), "db", 16).table.to_arrow().sort_by("id")
    single = read_codes(str(one_process))
    packed = np.stack(table["code"].to_numpy(zero_copy_only=False))
    assert np.array_equal(packed, single["packed"])
    assert np.array_equal(table["label"].to_numpy(), single["labels"])


@pytest.mark.integration
@pytest.mark.slow
def test_ray_actors_write_the_shard_codes_of_an_image_folder(checkpoint, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (pml-hashing[ray])")
    pytest.importorskip("ray.data")
    from PIL import Image
    from sklearn.datasets import load_digits

    from pml_hashing.engines import encode_with_ray

    digits = load_digits()
    root = tmp_path / "images"
    for i in range(24):
        folder = root / str(digits.target[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((digits.images[i] * 16).astype(np.uint8)).save(folder / f"{i:02d}.png")
    # the same batch size and one thread on both sides, as each actor runs: a convolution's
    # float sums follow the thread count and batch shape, and an output at 0 +- 1e-7 would
    # then flip its bit
    monkeypatch.setenv("PML_HASHING_NUM_THREADS", "1")
    assert main(["encode", "--checkpoint", str(checkpoint), "--images", str(root),
                 "--out", str(tmp_path / "one"), "--batch-size", "5"]) == 0  # fmt: skip
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        # 2 actors at half a CPU each: whole CPUs starve the read step on 2 cores
        manifest = encode_with_ray(
            checkpoint, str(root), tmp_path / "ray", num_actors=2, batch_size=5, num_cpus=0.5
        )
    finally:
        ray.shutdown()
    assert manifest["rows"] == 24
    by_ray, by_one = read_codes(str(tmp_path / "ray")), read_codes(str(tmp_path / "one"))
    for key in ("codes", "ids", "labels"):
        assert np.array_equal(by_ray[key], by_one[key]), key
