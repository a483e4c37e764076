"""The training loop: config errors before training, checkpoints, exact resume, the recipe."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from pml_hashing.training import (
    ExperimentConfig,
    encode_dataset,
    load_checkpoint,
    parse_config,
    run_experiment,
)
from pml_hashing.training.checkpoint import read_safetensors, write_safetensors
from tests.launch import accelerate_launch

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_config_key_is_refused_with_the_known_keys():
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['bitz'\]"):
        ExperimentConfig.from_dict({"bitz": 64})


def test_unknown_key_in_config_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("bits: 32\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match="run.yaml has unknown key"):
        parse_config(["--config", str(path)])


def test_flags_override_config_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("bits: 32\nmargin: 2.0\n")
    config = parse_config(["--config", str(path), "--bits", "16", "--target-miner", "hadamard"])
    assert (config.bits, config.margin, config.target_miner) == (16, 2.0, "hadamard")


def test_bits_faiss_cannot_pack_are_refused():
    with pytest.raises(ValueError, match="bits must be a positive multiple of 8"):
        ExperimentConfig.from_dict({"bits": 12})


def test_unknown_backbone_fails_before_training(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="'resnet_does_not_exist' is not a timm model"):
        run_experiment(tiny_config(tmp_path, backbone="resnet_does_not_exist"))
    assert not (tmp_path / "tiny" / "checkpoints").exists()


def test_mismatched_weights_file_fails_before_training(tmp_path, tiny_config):
    weights = tmp_path / "other.pth"
    torch.save({"some.layer.weight": torch.zeros(3, 3)}, weights)
    with pytest.raises(ValueError, match="does not match backbone"):
        run_experiment(tiny_config(tmp_path, pretrained=str(weights)))
    assert not (tmp_path / "tiny" / "checkpoints").exists()


def test_local_pretrained_weights_are_loaded(tmp_path):
    from pml_hashing.models import HashingModel

    source = HashingModel("hashing_cnn_small", 16, in_chans=1, widths=(8, 16))
    weights = tmp_path / "backbone.pth"
    torch.save(source.backbone.state_dict(), weights)
    model = HashingModel("hashing_cnn_small", 16, pretrained=weights, in_chans=1, widths=(8, 16))
    for key, value in source.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)


def test_run_writes_metrics_and_a_checkpoint_that_encodes_the_same(tmp_path, tiny_config):
    metrics = run_experiment(tiny_config(tmp_path, target_miner="adaptive"))
    run_dir = tmp_path / "tiny"
    written = json.loads((run_dir / "metrics.json").read_text())
    result = written["last_epoch"]
    assert 0.0 <= result["map"] <= 1.0
    # two epochs may leave every output inside the margin: then no ternary mAP is reported
    if result["ternary_degenerate"]:
        assert result["map_ternary"] is None
    else:
        assert 0.0 <= result["map_ternary"] <= 1.0
    assert result["num_query"] == 1000 and result["num_database"] == 797
    assert written["epochs_trained"] == 2 == len(metrics["history"])
    splits = json.loads((run_dir / "splits.json").read_text())
    assert not set(splits["splits"]["query"]) & set(splits["splits"]["database"])

    model, method, config, _ = load_checkpoint(run_dir / "checkpoint.safetensors")
    assert config.bits == 16 and method.target_miner.targets.shape == (10, 16)
    # the checkpoint reproduces the reported number
    from pml_hashing.data import load_protocol
    from pml_hashing.training import retrieval_report

    protocol = load_protocol("digits", seed=config.seed)
    query = encode_dataset(model, protocol.query)
    database = encode_dataset(model, protocol.database)
    again = retrieval_report(*query, *database, ternary_margin=method.retrieval_margin())
    assert again["map"] == pytest.approx(result["map"], abs=1e-6)


def test_resumed_run_continues_exactly(tmp_path, tiny_config):
    # one warm-up epoch, then an update every epoch: the resumed run must know its epoch
    adaptive = dict(target_miner="adaptive", warmup_epochs=1, update_every=1)
    whole = run_experiment(tiny_config(tmp_path, name="whole", epochs=3, **adaptive))
    run_experiment(
        tiny_config(tmp_path, name="cut", epochs=3, max_train_steps=24, **adaptive)
    )  # stops after 2 of 3 epochs (12 steps each)
    resumed = run_experiment(
        tiny_config(tmp_path, name="cut", epochs=3, resume="latest", **adaptive)
    )
    assert [e["losses"] for e in resumed["history"]] == [e["losses"] for e in whole["history"]]
    assert resumed["last_epoch"]["map"] == whole["last_epoch"]["map"]
    a = load_checkpoint(tmp_path / "whole" / "checkpoint.safetensors")[3]
    b = load_checkpoint(tmp_path / "cut" / "checkpoint.safetensors")[3]
    assert torch.equal(
        a["method"]["loss.target_miner.targets"], b["method"]["loss.target_miner.targets"]
    )
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, tiny_config):
    with pytest.raises(ValueError, match="resume='latest' but .* does not exist"):
        run_experiment(tiny_config(tmp_path, resume="latest"))


def test_interrupted_save_leaves_the_previous_checkpoint_in_place(tmp_path, monkeypatch):
    import safetensors.torch

    path = tmp_path / "checkpoint.safetensors"
    write_safetensors(path, {"w": torch.ones(2)}, {"version": 1})

    def broken_save(tensors, filename, *args, **kwargs):
        Path(filename).write_bytes(b"half a checkpo")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors(path, {"w": torch.zeros(2)}, {"version": 2})
    monkeypatch.undo()
    tensors, meta = read_safetensors(path)
    assert meta == {"version": 1} and torch.equal(tensors["w"], torch.ones(2))
    assert list(tmp_path.iterdir()) == [path]


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable pml-hashing checkpoint"):
        load_checkpoint(path)


def test_validation_split_selects_without_queries(tmp_path, tiny_config):
    metrics = run_experiment(tiny_config(tmp_path, validation_per_class=10, epochs=2))
    assert len(metrics["validation"]) == 2
    assert metrics["best_epoch_by_validation"] in (1, 2)
    assert "map" in metrics["best_by_validation"] and "map" in metrics["last_epoch"]
    splits = json.loads((tmp_path / "tiny" / "splits.json").read_text())["splits"]
    assert not set(splits["validation"]) & set(splits["train"])
    assert not set(splits["validation"]) & set(splits["query"])


@pytest.mark.slow
def test_recipe_runs_under_accelerate_launch(tmp_path):
    flags = ["--dataset", "digits", "--bits", "16", "--epochs", "1", "--output-dir", tmp_path]
    flags += ["--name", "recipe", "--no-progress", "--backbone-kwargs", "{widths: [8, 16]}"]
    done = accelerate_launch(ROOT / "recipes" / "train.py", *flags, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "recipe: mAP@all" in done.stdout
    assert (tmp_path / "recipe" / "metrics.json").is_file()


def test_evaluate_and_encode_recipes_reproduce_the_run(tmp_path, tiny_config):
    import importlib.util

    import numpy as np

    def recipe(name):
        spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    metrics = run_experiment(tiny_config(tmp_path, epochs=1))
    checkpoint = str(tmp_path / "tiny" / "checkpoint.safetensors")
    report = recipe("evaluate").main(
        ["--checkpoint", checkpoint, "--out", str(tmp_path / "e.json")]
    )
    assert report["map"] == pytest.approx(metrics["last_epoch"]["map"], abs=1e-9)
    assert json.loads((tmp_path / "e.json").read_text())["map"] == report["map"]
    arrays = recipe("encode").main(
        ["--checkpoint", checkpoint, "--split", "query", "--out", str(tmp_path / "q.npz")]
    )
    saved = np.load(tmp_path / "q.npz")
    assert saved["codes"].shape == (1000, 16) and set(np.unique(saved["codes"])) <= {-1, 1}
    assert np.array_equal(saved["codes"], np.where(saved["outputs"] >= 0, 1, -1))
    assert np.array_equal(saved["ids"], arrays["ids"])
    with pytest.raises(ValueError, match="split must be one of"):
        from pml_hashing.training import encode_checkpoint

        encode_checkpoint(checkpoint, split="test")


def test_bf16_mixed_precision_and_gradient_accumulation_run(tmp_path, tiny_config):
    metrics = run_experiment(
        tiny_config(
            tmp_path,
            epochs=1,
            mixed_precision="bf16",
            gradient_accumulation_steps=2,
            checkpoint_every=1,
        )
    )
    assert 0.0 <= metrics["last_epoch"]["map"] <= 1.0
    state = json.loads(
        (tmp_path / "tiny" / "checkpoints" / "epoch_0001" / "state.json").read_text()
    )
    # 797 training images, global batch 64, full batches only: 12 batches, 6 optimizer steps
    assert len(metrics["history"][0]["losses"]) == 12
    assert state["progress"]["global_step"] == 6


def test_data_kwargs_reach_the_loader(tmp_path, tiny_config):
    config = ExperimentConfig.from_dict(
        tiny_config(tmp_path, data_kwargs={"query_per_class": 20}, validation_per_class=5)
    )
    from pml_hashing.training import build_protocol

    protocol = build_protocol(config)
    assert len(protocol.query) == 200 and len(protocol.validation) == 50
    # a config key belongs in the config, where the run records it
    with pytest.raises(ValueError, match="`validation_per_class`"):
        ExperimentConfig.from_dict(tiny_config(tmp_path, data_kwargs={"validation_per_class": 5}))


def load_recipe(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--checkpoint", "missing"], "--checkpoint: missing is not a checkpoint"),
        (["--radius", "-1"], "argument --radius: must be >= 0"),
        (["--out", "no/such/folder/e.json"], "--out: the folder of no/such/folder/e.json"),
        (["--topk", "0"], "argument --topk: must be >= 1"),
    ],
)
def test_evaluate_recipe_refuses_bad_arguments_before_any_work(
    tmp_path, monkeypatch, capsys, argv, message
):
    import pml_hashing.training as training

    def not_now(*args, **kwargs):
        raise AssertionError("evaluated before the arguments were checked")

    monkeypatch.setattr(training, "evaluate_checkpoint", not_now)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.safetensors").write_bytes(b"")
    full = ["--checkpoint", "run", *argv] if argv[0] != "--checkpoint" else argv
    with pytest.raises(SystemExit) as exit_info:
        load_recipe("evaluate").main(full)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_key_given_twice_in_a_config_file_or_flag_is_an_error(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("bits: 32\nlr: 0.1\nlr: 0.2\n")
    with pytest.raises(
        ValueError, match=r"run.yaml is not valid YAML at line 3.*duplicate key 'lr'"
    ):
        parse_config(["--config", str(path)])
    with pytest.raises(SystemExit):
        parse_config(["--data-kwargs", "{query_per_class: 1, query_per_class: 2}"])
    assert "duplicate key 'query_per_class'" in capsys.readouterr().err


def test_a_usage_error_under_accelerate_launch_is_one_message(tmp_path):
    recipe = str(ROOT / "recipes" / "train.py")
    result = subprocess.run(
        ["accelerate", "launch", "-q", "--num_processes", "1", "--cpu", recipe, "--epochs", "two"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert result.returncode != 0
    assert result.stderr.count("must be an integer; got 'two'") == 1, result.stderr
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", ["dpn", "sh-bdnn", "uh-bdnn", "classifier"])
def test_a_training_step_waits_for_no_device_sync(method):
    # float(), int() or bool() of a device tensor blocks the host once per step; CUDA's
    # sync debug mode turns every such wait into an error.
    from pml_hashing.data import load_protocol
    from pml_hashing.methods import build_method

    protocol = load_protocol("digits", seed=0)
    config = ExperimentConfig.from_dict({"method": method, "bits": 16, "dataset": "digits"})
    trained = build_method(config, protocol).cuda()
    trained.on_epoch_start(0, lambda: None)
    images = protocol.train.images[:32].cuda()
    labels = protocol.train.labels[:32].cuda()
    outputs = torch.randn(32, 16, device="cuda", requires_grad=True)
    indices = torch.arange(32, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            trained.compute_loss(outputs, labels, images, indices).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trained.on_epoch_end(0)  # the deferred checks and statistics are read here, once
