"""The Trainer's state: exact resume (also killed mid-epoch, also with validation), changed
configs refused, checkpoints that load without running code, one run per folder, every
config value checked before anything is built."""

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pml_hashing.training import ExperimentConfig, load_checkpoint, run_experiment

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ("train_seconds", "total_seconds", "epoch_seconds", "torch_threads")


def without_timings(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in TIMINGS and k != "history"}


def env() -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


# ------------------------------------------------------------------ a killed run resumes
# Kills its own process at the N-th optimizer step (mid-epoch), like a preempted job: the
# run leaves only the checkpoints written before.
KILLER = """
import os, runpy, sys, torch
kill_at, count = int(sys.argv[1]), [0]
step = torch.optim.AdamW.step
def counting_step(self, *args, **kwargs):
    count[0] += 1
    if count[0] == kill_at:
        sys.stdout.flush()
        os._exit(17)
    return step(self, *args, **kwargs)
torch.optim.AdamW.step = counting_step
sys.argv = [sys.argv[2]] + sys.argv[3:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

RESUME_FLAGS = [
    "--dataset", "digits", "--bits", "16", "--backbone-kwargs", "{widths: [8, 16]}",
    "--batch-size", "32", "--epochs", "4", "--target-miner", "adaptive", "--update-every", "2",
    "--validation-per-class", "5", "--log-with", "none", "--eval-batch-size", "256",
    "--name", "run", "--checkpoint-every", "1",
]  # fmt: skip


def test_run_killed_mid_epoch_resumes_to_the_same_metrics(tmp_path):
    recipe = str(ROOT / "recipes" / "train.py")
    whole_dir, cut_dir = tmp_path / "whole", tmp_path / "cut"
    whole = subprocess.run(
        [sys.executable, recipe, *RESUME_FLAGS, "--output-dir", str(whole_dir)],
        capture_output=True, text=True, env=env(), timeout=600,
    )  # fmt: skip
    assert whole.returncode == 0, whole.stderr[-2000:]
    # not a terminal: one line per epoch, no progress-bar redraws
    assert "epoch 4/4: loss" in whole.stdout and "\r" not in whole.stdout + whole.stderr
    # 747 training images, batch 32: 23 steps per epoch; killed at step 56 (in epoch 3)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, "56", recipe, *RESUME_FLAGS, "--output-dir", str(cut_dir)],
        capture_output=True, text=True, env=env(), timeout=600,
    )  # fmt: skip
    assert killed.returncode == 17, killed.stderr[-2000:]
    assert not (cut_dir / "run" / "metrics.json").exists()
    resumed = subprocess.run(
        [sys.executable, recipe, *RESUME_FLAGS, "--output-dir", str(cut_dir), "--resume", "latest"],
        capture_output=True, text=True, env=env(), timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = json.loads((whole_dir / "run" / "metrics.json").read_text())
    got = json.loads((cut_dir / "run" / "metrics.json").read_text())
    assert len(got["validation"]) == 4
    assert without_timings(got) == without_timings(expected)


# ------------------------------------------------------------------ a step limit
def test_step_limit_mid_epoch_is_saved_and_resumed_mid_epoch(tmp_path, tiny_config):
    whole = run_experiment(tiny_config(tmp_path, name="whole", target_miner="adaptive"))
    # 797 training images, batch 64: 12 steps per epoch; 16 stops at batch 4 of epoch 2
    cut = run_experiment(
        tiny_config(tmp_path, name="cut", target_miner="adaptive", max_train_steps=16)
    )
    assert cut["epochs_trained"] == 1
    assert cut["stopped_mid_epoch"] == {"epoch": 2, "batches": 4, "global_step": 16}
    checkpoints = tmp_path / "cut" / "checkpoints"
    latest = checkpoints / (checkpoints / "latest").read_text()
    assert latest.name == "epoch_0001_batch_00004"
    state = json.loads((latest / "state.json").read_text())
    assert state["progress"] == {"epoch": 1, "batch_in_epoch": 4, "global_step": 16}
    resumed = run_experiment(
        tiny_config(tmp_path, name="cut", target_miner="adaptive", resume="latest")
    )
    assert [len(e["losses"]) for e in resumed["history"]] == [12, 12]
    assert [e["losses"] for e in resumed["history"]] == [e["losses"] for e in whole["history"]]
    assert without_timings(resumed) | {"run": "x"} == without_timings(whole) | {"run": "x"}
    # final_train_loss is the last epoch's mean, the number its line printed
    last = whole["history"][-1]["losses"]
    assert whole["final_train_loss"] == pytest.approx(sum(last) / len(last), rel=1e-12)
    a = load_checkpoint(tmp_path / "whole")[3]
    b = load_checkpoint(tmp_path / "cut")[3]
    for part in ("model", "method"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), key


# ------------------------------------------------------------------ a changed config
def test_resume_refuses_a_changed_config_and_names_the_keys(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=1))
    for change, key in (
        ({"lr": 0.1}, r"lr \(checkpoint 0.015, now 0.1\)"),
        ({"target_miner": "hadamard"}, "target_miner"),
        ({"dataset": "mnist-5k"}, "dataset"),
        ({"epochs": 3}, "epochs may change only with scheduler none"),
    ):
        with pytest.raises(ValueError, match="cannot resume .*" + key):
            run_experiment(tiny_config(tmp_path, **({"epochs": 1, "resume": "latest"} | change)))
    # what may change: where, how long (without a schedule), how verbose
    run_experiment(tiny_config(tmp_path, name="flat", epochs=1, scheduler="none"))
    more = run_experiment(
        tiny_config(tmp_path, name="flat", epochs=2, scheduler="none", resume="latest",
                    eval_batch_size=100, log_with="csv")
    )  # fmt: skip
    assert more["epochs_trained"] == 2
    doc = (ROOT / "docs" / "how-to" / "resume.md").read_text()
    from pml_hashing.training.config import RESUME_MAY_CHANGE

    for name in RESUME_MAY_CHANGE:
        assert f"`{name}`" in doc, name


# ------------------------------------------------------------------ nothing is unpickled
class Payload:
    """Unpickling it creates the marker file: the side effect the tests look for."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_encode_refuses_a_pickled_checkpoint_without_running_it(tmp_path, capsys):
    from pml_hashing.cli import main

    for i, write in enumerate(
        (torch.save, lambda obj, path: Path(path).write_bytes(pickle.dumps(obj)))
    ):
        marker = tmp_path / f"marker{i}"
        evil = tmp_path / f"evil{i}.pt"
        write({"format": "pml-hashing-checkpoint-v1", "config": Payload(marker)}, evil)
        code = main(
            [
                "encode",
                "--checkpoint",
                str(evil),
                "--split",
                "query",
                "--out",
                str(tmp_path / "q.npz"),
            ]
        )
        assert code != 0
        assert not marker.exists(), "the checkpoint ran code while loading"
        assert "pickle" in capsys.readouterr().err
        with pytest.raises(ValueError, match="never loaded"):
            load_checkpoint(evil)
        assert not marker.exists()


def test_resume_never_unpickles_files_in_the_checkpoint_folder(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=2, max_train_steps=12))
    folder = tmp_path / "tiny" / "checkpoints" / "epoch_0001"
    marker = tmp_path / "marker"
    # Accelerate's pickled custom state and RNG states: never read
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl"):
        (folder / name).write_bytes(pickle.dumps(Payload(marker)))
    resumed = run_experiment(tiny_config(tmp_path, epochs=2, resume="latest"))
    assert resumed["epochs_trained"] == 2
    assert not marker.exists()
    # a part replaced by a pickle: refused by its digest, not executed
    folder = tmp_path / "tiny" / "checkpoints" / "epoch_0002"
    for part in folder.glob("*.safetensors"):
        torch.save({"x": Payload(marker)}, part)
    with pytest.raises(ValueError, match="corrupted"):
        run_experiment(tiny_config(tmp_path, epochs=2, resume="latest"))
    assert not marker.exists()


def test_a_flipped_byte_is_detected(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=1))
    path = tmp_path / "tiny" / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01  # in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        load_checkpoint(path)
    part = tmp_path / "tiny" / "checkpoints" / "epoch_0001" / "shared.safetensors"
    data = bytearray(part.read_bytes())
    data[len(data) // 2] ^= 0x01
    part.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupted"):
        run_experiment(tiny_config(tmp_path, epochs=1, resume="latest"))


# ------------------------------------------------------------------ one run per folder
def test_two_runs_into_one_folder(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=1))
    with pytest.raises(ValueError, match=r"another config.*lr .*`overwrite`"):
        run_experiment(tiny_config(tmp_path, epochs=1, lr=0.01))
    first = json.loads((tmp_path / "tiny" / "run.json").read_text())["config"]
    assert first["lr"] == 0.015  # the default
    replaced = run_experiment(tiny_config(tmp_path, epochs=1, lr=0.01, overwrite=True))
    assert json.loads((tmp_path / "tiny" / "run.json").read_text())["config"]["lr"] == 0.01
    written = json.loads((tmp_path / "tiny" / "metrics.json").read_text())
    assert without_timings(written) == without_timings(replaced)
    # the default name says the target miner: these two never share a folder
    a = ExperimentConfig.from_dict({"target_miner": "random"}).run_name()
    b = ExperimentConfig.from_dict({"target_miner": "hadamard"}).run_name()
    assert a != b


HOLDER = """
import filelock, sys, time
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_lock_wins_over_overwrite_and_a_dead_holder_frees_the_folder(tmp_path, tiny_config):
    folder = tmp_path / "tiny"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        for overwrite in (False, True):  # both processes would write into one folder
            with pytest.raises(ValueError, match="in use .*`overwrite` never takes"):
                run_experiment(tiny_config(tmp_path, epochs=1, overwrite=overwrite))
        assert not (folder / "run.json").exists()
    finally:
        holder.kill()  # as a killed run: the operating system frees its lock
        holder.wait()
    run_experiment(tiny_config(tmp_path, epochs=1))
    assert not (folder / ".lock.json").exists()


def _claim(folder, start, results):
    from pml_hashing.training.run_folder import RunFolder

    start.wait()
    try:
        run_folder = RunFolder(folder, ExperimentConfig.from_dict({}))
        run_folder.acquire(resuming=False)  # held as long as run_folder lives
        results.put("claimed")
        time.sleep(2)  # hold the folder while the others try
    except ValueError as error:
        results.put(str(error))


def test_many_runs_claiming_one_folder_at_once_leave_exactly_one_owner(tmp_path):
    # Exactly one of many runs that start at once holds the folder; the others are told
    # which process holds it.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_claim, args=(tmp_path, start, results)) for _ in range(8)]
    for worker in workers:
        worker.start()
    start.set()
    outcomes = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes.count("claimed") == 1, outcomes
    assert all("is in use by process" in o for o in outcomes if o != "claimed"), outcomes


def test_two_runs_started_at_once_do_not_crash(tmp_path):
    recipe = str(ROOT / "recipes" / "train.py")
    flags = [
        *RESUME_FLAGS[:6], "--epochs", "1", "--log-with", "none", "--name", "same",
        "--output-dir", str(tmp_path),
    ]  # fmt: skip
    runs = [
        subprocess.Popen(
            [sys.executable, recipe, *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )  # fmt: skip
        for _ in range(2)
    ]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    assert any(code == 0 for code, _ in results)
    for code, err in results:
        assert code == 0 or (code == 2 and "is in use by process" in err), err[-2000:]
        assert "Traceback" not in err


# ------------------------------------------------------------------ early checks
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"topk": 0}, "topk must be >= 1"),
        ({"radius": -1}, "radius must be >= 0"),
        ({"epochs": "2"}, "epochs must be an integer; got the string '2'"),
        ({"lr": "fast"}, "lr must be a number; got the string 'fast'"),
        ({"progress": "no"}, "progress must be true or false"),
        ({"method": "dpm"}, "method must be one of"),
        ({"target_miner": "adaptiv"}, "target_miner must be one of"),
        ({"dataset": "mnist5k"}, "dataset must be one of"),
        ({"margin": float("inf")}, "margin must be a finite number"),
        ({"margin": 0}, "margin must be > 0"),
        ({"weight_decay": -1.0}, "weight_decay must be >= 0.0"),
        ({"method": "sh-bdnn", "target_miner": "adaptive"}, "target_miner applies to method dpn"),
        # a config key inside method_kwargs would train with a value the config does not say
        ({"method_kwargs": {"margin": 0.5}}, r"method_kwargs must not set config keys \(margin\)"),
        ({"method_kwargs": {"target_miner": "adaptive"}}, "`target_miner`"),
        ({"data_kwargs": {"query_per_class": {"a": 1}}}, "data_kwargs.query_per_class must be"),
        ({"dataset": "image-folder", "data_kwargs": {"root": [1]}}, r"data_kwargs must not"),
        ({"method_kwargs": {"foo": 1}}, "method_kwargs has keys that method 'dpn' does not take"),
        ({"data_kwargs": {"seed": 3}}, r"data_kwargs must not set config keys \(seed\)"),
    ],
)
def test_bad_values_fail_before_anything_is_built(
    tmp_path, monkeypatch, overrides, message, tiny_config
):
    import pml_hashing.training.builders as builders
    import pml_hashing.training.trainer as trainer

    def not_now(*args, **kwargs):
        raise AssertionError("built before the config was checked")

    monkeypatch.setattr(trainer, "build_model", not_now)
    monkeypatch.setattr(builders, "load_protocol", not_now)
    with pytest.raises(ValueError, match=message):
        run_experiment(tiny_config(tmp_path, **overrides))
    assert not (tmp_path / "tiny").exists()


def recipe_main():
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_recipe", ROOT / "recipes" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--topk", "0"], "topk must be >= 1"),
        (["--radius", "-1"], "radius must be >= 0"),
        (["--epochs", "two"], "argument --epochs: must be an integer"),
        (["--method", "dpm"], "argument --method: must be one of classifier, csq, dpn"),
        (["--target-miner", "adaptiv"], "argument --target-miner: must be one of"),
        (["--margin", "inf"], "margin must be a finite number"),
        (["--method", "sh-bdnn", "--target-miner", "adaptive"], "target_miner applies to"),
        (["--data-kwargs", "{a: [}"], "argument --data-kwargs: not a valid YAML mapping"),
        (["--data-kwargs", "[1, 2]"], "argument --data-kwargs: must be a YAML mapping"),
    ],
)
def test_a_bad_flag_is_a_usage_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe_main()(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage:") and message in err and "Traceback" not in err


def test_a_bad_config_file_is_a_usage_error_naming_the_file(tmp_path, capsys):
    for text, message in (
        ("bits: [16\n", "is not valid YAML at line"),
        ("epochs: '2'\n", "epochs must be an integer; got the string '2'"),
        ("lr: fast\n", "lr must be a number"),
        ("progress: 'no'\n", "progress must be true or false"),
    ):
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        with pytest.raises(SystemExit) as exit_info:
            recipe_main()(["--config", str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err, err
        assert "bad.yaml" in err and "Traceback" not in err


def test_help_gives_each_flag_a_help_text_default_and_choices(capsys):
    with pytest.raises(SystemExit):
        recipe_main()(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "code length K (a positive multiple of 8) (default: 64)" in out
    methods = "classifier, csq, dpn, itq, lsh, orthohash, pairwise, sh-bdnn, uh-bdnn"
    assert f"choices: {methods} (default: dpn)" in out
    assert "choices: adaptive, hadamard," in out
    assert "method dpn only" in out
    import dataclasses

    for f in dataclasses.fields(ExperimentConfig):
        assert f.metadata.get("help"), f.name


# ------------------------------------------------------------------ your own data
def test_own_protocol_and_own_data_sets(tmp_path, tiny_config):
    from pml_hashing.data import load_protocol

    protocol = load_protocol("digits", seed=1)
    protocol.name = "my-digits"
    metrics = run_experiment(tiny_config(tmp_path, name=None, epochs=1), protocol=protocol)
    assert metrics["dataset"] == "my-digits" and metrics["run"].startswith("my-digits-dpn")
    assert metrics["last_epoch"]["num_query"] == len(protocol.query)
    loose = run_experiment(
        tiny_config(tmp_path, name="loose", epochs=1),
        train=protocol.train, query=protocol.query, database=protocol.database,
    )  # fmt: skip
    assert loose["sizes"]["train"] == len(protocol.train)
    assert loose["last_epoch"]["num_database"] == len(protocol.database)


def test_a_run_on_data_from_python_is_not_silently_evaluated_on_the_configs_dataset(
    tmp_path, tiny_config
):
    # The config says digits (seed 0); the run trained on another split of it (seed 1).
    from pml_hashing.data import load_protocol
    from pml_hashing.training import encode_checkpoint, evaluate_checkpoint

    protocol = load_protocol("digits", seed=1)
    protocol.name = "my-digits"
    metrics = run_experiment(tiny_config(tmp_path, name="own", epochs=1), protocol=protocol)
    checkpoint = tmp_path / "own" / "checkpoint.safetensors"
    for job in (evaluate_checkpoint, encode_checkpoint):
        with pytest.raises(ValueError, match="trained on data given from Python.*'my-digits'"):
            job(checkpoint)
    # asked for a registered data set by name, the user gets that data set's numbers
    report = evaluate_checkpoint(checkpoint, dataset="digits")
    assert report["dataset"] == "digits" and report["num_query"] == metrics["sizes"]["query"]


def test_a_rerun_of_the_same_config_with_csv_logs_replaces_the_first(tmp_path, tiny_config):
    first = run_experiment(tiny_config(tmp_path, epochs=1, log_with="csv"))
    again = run_experiment(tiny_config(tmp_path, epochs=1, log_with="csv"))
    assert without_timings(again) == without_timings(first)
    rows = (tmp_path / "tiny" / "logs" / "metrics.csv").read_text().splitlines()
    assert sum(row.split(",")[1] == "train/loss" for row in rows[1:]) == 1  # not appended


def test_a_fresh_run_does_not_replace_a_finished_run_of_other_length(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=2, checkpoint_every=1))
    before = (tmp_path / "tiny" / "metrics.json").read_text()
    with pytest.raises(ValueError, match=r"differs in epochs \(there 2, now 1\).*`overwrite`"):
        run_experiment(tiny_config(tmp_path, epochs=1, max_train_steps=1, checkpoint_every=0))
    assert (tmp_path / "tiny" / "metrics.json").read_text() == before
    assert (tmp_path / "tiny" / "checkpoints" / "epoch_0002").is_dir()


def test_a_config_that_fails_to_build_costs_no_earlier_run_its_outputs(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=1))
    folder = tmp_path / "tiny"
    kept = sorted(p.name for p in folder.iterdir())
    with pytest.raises(ValueError, match="not a timm model name"):
        run_experiment(tiny_config(tmp_path, epochs=1, backbone="nosuchnet", overwrite=True))
    assert sorted(p.name for p in folder.iterdir()) == kept
    # a run that never built leaves no run.json behind to refuse the next one
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_experiment(tiny_config(tmp_path, name="other", split_file=str(tmp_path / "no.json")))
    assert [p.name for p in (tmp_path / "other").iterdir()] == [".lock"]  # the lock only
    run_experiment(tiny_config(tmp_path, name="other", epochs=1))


def test_an_output_dir_that_is_a_file_is_a_usage_error(tmp_path, tiny_config):
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="cannot be made: it or a folder above it is a file"):
        run_experiment(tiny_config(tmp_path / "file", epochs=1))


def test_the_phases_free_the_folder_as_run_does(tmp_path, tiny_config):
    from pml_hashing.training import Trainer

    trainer = Trainer(tiny_config(tmp_path, epochs=1))
    trainer.build()
    trainer.fit()
    trainer.report()
    assert not (tmp_path / "tiny" / ".lock.json").exists()  # no holder
    stopped = Trainer(tiny_config(tmp_path, name="stopped", epochs=1)).build()
    stopped.close()
    assert not (tmp_path / "stopped" / ".lock.json").exists()
    run_experiment(tiny_config(tmp_path, epochs=1))  # the folder is free again


# ------------------------------------------------------------------ nothing lost
class Interrupted(Exception):
    """Stands for a kill: raised by a callback after an epoch's rows are logged."""


def interrupt_after(epoch: int):
    from pml_hashing.training import Callback

    class Interrupt(Callback):
        name = "interrupt"

        def on_epoch_end(self, trainer, logs):
            if trainer.epoch == epoch:
                raise Interrupted(f"after epoch {epoch}")

    return Interrupt()


def csv_rows(folder) -> list[tuple[str, ...]]:
    rows = (folder / "logs" / "metrics.csv").read_text().splitlines()[1:]
    return [tuple(row.split(",")) for row in rows]


def test_a_resumed_run_logs_every_row_once_as_an_uninterrupted_run(tmp_path, tiny_config):
    settings = dict(epochs=4, checkpoint_every=2, log_with="csv", scheduler="none")
    run_experiment(tiny_config(tmp_path, name="whole", **settings))
    with pytest.raises(Interrupted):  # after epoch 3; the last checkpoint is epoch 2's
        run_experiment(
            tiny_config(tmp_path, name="cut", **settings), callbacks=[interrupt_after(3)]
        )
    run_experiment(tiny_config(tmp_path, name="cut", resume="latest", **settings))
    whole = csv_rows(tmp_path / "whole")
    assert csv_rows(tmp_path / "cut") == whole
    assert sum(row[1].startswith("test/") for row in whole) > 0
    # a finished run resumed: its report's rows are logged again, not twice
    run_experiment(tiny_config(tmp_path, name="cut", resume="latest", **settings))
    assert csv_rows(tmp_path / "cut") == whole


def outputs(folder) -> dict:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.mark.parametrize("change", [{}, {"overwrite": True, "lr": 0.01}])
def test_a_rerun_that_fails_keeps_the_finished_run_until_it_has_finished(
    tmp_path, tiny_config, change
):
    folder = tmp_path / "tiny"
    run_experiment(tiny_config(tmp_path, epochs=1, checkpoint_every=1, log_with="csv"))
    before = outputs(folder)
    assert {"metrics.json", "checkpoint.safetensors", "checkpoints/latest"} <= set(before)
    again = tiny_config(tmp_path, epochs=1, checkpoint_every=1, log_with="csv", **change)
    with pytest.raises(Interrupted):
        run_experiment(again, callbacks=[interrupt_after(1)])
    assert outputs(folder) == before
    assert not (folder / ".next").exists()
    metrics = run_experiment(again)  # a rerun that finishes replaces the earlier outputs
    assert json.loads((folder / "metrics.json").read_text())["run"] == metrics["run"]
    assert json.loads((folder / "run.json").read_text())["config"]["lr"] == again.get("lr", 0.015)
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["epoch_0001", "latest"]


def test_a_killed_runs_temporary_folders_are_removed_by_the_next_run(tmp_path, tiny_config):
    folder = tmp_path / "tiny"
    run_experiment(tiny_config(tmp_path, epochs=1, scheduler="none"))
    leftovers = [
        folder / "checkpoints" / ".epoch_0002.18a3f.tmp",
        folder / ".next",
        folder / ".previous.tmp",
    ]
    for path in leftovers:
        (path / "part").mkdir(parents=True)
    (folder / ".metrics.json.x1.tmp").write_text("{")
    run_experiment(tiny_config(tmp_path, epochs=2, resume="latest", scheduler="none"))
    assert not any(p.exists() for p in leftovers)
    assert not list(folder.glob(".*.tmp"))


def test_an_edited_state_manifest_is_refused(tmp_path, tiny_config):
    run_experiment(tiny_config(tmp_path, epochs=1, scheduler="none"))
    manifest = tmp_path / "tiny" / "checkpoints" / "epoch_0001" / "state.json"
    state = json.loads(manifest.read_text())
    state["config"]["lr"] = 0.1  # to pass a resume with another learning rate
    manifest.write_text(json.dumps(state))
    with pytest.raises(ValueError, match=r"state.json was edited"):
        run_experiment(tiny_config(tmp_path, epochs=2, lr=0.1, scheduler="none", resume="latest"))
    for text in ("{", "[1, 2]", json.dumps({"format": "pml-hashing-training-state-v2"})):
        manifest.write_text(text)
        with pytest.raises(ValueError, match="state.json"):
            run_experiment(tiny_config(tmp_path, epochs=2, scheduler="none", resume="latest"))


def test_num_workers_beyond_four_per_cpu_is_refused(tiny_config, tmp_path):
    from pml_hashing.training.threads import available_cores

    limit = max(8, 4 * available_cores())
    with pytest.raises(ValueError, match=f"num_workers must be at most {limit} "):
        ExperimentConfig.from_dict({"num_workers": limit + 1})
    with pytest.raises(ValueError, match="num_workers must be at most"):
        ExperimentConfig.from_dict({"num_workers": 100_000})
    ExperimentConfig.from_dict({"num_workers": limit})
