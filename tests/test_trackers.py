"""--log-with: our CSV tracker, none, or any Accelerate tracker; a missing package fails early."""

import accelerate.utils
import pytest

from pml_hashing.training import ExperimentConfig, run_experiment
from pml_hashing.training.csv_tracker import CSVTracker
from pml_hashing.training.trackers import (
    ACCELERATE_TRACKERS,
    TRACKER_NAMES,
    build_trackers,
    parse_log_with,
)


def test_every_accelerate_tracker_is_accepted():
    # read from the installed accelerate: each has an availability check we can call
    assert {"tensorboard", "wandb", "mlflow", "comet_ml", "aim"} <= set(ACCELERATE_TRACKERS)
    assert TRACKER_NAMES[:2] == ("csv", "none")
    for name in ACCELERATE_TRACKERS:
        assert callable(getattr(accelerate.utils, f"is_{name}_available"))
        assert ExperimentConfig.from_dict({"log_with": name}).log_with == name


@pytest.mark.parametrize("name, package", [("wandb", "wandb"), ("comet", "comet-ml")])
def test_a_missing_tracker_package_is_an_error_naming_it(monkeypatch, tmp_path, name, package):
    tracker = "comet_ml" if name == "comet" else name
    monkeypatch.setattr(accelerate.utils, f"is_{tracker}_available", lambda: False)
    with pytest.raises(ValueError, match=rf"needs the '{package}' package.*pip install {package}"):
        build_trackers(f"csv,{name}", "run", tmp_path)


def test_available_trackers_are_passed_to_accelerate_by_name(monkeypatch, tmp_path):
    monkeypatch.setattr(accelerate.utils, "is_wandb_available", lambda: True)
    monkeypatch.setattr(accelerate.utils, "is_mlflow_available", lambda: True)
    trackers = build_trackers("csv, wandb,mlflow,wandb", "run", tmp_path / "logs")
    assert isinstance(trackers[0], CSVTracker) and trackers[1:] == ["wandb", "mlflow"]
    assert trackers[0].path == tmp_path / "logs" / "metrics.csv"


def test_csv_tracker_writes_what_is_logged(tmp_path):
    (tracker,) = build_trackers("csv", "run", tmp_path)
    tracker.store_init_configuration({"lr": 0.1})
    tracker.log({"train/loss": 0.5, "epoch": 1}, step=3)
    tracker.finish()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines == ["step,name,value", "3,train/loss,0.5", "3,epoch,1"]
    assert '"lr": 0.1' in (tmp_path / "hparams.json").read_text()


@pytest.mark.parametrize(
    "value, message",
    [
        ("tensorbord", "log_with must be one or more of"),
        ("csv,none", "cannot be combined"),
        (3, "log_with must be a string"),
    ],
)
def test_bad_log_with_values_are_refused(value, message):
    with pytest.raises(ValueError, match=message):
        parse_log_with(value)
    with pytest.raises(ValueError, match=message):
        ExperimentConfig.from_dict({"log_with": value})


def test_none_and_empty_log_nothing(tmp_path):
    assert build_trackers("none", "run", tmp_path) == []
    assert parse_log_with(None) == () and parse_log_with("") == ()


def test_missing_tensorboard_stops_a_run_before_any_data_or_model(monkeypatch, tmp_path):
    # today without tensorboard, --log-with tensorboard trained and logged nothing
    monkeypatch.setattr(accelerate.utils, "is_tensorboard_available", lambda: False)
    config = dict(
        output_dir=str(tmp_path),
        name="tb",
        dataset="digits",
        bits=8,
        epochs=1,
        log_with="tensorboard",
        progress=False,
    )
    with pytest.raises(ValueError, match=r"pml-hashing\[tensorboard\].*pip install tensorboard"):
        run_experiment(config)
    assert not (tmp_path / "tb" / "splits.json").exists()
