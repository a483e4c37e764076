"""Train a hashing model and report retrieval quality.

    accelerate launch recipes/train.py                       # DPN, 64 bits, bundled MNIST-5k
    accelerate launch recipes/train.py --bits 32 --target-miner adaptive
    accelerate launch recipes/train.py --method sh-bdnn --bits 16 --dataset digits
    accelerate launch recipes/train.py --config recipes/configs/cifar10-1_dpn_64.yaml

Writes runs/<name>/metrics.json, checkpoint.pt, splits.json, checkpoints/ and logs/.
"""

import json

from pml_hashing.training import parse_config, run_experiment
from pml_hashing.training.threads import configure_threads


def main(argv=None) -> dict:
    config = parse_config(argv)
    configure_threads(config.num_threads)  # accelerate launch sets OMP_NUM_THREADS=1
    metrics = run_experiment(config)
    from accelerate import PartialState

    if PartialState().is_main_process:
        result = metrics["last_epoch"]
        print(json.dumps({k: v for k, v in metrics.items() if k != "history"}, indent=2))
        line = f"{config.run_name()}: mAP@{result['topk']} {result['map']:.4f}"
        line += f" (ties={result['ties']})"
        if "map_ternary" in result:
            line += f", ternary (DPN-T) {result['map_ternary']:.4f}"
        precision = result["precision_within_radius"]
        line += f", precision within radius {result['radius']} {precision:.4f}"
        print(line)
        print(f"written to {config.run_dir()}/metrics.json")
    return metrics


if __name__ == "__main__":
    main()
