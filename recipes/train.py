"""Train a hashing model and report retrieval quality.

    accelerate launch recipes/train.py                       # DPN, 64 bits, bundled MNIST-5k
    accelerate launch recipes/train.py --bits 32 --target-miner adaptive
    accelerate launch recipes/train.py --method sh-bdnn --bits 16 --dataset digits
    accelerate launch recipes/train.py --config recipes/configs/cifar10-1_dpn_64.yaml
    accelerate launch recipes/train.py --help                # every flag, its default, choices

Writes runs/<name>/metrics.json, checkpoint.safetensors, splits.json, run.json,
checkpoints/ and logs/. A bad flag or config value, a changed config on --resume, or a run
folder that another config's run owns is a usage error (exit 2) before anything is trained.
Under `accelerate launch -q` such an error is one message (without -q, accelerate adds its
own traceback of the launch).
"""

import json
import os
import sys

from pml_hashing.training import collector

if __name__ == "__main__":  # one run in this process: see pml_hashing/training/collector.py
    collector.pause_collection()

from pml_hashing.training.config import as_flags, build_parser, parse_config
from pml_hashing.training.threads import configure_threads


def usage_error(parser, message: str):
    """Exit 2 with ``message``; under ``accelerate launch``, whose launcher repeats the
    child's output in its own traceback, without the long usage block."""
    message = as_flags(message)
    if "ACCELERATE_DYNAMO_BACKEND" in os.environ:  # exported by every accelerate launcher
        parser.exit(2, f"{parser.prog}: error: {message} (--help lists every flag)\n")
    parser.error(message)


def summary_line(trainer, metrics: dict) -> str:
    result = metrics["last_epoch"]
    line = f"{trainer.run_name}: mAP@{result['topk']} {result['map']:.4f}"
    line += f" (ties={result['ties']})"
    if result.get("ternary_degenerate"):  # all-zero ternary codes: no ternary mAP
        line += ", ternary (DPN-T) none (degenerate: all-zero codes)"
    elif "map_ternary" in result:
        line += f", ternary (DPN-T) {result['map_ternary']:.4f}"
    if result.get("map_unseen_vs_all") is not None:  # unseen queries, seen + unseen items
        line += f", unseen vs all {result['map_unseen_vs_all']:.4f}"
    precision = result["precision_within_radius"]
    return line + f", precision within radius {result['radius']} {precision:.4f}"


def main(argv=None) -> dict:
    parser = build_parser()
    if "ACCELERATE_DYNAMO_BACKEND" in os.environ:
        parser.error = lambda message: usage_error(parser, message)
    try:
        config = parse_config(argv, parser=parser)
        if config.num_threads is None:
            # accelerate launch sets OMP_NUM_THREADS=1 for one CPU process: use the cores
            # given (the Trainer sets an explicit num_threads itself)
            configure_threads(None)
        # imported once the flags are read: --help and usage errors skip Accelerate and timm
        from pml_hashing.training import Trainer

        trainer = Trainer(config)
        trainer.build()  # checks the resume point and the run folder, builds everything
        collector.freeze_and_resume()  # run as a script: later collections skip the build
    except (ValueError, OSError) as error:  # a bad value, or a file named that is not there
        usage_error(parser, str(error))
    try:
        metrics = trainer.run()
    except (ValueError, OSError) as error:  # e.g. an image that cannot be decoded
        parser.exit(
            1,
            f"{parser.prog}: error: {as_flags(str(error))} (an earlier run's outputs in "
            f"{trainer.run_dir} are kept)\n",
        )
    from accelerate import PartialState

    if PartialState().is_main_process:
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
        print(summary_line(trainer, metrics))
        print(f"written to {trainer.run_dir}/metrics.json")
    collector.freeze_for_exit()  # run as a script: the process exits next
    return metrics


if __name__ == "__main__":
    main(sys.argv[1:])
