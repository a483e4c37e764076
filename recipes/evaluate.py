"""Evaluate a trained checkpoint on its query and database splits.

accelerate launch recipes/evaluate.py --checkpoint runs/mnist-5k-dpn-random-64b-seed0
accelerate launch recipes/evaluate.py --checkpoint ... --ties expected --out eval.json

A checkpoint that is not there, a negative radius or an --out in a folder that does not
exist is a usage error (exit 2) before any model is loaded or any image encoded.
"""

import argparse
import json
from pathlib import Path

from pml_hashing._files import write_text_atomic
from pml_hashing._validation import TIE_RULES


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer; got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be >= 1; got 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument(
        "--checkpoint", required=True, help="runs/<name>/checkpoint.safetensors, or runs/<name>"
    )
    parser.add_argument("--dataset", help="another data set than the checkpoint's")
    parser.add_argument("--root", help="its data folder")
    parser.add_argument("--split-file", help="a saved splits.json to reuse")
    parser.add_argument("--topk", type=_positive_int, help="R of mAP@R (default: the protocol's)")
    parser.add_argument("--ties", default="index", choices=TIE_RULES)
    parser.add_argument("--radius", type=_non_negative_int, default=2)
    parser.add_argument("--batch-size", type=_positive_int, default=512)
    parser.add_argument("--out", help="write the report as JSON here")
    return parser


def check_paths(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What can be checked before the (long) evaluation: the files named exist."""
    checkpoint = Path(args.checkpoint)
    if not (checkpoint.is_file() or (checkpoint / "checkpoint.safetensors").is_file()):
        parser.error(f"--checkpoint: {checkpoint} is not a checkpoint file or a run folder")
    if args.split_file and not Path(args.split_file).is_file():
        parser.error(f"--split-file: {args.split_file} does not exist")
    if args.out and not Path(args.out).resolve().parent.is_dir():
        parser.error(f"--out: the folder of {args.out} does not exist")


def main(argv=None) -> dict:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_paths(parser, args)
    # imported once the flags are read: --help and usage errors skip Accelerate and timm
    from accelerate import Accelerator

    from pml_hashing.training import evaluate_checkpoint

    accelerator = Accelerator()
    try:
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
    except (ValueError, OSError) as error:  # an unreadable checkpoint, a data set not there
        parser.error(str(error))
    if accelerator.is_main_process:
        text = json.dumps(report, indent=2)
        print(text)
        if args.out:
            write_text_atomic(args.out, text)
    return report


if __name__ == "__main__":
    main()
