"""The unseen-class protocol (Sablayrolles et al., ICASSP 2017) on every kind of protocol."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pml_hashing.data import load_protocol
from pml_hashing.data.protocol import (
    apply_unseen_classes,
    parse_unseen_classes,
    resolve_unseen_classes,
    unseen_class_count,
)
from pml_hashing.methods import create_method
from pml_hashing.training import load_checkpoint, run_experiment
from tests.test_data_files import random_multi_hot, write_cifar, write_images, write_list

SMALL = {"query_per_class": 5, "validation_per_class": 3}


def labels_of(dataset) -> np.ndarray:
    return np.asarray([int(dataset[i][1]) for i in range(len(dataset))])


def original_train_labels(protocol) -> np.ndarray:
    """Training labels mapped back to the original class ids (seen_classes[i] is label i)."""
    seen = np.asarray(protocol.info["seen_classes"])
    return seen[labels_of(protocol.train)]


@pytest.fixture(scope="module")
def digits_unseen():
    return load_protocol("digits", seed=3, unseen_classes=3, **SMALL)


def test_no_unseen_class_in_training_or_validation(digits_unseen):
    unseen = set(digits_unseen.info["unseen_classes"])
    seen = np.asarray(digits_unseen.info["seen_classes"])
    assert len(unseen) == 3 and len(seen) == 7 and not unseen & set(seen.tolist())
    assert not unseen & set(original_train_labels(digits_unseen).tolist())
    validation = seen[labels_of(digits_unseen.validation)]
    assert len(validation) == 7 * 3 and not unseen & set(validation.tolist())


def test_queries_and_database_hold_only_unseen_classes_with_original_labels(digits_unseen):
    unseen = set(digits_unseen.info["unseen_classes"])
    assert set(labels_of(digits_unseen.query).tolist()) == unseen
    assert set(labels_of(digits_unseen.database).tolist()) == unseen
    assert len(digits_unseen.query) == 3 * 5


def test_training_labels_are_reindexed_to_the_seen_classes(digits_unseen):
    from sklearn.datasets import load_digits

    target = load_digits().target
    train = labels_of(digits_unseen.train)
    assert digits_unseen.num_classes == 7 and set(train.tolist()) == set(range(7))
    seen = digits_unseen.info["seen_classes"]
    for index, label in zip(digits_unseen.train.indices, train, strict=True):
        assert seen[label] == target[index]


def test_split_items_are_those_of_the_usual_split_restricted(digits_unseen):
    usual = load_protocol("digits", seed=3, **SMALL)
    unseen = digits_unseen.info["unseen_classes"]
    for name in ("train", "query", "database", "validation"):
        full = getattr(usual, name)
        restricted = set(int(i) for i in getattr(digits_unseen, name).indices)
        labels = labels_of(full)
        wanted = (
            np.isin(labels, unseen) if name in ("query", "database") else ~np.isin(labels, unseen)
        )
        assert restricted == set(int(i) for i in np.asarray(full.indices)[wanted])


def test_target_codebook_has_one_row_per_seen_class(digits_unseen):
    method = create_method("dpn", digits_unseen.num_classes, 16)
    assert method.target_miner.targets.shape == (7, 16)


def test_training_run_never_sees_an_unseen_class(tmp_path, tiny_config):
    metrics = run_experiment(
        tiny_config(
            tmp_path,
            name="u",
            epochs=1,
            max_train_steps=2,
            checkpoint_every=0,
            unseen_classes="2",
            validation_per_class=2,
        )
    )
    splits = json.loads((tmp_path / "u" / "splits.json").read_text())
    _, method, _, payload = load_checkpoint(tmp_path / "u" / "checkpoint.safetensors")
    assert method.num_classes == 8
    assert method.target_miner.targets.shape == (8, 16)
    assert len(splits["unseen_classes"]) == 2
    assert metrics["sizes"]["query"] == 2 * 100  # digits keeps 100 queries per class
    assert metrics["sizes"]["validation"] == 8 * 2


def test_split_file_records_both_class_sets_and_round_trips(digits_unseen, tmp_path):
    path = digits_unseen.save_splits(tmp_path / "s.json")
    payload = json.loads(path.read_text())
    assert payload["unseen_classes"] == digits_unseen.info["unseen_classes"]
    assert payload["seen_classes"] == digits_unseen.info["seen_classes"]
    # adopted from the file when not given, and checked when given
    for unseen in (None, 3, digits_unseen.info["unseen_classes"]):
        again = load_protocol("digits", split_file=path, unseen_classes=unseen, **SMALL)
        assert again.split_indices() == digits_unseen.split_indices()
        assert again.info["unseen_classes"] == digits_unseen.info["unseen_classes"]
    other = [c for c in range(10) if c not in digits_unseen.info["unseen_classes"]][:3]
    with pytest.raises(ValueError, match="saved with unseen_classes"):
        load_protocol("digits", split_file=path, unseen_classes=other, **SMALL)


def test_a_list_of_class_ids_is_taken_as_given():
    protocol = load_protocol("digits", unseen_classes=[9, 0], **SMALL)
    assert protocol.info["unseen_classes"] == [0, 9]
    assert protocol.info["seen_classes"] == list(range(1, 9))


def test_auto_holds_out_a_quarter_of_the_classes_rounded_up():
    assert [unseen_class_count(c) for c in (3, 4, 10, 21, 100)] == [2, 2, 3, 6, 25]
    protocol = load_protocol("digits", unseen_classes="auto", **SMALL)
    assert len(protocol.info["unseen_classes"]) == math.ceil(10 / 4)


def test_drawn_classes_depend_on_the_seed_only():
    draws = {tuple(resolve_unseen_classes(3, 10, seed)) for seed in range(6)}
    assert len(draws) > 1
    assert resolve_unseen_classes(3, 10, 5) == resolve_unseen_classes("3", 10, 5)


@pytest.mark.parametrize(
    "text, parsed",
    [("3", 3), ("auto", "auto"), ("1,4,7", [1, 4, 7]), ("[1, 4]", [1, 4]), ("[2]", [2])],
)
def test_flag_text_is_parsed(text, parsed):
    assert parse_unseen_classes(text) == parsed


@pytest.mark.parametrize(
    "value, error",
    [
        (0, r"an int in \[2, 9\]"),
        (10, r"an int in \[2, 9\]"),
        ([1, 1], "must not repeat"),
        ([10], r"\[0, 10\)"),
        (list(range(10)), "training needs a seen class"),
        ("three", "an int"),
    ],
)
def test_bad_unseen_classes_are_refused(value, error):
    with pytest.raises(ValueError, match=error):
        resolve_unseen_classes(value, 10, 0)


def test_a_repeated_class_is_refused_when_the_config_is_read():
    from pml_hashing.training import ExperimentConfig

    for value in ("1,1", [2, 2]):
        with pytest.raises(ValueError, match="must not repeat a class"):
            ExperimentConfig.from_dict({"unseen_classes": value})


def test_bad_types_are_refused():
    with pytest.raises(TypeError, match="bool"):
        parse_unseen_classes(True)
    with pytest.raises(TypeError, match="integer class ids"):
        parse_unseen_classes([1.5])


def test_config_refuses_a_malformed_value_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unseen_classes"):
        run_experiment(dict(output_dir=str(tmp_path), dataset="digits", unseen_classes="x"))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([np.float32, np.int64]))
def test_multi_label_item_is_unseen_only_when_all_its_labels_are(seed, dtype):
    rng = np.random.default_rng(seed)
    labels = (rng.random((40, 6)) < 0.3).astype(dtype)
    unseen = sorted(rng.choice(6, size=2, replace=False).tolist())
    splits = {name: np.sort(rng.choice(40, 15, replace=False)) for name in
              ("train", "query", "database", "validation")}  # fmt: skip
    expected = {}
    for name, idx in splits.items():
        expected[name] = []
        for i in idx:
            present = [c for c in range(6) if labels[i, c] > 0]
            all_unseen = bool(present) and all(c in unseen for c in present)
            any_seen = any(c not in unseen for c in present)
            if all_unseen if name in ("query", "database") else any_seen:
                expected[name].append(int(i))
    if any(not expected[name] for name in ("train", "query", "database")):
        with pytest.raises(ValueError, match="leaves the .* split empty"):
            apply_unseen_classes(splits, labels, unseen, 6)
        return
    restricted, train_labels, seen = apply_unseen_classes(splits, labels, unseen, 6)
    for name in splits:
        assert restricted[name].tolist() == sorted(expected[name])
    assert seen == [c for c in range(6) if c not in unseen]
    assert np.array_equal(train_labels, labels[:, seen])


def test_cifar10_unseen_classes(tmp_path):
    root = write_cifar(tmp_path / "cifar-10-batches-py")
    protocol = load_protocol(
        "cifar10-1", root=root, query_per_class=2, train_per_class=5, unseen_classes=[3, 7]
    )
    assert protocol.num_classes == 8 and protocol.info["seen_classes"] == [0, 1, 2, 4, 5, 6, 8, 9]
    assert set(protocol.query.labels.tolist()) == {3, 7}
    assert set(protocol.database.labels.tolist()) == {3, 7}
    assert set(protocol.train.labels.tolist()) == set(range(8))
    path = protocol.save_splits(tmp_path / "s.json")
    again = load_protocol(
        "cifar10-1", root=root, query_per_class=2, train_per_class=5, split_file=path
    )
    assert again.split_indices() == protocol.split_indices()
    assert again.info["unseen_classes"] == [3, 7]


def test_nuswide_unseen_classes_are_multi_label(tmp_path):
    names = write_images(tmp_path / "images", 60)
    labels = random_multi_hot(np.random.default_rng(1), 60, 21)
    labels[:, :3] = 0
    labels[:12, :3] = 1  # twelve items labelled only by the three classes held out below
    labels[:12, 3:] = 0
    write_list(tmp_path / "nuswide-21.txt", names, labels)
    protocol = load_protocol(
        "nuswide-21", root=tmp_path, query_size=30, train_size=20, unseen_classes=[0, 1, 2]
    )
    assert protocol.num_classes == 18 and protocol.train.labels.shape[1] == 18
    for split in (protocol.query, protocol.database):
        rows = labels[np.asarray(split.indices)]
        assert (rows[:, :3].sum(1) > 0).all() and (rows[:, 3:].sum(1) == 0).all()
    assert len(protocol.query) + len(protocol.database) == 12
    train_rows = labels[np.asarray(protocol.train.indices)]
    assert (train_rows[:, 3:].sum(1) > 0).all()
    assert torch.equal(protocol.train.labels, torch.from_numpy(train_rows[:, 3:]))


@pytest.mark.parametrize("value", [1, [1], "auto"])
@pytest.mark.parametrize("num_classes", [2, 3, 4, 10])
def test_one_unseen_class_is_refused_because_every_item_would_be_relevant(value, num_classes):
    if value == "auto" and num_classes > 2:
        unseen = resolve_unseen_classes(value, num_classes, 0)
        assert len(unseen) >= 2  # auto never holds out a single class
        return
    with pytest.raises(ValueError, match="every item relevant to every query"):
        resolve_unseen_classes(value, num_classes, 0)


def test_a_one_class_data_set_is_refused_with_the_reason(tmp_path):
    from PIL import Image

    (tmp_path / "only").mkdir()
    for i in range(12):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / "only" / f"{i}.png")
    with pytest.raises(ValueError, match="at least 2 classes.*mAP is 1.0 for any model"):
        load_protocol("image-folder", root=str(tmp_path))
