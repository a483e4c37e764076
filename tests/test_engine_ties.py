"""The exact engines' tie rule, without a server: whatever subset of the codes tied at the
k-th distance an engine keeps, completing that group gives BinaryIndex flat's k results."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.engines._results import complete_last_group, knn_arrays, range_arrays
from pml_hashing.index import BinaryIndex
from pml_hashing.shards import shard_range


def _plain_knn(distances_row, k):
    # the first k positions by (distance, position): BinaryIndex flat's order
    order = sorted(range(len(distances_row)), key=lambda i: (distances_row[i], i))
    return [distances_row[i] for i in order[:k]], order[:k]


@settings(max_examples=60)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 60),
    num_queries=st.integers(1, 5),
    k=st.integers(1, 70),
)
def test_completing_the_last_tie_group_gives_the_flat_order(seed, n, num_queries, k):
    rng = np.random.default_rng(seed)
    database = np.where(rng.random((n, 8)) < 0.5, 1, -1)  # 8 bits: heavy ties
    queries = np.where(rng.random((num_queries, 8)) < 0.5, 1, -1)
    distances = (8 - queries @ database.T) // 2
    k = min(k, n)
    ids = np.arange(n) + 1000  # ids differ from positions

    def engine_hits(rows, limit, exact=None):
        # an engine: the right distances, but an arbitrary order inside equal distances
        hits = []
        for row in rows:
            found = [(int(distances[row, i]), i, int(ids[i])) for i in range(n)]
            if exact is not None:
                found = [h for h in found if h[0] == exact]
            rng.shuffle(found)
            found.sort(key=lambda h: h[0])
            hits.append(found[:limit])
        return hits

    rows = np.arange(num_queries)
    hits = engine_hits(rows, k)
    completed = complete_last_group(
        rows, hits, k, lambda subset, d: engine_hits(subset, n, exact=d)
    )
    got_d, got_ids = knn_arrays(completed, k)
    for q in range(num_queries):
        want_d, want_pos = _plain_knn(list(distances[q]), k)
        assert got_d[q].tolist() == want_d
        assert got_ids[q].tolist() == [int(ids[p]) for p in want_pos]
    index = BinaryIndex(8, device="cpu")
    index.add(database, ids=ids)
    flat_d, flat_ids = index.search(queries, k)
    assert np.array_equal(got_d, flat_d) and np.array_equal(got_ids, flat_ids)


def test_range_results_are_sorted_by_distance_then_id():
    hits = [[(2, 5, 9), (1, 7, 3), (2, 1, 4)], [], [(0, 0, 1)]]
    lims, distances, ids = range_arrays(hits)
    assert lims.tolist() == [0, 3, 3, 4]
    assert distances.tolist() == [1, 2, 2, 0] and ids.tolist() == [3, 4, 9, 1]


@given(n=st.integers(0, 10_000), num_shards=st.integers(1, 64))
def test_shard_ranges_cover_every_item_once_in_order(n, num_shards):
    items = [i for shard in range(num_shards) for i in shard_range(shard, num_shards, n)]
    assert items == list(range(n))
    sizes = [len(shard_range(shard, num_shards, n)) for shard in range(num_shards)]
    assert max(sizes) - min(sizes) <= 1
