"""benchmarks/bench_target_miners.py and benchmarks/results_families.py stay runnable; the
results script's bookkeeping (learning-rate choice, coverage, table) is checked on records
written here, never its numbers."""

import json

import pytest

from tests.scripts import load_benchmark


def test_target_miner_benchmark_quick_run_compares_old_and_new(capsys):
    rows = load_benchmark("bench_target_miners").main(["--quick"])
    assert [r["classes"] for r in rows] == [200, 400]
    assert all(r["old_s"] > 0 and r["new_s"] > 0 and r["new_min"] >= 1 for r in rows)
    assert "old/new" in capsys.readouterr().out


@pytest.fixture
def families():
    module = load_benchmark("results_families")
    module.LRS[:] = [0.001, 0.01]
    return module


def grid_record(dataset, method, protocol, bits, seed, **values):
    return {"kind": "grid", "dataset": dataset, "method": method, "protocol": protocol,
            "bits": bits, "seed": seed, **values}  # fmt: skip


def test_learning_rate_is_the_best_on_validation_once_every_rate_was_tried(families):
    records = [
        {"kind": "select", "dataset": "digits", "method": "CSQ", "lr": 0.001, "validation_map": 0.8}
    ]
    assert families.chosen_lr(records, "digits", "CSQ") is None  # 0.01 not tried yet
    records.append(
        {"kind": "select", "dataset": "digits", "method": "CSQ", "lr": 0.01, "validation_map": 0.9}
    )
    assert families.chosen_lr(records, "digits", "CSQ") == 0.01


def test_cells_put_learning_rates_and_the_target_cell_first(families):
    cells = families.cells(["digits", "mnist-5k"], [16, 32, 64], [0, 1, 2])
    keys = [families.cell_key(c) for c in cells]
    assert len(keys) == len(set(keys))
    last_select = max(i for i, c in enumerate(cells) if c["kind"] == "select")
    first_grid = min(i for i, c in enumerate(cells) if c["kind"] == "grid")
    assert last_select < first_grid
    target = cells[first_grid]
    assert (target["dataset"], target["bits"], target["protocol"]) == ("mnist-5k", 64, "seen")
    grid = [c for c in cells if c["kind"] == "grid"]
    # every method x data set x bits x seed x protocol, once
    assert len(grid) == len(families.METHODS) * 2 * 3 * 3 * 2


def test_report_writes_table_coverage_and_one_plot_per_protocol(families, tmp_path, capsys):
    records = []
    for seed in (0, 1, 2):
        for method in families.METHODS:
            records.append(grid_record("digits", method, "seen", 16, seed, map=0.5 + seed / 100,
                                       map_ternary=0.4 if method == "DPN" else None))  # fmt: skip
            records.append(grid_record("digits", method, "unseen", 16, seed, map=0.3,
                                       map_unseen_vs_all=0.2))  # fmt: skip
    results = tmp_path / "r.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records))
    families.main(
        ["report", "--datasets", "digits", "--bits", "16", "--results", str(results),
         "--table", str(tmp_path / "t.md"), "--plots", str(tmp_path / "img")]
    )  # fmt: skip
    table = (tmp_path / "t.md").read_text()
    assert (
        "| DPN | target codes | 0.510 ± 0.010 (3) | 0.300 ± 0.000 (3) | 0.200 ± 0.000 (3) |"
        in table
    )
    assert "| DPN-T | target codes | 0.400 ± 0.000 (3) | — | — |" in table
    assert "digits seen 16 bits: 8/8 methods with 3 seeds" in table
    for view in ("seen", "unseen", "unseen_vs_all"):
        assert (tmp_path / "img" / f"families_{view}.png").stat().st_size > 0
