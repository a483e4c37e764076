"""Your own images: the image-folder protocol, its split, and a run through the recipe."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pml_hashing.data import load_protocol, read_image_folder

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("cat", "dog", "eel")


def make_image_folder(root: Path, per_class: int = 12, size=(10, 14), seed: int = 0) -> Path:
    """``root/<class>/<i>.png``: each class a distinct colour plus noise, so it is learnable."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.zeros((*size, 3))
            base[..., c] = 200
            pixels = np.clip(base + rng.normal(0, 30, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    (root / "cat" / "notes.txt").write_text("not an image")  # skipped, as by ImageFolder
    return root


def test_classes_and_files_are_imagefolders(tmp_path):
    from torchvision.datasets import ImageFolder

    root = make_image_folder(tmp_path / "images")
    paths, labels, classes = read_image_folder(root)
    reference = ImageFolder(str(root))
    assert classes == reference.classes == list(CLASSES)
    assert paths == [p for p, _ in reference.samples]
    assert labels.tolist() == [label for _, label in reference.samples]


def test_split_per_class_sizes_and_disjointness(tmp_path):
    root = make_image_folder(tmp_path / "images")
    protocol = load_protocol(
        "image-folder",
        root=root,
        seed=3,
        query_per_class=2,
        train_per_class=6,
        validation_per_class=1,
        image_size=16,
    )
    splits = {k: np.asarray(v) for k, v in protocol.split_indices().items()}
    _, labels, _ = read_image_folder(root)
    for key, per_class in (("query", 2), ("train", 6), ("validation", 1), ("database", 10)):
        counts = np.bincount(labels[splits[key]], minlength=3)
        assert counts.tolist() == [per_class] * 3, key
    assert not set(splits["query"]) & set(splits["database"])
    assert not set(splits["train"]) & set(splits["validation"])
    assert set(splits["train"]) | set(splits["validation"]) <= set(splits["database"])
    image, label = protocol.query[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32
    assert int(label) == labels[splits["query"][0]]
    assert protocol.num_classes == 3 and protocol.in_chans == 3
    assert protocol.info["classes"] == list(CLASSES)


def test_split_is_seeded_and_the_saved_split_round_trips(tmp_path):
    root = make_image_folder(tmp_path / "images")
    sizes = dict(query_per_class=2, validation_per_class=1, image_size=8)
    first = load_protocol("image-folder", root=root, seed=1, **sizes)
    assert (
        first.split_indices()
        == load_protocol("image-folder", root=root, seed=1, **sizes).split_indices()
    )
    assert (
        first.split_indices()
        != load_protocol("image-folder", root=root, seed=2, **sizes).split_indices()
    )
    first.save_splits(tmp_path / "splits.json")
    reused = load_protocol(
        "image-folder", root=root, seed=7, split_file=tmp_path / "splits.json", **sizes
    )
    assert reused.split_indices() == first.split_indices() and reused.seed == 1
    with pytest.raises(ValueError, match="split 'query' must have 9 items"):
        load_protocol(
            "image-folder",
            root=root,
            split_file=tmp_path / "splits.json",
            query_per_class=3,
            validation_per_class=1,
        )


def test_unseen_classes_hold_out_whole_classes_and_round_trip(tmp_path):
    root = make_image_folder(tmp_path / "images")
    sizes = dict(query_per_class=2, validation_per_class=1, image_size=8)
    protocol = load_protocol("image-folder", root=root, seed=0, unseen_classes=[1, 2], **sizes)
    _, labels, _ = read_image_folder(root)
    splits = {k: np.asarray(v) for k, v in protocol.split_indices().items()}
    # training and validation: only the seen class, re-indexed to 0
    for key in ("train", "validation"):
        assert set(labels[splits[key]].tolist()) == {0}, key
    assert {int(protocol.train[i][1]) for i in range(len(protocol.train))} == {0}
    assert protocol.num_classes == 1
    # queries and database: only the unseen classes (two at least: one would be all relevant)
    for key in ("query", "database"):
        assert set(labels[splits[key]].tolist()) == {1, 2}, key
    assert protocol.info["unseen_classes"] == [1, 2] and protocol.info["seen_classes"] == [0]
    protocol.save_splits(tmp_path / "splits.json")
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["unseen_classes"] == [1, 2]
    reused = load_protocol("image-folder", root=root, split_file=tmp_path / "splits.json", **sizes)
    assert reused.split_indices() == protocol.split_indices()


def test_layout_errors_name_the_expected_layout(tmp_path):
    with pytest.raises(ValueError, match="root is required for image-folder"):
        load_protocol("image-folder")
    with pytest.raises(FileNotFoundError, match="is not a folder.*one subfolder per class"):
        load_protocol("image-folder", root=tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no class subfolder.*one subfolder per class"):
        load_protocol("image-folder", root=tmp_path / "flat")
    root = make_image_folder(tmp_path / "images", per_class=3)
    with pytest.raises(ValueError, match="class 0 has 3 items"):
        load_protocol("image-folder", root=root, query_per_class=3)


def test_recipe_trains_two_epochs_on_an_image_folder_and_reports_map(tmp_path, capsys):
    root = make_image_folder(tmp_path / "images")
    spec = importlib.util.spec_from_file_location("train", ROOT / "recipes" / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    metrics = recipe.main(
        [
            "--dataset", "image-folder", "--root", str(root), "--name", "folder",
            "--output-dir", str(tmp_path / "runs"), "--bits", "16", "--epochs", "2",
            "--batch-size", "8", "--log-with", "none", "--no-progress",
            "--backbone-kwargs", "{widths: [8, 16]}",
            "--data-kwargs", "{query_per_class: 2}", "--validation-per-class", "1",
        ]
    )  # fmt: skip
    assert metrics["epochs_trained"] == 2 and metrics["dataset"] == "image-folder"
    assert metrics["sizes"] == {"train": 27, "query": 6, "database": 30, "validation": 3}
    assert 0.0 <= metrics["last_epoch"]["map"] <= 1.0
    assert "folder: mAP@all" in capsys.readouterr().out
    saved = json.loads((tmp_path / "runs" / "folder" / "splits.json").read_text())
    assert saved["name"] == "image-folder" and len(saved["splits"]["query"]) == 6


def test_a_file_that_is_not_an_image_is_named_when_the_protocol_is_built(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=4)
    (root / "dog" / "03.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"dog/03.png is not a readable image"):
        load_protocol("image-folder", root=root, query_per_class=1)


def test_an_image_that_fails_to_decode_in_training_is_one_message_and_keeps_the_last_run(
    tmp_path, capsys
):
    root = make_image_folder(tmp_path / "images", per_class=6)
    spec = importlib.util.spec_from_file_location("train", ROOT / "recipes" / "train.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    argv = [
        "--dataset", "image-folder", "--root", str(root), "--name", "folder",
        "--output-dir", str(tmp_path / "runs"), "--bits", "16", "--epochs", "1",
        "--batch-size", "4", "--log-with", "none", "--no-progress",
        "--backbone-kwargs", "{widths: [8, 16]}", "--data-kwargs", "{query_per_class: 1}",
    ]  # fmt: skip
    recipe.main(argv)
    metrics = (tmp_path / "runs" / "folder" / "metrics.json").read_bytes()
    capsys.readouterr()
    for path in sorted(root.glob("*/*.png")):  # a header that reads, pixels cut short
        path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(argv)
    assert exit_info.value.code in (1, 2)  # met while built (2) or while training (1)
    err = capsys.readouterr().err
    assert err.count("is not a readable image") == 1 and "Traceback" not in err
    assert (tmp_path / "runs" / "folder" / "metrics.json").read_bytes() == metrics
