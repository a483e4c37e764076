import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.index import MISSING_DISTANCE, BinaryIndex, faiss_has_gpu


def random_codes(rng, n, num_bits):
    return np.where(rng.random((n, num_bits)) < 0.5, 1, -1).astype(np.float32)


def clustered_codes(rng, n, num_bits, num_centers=20, flip=0.05):
    centers = random_codes(rng, num_centers, num_bits)
    codes = centers[rng.integers(0, num_centers, n)]
    flips = rng.random(codes.shape) < flip
    return np.where(flips, -codes, codes)


def hamming_by_loop(a, b):
    out = np.zeros((len(a), len(b)), dtype=np.int64)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = sum(1 for x, y in zip(a[i], b[j], strict=True) if (x >= 0) != (y >= 0))
    return out


def knn_by_loop(query, database, k):
    """Brute-force k-NN with ties broken by position; -1 padding past the database."""
    dist = hamming_by_loop(query, database)
    ids = np.full((len(query), k), -1, dtype=np.int64)
    dists = np.full((len(query), k), MISSING_DISTANCE, dtype=np.int64)
    for i in range(len(query)):
        order = sorted(range(len(database)), key=lambda j: (dist[i, j], j))[:k]
        ids[i, : len(order)] = order
        dists[i, : len(order)] = [dist[i, j] for j in order]
    return dists, ids


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("num_bits", [8, 16, 24])
def test_flat_search_matches_brute_force_with_ties_by_position(dtype, num_bits):
    rng = np.random.default_rng(num_bits)
    # Short codes tie massively, so the tie order is really tested.
    database = rng.standard_normal((300, num_bits)).astype(dtype)
    query = rng.standard_normal((12, num_bits)).astype(dtype)
    index = BinaryIndex(num_bits, device="cpu")
    index.add(database)
    distances, ids = index.search(query, 25)
    expected_d, expected_ids = knn_by_loop(query, database, 25)
    assert distances.dtype == np.int32 and ids.dtype == np.int64
    np.testing.assert_array_equal(distances, expected_d)
    np.testing.assert_array_equal(ids, expected_ids)


def test_k_larger_than_ntotal_is_clamped_to_ntotal():
    rng = np.random.default_rng(0)
    database = random_codes(rng, 5, 16)
    query = random_codes(rng, 3, 16)
    for kind, params in [("flat", {}), ("hnsw", {"M": 4})]:
        index = BinaryIndex(16, kind=kind, device="cpu", **params)
        index.add(database)
        for k in (8, 10**9, np.int64(10**12)):
            distances, ids = index.search(query, k)
            expected_d, expected_ids = knn_by_loop(query, database, 5)
            assert ids.shape == distances.shape == (3, 5)
            np.testing.assert_array_equal(np.sort(ids, axis=1), np.sort(expected_ids, axis=1))
            np.testing.assert_array_equal(distances, expected_d)


def test_search_on_empty_index_returns_no_columns():
    index = BinaryIndex(16, device="cpu")
    distances, ids = index.search(np.ones((2, 16)), 10**9)
    assert ids.shape == distances.shape == (2, 0)
    assert MISSING_DISTANCE == 2**31 - 1


def test_ids_are_returned_instead_of_positions():
    rng = np.random.default_rng(1)
    database = random_codes(rng, 50, 16)
    query = random_codes(rng, 7, 16)
    user_ids = rng.permutation(1000)[:50] + 5000
    index = BinaryIndex(16, device="cpu")
    index.add(database[:20], ids=user_ids[:20])
    index.add(database[20:], ids=user_ids[20:])
    distances, ids = index.search(query, 10)
    expected_d, expected_positions = knn_by_loop(query, database, 10)
    np.testing.assert_array_equal(ids, user_ids[expected_positions])
    np.testing.assert_array_equal(distances, expected_d)
    lims, rd, rids = index.range_search(query, 6)
    brute = hamming_by_loop(query, database)
    for i in range(len(query)):
        assert set(rids[lims[i] : lims[i + 1]]) == set(user_ids[brute[i] <= 6])


def test_add_without_ids_after_add_with_ids_continues_positions():
    rng = np.random.default_rng(2)
    database = random_codes(rng, 6, 8)
    index = BinaryIndex(8, device="cpu")
    index.add(database[:3], ids=[100, 101, 102])
    index.add(database[3:])
    _, ids = index.search(database, 1)
    # Row i's nearest is itself (distance 0) unless an earlier duplicate precedes it.
    expected = [100, 101, 102, 3, 4, 5]
    brute = hamming_by_loop(database, database)
    for i in range(6):
        first_zero = int(np.argmax(brute[i] == 0))
        assert ids[i, 0] == expected[first_zero]


@pytest.mark.parametrize("kind", ["flat", "multihash"])
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_range_search_radius_is_inclusive(kind, radius):
    rng = np.random.default_rng(radius)
    database = clustered_codes(rng, 250, 32, flip=0.04)
    query = database[:30].copy()
    query[:, :radius] *= -1  # each query's source code lies exactly at the radius
    index = BinaryIndex(32, kind=kind, device="cpu")
    index.add(database)
    lims, distances, ids = index.range_search(query, radius)
    brute = hamming_by_loop(query, database)
    assert lims.dtype == np.int64 and distances.dtype == np.int32 and ids.dtype == np.int64
    for i in range(len(query)):
        expected = [(int(brute[i, j]), j) for j in range(len(database)) if brute[i, j] <= radius]
        got = list(
            zip(distances[lims[i] : lims[i + 1]].tolist(), ids[lims[i] : lims[i + 1]], strict=True)
        )
        assert got == sorted(expected)
    assert (brute == radius).any()


def test_multihash_radius_search_equals_flat():
    rng = np.random.default_rng(3)
    codes = clustered_codes(rng, 2100, 64, flip=0.02)
    database, query = codes[:2000], codes[2000:]
    flat = BinaryIndex(64, device="cpu")
    multihash = BinaryIndex(64, kind="multihash", nhash=3)
    flat.add(database)
    multihash.add(database)
    for got, expected in zip(
        multihash.range_search(query, 2), flat.range_search(query, 2), strict=True
    ):
        np.testing.assert_array_equal(got, expected)
    assert len(flat.range_search(query, 2)[2]) > 0


def test_multihash_refuses_a_radius_it_cannot_answer_exactly():
    index = BinaryIndex(64, kind="multihash", nhash=3, nflip=0)
    index.add(np.ones((2, 64)))
    with pytest.raises(ValueError, match=r"radius must be <= nhash \* \(nflip \+ 1\) - 1 = 2"):
        index.range_search(np.ones((1, 64)), 3)


def test_hnsw_range_search_is_refused():
    index = BinaryIndex(16, kind="hnsw")
    index.add(np.ones((3, 16)))
    with pytest.raises(ValueError, match="range_search is not available for kind='hnsw'"):
        index.range_search(np.ones((1, 16)), 1)


def recall_at_k(found, exact_d, found_d):
    # A neighbour counts when its distance is within the exact k-th distance (ties are many).
    kth = exact_d[:, -1:]
    return float(((found_d <= kth) & (found >= 0)).sum() / found.size)


@pytest.mark.parametrize(
    "kind,params", [("hnsw", {"M": 16, "ef_search": 64}), ("ivf", {"nlist": 16, "nprobe": 4})]
)
def test_approximate_kinds_recall_most_neighbours_on_clustered_data(kind, params):
    rng = np.random.default_rng(4)
    codes = clustered_codes(rng, 4100, 64)
    database, query = codes[:4000], codes[4000:]
    flat = BinaryIndex(64, device="cpu")
    flat.add(database)
    exact_d, _ = flat.search(query, 10)
    index = BinaryIndex(64, kind=kind, **params)
    index.add(database)  # IVF trains itself on the first add
    assert index.is_trained
    found_d, found = index.search(query, 10)
    assert recall_at_k(found, exact_d, found_d) >= 0.9


def test_ivf_first_add_with_too_few_codes_explains_the_fix():
    index = BinaryIndex(16, kind="ivf", nlist=64)
    with pytest.raises(ValueError, match="nlist=64 needs at least nlist codes; got 10"):
        index.add(np.ones((10, 16)))


def test_ivf_explicit_train_then_add():
    rng = np.random.default_rng(5)
    index = BinaryIndex(16, kind="ivf", nlist=4, nprobe=4)
    index.train(random_codes(rng, 200, 16))
    database = random_codes(rng, 50, 16)
    index.add(database)
    distances, _ = index.search(database[:5], 3)
    # nprobe == nlist probes every list, so the search is exact.
    np.testing.assert_array_equal(distances, knn_by_loop(database[:5], database, 3)[0])


@pytest.mark.parametrize(
    "kind,params",
    [
        ("flat", {}),
        ("hnsw", {"M": 8, "ef_search": 17}),
        ("ivf", {"nlist": 8, "nprobe": 3}),
        ("multihash", {"nhash": 2, "nflip": 1}),
    ],
)
def test_save_load_round_trip_keeps_results(tmp_path, kind, params):
    rng = np.random.default_rng(6)
    codes = clustered_codes(rng, 520, 32)
    database, query = codes[:500], codes[500:]
    index = BinaryIndex(32, kind=kind, **params)
    index.add(database, ids=np.arange(500) * 3 + 7)
    path = tmp_path / "index.bin"
    index.save(path)
    loaded = BinaryIndex.load(path, num_bits=32, kind=kind)
    assert (loaded.kind, loaded.num_bits, len(loaded)) == (kind, 32, 500)
    assert loaded.params == index.params
    search_settings = {
        "hnsw": lambda i: i.hnsw.efSearch,
        "ivf": lambda i: i.nprobe,
        "multihash": lambda i: i.nflip,
        "flat": lambda i: None,
    }[kind]
    assert search_settings(loaded.faiss_index) == search_settings(index.faiss_index)
    for got, expected in zip(loaded.search(query, 5), index.search(query, 5), strict=True):
        np.testing.assert_array_equal(got, expected)
    if kind != "hnsw":
        for got, expected in zip(
            loaded.range_search(query, 1), index.range_search(query, 1), strict=True
        ):
            np.testing.assert_array_equal(got, expected)
    assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]  # no temporary left behind


def test_truncated_file_is_refused_with_its_path(tmp_path):
    index = BinaryIndex(16)
    index.add(np.ones((100, 16)))
    path = tmp_path / "index.bin"
    index.save(path)
    data = path.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 12):
        truncated = tmp_path / f"cut{cut}.bin"
        truncated.write_bytes(data[:cut])
        with pytest.raises(ValueError, match=f"{truncated}.*(truncated|magic)"):
            BinaryIndex.load(truncated)


def test_corrupted_payload_fails_the_checksum(tmp_path):
    index = BinaryIndex(16)
    index.add(np.ones((10, 16)))
    path = tmp_path / "index.bin"
    index.save(path)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="CRC32"):
        BinaryIndex.load(path)


def test_foreign_files_are_refused_with_their_path(tmp_path):
    random_bytes = tmp_path / "random.bin"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(1000))
    npy = tmp_path / "codes.npy"
    np.save(npy, np.ones((4, 16)))
    raw_faiss = tmp_path / "faiss.bin"
    import faiss

    faiss.write_index_binary(faiss.IndexBinaryFlat(16), str(raw_faiss))
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    for path in (random_bytes, npy, raw_faiss, empty):
        with pytest.raises(ValueError, match=f"{path} is not a readable pml-hashing"):
            BinaryIndex.load(path)


def test_load_checks_the_expected_num_bits_and_kind(tmp_path):
    path = tmp_path / "index.bin"
    BinaryIndex(16).save(path)
    with pytest.raises(ValueError, match="holds a 16-bit index; num_bits=32 expected"):
        BinaryIndex.load(path, num_bits=32)
    with pytest.raises(ValueError, match="holds a kind='flat' index; kind='ivf' expected"):
        BinaryIndex.load(path, kind="ivf")


def test_mismatched_bits_name_the_argument():
    index = BinaryIndex(32)
    with pytest.raises(ValueError, match=r"codes has 16 bits per code \(codes.shape\[1\]\)"):
        index.add(np.ones((2, 16)))
    with pytest.raises(ValueError, match="read as packed codes with 2 bytes"):
        index.search(np.ones((2, 2), dtype=np.uint8), 1)


@pytest.mark.parametrize("num_bits", [0, 12, 7])
def test_code_length_not_a_multiple_of_8_is_refused(num_bits):
    with pytest.raises(ValueError, match="num_bits must be a positive multiple of 8"):
        BinaryIndex(num_bits)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kind must be one of"):
        BinaryIndex(16, kind="lsh")
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['nprobe'\] for kind='flat'"):
        BinaryIndex(16, nprobe=3)
    with pytest.raises(ValueError, match="M must be >= 1; got 0"):
        BinaryIndex(16, kind="hnsw", M=0)
    with pytest.raises(ValueError, match="k must be a positive integer; got 0"):
        BinaryIndex(16).search(np.ones((1, 16)), 0)
    with pytest.raises(ValueError, match=r"ids must have shape \(N,\) = \(2,\)"):
        BinaryIndex(16).add(np.ones((2, 16)), ids=[1, 2, 3])
    with pytest.raises(ValueError, match="ids must be >= 0"):
        BinaryIndex(16).add(np.ones((2, 16)), ids=[1, -1])
    with pytest.raises(ValueError, match="must be finite"):
        BinaryIndex(16).add(np.full((2, 16), np.nan))


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**16), num_bytes=st.integers(1, 4))
def test_packed_torch_and_numpy_inputs_give_identical_results(seed, num_bytes):
    num_bits = 8 * num_bytes
    rng = np.random.default_rng(seed)
    outputs = rng.standard_normal((40, num_bits))
    outputs[rng.random(outputs.shape) < 0.1] = 0.0  # v == 0 must count as +1 everywhere
    plus_minus = np.where(outputs >= 0, 1.0, -1.0)
    bits = outputs >= 0
    packed = np.zeros((40, num_bytes), dtype=np.uint8)
    for i in range(40):
        for j in range(num_bits):
            if bits[i, j]:
                packed[i, j // 8] |= 1 << (j % 8)
    results = []
    for form in (outputs, plus_minus, torch.from_numpy(plus_minus), bits, packed):
        index = BinaryIndex(num_bits, device="cpu")
        index.add(form)
        results.append(index.search(form[:10], 7))
    for distances, ids in results[1:]:
        np.testing.assert_array_equal(distances, results[0][0])
        np.testing.assert_array_equal(ids, results[0][1])


def test_len_and_properties():
    index = BinaryIndex(24, kind="hnsw", M=8)
    index.add(np.ones((3, 24)))
    index.add(-np.ones((2, 24)))
    assert len(index) == index.ntotal == 5
    assert (index.num_bits, index.kind, index.params["M"]) == (24, "hnsw", 8)


def test_save_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "index.bin"
    index = BinaryIndex(16)
    index.add(np.ones((4, 16)))
    index.save(path)
    before = path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    index.add(-np.ones((4, 16)))
    with pytest.raises(OSError, match="disk full"):
        index.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["index.bin"]


@pytest.mark.skipif(not faiss_has_gpu(), reason="faiss-gpu and a CUDA GPU are needed")
def test_gpu_flat_search_matches_cpu():
    rng = np.random.default_rng(7)
    database = random_codes(rng, 1000, 64)
    query = random_codes(rng, 50, 64)
    cpu = BinaryIndex(64, device="cpu")
    gpu = BinaryIndex(64, device="cuda")
    cpu.add(database)
    gpu.add(database)
    np.testing.assert_array_equal(gpu.search(query, 10)[0], cpu.search(query, 10)[0])


def test_cuda_device_without_gpu_faiss_is_refused():
    if faiss_has_gpu():
        pytest.skip("this faiss has GPU support")
    with pytest.raises(ValueError, match="device='cuda' needs faiss-gpu and a CUDA GPU"):
        BinaryIndex(16, device="cuda")
    assert BinaryIndex(16, device="auto").device == "cpu"
