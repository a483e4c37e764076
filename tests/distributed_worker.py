"""Run by tests/test_distributed.py under `accelerate launch` with 2 CPU processes.

Each rank saves the model weights and the codebook it holds at the end of training, and
its metrics, so that the test can compare the ranks with each other and with one process.
"""

import json
import sys
from pathlib import Path

import torch
from accelerate import PartialState

from pml_hashing.training import Callback, run_experiment


class CaptureAtReport(Callback):
    """Keeps the weights and the codebook this rank holds when the run reports."""

    name = "capture"

    def __init__(self):
        self.captured = {}

    def on_report(self, trainer, metrics):
        model = trainer.unwrapped
        self.captured["model"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.captured["targets"] = trainer.method.target_miner.targets.detach().clone()


def main(output_dir: str, name: str) -> None:
    capture = CaptureAtReport()
    config = json.loads(Path(output_dir, "config.json").read_text())
    config.update(output_dir=output_dir, name=name)
    metrics = run_experiment(config, callbacks=[capture])
    rank = PartialState().process_index
    torch.save(capture.captured, Path(output_dir) / f"rank{rank}.pt")
    result = {"last_epoch": metrics["last_epoch"], "history": metrics["history"]}
    for epoch in result["history"]:
        epoch.pop("seconds")  # wall time differs between ranks
    Path(output_dir, f"metrics{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:3])
