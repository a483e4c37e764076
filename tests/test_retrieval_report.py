"""The one retrieval report: what runs, the CLI and the benchmarks print."""

import json
import warnings

import numpy as np
import pytest
import torch

from pml_hashing.cli import main
from pml_hashing.evaluation import (
    DegenerateTernaryCodesWarning,
    format_retrieval_report,
    mean_average_precision,
    retrieval_report,
)


def ternarize_by_hand(outputs, margin):
    return [[0 if abs(v) <= margin else (1 if v > 0 else -1) for v in row] for row in outputs]


def data(dtype, seed=0, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    query = (torch.randn(12, 16, generator=generator) * scale).to(dtype)
    database = (torch.randn(40, 16, generator=generator) * scale).to(dtype)
    query_labels = torch.randint(0, 3, (12,), generator=generator)
    db_labels = torch.randint(0, 3, (40,), generator=generator)
    return query, query_labels, database, db_labels


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ternary_part_uses_codes_ternarized_at_the_margin(dtype):
    query, query_labels, database, db_labels = data(dtype)
    report = retrieval_report(query, query_labels, database, db_labels, ternary_margin=1.0)
    q = ternarize_by_hand(query.tolist(), 1.0)
    d = ternarize_by_hand(database.tolist(), 1.0)
    expected = mean_average_precision(
        torch.tensor(q, dtype=dtype), query_labels, torch.tensor(d, dtype=dtype), db_labels
    )
    assert report["map_ternary"] == pytest.approx(expected, abs=1e-12)
    zeros = sum(v == 0 for row in q + d for v in row) / (52 * 16)
    assert report["ternary_zero_fraction"] == pytest.approx(zeros)
    assert report["ternary_degenerate"] is False
    assert report["topk"] == "all" and report["ties"] == "index" and report["radius"] == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("side", ["both", "query", "database"])
def test_all_zero_ternary_codes_give_no_ternary_map_and_a_warning(dtype, side):
    query, query_labels, database, db_labels = data(dtype)
    # an unpolarized model: every output inside the margin on one side (or both)
    if side in ("both", "query"):
        query = query.clamp(-0.9, 0.9)
    if side in ("both", "database"):
        database = database.clamp(-0.9, 0.9)
    with pytest.warns(DegenerateTernaryCodesWarning, match="all zero"):
        report = retrieval_report(query, query_labels, database, db_labels, ternary_margin=1.0)
    assert report["map_ternary"] is None and report["ternary_degenerate"] is True
    assert (report["ternary_zero_fraction"] == 1.0) == (side == "both")
    assert 0.0 <= report["map"] <= 1.0  # the binary codes are still meaningful
    assert "degenerate" in format_retrieval_report(report)


def test_no_ternary_keys_without_a_margin():
    report = retrieval_report(*data(torch.float32))
    assert "map_ternary" not in report and "ternary_degenerate" not in report


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.mark.parametrize("kind", ["binary", "ternary", "outputs"])
def test_cli_report_equals_the_python_report(tmp_path, kind, capsys):
    query, query_labels, database, db_labels = data(torch.float64, seed=3)
    if kind == "binary":
        q, d = np.sign(query.numpy() + 1e-9), np.sign(database.numpy() + 1e-9)
        margin, extra = None, []
    elif kind == "ternary":
        q = np.array(ternarize_by_hand(query.tolist(), 1.0), dtype=np.int8)
        d = np.array(ternarize_by_hand(database.tolist(), 1.0), dtype=np.int8)
        margin, extra = 0.0, []
    else:  # raw outputs, ternarized by --ternary-margin
        q, d = query.numpy(), database.numpy()
        margin, extra = 0.5, ["--ternary-margin", "0.5"]
    qf = write_npz(tmp_path / "q.npz", codes=q, labels=query_labels.numpy())
    df = write_npz(tmp_path / "d.npz", codes=d, labels=db_labels.numpy())
    out = tmp_path / "r.json"
    argv = ["index", "evaluate", "--query", qf, "--database", df, "--ties", "expected"]
    assert main(argv + ["--topk", "20", "--json", str(out)] + extra) == 0
    printed = capsys.readouterr().out
    written = json.loads(out.read_text())
    expected = retrieval_report(
        q, query_labels, d, db_labels, topk=20, ties="expected", ternary_margin=margin
    )
    for key, value in expected.items():
        assert written[key] == (
            pytest.approx(value, abs=1e-12) if isinstance(value, float) else value
        ), key
    assert written["num_query"] == 12 and written["num_database"] == 40
    assert ("ternary mAP" in printed) == (margin is not None)


def test_cli_reports_degenerate_ternary_codes(tmp_path, capsys):
    query, query_labels, database, db_labels = data(torch.float64)
    qf = write_npz(tmp_path / "q.npz", codes=query.numpy() * 0.1, labels=query_labels.numpy())
    df = write_npz(tmp_path / "d.npz", codes=database.numpy(), labels=db_labels.numpy())
    out = tmp_path / "r.json"
    argv = ["index", "evaluate", "--query", qf, "--database", df, "--ternary-margin", "1"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateTernaryCodesWarning)
        assert main(argv + ["--json", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["map_ternary"] is None and written["ternary_degenerate"] is True
    assert "degenerate" in capsys.readouterr().out
