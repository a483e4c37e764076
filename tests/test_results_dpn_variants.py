"""benchmarks/results_dpn_variants.py stays runnable and reuses its cache."""

import json

from tests.scripts import load_benchmark


def test_quick_grid_reports_both_arms_and_reuses_the_cache(tmp_path, capsys):
    script = load_benchmark("results_dpn_variants")
    cache = tmp_path / "cache.jsonl"
    script.main(["grid", "--quick", "--cache", str(cache)])
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert [row["spec"]["arm"] for row in rows] == ["random", "adaptive"]
    for row in rows:
        result = row["result"]
        assert result["check_map"] == result["map"]  # the checkpoint gives the reported number
        assert float(result["threshold_auto"]) in {float(t) for t in result["validation_map"]}
    # two epochs are inside the default warm-up: DPN-A has trained exactly as random targets
    assert rows[0]["result"]["map"] == rows[1]["result"]["map"]
    assert "| digits | 16 | 0 |" in out and "DPN-T auto" in out
    script.main(["grid", "--quick", "--cache", str(cache)])  # everything cached: no training
    assert len(cache.read_text().splitlines()) == 2
