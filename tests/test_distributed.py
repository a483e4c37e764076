"""Two CPU processes: same codebook and weights as one process with the same global batch."""

import json
from pathlib import Path

import pytest
import torch

from pml_hashing.training import load_checkpoint, run_experiment
from tests.launch import accelerate_launch

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
        warmup_epochs=0,  # Algorithm 1's schedule, so that both epochs update the codebook
        update_every=1,
        epochs=2,
        batch_size=64,
        lr=1e-2,
        optimizer="sgd",
        log_with="none",
        progress=False,
        eval_batch_size=100,
        checkpoint_every=0,
    )


def test_two_processes_match_one_process(tmp_path):
    # Fresh processes through `accelerate launch` (DESIGN.md section 6)
    (tmp_path / "config.json").write_text(json.dumps(_config(str(tmp_path), "two")))
    worker = Path(__file__).with_name("distributed_worker.py")
    done = accelerate_launch(worker, tmp_path, "two", num_processes=2)
    assert done.returncode == 0, done.stderr[-3000:]

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
    single = load_checkpoint(tmp_path / "one" / "checkpoint.safetensors")[3]
    assert torch.equal(single["method"]["loss.target_miner.targets"], rank0["targets"])
    for key, value in single["model"].items():
        torch.testing.assert_close(rank0["model"][key], value, rtol=1e-4, atol=1e-5)
    assert metrics0["history"][0]["losses"], "the 2-process run trained"
    two_losses = [x for epoch in metrics0["history"] for x in epoch["losses"]]
    one_losses = [x for epoch in one["history"] for x in epoch["losses"]]
    assert len(two_losses) == len(one_losses)
    torch.testing.assert_close(
        torch.tensor(two_losses), torch.tensor(one_losses), rtol=1e-4, atol=1e-4
    )


ON_MAIN_WORKER = """
import json, sys
from pathlib import Path

from pml_hashing.training.distributed import on_main, process_state


class LockTaken(TimeoutError):
    pass


def fail(error):
    def action():
        raise error
    return action


rank = process_state().process_index
outcomes = {"value": on_main(lambda: {"answer": 42, "rank": rank})}
for error in (LockTaken("the run folder is locked"), KeyError("seed"), ValueError("bits")):
    try:
        on_main(fail(error))
        outcomes[type(error).__name__] = None
    except Exception as caught:
        outcomes[type(error).__name__] = [type(caught).__name__, str(caught)]
Path(sys.argv[1], f"rank{rank}.json").write_text(json.dumps(outcomes))
# leave the process group as the trainer does (end_training): a group alive at exit can
# abort the interpreter ("terminate called without an active exception")
process_state().wait_for_everyone()
process_state().destroy_process_group()
"""


def test_an_error_of_any_type_on_the_main_process_is_raised_on_every_process(tmp_path):
    script = tmp_path / "on_main_worker.py"
    script.write_text(ON_MAIN_WORKER)
    # a rank left waiting for the main process would hang here: the timeout fails the test
    done = accelerate_launch(script, tmp_path, num_processes=2, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    # the main process's result reaches the other process
    assert rank0["value"] == rank1["value"] == {"answer": 42, "rank": 0}
    # the main process raises the error itself; the other one its nearest built-in type
    assert rank0["LockTaken"] == ["LockTaken", "the run folder is locked"]
    assert rank1["LockTaken"] == ["TimeoutError", "the run folder is locked"]
    assert rank0["KeyError"] == rank1["KeyError"] == ["KeyError", "'seed'"]
    assert rank0["ValueError"] == rank1["ValueError"] == ["ValueError", "bits"]
