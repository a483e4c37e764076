"""The ``pml-hashing`` command line: build, search and evaluate binary-code indexes.

Codes are read from ``.npz`` files (``numpy.savez``) holding:

* ``codes``: ``(N, K)`` codes in {-1, +1}, or raw network outputs (binarized with
  ``v >= 0 -> +1``); for ``index evaluate`` also ternary codes in {-1, 0, +1} (DPN-T);
* ``ids`` (optional, ``index build``): ``(N,)`` non-negative integer ids;
* ``labels`` (``index evaluate``): integer ``(N,)`` or multi-hot ``(N, C)`` labels.

Every subcommand reads its codes through :func:`read_codes`, the one place where another
source of codes (e.g. encoding a dataset with a trained checkpoint) plugs in.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from ._validation import (
    TIE_RULES,
    check_input_file,
    check_integer,
    check_output_path,
    refuse_zero_one,
)
from .codes import binarize
from .index import BinaryIndex

# Rows per add/search call: keeps progress bars moving and faiss's temporaries bounded.
_BLOCK = 65536

_EPILOG = """\
examples:
  # codes.npz holds `codes` (N, K) (+-1 or raw outputs) and optionally `ids` (N,)
  pml-hashing index build --codes db.npz --kind flat --out db.index
  pml-hashing index build --codes db.npz --kind ivf --param nprobe=8 --out db.index
  pml-hashing index search --index db.index --codes queries.npz -k 10 --out results.npz
  pml-hashing index search --index db.index --codes queries.npz --radius 2 --out ball.npz
  # query.npz and db.npz hold `codes` and `labels`
  pml-hashing index evaluate --query query.npz --database db.npz --topk 5000 --ties index
  # or straight from a model trained by recipes/train.py
  pml-hashing index build --checkpoint runs/mnist-5k-dpn-random-64b-seed0 --out db.index
  pml-hashing index evaluate --checkpoint runs/mnist-5k-dpn-random-64b-seed0
  pml-hashing encode --checkpoint runs/mnist-5k-dpn-random-64b-seed0 --split query \\
      --out query.npz
  # training curves and per-epoch validation mAP of a run, as PNGs in the run folder
  pml-hashing plot runs/mnist-5k-dpn-random-64b-seed0
"""


class CommandError(ValueError):
    """A user error reported as ``pml-hashing: error: ...`` with exit status 2."""


#: Exceptions that :func:`main` reports as ``pml-hashing: error: MESSAGE`` with exit status 2,
#: like argparse's own errors: the package's documented input errors (``ValueError``, which
#: every public boundary raises through ``pml_hashing._validation``) and file-system errors.
USER_ERRORS = (ValueError, OSError)


def read_codes(path: str, required: Sequence[str] = ("codes",)) -> dict[str, np.ndarray]:
    """Read the arrays of an ``.npz`` code file, checking that ``required`` keys are present.

    Args:
        path: the ``.npz`` file.
        required: keys that must be present (``codes`` and, for evaluation, ``labels``).

    Returns:
        a dict of the file's arrays.
    """
    if _is_folder(path):  # a shard folder written by `pml-hashing encode --out DIR`
        return _shard_codes(path, required)
    path = check_input_file(path, "code file")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as e:  # truncated zip, not numpy at all: say which file, not where
        raise CommandError(
            f"{path} is not a readable .npz file ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CommandError(
            f"{path} holds a single array (.npy); an .npz archive of named arrays is expected "
            "(numpy.savez(path, codes=...))"
        )
    try:
        with data:
            arrays = {key: data[key] for key in data.files}
    except Exception as e:  # a damaged member: zlib, EOF, bad header
        raise CommandError(
            f"{path} is not a readable .npz file ({type(e).__name__}: {e})"
        ) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CommandError(
            f"{path} must hold the arrays {list(required)}; missing {missing} "
            f"(found {sorted(arrays)})"
        )
    for key, array in arrays.items():
        if array.dtype.kind not in "biuf":
            raise CommandError(f"{path}: {key} must be a numeric array; got dtype {array.dtype}")
    codes = arrays["codes"]
    if codes.ndim != 2:
        raise CommandError(f"{path}: codes must be a 2-D (N, num_bits) array; got {codes.shape}")
    return arrays


def codes_from_source(args: argparse.Namespace, split: str, path_attr: str = "codes") -> tuple:
    """The arrays of ``--codes FILE.npz``, or of ``--checkpoint`` encoding ``split``.

    Returns ``(arrays, name)``; ``name`` is what error messages call the source.
    """
    path = getattr(args, path_attr, None)
    checkpoint = getattr(args, "checkpoint", None)
    if (path is None) == (checkpoint is None):
        raise CommandError(f"give exactly one of --{path_attr} and --checkpoint")
    if path is not None:
        return read_codes(path), path
    from .training import encode_checkpoint

    split = getattr(args, "split", None) or split
    arrays = encode_checkpoint(checkpoint, split=split, **_checkpoint_data(args))
    return arrays, f"{checkpoint} ({split} split)"


def _checkpoint_data(args: argparse.Namespace) -> dict:
    """The data set flags that go with --checkpoint (another data set, its root, a saved
    splits file), as the keyword arguments of the package's checkpoint functions."""
    return {"dataset": args.dataset, "root": args.root, "split_file": args.split_file}


def _add_checkpoint_arguments(parser: argparse.ArgumentParser, default_split: str | None) -> None:
    group = parser.add_argument_group(
        "from a trained checkpoint (instead of an .npz of codes)",
        "encode a split of the checkpoint's data set with its model (runs/<name>/ or its "
        "checkpoint.safetensors)",
    )
    group.add_argument(
        "--checkpoint", help="a run folder or checkpoint.safetensors written by recipes/train.py"
    )
    if default_split is not None:
        group.add_argument(
            "--split",
            default=default_split,
            choices=("train", "query", "database", "validation"),
            help=f"which split to encode (default: {default_split})",
        )
    group.add_argument("--dataset", help="another data set than the checkpoint's")
    group.add_argument("--root", help="the data folder of a file-based data set")
    group.add_argument("--split-file", help="a saved splits.json to reuse")


def _is_ternary(codes: np.ndarray) -> bool:
    if codes.dtype in (np.uint8, np.bool_):
        return False
    return bool(np.isin(codes, (-1, 0, 1)).all() and (codes == 0).any())


def _binary_codes(codes: np.ndarray, path: str) -> np.ndarray:
    """Codes for a BinaryIndex: packed uint8 kept, ternary refused, anything else binarized."""
    if _is_ternary(codes):
        raise CommandError(
            f"{path}: codes are ternary (-1/0/+1); binary indexes take +-1 codes or raw outputs "
            "(use `index evaluate`, or pml_hashing.index.TernaryFlatIndex, for ternary codes)"
        )
    return codes


def _evaluation_codes(codes: np.ndarray) -> np.ndarray:
    """Codes in {-1, 0, +1} are kept (binary or ternary); raw outputs are binarized."""
    if codes.dtype == np.bool_:
        return np.where(codes, 1, -1).astype(np.int8)
    if np.isin(codes, (-1, 0, 1)).all():
        return codes
    return binarize(codes)


def _parse_params(pairs: Sequence[str]) -> dict[str, int]:
    params = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--param must look like NAME=VALUE (e.g. nprobe=8); got {pair!r}")
        try:
            params[name] = int(value)
        except ValueError:
            raise CommandError(f"--param {name} must be an integer; got {value!r}") from None
    return params


def default_nlist(num_codes: int) -> int:
    """The IVF list count ``index build`` uses without ``--param nlist``: ``4 sqrt(N)`` (a
    usual choice), at most ``N / 39`` so that faiss's k-means has the ~39 training points
    per list it asks for (BinaryIndex's fixed 1024 warned on a 4,000-code database)."""
    return max(1, min(round(4 * num_codes**0.5), num_codes // 39))


def _scaled_params(kind: str, params: dict[str, int], num_codes: int) -> dict[str, int]:
    if kind == "ivf" and "nlist" not in params:
        params = {**params, "nlist": default_nlist(num_codes)}
    return params


def _blocks(n: int, description: str):
    return tqdm(range(0, n, _BLOCK), desc=description, unit="block", disable=None, leave=False)


def _database_codes(args: argparse.Namespace, path_attr: str = "codes") -> tuple:
    """``(codes, ids or None, num_bits, source name)`` of the codes an index is built from
    (``--codes FILE.npz`` or ``--checkpoint``); packed uint8 codes hold 8 bits a byte."""
    arrays, source = codes_from_source(args, "database", path_attr)
    codes = _binary_codes(arrays["codes"], source)
    num_bits = codes.shape[1] * 8 if codes.dtype == np.uint8 else codes.shape[1]
    return codes, arrays.get("ids"), num_bits, source


def build_index(args: argparse.Namespace) -> int:
    if args.engine != "faiss" or _is_folder(getattr(args, "codes", None)):
        return build_streamed(args)
    codes, ids, num_bits, _ = _database_codes(args)
    params = _scaled_params(args.kind, _parse_params(args.param), len(codes))
    index = BinaryIndex(num_bits, kind=args.kind, device=args.device, **params)
    if not index.is_trained:
        index.train(codes)
    for start in _blocks(len(codes), "adding"):
        stop = start + _BLOCK
        index.add(codes[start:stop], None if ids is None else ids[start:stop])
    index.save(args.out)
    print(f"wrote {args.out}: {index.kind} index, {len(index)} codes of {index.num_bits} bits")
    return 0


def search_index(args: argparse.Namespace) -> int:
    if (args.k is None) == (args.radius is None):
        raise CommandError("give exactly one of -k (nearest neighbours) and --radius")
    if args.engine != "faiss":
        return search_engine(args)
    index = BinaryIndex.load(args.index, device=args.device)
    arrays, source = codes_from_source(args, "query")
    queries = _binary_codes(arrays["codes"], source)
    return _save_search_results(args, index, queries, lambda q, k: _search_in_blocks(index, q, k))


def _search_in_blocks(index: BinaryIndex, queries: np.ndarray, k: int):
    """``index.search`` a block of queries at a time (progress, bounded temporaries)."""
    parts = [index.search(queries[s : s + _BLOCK], k) for s in _blocks(len(queries), "searching")]
    distances = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, k))
    ids = np.concatenate([p[1] for p in parts]) if parts else np.zeros((0, k))
    return distances, ids


def _save_search_results(args: argparse.Namespace, index, queries: np.ndarray, search) -> int:
    """``index search``'s result file, the same for every engine: ``search(queries, k)``
    with -k, else ``index.range_search`` within --radius."""
    if args.k is not None:
        distances, ids = search(queries, args.k)
        np.savez(args.out, distances=distances, ids=ids)
        print(f"wrote {args.out}: distances and ids of shape {ids.shape} (id -1: no result)")
        return 0
    lims, distances, ids = index.range_search(queries, args.radius)
    np.savez(args.out, lims=lims, distances=distances, ids=ids)
    print(
        f"wrote {args.out}: {len(ids)} results within radius {args.radius} for "
        f"{len(queries)} queries (query i: lims[i]:lims[i+1])"
    )
    return 0


def evaluate_codes(args: argparse.Namespace) -> int:
    """``index evaluate``: the :func:`~pml_hashing.evaluation.retrieval_report` of query
    codes against database codes (from .npz files or a checkpoint), printed and in --json."""
    from .evaluation import format_retrieval_report, retrieval_report

    if args.engine != "faiss":
        return evaluate_engine(args)
    if args.checkpoint is not None:
        if args.query is not None or args.database is not None:
            raise CommandError("give either --checkpoint or --query and --database, not both")
        if args.ternary_margin is not None:
            raise CommandError(
                "--ternary-margin is for .npz files; a checkpoint's method gives its own margin"
            )
        from .training import evaluate_checkpoint

        report = evaluate_checkpoint(
            args.checkpoint,
            **_checkpoint_data(args),
            topk=args.topk,
            ties=args.ties,
            radius=args.radius,
            seed=args.seed,
        )
        num_bits = None
    elif args.query is None or args.database is None:
        raise CommandError("give --query and --database (.npz files), or --checkpoint")
    else:
        query = read_codes(args.query, required=("codes", "labels"))
        database = read_codes(args.database, required=("codes", "labels"))
        query_values, query_margin = _report_inputs(query, args.ternary_margin, args.query)
        db_values, db_margin = _report_inputs(database, args.ternary_margin, args.database)
        # +-1 codes are ternary codes too: one ternary side is enough for a ternary mAP
        margin = query_margin if query_margin is not None else db_margin
        report = retrieval_report(
            query_values,
            query["labels"],
            db_values,
            database["labels"],
            topk=args.topk,
            ties=args.ties,
            radius=args.radius,
            ternary_margin=margin,
            seed=args.seed,
        )
        report["num_query"], report["num_database"] = len(query_values), len(db_values)
        num_bits = int(query_values.shape[1])
    if num_bits is not None:
        report["num_bits"] = num_bits
    return _print_report(args, report, format_retrieval_report(report), num_bits)


def _print_report(args: argparse.Namespace, report: dict, text: str, num_bits: int | None) -> int:
    """Print ``index evaluate``'s report (sizes, then ``text``) and write it to --json."""
    print(
        f"{report['num_query']} queries, {report['num_database']} database codes"
        + ("" if num_bits is None else f", {num_bits} bits")
    )
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


def _report_inputs(
    arrays: dict, ternary_margin: float | None, source: str
) -> tuple[np.ndarray, float | None]:
    """What the report reads from an .npz, and the ternary margin that goes with it.

    With ``--ternary-margin`` the real ``outputs`` (``pml-hashing encode`` writes them) are
    ternarized; codes that are already ternary are evaluated as they are (margin 0 keeps
    them; their binary mAP counts 0 as +1); binary codes or raw outputs give no ternary mAP.
    """
    codes = np.asarray(arrays["codes"])
    if codes.dtype == np.uint8:
        # evaluation needs the bits: packed bytes (or 0/1 bits) would read as wrong codes
        raise CommandError(
            f"{source}: codes are uint8, packed bits or 0/1 bits; evaluate takes -1/+1 (or "
            "ternary) codes or real outputs, as pml-hashing encode writes them (unpack with "
            "pml_hashing.codes.unpack_bits, or use 2 * bits - 1)"
        )
    if ternary_margin is not None:
        if ternary_margin < 0:
            raise CommandError(f"--ternary-margin must be >= 0; got {ternary_margin}")
        values = arrays.get("outputs", arrays["codes"])
        refuse_zero_one(
            np.asarray(values), f"{source}: {'outputs' if 'outputs' in arrays else 'codes'}"
        )
        return values, ternary_margin
    refuse_zero_one(codes, f"{source}: codes")  # name the file, not the report's argument
    codes = _evaluation_codes(arrays["codes"])
    return codes, 0.0 if _is_ternary(codes) else None


def encode_to_file(args: argparse.Namespace) -> int:
    if not _encodes_to_npz(args):
        return encode_sharded(args)
    if _launched_processes() > 1:  # accelerate launch / torchrun: gather to the main process
        return encode_gathered(args)
    arrays, source = codes_from_source(args, args.split)
    np.savez(args.out, **arrays)
    codes = arrays["codes"]
    print(
        f"wrote {args.out}: codes, outputs, labels, ids of {len(codes)} items ({source}), "
        f"{codes.shape[1]} bits"
    )
    return 0


def plot_run_logs(args: argparse.Namespace) -> int:
    from .training.plots import plot_run

    for path in plot_run(args.run_dir, out=args.out):
        print(f"wrote {path}")
    return 0


# ------------------------------------------------------------------------------------------
# Beyond one machine: shard folders, Milvus and LanceDB (pml_hashing.shards, .engines).
ENGINES = ("faiss", "milvus", "lance")


def _is_folder(path) -> bool:
    import os

    return path is not None and os.path.isdir(path)


def _shard_codes(path: str, required: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of a shard folder in the layout of an .npz (``codes`` +-1 int8)."""
    from .shards import read_shards

    try:
        arrays = read_shards(path, outputs=True)
    except ImportError as e:
        raise CommandError(str(e)) from None
    missing = [key for key in required if key not in arrays]
    if missing:
        raise CommandError(f"{path}: the shards hold no {missing}")
    return arrays


def _encodes_to_npz(args: argparse.Namespace) -> bool:
    if args.format is not None:
        return args.format == "npz"
    return str(args.out).endswith(".npz")


def _check_engine_arguments(args: argparse.Namespace) -> None:
    """The engine and shard-folder flags, checked before any work."""
    run = getattr(args, "run", None)
    engine = getattr(args, "engine", "faiss")
    if run is encode_to_file:
        from .sharded_encode import check_output_folder, checkpoint_file, is_lance_target

        if args.checkpoint is None:
            raise CommandError("--checkpoint is required (a run folder or checkpoint.safetensors)")
        checkpoint_file(args.checkpoint)
        if _encodes_to_npz(args):
            for flag, value in (
                ("--shard", args.shard),
                ("--num-shards", args.num_shards),
                ("--images", args.images),
            ):
                if value is not None:
                    raise CommandError(f"{flag} needs --out DIR (a shard folder), not an .npz")
            if args.outputs:
                raise CommandError("--outputs is for shard folders (an .npz always has them)")
            if not str(args.out).endswith(".npz"):
                raise CommandError(f"--format npz needs an --out ending in .npz; got {args.out}")
            check_output_path(args.out, "--out")
        else:
            out = args.out
            if args.format == "lance" and not str(out).startswith("lance://"):
                out = "lance://" + str(out)
            if args.format == "parquet" and is_lance_target(out):
                raise CommandError(f"--format parquet writes a folder; got --out {args.out}")
            check_output_folder(out)
        return
    if engine == "faiss":
        if run is build_index and getattr(args, "out", None) is None:
            raise CommandError("--out is required with the faiss engine (the index file)")
        if run is search_index and getattr(args, "index", None) is None:
            raise CommandError("--index is required with the faiss engine (from index build)")
        for flag in ("uri", "collection"):
            if getattr(args, flag, None) is not None:
                raise CommandError(f"--{flag} is for --engine milvus or lance")
        return
    if args.uri is None or args.collection is None:
        what = "the server (http://HOST:19530)" if engine == "milvus" else "the LanceDB folder"
        raise CommandError(f"--engine {engine} needs --uri ({what}) and --collection NAME")
    if run is build_index and getattr(args, "out", None) is not None:
        raise CommandError(
            f"--out is for the faiss engine; --engine {engine} writes the collection"
        )
    if run is build_index and args.kind not in ("flat", "ivf"):
        raise CommandError(f"--engine {engine} takes --kind flat or ivf; got {args.kind}")
    if run is search_index and getattr(args, "index", None) is not None:
        raise CommandError(f"--index is for the faiss engine; --engine {engine} searches --uri")


def _engine_index(args: argparse.Namespace, num_bits: int, kind: str | None, create: bool = False):
    """The MilvusIndex or LanceIndex that --engine, --uri and --collection name (created
    only by ``index build``)."""
    params = _parse_params(getattr(args, "param", []))
    unknown = sorted(set(params) - {"nlist", "nprobe"})
    if unknown:
        raise CommandError(f"--engine {args.engine} takes --param nlist and nprobe; got {unknown}")
    try:
        if args.engine == "milvus":
            from .engines.milvus_index import MilvusIndex

            return MilvusIndex(
                args.uri, args.collection, num_bits, kind=kind, create=create, **params
            )
        from .engines.lance_index import LanceIndex

        return LanceIndex(args.uri, args.collection, num_bits, kind=kind, create=create, **params)
    except ImportError as e:
        raise CommandError(str(e)) from None


def _code_batches(args: argparse.Namespace, source_attr: str = "codes"):
    """``(num_bits, batches of (packed or codes, ids))`` from a shard folder (streamed) or
    from an .npz / checkpoint (in memory), and the name of the source."""
    path = getattr(args, source_attr, None)
    if _is_folder(path):
        from .shards import check_shard_folder, iter_shard_batches

        folder = check_shard_folder(path, f"--{source_attr}")
        batches = (
            (b["packed"], b["ids"]) for b in iter_shard_batches(folder, ("id", "code"), _BLOCK)
        )
        return folder.num_bits, batches, path
    codes, ids, num_bits, source = _database_codes(args, source_attr)
    batches = (
        (codes[s : s + _BLOCK], None if ids is None else ids[s : s + _BLOCK])
        for s in range(0, len(codes), _BLOCK)
    )
    return num_bits, batches, source


def build_streamed(args: argparse.Namespace) -> int:
    """``index build`` from a shard folder (streamed) or into Milvus / LanceDB."""
    num_bits, batches, source = _code_batches(args)
    if args.engine == "faiss":
        index = BinaryIndex(
            num_bits, kind=args.kind, device=args.device, **_parse_params(args.param)
        )
        # an IVF index trains on the first block of codes (up to 65,536)
        for codes, ids in tqdm(batches, desc="adding", unit="block", disable=None, leave=False):
            index.add(codes, ids)
        index.save(args.out)
        print(f"wrote {args.out}: {index.kind} index, {len(index)} codes of {num_bits} bits")
        return 0
    index = _engine_index(args, num_bits, args.kind, create=True)
    for codes, ids in tqdm(batches, desc="inserting", unit="block", disable=None, leave=False):
        index.add(codes, ids)
    index.reindex()  # ivf: the index over every code (a no-op for flat)
    print(
        f"{args.engine} {args.uri} collection {args.collection}: {index.count} codes of "
        f"{num_bits} bits ({index.kind})"
    )
    return 0


def _query_codes(args: argparse.Namespace, attr: str, required=("codes",)):
    if getattr(args, attr, None) is None and getattr(args, "checkpoint", None) is None:
        raise CommandError(f"give --{attr} (an .npz or a shard folder) or --checkpoint")
    if getattr(args, attr, None) is not None:
        path = getattr(args, attr)
        return read_codes(path, required=required), path
    return codes_from_source(args, "query", attr)


def search_engine(args: argparse.Namespace) -> int:
    """``index search --engine milvus|lance``: the same result files as with faiss."""
    arrays, source = _query_codes(args, "codes")
    queries = _binary_codes(arrays["codes"], source)
    index = _engine_index(args, queries.shape[1], getattr(args, "kind", None))
    return _save_search_results(args, index, queries, index.search)


def evaluate_engine(args: argparse.Namespace) -> int:
    """``index evaluate --engine milvus|lance``: the database's codes are searched in the
    engine; --database gives the ids and labels of what it holds (as built from it)."""
    from .engines.engine_report import engine_retrieval_report, format_engine_report

    if args.query is None or args.database is None:
        raise CommandError(
            f"--engine {args.engine} evaluates --query (codes and labels) against the "
            "collection; --database names the codes it was built from (for their labels)"
        )
    if args.ternary_margin is not None or args.ties != "index":
        raise CommandError(
            "an engine ranks ties in its own (insertion) order: --ties index only, and no "
            "--ternary-margin"
        )
    query = read_codes(args.query, required=("codes", "labels"))
    database = read_codes(args.database, required=("labels",))
    queries = _binary_codes(query["codes"], args.query)
    labels = database["labels"]
    db_ids = database.get("ids", np.arange(len(labels)))
    index = _engine_index(args, queries.shape[1], getattr(args, "kind", None))
    if index.count != len(labels):
        raise CommandError(
            f"the collection holds {index.count} codes but --database {args.database} has "
            f"{len(labels)}: build it from that file first"
        )
    radius = args.radius
    if isinstance(radius, float):
        if radius != int(radius):
            raise CommandError(f"--radius must be an integer number of bits; got {radius}")
        radius = int(radius)
    report = engine_retrieval_report(
        index, queries, query["labels"], db_ids, labels, topk=args.topk, radius=radius
    )
    report["num_query"], report["num_database"] = len(queries), len(labels)
    report["num_bits"] = int(queries.shape[1])
    report["engine"] = args.engine
    return _print_report(args, report, format_engine_report(report), report["num_bits"])


def _launched_processes() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def encode_gathered(args: argparse.Namespace) -> int:
    """``encode --out FILE.npz`` under a launcher: each process encodes its share, the main
    process gathers and writes the file."""
    import torch
    from accelerate import Accelerator

    from .training import encode_checkpoint

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    arrays = encode_checkpoint(
        args.checkpoint,
        split=args.split,
        out=args.out if accelerator.is_main_process else None,
        **_checkpoint_data(args),
        batch_size=args.batch_size,
        accelerator=accelerator,
    )
    if accelerator.is_main_process:
        codes = arrays["codes"]
        print(f"wrote {args.out}: {len(codes)} codes of {codes.shape[1]} bits")
    return 0


def encode_sharded(args: argparse.Namespace) -> int:
    """``encode --out DIR``: this process's (or task's) shard, streamed to Parquet or Lance."""
    from .sharded_encode import encode_to_shards

    result = encode_to_shards(
        args.checkpoint,
        args.out,
        split=args.split,
        images=args.images,
        **_checkpoint_data(args),
        shard=args.shard,
        num_shards=args.num_shards,
        outputs=args.outputs,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        format=None if args.format == "parquet" else args.format,
    )
    what = f"shard {result['shard']} of {result['num_shards']}"
    if result["skipped"]:
        print(f"{args.out}: {what} already finished, skipped")
    else:
        print(f"{args.out}: {what}: {result['rows_written']} codes written")
    if result["manifest"] is not None:
        manifest = result["manifest"]
        print(
            f"wrote {args.out}/_manifest.json: {manifest['rows']} codes of "
            f"{manifest['num_bits']} bits in {manifest['num_shards']} shards"
        )
    return 0


def _add_param_argument(parser, help: str) -> None:
    """``--param NAME=VALUE``, repeatable (read by :func:`_parse_params`)."""
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help=help)


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))


def _add_engine_arguments(parser: argparse.ArgumentParser, action: str) -> None:
    group = parser.add_argument_group(
        "engines beyond one machine",
        "a Milvus collection (a server or cluster) or a LanceDB table instead of a faiss file",
    )
    group.add_argument(
        "--engine", default="faiss", choices=ENGINES, help="where the codes live (default: faiss)"
    )
    group.add_argument(
        "--uri",
        help="milvus: the server (http://HOST:19530); lance: the LanceDB folder or "
        "object-store URI (s3://...)",
    )
    group.add_argument("--collection", "--table", help="the Milvus collection or Lance table")
    if action != "build":
        group.add_argument(
            "--kind",
            choices=("flat", "ivf"),
            help="the collection's index kind (default: the one it was built with)",
        )
        _add_param_argument(group, "nprobe=N for an ivf collection")


#: Each subcommand's (help, description, example): its line in the parent's --help, the
#: paragraph under its usage, and the command line its --help ends with.
_SUBCOMMAND_TEXTS = {
    "build": (
        "build a faiss binary index from an .npz of codes",
        "Build a binary index from CODES.npz or --checkpoint (`codes` (N, K), +-1 or raw "
        "outputs binarized with v >= 0 -> +1, K a multiple of 8; optional `ids` (N,)) and "
        "save it.",
        "pml-hashing index build --codes db.npz --kind hnsw --param M=32 --out db.index",
    ),
    "search": (
        "k-NN or radius search of query codes in a saved index",
        "Search the codes of QUERIES.npz in a saved index. With -k: writes `distances` "
        "(Q, k) and `ids` (Q, k) (id -1 where fewer than k exist). With --radius: writes "
        "faiss's `lims`, `distances`, `ids` for all codes within the radius (inclusive).",
        "pml-hashing index search --index db.index --codes queries.npz -k 10 --out results.npz",
    ),
    "evaluate": (
        "mAP@R and precision within a Hamming radius",
        "Hashing metrics of query codes against database codes. Both .npz files hold "
        "`codes` (+-1, ternary -1/0/+1, or raw outputs, binarized) and `labels` (integer "
        "(N,) or multi-hot (N, C); relevant = sharing a label). Prints the retrieval "
        "report that training runs write (pml_hashing.evaluation.retrieval_report): "
        "mAP@R (the hashing convention, over all queries), the ternary (DPN-T) mAP for "
        "ternary codes, --ternary-margin or a DPN checkpoint, and the precision within "
        "the Hamming ball (empty balls count 0; their fraction is printed too). --json "
        "writes the report's keys (map, map_ternary, precision_within_radius, ...).",
        "pml-hashing index evaluate --query query.npz --database db.npz "
        "--topk 5000 --ties expected",
    ),
    "encode": (
        "encode a split of a checkpoint's data set (or images) to shards or an .npz",
        "Run a trained checkpoint's model over one split of its data set (or an image "
        "folder or list) and write the codes, the input of `index build`, `index search` "
        "and `index evaluate`. --out DIR streams Parquet shards (columns id, label, code "
        "packed K/8 bytes, output with --outputs): one per process under accelerate "
        "launch / torchrun, or --shard I --num-shards N per job-array task; "
        "_manifest.json is written last and a rerun skips finished shards. "
        "--out lance://DIR/TABLE writes a Lance table. --out FILE.npz gathers `codes` "
        "(+-1), `outputs`, `labels` and `ids` in memory (small data).",
        "pml-hashing encode --checkpoint runs/mnist-5k-dpn-random-64b-seed0/"
        "checkpoint.safetensors --split database --out db.npz",
    ),
    "plot": (
        "plot a training run's curves (PNG)",
        "Draw a training run's per-epoch curves from RUN_DIR/logs/metrics.csv (written by "
        "--log-with csv, the default): training loss, validation mAP and the target "
        "codes' Hamming distances (when logged), as PNG files.",
        "pml-hashing plot runs/mnist-5k-dpn-random-64b-seed0",
    ),
}


def _add_subcommand(subparsers, name: str, run) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, with its :data:`_SUBCOMMAND_TEXTS`; ``run(args)``
    does its work."""
    help, description, example = _SUBCOMMAND_TEXTS[name]
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(run=run)
    return parser


def _add_build_parser(actions) -> None:
    build = _add_subcommand(actions, "build", build_index)
    build.add_argument(
        "--codes",
        help="input .npz with `codes` (and `ids`), or a shard folder from `encode --out DIR` "
        "(streamed)",
    )
    _add_checkpoint_arguments(build, "database")
    build.add_argument(
        "--kind",
        default="flat",
        choices=BinaryIndex.KINDS,
        help="flat: exact; hnsw: graph (params M, ef_construction, ef_search); ivf: inverted "
        "lists (nlist, default min(4 sqrt(N), N / 39) for N codes; nprobe), trained on the "
        "codes; multihash: exact radius search (nhash, b, nflip). Default: flat",
    )
    _add_param_argument(
        build,
        "an integer index parameter, repeatable (e.g. --param nlist=1024 --param nprobe=8)",
    )
    build.add_argument("--out", help="index file to write (faiss engine)")
    _add_device_argument(build)
    _add_engine_arguments(build, "build")


def _add_search_parser(actions) -> None:
    search = _add_subcommand(actions, "search", search_index)
    search.add_argument("--index", help="index file written by `index build` (faiss engine)")
    search.add_argument("--codes", help=".npz or shard folder with the query `codes`")
    _add_checkpoint_arguments(search, "query")
    search.add_argument("-k", type=int, help="number of nearest neighbours")
    search.add_argument("--radius", type=int, help="Hamming radius (inclusive) instead of -k")
    search.add_argument("--out", required=True, help="results .npz to write")
    _add_device_argument(search)
    _add_engine_arguments(search, "search")


def _add_evaluate_parser(actions) -> None:
    evaluate = _add_subcommand(actions, "evaluate", evaluate_codes)
    evaluate.add_argument("--query", help=".npz or shard folder with query `codes` and `labels`")
    evaluate.add_argument(
        "--database",
        help=".npz or shard folder with database codes, labels (with --engine: the codes the "
        "collection was built from, for their ids and labels)",
    )
    _add_checkpoint_arguments(evaluate, None)
    _add_ranking_arguments(evaluate)
    evaluate.add_argument(
        "--ternary-margin",
        type=float,
        help="also the DPN-T mAP of codes ternarized with |v| <= margin -> 0 (reads the "
        "`outputs` array that `pml-hashing encode` writes); ternary codes get it without",
    )
    evaluate.add_argument("--json", help="also write the numbers to this JSON file")
    _add_engine_arguments(evaluate, "evaluate")


def _add_ranking_arguments(parser: argparse.ArgumentParser) -> None:
    """``index evaluate``'s R, tie rule, seed and Hamming radius."""
    parser.add_argument(
        "--topk",
        type=int,
        help="R of mAP@R (default: the whole database; with --checkpoint, its protocol's R)",
    )
    parser.add_argument(
        "--ties",
        default="index",
        choices=TIE_RULES,
        help="order of equal distances: database index (default), seeded random, or the "
        "tie-aware expectation",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --ties random")
    parser.add_argument(
        "--radius", type=int, default=2, help="Hamming radius, an integer (default 2)"
    )


def _add_encode_parser(commands) -> None:
    encode = _add_subcommand(commands, "encode", encode_to_file)
    encode.set_defaults(codes=None)
    _add_checkpoint_arguments(encode, "database")
    encode.add_argument(
        "--out",
        required=True,
        help="a folder of Parquet shards (made if missing; a rerun resumes it), "
        "lance://DIR/TABLE for a Lance table, or an .npz file (gathered in memory)",
    )
    encode.add_argument(
        "--format",
        choices=("parquet", "lance", "npz"),
        help="what --out is (default: npz for *.npz, lance for lance://, else parquet)",
    )
    encode.add_argument(
        "--images",
        help="encode an image folder (ROOT/<class>/<image>) or an image-list file (`path "
        "[label]` per line, relative to --root or the list's folder) instead of --split",
    )
    encode.add_argument("--shard", type=int, help="this job-array task's shard (0-based)")
    encode.add_argument("--num-shards", type=int, help="the number of job-array tasks")
    encode.add_argument(
        "--outputs", action="store_true", help="also write the real outputs (column output)"
    )
    encode.add_argument("--batch-size", type=int, default=512, help="images per forward pass")
    encode.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")


def _add_plot_parser(commands) -> None:
    plot = _add_subcommand(commands, "plot", plot_run_logs)
    plot.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (runs/<name>)")
    plot.add_argument("--out", help="folder to write the PNGs into (default: RUN_DIR)")


# ------------------------------------------------------------------------------------------
def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``pml-hashing`` (subcommands ``index build|search|evaluate``,
    ``encode``, ``plot``)."""
    parser = argparse.ArgumentParser(
        prog="pml-hashing",
        description="Learning-to-hash tools: index binary codes with faiss, search, evaluate.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    index_parser = commands.add_parser(
        "index",
        help="build, search and evaluate binary-code indexes",
        description="Build, search and evaluate binary-code indexes.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = index_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_build_parser(actions)
    _add_search_parser(actions)
    _add_evaluate_parser(actions)
    _add_encode_parser(commands)
    _add_plot_parser(commands)
    return parser


def _check_arguments(args: argparse.Namespace) -> None:
    """Checks that need no data, done before any work: output folders, counts."""
    run = getattr(args, "run", None)
    _check_engine_arguments(args)
    if run is plot_run_logs:
        pass  # its --out is a folder, made if missing
    elif run is encode_to_file and not _encodes_to_npz(args):
        pass  # a shard folder or a Lance table: _check_engine_arguments checked it
    else:
        for attr, flag in (("out", "--out"), ("json", "--json")):
            if getattr(args, attr, None) is not None:
                check_output_path(getattr(args, attr), flag)
    if run is search_index and not str(args.out).endswith(".npz"):
        # numpy.savez appends .npz to any other name: the file would not be where we say
        raise CommandError(
            f"--out must be an .npz file name (it is written by numpy.savez); got {args.out}"
        )
    for attr, flag, minimum in (("k", "-k", 1), ("radius", "--radius", 0), ("topk", "--topk", 1)):
        value = getattr(args, attr, None)
        if value is not None:
            check_integer(value, flag, minimum=minimum)
    _check_outputs_are_not_inputs(args)


#: The flags whose files a subcommand reads, and those it writes.
_INPUT_FLAGS = (
    ("codes", "--codes"),
    ("index", "--index"),
    ("query", "--query"),
    ("database", "--database"),
    ("checkpoint", "--checkpoint"),
    ("split_file", "--split-file"),
)
_OUTPUT_FLAGS = (("out", "--out"), ("json", "--json"))


def _same_file(out: str, source: str) -> bool:
    """Whether writing ``out`` would replace ``source`` (links and relative paths resolved):
    the same file, or, for a run folder given as ``--checkpoint``, one of the files the run
    wrote (a new file next to them is fine)."""
    out, source = os.path.realpath(out), os.path.realpath(source)
    if out == source:
        return True
    if not os.path.isdir(source) or os.path.dirname(out) != source:
        return False
    from .training.run_folder import RUN_OUTPUTS

    return os.path.basename(out) in RUN_OUTPUTS


def _check_outputs_are_not_inputs(args: argparse.Namespace) -> None:
    """Refuse an output file that is one of the inputs: writing it would replace the user's
    codes (``index build --codes db.npz --out db.npz``) before anything else failed."""
    inputs = [(flag, getattr(args, a)) for a, flag in _INPUT_FLAGS if getattr(args, a, None)]
    outputs = [(flag, getattr(args, a)) for a, flag in _OUTPUT_FLAGS if getattr(args, a, None)]
    if getattr(args, "run", None) is plot_run_logs:
        outputs = []  # its --out is a folder of PNGs, and RUN_DIR itself is its default
    for out_flag, out in outputs:
        for in_flag, path in inputs:
            if _same_file(str(out), str(path)):
                raise CommandError(
                    f"{out_flag} {out} is the input {in_flag} {path}: writing it would replace "
                    "the input; give another output file"
                )
    if len(outputs) == 2 and _same_file(str(outputs[0][1]), str(outputs[1][1])):
        raise CommandError(f"--out and --json name one file ({outputs[0][1]}): give two files")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pml-hashing`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Errors in the arguments or the input files print ``pml-hashing: error: MESSAGE`` on
    stderr and return 2 (argparse's own errors exit with 2 too), without a traceback.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        _check_arguments(args)
        return args.run(args)
    except USER_ERRORS as e:
        message = (
            str(e)
            if not isinstance(e, OSError) or not e.filename
            else (f"{e.filename}: {e.strerror}")
        )
        print(f"pml-hashing: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
