"""pml-hashing plot RUN_DIR: a run's per-epoch curves as PNGs, from its CSV log."""

import json

import pytest

from pml_hashing.cli import main
from pml_hashing.training import run_experiment
from pml_hashing.training.plots import plot_run, read_run_log

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    run_experiment(
        dict(
            name="plotted",
            output_dir=str(out),
            dataset="digits",
            bits=8,
            epochs=2,
            batch_size=32,
            validation_per_class=3,
            backbone_kwargs={"widths": [8, 16]},
            progress=False,
            checkpoint_every=0,
        )
    )
    return out / "plotted"


def test_run_log_series_are_the_run_s_own_numbers(run_dir):
    series = read_run_log(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert series["validation/map"] == [
        (v["epoch"], pytest.approx(v["map"])) for v in metrics["validation"]
    ]
    assert [epoch for epoch, _ in series["train/loss"]] == [1, 2]
    assert [epoch for epoch, _ in series["targets/min_hamming_distance"]] == [1, 2]


def test_plot_command_writes_the_pngs_into_the_run_folder(run_dir, capsys):
    assert main(["plot", str(run_dir)]) == 0
    printed = capsys.readouterr().out
    for name in ("training_loss.png", "validation_map.png", "target_distances.png"):
        path = run_dir / name
        assert path.read_bytes()[:8] == PNG_MAGIC and f"wrote {path}" in printed


def test_plot_writes_into_out_when_given(run_dir, tmp_path):
    written = plot_run(run_dir, out=tmp_path / "figures")
    assert sorted(p.name for p in written) == [
        "target_distances.png",
        "training_loss.png",
        "validation_map.png",
    ]
    assert all(p.parent == tmp_path / "figures" for p in written)


def test_a_folder_without_run_logs_is_an_error_naming_it(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2  # like argparse
    error = capsys.readouterr().err
    assert f"{tmp_path} holds no run logs" in error and "metrics.csv" in error


def test_plot_command_writes_into_an_existing_out_folder(run_dir, tmp_path, capsys):
    # --out is a folder: an existing one is where the PNGs go, not a "give a file name" error
    folder = tmp_path / "figures"
    folder.mkdir()
    assert main(["plot", str(run_dir), "--out", str(folder)]) == 0
    assert (folder / "training_loss.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("name", ["mnist-5k-dpn-adaptive-64b-seed0", "x" * 20 + "-long" * 20])
def test_figure_titles_fit_inside_the_figure(run_dir, tmp_path, monkeypatch, name):
    import shutil

    import matplotlib.pyplot as plt

    named = tmp_path / name
    shutil.copytree(run_dir, named)
    kept = []
    monkeypatch.setattr(plt, "close", kept.append)  # keep the figures to measure them
    plot_run(named, out=tmp_path / "figures")
    assert len(kept) == 3
    for fig in kept:
        renderer = fig.canvas.get_renderer()
        for ax in fig.axes:
            box = ax.title.get_window_extent(renderer)
            assert 0 <= box.x0 and box.x1 <= fig.bbox.x1, ax.get_title()
            assert box.y1 <= fig.bbox.y1, ax.get_title()
        fig.clf()
