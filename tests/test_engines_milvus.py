"""MilvusIndex against a real Milvus standalone server (PyPI's ``milvus`` package), started
by a fixture: same distances as a plain Hamming search, BinaryIndex's tie order on BIN_FLAT,
the CLI's report equal to faiss's, and bad inputs refused."""

import os
import socket

import numpy as np
import pytest

pytestmark = pytest.mark.integration

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pml-hashing[milvus])")

from pml_hashing.engines.milvus_server import (  # noqa: E402
    local_milvus_server,
    milvus_server_available,
)

if not milvus_server_available():
    pytest.skip(
        "the milvus package (milvus-server, a standalone Milvus server) is not installed",
        allow_module_level=True,
    )

from pml_hashing.cli import main  # noqa: E402
from pml_hashing.engines import MilvusIndex  # noqa: E402
from pml_hashing.index import BinaryIndex  # noqa: E402
from tests.engine_cli import (  # noqa: E402
    assert_evaluate_matches_faiss,
    assert_search_matches_faiss,
    labelled_shard_folders,
)


@pytest.fixture(scope="session")
def milvus_uri():
    """A real Milvus standalone server (temporary data folder, 127.0.0.1, SIGKILLed and
    removed at teardown)."""
    with local_milvus_server() as uri:
        yield uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_codes(rng, n, num_bits, dtype):
    # raw outputs: the index binarizes them with v >= 0 -> +1
    return rng.normal(size=(n, num_bits)).astype(dtype)


def _plain_hamming(queries, database):
    signs_q, signs_d = queries >= 0, database >= 0
    return np.array([[int(np.sum(q != d)) for d in signs_d] for q in signs_q])


_names = iter(range(10**6))


def _collection() -> str:
    return f"c{os.getpid()}_{next(_names)}"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flat_search_equals_plain_hamming_and_binary_index(milvus_uri, dtype):
    rng = np.random.default_rng(0)
    database = _random_codes(rng, 600, 16, dtype)  # 16 bits: many ties
    queries = _random_codes(rng, 25, 16, dtype)
    index = MilvusIndex(milvus_uri, _collection(), 16)
    index.add(database[:250])
    index.add(database[250:])
    assert index.count == 600  # strong consistency: visible right after add
    distances, ids = index.search(queries, 20)
    plain = _plain_hamming(queries, database)
    assert np.array_equal(distances, np.sort(plain, axis=1)[:, :20])
    assert np.array_equal(np.take_along_axis(plain, ids, 1), distances)
    faiss_index = BinaryIndex(16, device="cpu")
    faiss_index.add(database)
    expected = faiss_index.search(queries, 20)
    assert np.array_equal(distances, expected[0])
    assert np.array_equal(ids, expected[1])  # ties in insertion order, as on faiss
    index.drop()


def test_ids_range_search_and_k_above_count(milvus_uri):
    rng = np.random.default_rng(1)
    database = _random_codes(rng, 300, 32, np.float32)
    queries = _random_codes(rng, 10, 32, np.float32)
    given = rng.permutation(10**6)[:300]
    index = MilvusIndex(milvus_uri, _collection(), 32)
    index.add(database, ids=given)
    lims, distances, ids = index.range_search(queries, 12)
    plain = _plain_hamming(queries, database)
    for q in range(len(queries)):
        expected = sorted((plain[q, i], given[i]) for i in range(300) if plain[q, i] <= 12)
        got = list(zip(distances[lims[q] : lims[q + 1]], ids[lims[q] : lims[q + 1]], strict=True))
        assert got == expected
    d_all, i_all = index.search(queries, 1000)
    assert d_all.shape == (10, 300) and set(i_all[0]) == set(given)
    index.drop()


def test_ivf_with_every_list_probed_is_exact_and_refuses_range_search(milvus_uri):
    rng = np.random.default_rng(2)
    database = _random_codes(rng, 2000, 32, np.float32)
    queries = _random_codes(rng, 20, 32, np.float32)
    index = MilvusIndex(milvus_uri, _collection(), 32, kind="ivf", nlist=8, nprobe=8)
    index.add(database)
    index.reindex()
    distances, _ = index.search(queries, 10)
    assert np.array_equal(distances, np.sort(_plain_hamming(queries, database), axis=1)[:, :10])
    with pytest.raises(ValueError, match="kind='flat' only"):
        index.range_search(queries, 3)
    index.drop()


def test_another_bit_width_or_kind_is_refused(milvus_uri):
    name = _collection()
    index = MilvusIndex(milvus_uri, name, 64)
    with pytest.raises(ValueError, match="holds 64-bit codes; got num_bits=32"):
        MilvusIndex(milvus_uri, name, 32)
    with pytest.raises(ValueError, match="BIN_FLAT"):
        MilvusIndex(milvus_uri, name, 64, kind="ivf")
    assert MilvusIndex(milvus_uri, name, 64, kind=None).kind == "flat"
    index.drop()


def test_unreachable_uri_is_a_connection_error():
    with pytest.raises(ConnectionError, match="cannot reach a Milvus server at uri="):
        MilvusIndex(f"http://127.0.0.1:{_free_port()}", "x", 16, timeout=2)


@pytest.fixture(scope="module")
def labelled_shards(tmp_path_factory):
    return labelled_shard_folders(tmp_path_factory.mktemp("codes"))


def test_cli_evaluate_on_milvus_prints_the_faiss_report(milvus_uri, labelled_shards, capsys):
    name = _collection()
    engine = ["--engine", "milvus", "--uri", milvus_uri, "--collection", name]
    assert_evaluate_matches_faiss(engine, *labelled_shards, capsys)
    MilvusIndex(milvus_uri, name, 16).drop()


def test_cli_search_on_milvus_writes_the_faiss_results(milvus_uri, labelled_shards, tmp_path):
    name = _collection()
    engine = ["--engine", "milvus", "--uri", milvus_uri, "--collection", name]
    assert_search_matches_faiss(engine, *labelled_shards, tmp_path)
    MilvusIndex(milvus_uri, name, 16).drop()


def test_cli_refuses_an_unreachable_server_and_another_bit_width(
    milvus_uri, labelled_shards, tmp_path, capsys
):
    query, database = labelled_shards
    down = f"http://127.0.0.1:{_free_port()}"
    args = ["index", "build", "--codes", database, "--engine", "milvus", "--collection", "x"]
    assert main([*args, "--uri", down]) == 2
    assert "cannot reach a Milvus server" in capsys.readouterr().err
    name = _collection()
    MilvusIndex(milvus_uri, name, 32)
    assert main([*args[:-1], name, "--uri", milvus_uri]) == 2
    assert "holds 32-bit codes" in capsys.readouterr().err
    assert MilvusIndex(milvus_uri, name, 32).count == 0  # nothing written
    MilvusIndex(milvus_uri, name, 32).drop()
