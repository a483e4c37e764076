"""What the engines' command-line tests share: folders of class-correlated code shards, and
the checks that an engine's `index evaluate` / `index search` give faiss's output."""

from __future__ import annotations

import numpy as np

from pml_hashing.cli import main
from pml_hashing.shards import ShardWriter, write_manifest_if_complete


def shard_folder(path, codes, labels) -> str:
    """One finished shard of ``codes`` (+-1) and ``labels``, with its manifest."""
    info = {"num_bits": codes.shape[1], "checkpoint_sha256": "-", "input": {}, "outputs": False}
    writer = ShardWriter(path, 0, 1, codes.shape[1], False, False, info)
    writer.write(np.arange(len(codes)), labels, np.packbits(codes >= 0, axis=1, bitorder="little"))
    writer.close()
    write_manifest_if_complete(path, 1, info)
    return str(path)


def labelled_shard_folders(root) -> tuple[str, str]:
    """Query (60) and database (900) folders of 16-bit codes: each of 5 classes flips a few
    bits of its own centre."""
    rng = np.random.default_rng(3)
    centres = np.where(rng.random((5, 16)) < 0.5, 1.0, -1.0)

    def draw(n):
        labels = rng.integers(0, 5, n)
        flips = np.where(rng.random((n, 16)) < 0.2, -1.0, 1.0)
        return centres[labels] * flips, labels

    return shard_folder(root / "q", *draw(60)), shard_folder(root / "db", *draw(900))


def assert_evaluate_matches_faiss(engine: list[str], query: str, database: str, capsys) -> None:
    """`index build` into the engine, then `index evaluate` on it prints faiss's report, at
    R = all and R = 100."""
    assert main(["index", "build", "--codes", database, *engine]) == 0
    capsys.readouterr()
    for topk in ([], ["--topk", "100"]):
        assert main(["index", "evaluate", "--query", query, "--database", database, *topk]) == 0
        faiss_report = capsys.readouterr().out
        args = ["index", "evaluate", "--query", query, "--database", database, *topk, *engine]
        assert main(args) == 0
        assert capsys.readouterr().out == faiss_report


def assert_search_matches_faiss(engine: list[str], query: str, database: str, tmp_path) -> None:
    """`index search` on the engine writes what it writes on a faiss index, for k nearest
    and within a radius."""
    assert main(["index", "build", "--codes", database, *engine]) == 0
    assert main(["index", "build", "--codes", database, "--out", str(tmp_path / "f.index")]) == 0
    for how in (["-k", "9"], ["--radius", "3"]):
        out_e, out_f = tmp_path / "e.npz", tmp_path / "f.npz"
        assert main(["index", "search", "--codes", query, *how, "--out", str(out_e), *engine]) == 0
        faiss = ["--index", str(tmp_path / "f.index")]
        assert main(["index", "search", "--codes", query, *how, "--out", str(out_f), *faiss]) == 0
        on_engine, on_faiss = np.load(out_e), np.load(out_f)
        for key in on_faiss.files:
            assert np.array_equal(on_engine[key], on_faiss[key]), key
