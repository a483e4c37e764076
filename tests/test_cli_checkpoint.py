"""The command line over a trained checkpoint: encode, build, search, evaluate."""

import json

import numpy as np
import pytest

from pml_hashing.cli import main
from pml_hashing.training import run_experiment


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    metrics = run_experiment(
        dict(
            name="cli",
            output_dir=str(out),
            dataset="digits",
            bits=16,
            epochs=1,
            backbone_kwargs={"widths": [8, 16]},
            log_with="none",
            progress=False,
            checkpoint_every=0,
        )
    )
    return out / "cli" / "checkpoint.safetensors", metrics


def test_evaluate_from_checkpoint_matches_the_training_run(checkpoint, tmp_path):
    path, metrics = checkpoint
    report = tmp_path / "report.json"
    assert main(["index", "evaluate", "--checkpoint", str(path), "--json", str(report)]) == 0
    numbers = json.loads(report.read_text())
    # one report: the CLI writes every key the training run wrote, with the same values
    # (the DPN checkpoint's ternary mAP included)
    assert "map_ternary" in metrics["last_epoch"]
    for key, value in metrics["last_epoch"].items():
        if isinstance(value, float):
            assert numbers[key] == pytest.approx(value, abs=1e-12), key
        else:
            assert numbers[key] == value, key


def test_encode_build_and_search_from_checkpoint(checkpoint, tmp_path):
    path, _ = checkpoint
    db, index, results = tmp_path / "db.npz", tmp_path / "db.index", tmp_path / "r.npz"
    assert main(["encode", "--checkpoint", str(path), "--split", "database", "--out", str(db)]) == 0
    assert main(["index", "build", "--checkpoint", str(path), "--out", str(index)]) == 0
    assert (
        main(
            [
                "index",
                "search",
                "--index",
                str(index),
                "--checkpoint",
                str(path),
                "-k",
                "5",
                "--out",
                str(results),
            ]
        )
        == 0
    )
    codes = np.load(db)["codes"].astype(np.int64)
    ids = np.load(db)["ids"]
    found = np.load(results)
    from pml_hashing.training import encode_checkpoint

    queries = encode_checkpoint(path, split="query")["codes"].astype(np.int64)
    # brute force for the first queries: distances of the returned ids are the 5 smallest
    for q in range(3):
        distances = (16 - codes @ queries[q]) // 2
        best = np.sort(distances)[:5]
        assert np.array_equal(np.sort(found["distances"][q]), best)
        assert set(found["ids"][q]) <= set(ids.tolist())


def test_codes_and_checkpoint_together_are_refused(checkpoint, tmp_path, capsys):
    path, _ = checkpoint
    np.savez(tmp_path / "c.npz", codes=np.ones((4, 16)))
    status = main(
        [
            "index",
            "build",
            "--codes",
            str(tmp_path / "c.npz"),
            "--checkpoint",
            str(path),
            "--out",
            str(tmp_path / "x.index"),
        ]
    )
    assert status != 0
    assert "exactly one of --codes and --checkpoint" in capsys.readouterr().err
