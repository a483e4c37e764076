import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import InferenceModel

from pml_hashing.evaluation import IdenticalCodesWarning
from pml_hashing.index import HammingKNN


def hamming_by_loop(a, b):
    return sum(1 for x, y in zip(a.tolist(), b.tolist(), strict=True) if (x >= 0) != (y >= 0))


def brute_force_knn(query, k, reference=None, ref_includes_query=False):
    """The knn_func protocol by plain loops: ties broken by reference position."""
    if reference is None:
        reference = query
    distances = torch.zeros(len(query), k)
    indices = torch.zeros(len(query), k, dtype=torch.long)
    for i in range(len(query)):
        scored = sorted(
            (hamming_by_loop(query[i], reference[j]), j)
            for j in range(len(reference))
            if not (ref_includes_query and j == i)
        )[:k]
        for slot, (d, j) in enumerate(scored):
            distances[i, slot] = d
            indices[i, slot] = j
    return distances, indices


def clustered_embeddings(seed, n, num_bits, num_classes):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=generator)
    centers = torch.randn(num_classes, num_bits, generator=generator)
    noise = 1.5 * torch.randn(n, num_bits, generator=generator)
    return centers[labels] + noise, labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ref_includes_query", [False, True])
def test_knn_func_matches_brute_force(dtype, ref_includes_query):
    # 8 bits: many ties, so the tie rule is exercised.
    query, _ = clustered_embeddings(0, 40, 8, 4)
    reference, _ = clustered_embeddings(1, 120, 8, 4)
    query, reference = query.to(dtype), reference.to(dtype)
    if ref_includes_query:
        reference = torch.cat([query, reference])
    knn = HammingKNN()
    distances, indices = knn(query, 9, reference, ref_includes_query)
    expected_d, expected_i = brute_force_knn(query, 9, reference, ref_includes_query)
    assert distances.dtype == torch.float32 and indices.dtype == torch.int64
    torch.testing.assert_close(distances, expected_d, rtol=0, atol=0)
    torch.testing.assert_close(indices, expected_i, rtol=0, atol=0)


def test_self_match_is_dropped_even_behind_duplicates():
    # Five identical codes: query 4 has four duplicates before it at distance 0.
    query = torch.tensor([[1.0, -1.0] * 4] * 5)
    with pytest.warns(IdenticalCodesWarning, match="identical"):
        distances, indices = HammingKNN()(query, 2, query, ref_includes_query=True)
    for i in range(5):
        assert i not in indices[i].tolist()
    assert (distances == 0).all()


@pytest.mark.parametrize("same_source", [False, True])
def test_accuracy_calculator_with_hamming_knn_matches_brute_force(same_source):
    query, query_labels = clustered_embeddings(2, 60, 16, 5)
    reference, reference_labels = clustered_embeddings(3, 150, 16, 5)
    if same_source:
        reference, reference_labels = query, query_labels
    metrics = ("precision_at_1", "r_precision", "mean_average_precision_at_r")
    results = {}
    for name, knn_func in (("hamming", HammingKNN()), ("brute", brute_force_knn)):
        calculator = AccuracyCalculator(include=metrics, knn_func=knn_func)
        results[name] = calculator.get_accuracy(
            query, query_labels, reference, reference_labels, ref_includes_query=same_source
        )
    assert set(results["hamming"]) == set(metrics)
    for metric in metrics:
        assert results["hamming"][metric] == pytest.approx(results["brute"][metric], abs=1e-12)


def test_inference_model_uses_the_stored_index(tmp_path):
    reference, _ = clustered_embeddings(4, 100, 16, 5)
    query, _ = clustered_embeddings(5, 10, 16, 5)
    model = InferenceModel(torch.nn.Identity(), knn_func=HammingKNN(), data_device="cpu")
    model.train_knn(reference[:60])
    model.add_to_knn(reference[60:])
    distances, indices = model.get_nearest_neighbors(query, k=7)
    expected_d, expected_i = brute_force_knn(query, 7, reference)
    torch.testing.assert_close(indices, expected_i, rtol=0, atol=0)
    torch.testing.assert_close(distances, expected_d, rtol=0, atol=0)
    path = str(tmp_path / "knn.bin")
    model.save_knn_func(path)
    restored = InferenceModel(torch.nn.Identity(), knn_func=HammingKNN(), data_device="cpu")
    restored.load_knn_func(path)
    torch.testing.assert_close(restored.get_nearest_neighbors(query, k=7)[1], expected_i)


def test_reference_none_without_stored_index_searches_the_query_itself():
    query, _ = clustered_embeddings(6, 30, 8, 3)
    distances, indices = HammingKNN()(query, 4)
    expected_d, expected_i = brute_force_knn(query, 4)
    torch.testing.assert_close(indices, expected_i, rtol=0, atol=0)
    torch.testing.assert_close(distances, expected_d, rtol=0, atol=0)


def test_knn_bad_inputs_are_named():
    knn = HammingKNN()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 4\]"):
        knn(torch.randn(2, 8), 5, torch.randn(5, 8), ref_includes_query=True)
    with pytest.raises(ValueError, match="must be a positive multiple of 8; got 12"):
        knn(torch.randn(2, 12), 1, torch.randn(5, 12))
    with pytest.raises(ValueError, match=r"query must have shape \(Q, 16\)"):
        knn(torch.randn(2, 8), 1, torch.randn(5, 16))
    with pytest.raises(ValueError, match="kind must be one of"):
        HammingKNN(kind="lsh")
    with pytest.raises(ValueError, match="no stored index to save"):
        knn.save("unused.bin")
