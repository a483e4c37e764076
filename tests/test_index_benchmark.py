import importlib.util
from pathlib import Path

BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_index.py"


def test_index_benchmark_quick_run_prints_its_tables(capsys):
    spec = importlib.util.spec_from_file_location("bench_index", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--quick", "--size", "3000", "--hnsw-size", "1000", "--queries", "20"])
    printed = capsys.readouterr().out
    for title in ("k-NN, k=100", "radius-2 search", "library overhead", "peak memory"):
        assert title in printed
    # The exact radius search must agree with flat; timings are never asserted.
    assert "| True" in printed
