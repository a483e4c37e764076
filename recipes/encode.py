"""Encode a split of a checkpoint's data set to an .npz (codes, outputs, labels, ids).

    accelerate launch recipes/encode.py --checkpoint runs/<name>/checkpoint.safetensors \
        --split database --out database.npz
    pml-hashing index build --codes database.npz --out database.index
"""

import argparse

from accelerate import Accelerator

from pml_hashing.training import encode_checkpoint
from pml_hashing.training.checkpoint_jobs import SPLITS


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="runs/<name>/checkpoint.safetensors")
    parser.add_argument("--split", default="database", choices=SPLITS)
    parser.add_argument("--out", required=True, help="the .npz file to write")
    parser.add_argument("--dataset", help="another data set than the checkpoint's")
    parser.add_argument("--root", help="its data folder")
    parser.add_argument("--split-file", help="a saved splits.json to reuse")
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args(argv)
    accelerator = Accelerator()
    arrays = encode_checkpoint(
        args.checkpoint,
        split=args.split,
        out=args.out if accelerator.is_main_process else None,
        dataset=args.dataset,
        root=args.root,
        split_file=args.split_file,
        batch_size=args.batch_size,
        accelerator=accelerator,
    )
    if accelerator.is_main_process:
        print(
            f"wrote {len(arrays['codes'])} codes of {arrays['codes'].shape[1]} bits to {args.out}"
        )
    return arrays


if __name__ == "__main__":
    main()
