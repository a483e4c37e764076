"""Encode a split of a checkpoint's data set (or images) with one process per device.

    accelerate launch recipes/encode.py --checkpoint runs/<name> --split database --out db/
    pml-hashing index build --codes db/ --out database.index

``--out DIR`` streams one Parquet shard per process (nothing is gathered, a rerun resumes);
``--out FILE.npz`` gathers the codes to the main process (small data). The flags are those
of ``pml-hashing encode`` (``--help``), which this recipe runs.
"""

import sys

from pml_hashing.cli import main as cli_main


def main(argv=None) -> int:
    """``pml-hashing encode`` with ``argv``; returns its exit status (2 for a user error,
    reported before any work)."""
    return cli_main(["encode", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
