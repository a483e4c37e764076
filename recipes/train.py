"""Train a hashing model and report retrieval quality.

    accelerate launch recipes/train.py                       # DPN, 64 bits, bundled MNIST-5k
    accelerate launch recipes/train.py --bits 32 --target-miner adaptive
    accelerate launch recipes/train.py --method sh-bdnn --bits 16 --dataset digits
    accelerate launch recipes/train.py --config recipes/configs/cifar10-1_dpn_64.yaml
    accelerate launch recipes/train.py --help                # every flag, its default, choices

Writes runs/<name>/metrics.json, checkpoint.safetensors, splits.json, run.json,
checkpoints/ and logs/. A bad flag or config value, a changed config on --resume, or a run
folder that another config's run owns is a usage error (exit 2) before anything is trained.
"""

import json

from pml_hashing.training.config import build_parser, parse_config
from pml_hashing.training.threads import configure_threads


def main(argv=None) -> dict:
    parser = build_parser()
    try:
        config = parse_config(argv)
        # accelerate launch sets OMP_NUM_THREADS=1 for one CPU process: use the cores given
        configure_threads(config.num_threads)
        # imported once the flags are read: --help and usage errors skip Accelerate and timm
        from pml_hashing.training import Trainer

        trainer = Trainer(config)
        trainer.build()  # checks the resume point and the run folder, builds everything
    except (ValueError, OSError) as error:  # a bad value, or a file named that is not there
        parser.error(str(error))
    metrics = trainer.run()
    from accelerate import PartialState

    if PartialState().is_main_process:
        result = metrics["last_epoch"]
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
        line = f"{trainer.run_name}: mAP@{result['topk']} {result['map']:.4f}"
        line += f" (ties={result['ties']})"
        if result.get("ternary_degenerate"):  # all-zero ternary codes: no ternary mAP
            line += ", ternary (DPN-T) none (degenerate: all-zero codes)"
        elif "map_ternary" in result:
            line += f", ternary (DPN-T) {result['map_ternary']:.4f}"
        precision = result["precision_within_radius"]
        line += f", precision within radius {result['radius']} {precision:.4f}"
        print(line)
        print(f"written to {trainer.run_dir}/metrics.json")
    return metrics


if __name__ == "__main__":
    main()
