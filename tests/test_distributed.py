"""Two CPU processes: same codebook and weights as one process with the same global batch."""

import json
import os
from pathlib import Path

import pytest
import torch
from accelerate import debug_launcher

from pml_hashing.training import run_experiment

pytestmark = pytest.mark.slow


def _config(output_dir: str, name: str) -> dict:
    # No batch norm: its statistics are per process, so a split batch would differ
    # from a whole batch by design, not by a bug.
    return dict(
        name=name,
        output_dir=output_dir,
        dataset="digits",
        bits=16,
        backbone="hashing_cnn_small",
        backbone_kwargs={"widths": [8, 16], "batch_norm": False},
        target_miner="adaptive",
        epochs=2,
        batch_size=64,
        lr=1e-2,
        optimizer="sgd",
        log_with="none",
        progress=False,
        eval_batch_size=100,
        checkpoint_every=0,
    )


def _rank_state():
    from accelerate import PartialState

    from pml_hashing.training import loop

    captured = {}

    class Capture:
        def __init__(self):
            self.original = loop._evaluate

        def __call__(self, model, method, *args, **kwargs):
            captured["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
            captured["targets"] = method.target_miner.targets.detach().clone()
            return self.original(model, method, *args, **kwargs)

    loop._evaluate = Capture()
    config = _config(os.environ["PMLH_TEST_DIR"], "two")
    metrics = run_experiment(config)
    rank = PartialState().process_index
    torch.save(captured, Path(config["output_dir"]) / f"rank{rank}.pt")
    with open(Path(config["output_dir"]) / f"metrics{rank}.json", "w") as f:
        json.dump({"last_epoch": metrics["last_epoch"], "history": metrics["history"]}, f)


def test_two_processes_match_one_process(tmp_path, monkeypatch):
    monkeypatch.setenv("PMLH_TEST_DIR", str(tmp_path))
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    debug_launcher(_rank_state, num_processes=2)

    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    # identical on every process, at the end of training
    assert torch.equal(rank0["targets"], rank1["targets"])
    for key in rank0["model"]:
        assert torch.equal(rank0["model"][key], rank1["model"][key]), key
    metrics0 = json.loads((tmp_path / "metrics0.json").read_text())
    metrics1 = json.loads((tmp_path / "metrics1.json").read_text())
    assert metrics0 == metrics1
    # evaluation gathered every query and database item exactly once (uneven last batch)
    assert metrics0["last_epoch"]["num_query"] == 1000
    assert metrics0["last_epoch"]["num_database"] == 797

    # the same global batch on one process
    one = run_experiment(_config(str(tmp_path), "one"))
    single = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)
    assert torch.equal(single["method"]["loss.target_miner.targets"], rank0["targets"])
    for key, value in single["model"].items():
        torch.testing.assert_close(rank0["model"][key], value, rtol=1e-4, atol=1e-5)
    two_losses = [x for epoch in metrics0["history"] for x in epoch["losses"]]
    one_losses = [x for epoch in one["history"] for x in epoch["losses"]]
    assert len(two_losses) == len(one_losses)
    torch.testing.assert_close(
        torch.tensor(two_losses), torch.tensor(one_losses), rtol=1e-4, atol=1e-4
    )
