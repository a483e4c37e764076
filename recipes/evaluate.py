"""Evaluate a trained checkpoint on its query and database splits.

accelerate launch recipes/evaluate.py --checkpoint runs/mnist-5k-dpn-random-64b-seed0
accelerate launch recipes/evaluate.py --checkpoint ... --ties expected --out eval.json
"""

import argparse
import json

from pml_hashing._validation import TIE_RULES


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="runs/<name>/checkpoint.safetensors")
    parser.add_argument("--dataset", help="another data set than the checkpoint's")
    parser.add_argument("--root", help="its data folder")
    parser.add_argument("--split-file", help="a saved splits.json to reuse")
    parser.add_argument("--topk", type=int, help="R of mAP@R (default: the protocol's)")
    parser.add_argument("--ties", default="index", choices=TIE_RULES)
    parser.add_argument("--radius", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--out", help="write the report as JSON here")
    args = parser.parse_args(argv)
    # imported once the flags are read: --help and usage errors skip Accelerate and timm
    from accelerate import Accelerator

    from pml_hashing.training import evaluate_checkpoint

    accelerator = Accelerator()
    report = evaluate_checkpoint(
        args.checkpoint,
        dataset=args.dataset,
        root=args.root,
        split_file=args.split_file,
        topk=args.topk,
        ties=args.ties,
        radius=args.radius,
        batch_size=args.batch_size,
        accelerator=accelerator,
    )
    if accelerator.is_main_process:
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            with open(args.out, "w") as f:
                f.write(text)
    return report


if __name__ == "__main__":
    main()
