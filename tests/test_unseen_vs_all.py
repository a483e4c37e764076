"""Unseen-class queries against a database of seen and unseen items (map_unseen_vs_all)."""

import numpy as np
import pytest
import torch

from pml_hashing.data import load_protocol
from pml_hashing.data.protocol import seen_items_for_unseen_vs_all
from pml_hashing.evaluation.retrieval_report import format_retrieval_report, map_unseen_vs_all
from pml_hashing.training import run_experiment
from tests.test_data_files import random_multi_hot, write_images, write_list

DTYPES = (torch.float32, torch.float64)


def loop_map(query_codes, query_labels, db_codes, db_labels):
    """mAP@all with ties broken by database index, plainly."""
    aps = []
    for q, yq in zip(query_codes.tolist(), query_labels.tolist(), strict=True):
        distances = [sum(1 for a, b in zip(q, d, strict=True) if a != b) for d in db_codes.tolist()]
        order = sorted(range(len(distances)), key=lambda i: (distances[i], i))
        hits, precisions = 0, []
        for rank, i in enumerate(order, start=1):
            y = db_labels[i].tolist()
            relevant = (
                y == yq if isinstance(yq, int) else any(a and b for a, b in zip(y, yq, strict=True))
            )
            if relevant:
                hits += 1
                precisions.append(hits / rank)
        aps.append(sum(precisions) / hits if hits else 0.0)
    return sum(aps) / len(aps)


@pytest.mark.parametrize("dtype", DTYPES)
def test_map_unseen_vs_all_matches_a_loop_over_the_joined_database(dtype):
    rng = np.random.default_rng(0)
    query = torch.from_numpy(rng.standard_normal((15, 16))).to(dtype)
    unseen_db = torch.from_numpy(rng.standard_normal((30, 16))).to(dtype)
    seen_db = torch.from_numpy(rng.standard_normal((40, 16))).to(dtype)
    query_labels = torch.from_numpy(rng.integers(7, 10, 15))
    unseen_labels = torch.from_numpy(rng.integers(7, 10, 30))
    seen_labels = torch.from_numpy(rng.integers(0, 7, 40))
    got = map_unseen_vs_all(query, query_labels, unseen_db, unseen_labels, seen_db, seen_labels)
    sign = lambda x: torch.where(x >= 0, 1, -1)  # noqa: E731
    expected = loop_map(
        sign(query),
        query_labels,
        torch.cat([sign(unseen_db), sign(seen_db)]),
        torch.cat([unseen_labels, seen_labels]),
    )
    assert got == pytest.approx(expected, abs=1e-12)
    alone = map_unseen_vs_all(
        query, query_labels, unseen_db, unseen_labels, seen_db[:0], seen_labels[:0]
    )
    assert got < alone  # seen items only ever push relevant ones down


def test_seen_items_carry_source_class_ids_and_cover_training_and_validation():
    protocol = load_protocol(
        "digits", seed=3, unseen_classes=[2, 5, 9], query_per_class=5, validation_per_class=3
    )
    seen = seen_items_for_unseen_vs_all(protocol)
    assert len(seen) == len(protocol.train) + len(protocol.validation)
    labels = sorted({int(seen[i][1]) for i in range(len(seen))})
    assert labels == [0, 1, 3, 4, 6, 7, 8]
    # the training item keeps its image; only the label goes back to the source id
    image, label = seen[0]
    train_image, train_label = protocol.train[0]
    assert torch.equal(image, train_image)
    assert int(label) == protocol.info["seen_classes"][int(train_label)]


def test_no_seen_items_for_the_usual_protocol():
    assert seen_items_for_unseen_vs_all(load_protocol("digits", seed=0)) is None


def test_multi_hot_seen_items_get_their_dropped_columns_back(tmp_path):
    names = write_images(tmp_path / "images", 60)
    labels = random_multi_hot(np.random.default_rng(1), 60, 21)
    labels[:, :3] = 0
    labels[:12, :3] = 1
    labels[:12, 3:] = 0
    write_list(tmp_path / "nuswide-21.txt", names, labels)
    protocol = load_protocol(
        "nuswide-21", root=tmp_path, query_size=30, train_size=20, unseen_classes=[0, 1, 2]
    )
    seen = seen_items_for_unseen_vs_all(protocol)
    rows = torch.stack([seen[i][1] for i in range(len(seen))])
    assert rows.shape == (len(protocol.train), 21)
    assert torch.equal(rows, torch.from_numpy(labels[np.asarray(protocol.train.indices)]))


def test_a_run_with_unseen_classes_reports_unseen_vs_all_beside_map(tmp_path, tiny_config):
    config = tiny_config(
        tmp_path, name="u", epochs=1, max_train_steps=2, checkpoint_every=0, unseen_classes="3"
    )
    metrics = run_experiment(config)
    report = metrics["last_epoch"]
    assert 0 <= report["map_unseen_vs_all"] <= 1
    # the unseen database and every seen item of the split (here: the training items)
    assert (
        report["num_database_unseen_vs_all"] == report["num_database"] + metrics["sizes"]["train"]
    )
    printed = format_retrieval_report(report)
    (line,) = [x for x in printed.splitlines() if x.startswith("mAP unseen vs all")]
    assert line.endswith(f" {report['map_unseen_vs_all']:.4f}")
    usual = run_experiment({**config, "name": "s", "unseen_classes": None})["last_epoch"]
    assert "map_unseen_vs_all" not in usual
    assert "unseen vs all" not in format_retrieval_report(usual)
