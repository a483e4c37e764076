"""LanceIndex (embedded LanceDB, a local folder here): same distances as a plain Hamming
search, BinaryIndex's tie order when flat, the CLI's report equal to faiss's, encode's
writer into a shared table, and bad inputs refused."""

import numpy as np
import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("lancedb", reason="lancedb is not installed (pml-hashing[lance])")

from pml_hashing.cli import main  # noqa: E402
from pml_hashing.engines import LanceIndex  # noqa: E402
from pml_hashing.engines.lance_codes import LanceCodeWriter  # noqa: E402
from pml_hashing.index import BinaryIndex  # noqa: E402
from tests.engine_cli import (  # noqa: E402
    assert_evaluate_matches_faiss,
    assert_search_matches_faiss,
    labelled_shard_folders,
)


def _random_codes(rng, n, num_bits, dtype):
    return rng.normal(size=(n, num_bits)).astype(dtype)


def _plain_hamming(queries, database):
    signs_q, signs_d = queries >= 0, database >= 0
    return np.array([[int(np.sum(q != d)) for d in signs_d] for q in signs_q])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_search_equals_plain_hamming_and_binary_index(tmp_path, dtype):
    rng = np.random.default_rng(0)
    database = _random_codes(rng, 600, 16, dtype)
    queries = _random_codes(rng, 25, 16, dtype)
    index = LanceIndex(str(tmp_path), "codes", 16)
    index.add(database[:250])
    index.add(database[250:])
    assert index.count == 600
    distances, ids = index.search(queries, 20)
    plain = _plain_hamming(queries, database)
    assert np.array_equal(distances, np.sort(plain, axis=1)[:, :20])
    faiss_index = BinaryIndex(16, device="cpu")
    faiss_index.add(database)
    expected = faiss_index.search(queries, 20)
    assert np.array_equal(distances, expected[0])
    assert np.array_equal(ids, expected[1])


def test_ids_range_search_and_k_above_count(tmp_path):
    rng = np.random.default_rng(1)
    database = _random_codes(rng, 300, 32, np.float32)
    queries = _random_codes(rng, 10, 32, np.float32)
    given = rng.permutation(10**6)[:300]
    index = LanceIndex(str(tmp_path), "codes", 32)
    index.add(database, ids=given)
    lims, distances, ids = index.range_search(queries, 12)
    plain = _plain_hamming(queries, database)
    for q in range(len(queries)):
        expected = sorted((plain[q, i], given[i]) for i in range(300) if plain[q, i] <= 12)
        got = list(zip(distances[lims[q] : lims[q + 1]], ids[lims[q] : lims[q + 1]], strict=True))
        assert got == expected
    d_all, i_all = index.search(queries, 1000)
    assert d_all.shape == (10, 300) and set(i_all[0]) == set(given)


def test_ivf_with_every_partition_probed_is_exact_and_refuses_range_search(tmp_path):
    rng = np.random.default_rng(2)
    database = _random_codes(rng, 2000, 32, np.float32)
    queries = _random_codes(rng, 20, 32, np.float32)
    index = LanceIndex(str(tmp_path), "codes", 32, kind="ivf", nlist=8, nprobe=8)
    index.add(database)
    index.reindex()
    distances, _ = index.search(queries, 10)
    assert np.array_equal(distances, np.sort(_plain_hamming(queries, database), axis=1)[:, :10])
    with pytest.raises(ValueError, match="kind='flat' only"):
        index.range_search(queries, 3)
    assert LanceIndex(str(tmp_path), "codes", 32, kind=None).kind == "ivf"
    index.drop()
    import lancedb

    assert "codes" not in lancedb.connect(str(tmp_path)).list_tables().tables


def test_another_bit_width_is_refused(tmp_path):
    LanceIndex(str(tmp_path), "codes", 64)
    with pytest.raises(ValueError, match="holds 64-bit codes; got num_bits=32"):
        LanceIndex(str(tmp_path), "codes", 32)


def _info(num_bits, checkpoint="a"):
    return {"num_bits": num_bits, "checkpoint_sha256": checkpoint, "input": {}, "outputs": False}


def test_encode_writer_fills_one_table_from_shards_and_a_rerun_replaces_rows(tmp_path):
    rng = np.random.default_rng(4)
    codes = _random_codes(rng, 50, 16, np.float32)
    packed = np.packbits(codes >= 0, axis=1, bitorder="little")
    out = f"lance://{tmp_path}/db"
    for shard, items in ((1, range(25, 50)), (0, range(0, 25)), (1, range(25, 50))):
        writer = LanceCodeWriter(out, shard, 2, 16, False, False, _info(16), items)
        ids = np.arange(items.start, items.stop)
        writer.write(ids, ids % 3, packed[ids])
        writer.close()
    index = LanceIndex(str(tmp_path), "db", 16)
    assert index.count == 50  # the rerun of shard 1 replaced its rows
    distances, ids = index.search(codes[:5], 50)
    plain = _plain_hamming(codes[:5], codes)
    assert np.array_equal(distances, np.sort(plain, axis=1))
    assert np.array_equal(np.take_along_axis(plain, ids, 1), distances)
    with pytest.raises(ValueError, match="another checkpoint_sha256"):
        LanceCodeWriter(out, 0, 2, 16, False, False, _info(16, "b"), range(0, 25))
    with pytest.raises(ValueError, match="holds 16-bit codes"):
        LanceCodeWriter(out, 0, 2, 32, False, False, _info(32), range(0, 25))


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory):
    return labelled_shard_folders(tmp_path_factory.mktemp("codes"))


def test_cli_evaluate_on_lance_prints_the_faiss_report(labelled_shards, tmp_path, capsys):
    engine = ["--engine", "lance", "--uri", str(tmp_path / "lancedb"), "--collection", "db"]
    assert_evaluate_matches_faiss(engine, *labelled_shards, capsys)


def test_cli_search_on_lance_writes_the_faiss_results(labelled_shards, tmp_path):
    engine = ["--engine", "lance", "--uri", str(tmp_path / "lancedb"), "--collection", "db"]
    assert_search_matches_faiss(engine, *labelled_shards, tmp_path)


def test_cli_refuses_another_bit_width_and_writes_nothing(labelled_shards, tmp_path, capsys):
    _, database = labelled_shards
    LanceIndex(str(tmp_path), "db", 32)
    engine = ["--engine", "lance", "--uri", str(tmp_path), "--collection", "db"]
    assert main(["index", "build", "--codes", database, *engine]) == 2
    assert "holds 32-bit codes" in capsys.readouterr().err
    assert LanceIndex(str(tmp_path), "db", 32).count == 0


def test_cli_search_of_a_missing_table_is_refused(labelled_shards, tmp_path, capsys):
    query, _ = labelled_shards
    engine = ["--engine", "lance", "--uri", str(tmp_path), "--collection", "nothing"]
    out = tmp_path / "r.npz"
    assert main(["index", "search", "--codes", query, "-k", "3", "--out", str(out), *engine]) == 2
    assert "does not exist" in capsys.readouterr().err and not out.exists()
