"""The baselines results script: its cells, one real fit-only cell, and its report."""

import json

import numpy as np
import pytest

from tests.scripts import load_benchmark


@pytest.fixture(scope="module")
def script():
    return load_benchmark("results_baselines")


def test_cells_cover_the_grid_once_and_start_with_seed_zero(script):
    cells = script.cells(["digits", "mnist-5k"], [16, 32, 64], [0, 1, 2])
    keys = [script.cell_key(c) for c in cells]
    assert len(keys) == len(set(keys)) == 2 * 3 * 3 * 2 * len(script.METHODS)
    first_other_seed = next(i for i, c in enumerate(cells) if c["seed"] != 0)
    assert all(c["dataset"] == "digits" for c in cells[: 3 * 2 * len(script.METHODS)])
    assert first_other_seed > 3 * 2 * len(script.METHODS)


def test_a_fit_only_cell_records_metrics_balance_and_curves(script, tmp_path):
    cell = {"dataset": "digits", "seed": 0, "bits": 32, "method": "ITQ", "protocol": "unseen"}
    record = script.run_cell(cell, {"digits": 1}, tmp_path)
    assert 0 <= record["map"] <= 1 and record["epochs"] == 0
    assert len(record["positive_bit_ratio"]) == 32
    assert len(record["pr_radius"]["precision"]) == 33
    assert record["num_query"] == 3 * 100  # three unseen classes, 100 queries each


def test_report_writes_a_table_with_every_method_and_the_plots(script, tmp_path):
    rng = np.random.default_rng(0)
    records = []
    for protocol in script.PROTOCOLS:
        for bits in (16, 32):
            for method in script.METHODS:
                for seed in (0, 1):
                    records.append(
                        {"dataset": "digits", "protocol": protocol, "bits": bits,
                         "method": method, "seed": seed, "epochs": 2,
                         "map": float(rng.random()), "map_ternary": float(rng.random()),
                         "precision_within_radius": float(rng.random()),
                         "train_loss": [2.0, 1.0],
                         "pr_radius": {"precision": [0.5] * (bits + 1),
                                       "recall": list(np.linspace(0, 1, bits + 1))}}
                    )  # fmt: skip
    results = tmp_path / "g.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in records[:-1]))
    script.main(["report", "--datasets", "digits", "--bits", "16", "32", "--seeds", "0", "1",
                 "--results", str(results), "--table", str(tmp_path / "t.md"),
                 "--plots", str(tmp_path / "img")])  # fmt: skip
    table = (tmp_path / "t.md").read_text()
    for label in script.ORDER:
        assert f"| {label} |" in table
    last = records[-1]
    assert "Missing cells: 1" in table and repr(script.cell_key(last)) in table
    names = {p.name for p in (tmp_path / "img").iterdir()}
    assert names == {"map_vs_bits.png", "p2_vs_bits.png", "precision_recall_radius.png",
                     "training_curves.png"}  # fmt: skip
