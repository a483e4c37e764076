"""Encode a split of a checkpoint's data set (or images) with one process per device.

    accelerate launch recipes/encode.py --checkpoint runs/<name> --split database --out db/
    pml-hashing index build --codes db/ --out database.index

``--out DIR`` streams one Parquet shard per process (nothing is gathered, a rerun resumes);
``--out FILE.npz`` gathers the codes to the main process (small data). The flags are those
of ``pml-hashing encode`` (``--help``), which this recipe runs.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np

from pml_hashing.cli import main as cli_main
from pml_hashing.cli import make_parser


def main(argv=None) -> dict:
    """Run ``pml-hashing encode`` with ``argv``.

    Returns:
        on the main process, the arrays of the ``.npz`` written, or the shard folder's
        manifest (``{}`` while other shards are still running); ``{}`` on the other
        processes. A user error exits with status 2 (``SystemExit``) before any work.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    status = cli_main(["encode", *argv])
    if status != 0:
        raise SystemExit(status)
    if int(os.environ.get("RANK", "0")) != 0:
        return {}
    out = Path(make_parser().parse_args(["encode", *argv]).out)
    if out.suffix == ".npz" and out.is_file():
        with np.load(out, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    manifest = out / "_manifest.json"
    return json.loads(manifest.read_text()) if manifest.is_file() else {}


if __name__ == "__main__":
    main()
