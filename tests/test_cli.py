import json

import numpy as np
import pytest

from pml_hashing.cli import main


def hamming_by_loop(a, b):
    return sum(1 for x, y in zip(a, b, strict=True) if (x >= 0) != (y >= 0))


def write_codes(path, codes, **extra):
    np.savez(path, codes=codes, **extra)
    return str(path)


@pytest.fixture
def codes_and_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 160)
    centers = np.where(rng.random((4, 16)) < 0.5, 1.0, -1.0)
    flips = rng.random((160, 16)) < 0.15
    outputs = np.where(flips, -centers[labels], centers[labels]) * rng.uniform(0.1, 2, (160, 16))
    return outputs, labels


def test_build_then_search_matches_brute_force(tmp_path, codes_and_labels, capsys):
    outputs, _ = codes_and_labels
    database, queries = outputs[:140], outputs[140:]
    ids = np.arange(140) + 1000
    db_file = write_codes(tmp_path / "db.npz", database, ids=ids)
    query_file = write_codes(tmp_path / "queries.npz", queries)
    index_file = str(tmp_path / "db.index")
    assert main(["index", "build", "--codes", db_file, "--out", index_file]) == 0
    assert "140 codes of 16 bits" in capsys.readouterr().out
    results_file = str(tmp_path / "results.npz")
    argv = ["index", "search", "--index", index_file, "--codes", query_file, "-k", "5"]
    assert main([*argv, "--out", results_file]) == 0
    results = np.load(results_file)
    for i in range(len(queries)):
        expected = sorted((hamming_by_loop(queries[i], database[j]), j) for j in range(140))[:5]
        assert results["distances"][i].tolist() == [d for d, _ in expected]
        assert results["ids"][i].tolist() == [1000 + j for _, j in expected]


def test_radius_search_is_inclusive(tmp_path, codes_and_labels):
    outputs, _ = codes_and_labels
    db_file = write_codes(tmp_path / "db.npz", outputs)
    index_file = str(tmp_path / "db.index")
    main(["index", "build", "--codes", db_file, "--kind", "multihash", "--out", index_file])
    out = str(tmp_path / "ball.npz")
    argv = ["index", "search", "--index", index_file, "--codes", db_file, "--radius", "2"]
    assert main([*argv, "--out", out]) == 0
    ball = np.load(out)
    for i in range(0, 160, 20):
        got = set(ball["ids"][ball["lims"][i] : ball["lims"][i + 1]].tolist())
        assert got == {j for j in range(160) if hamming_by_loop(outputs[i], outputs[j]) <= 2}


def test_build_with_ivf_params(tmp_path, codes_and_labels, capsys):
    outputs, _ = codes_and_labels
    db_file = write_codes(tmp_path / "db.npz", outputs)
    argv = ["index", "build", "--codes", db_file, "--kind", "ivf", "--param", "nlist=4"]
    assert main([*argv, "--param", "nprobe=4", "--out", str(tmp_path / "ivf.index")]) == 0
    assert "ivf index, 160 codes" in capsys.readouterr().out


def average_precision_by_loop(query, query_label, database, db_labels):
    order = sorted(range(len(database)), key=lambda j: (hamming_by_loop(query, database[j]), j))
    hits, total = 0, 0.0
    for rank, j in enumerate(order, start=1):
        if db_labels[j] == query_label:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def precision_within_radius_by_loop(query, query_label, database, db_labels, radius):
    ball = [j for j in range(len(database)) if hamming_by_loop(query, database[j]) <= radius]
    return sum(db_labels[j] == query_label for j in ball) / len(ball) if ball else 0.0


def test_evaluate_reports_map_and_precision_within_radius(tmp_path, codes_and_labels, capsys):
    outputs, labels = codes_and_labels
    query, database = outputs[:30], outputs[30:]
    query_labels, db_labels = labels[:30], labels[30:]
    query_file = write_codes(tmp_path / "q.npz", query, labels=query_labels)
    db_file = write_codes(tmp_path / "db.npz", np.where(database >= 0, 1, -1), labels=db_labels)
    json_file = str(tmp_path / "metrics.json")
    argv = ["index", "evaluate", "--query", query_file, "--database", db_file]
    assert main([*argv, "--json", json_file]) == 0
    printed = capsys.readouterr().out
    assert "mAP@all (ties=index)" in printed and "precision within radius 2" in printed
    metrics = json.loads(open(json_file).read())
    expected_map = np.mean(
        [
            average_precision_by_loop(query[i], query_labels[i], database, db_labels)
            for i in range(30)
        ]
    )
    expected_precision = np.mean(
        [
            precision_within_radius_by_loop(query[i], query_labels[i], database, db_labels, 2)
            for i in range(30)
        ]
    )
    assert metrics["map"] == pytest.approx(expected_map, abs=1e-9)
    assert metrics["precision_within_radius"] == pytest.approx(expected_precision, abs=1e-9)


def test_user_errors_exit_with_status_2_and_a_message(tmp_path, capsys):
    missing = str(tmp_path / "missing.npz")
    assert main(["index", "build", "--codes", missing, "--out", str(tmp_path / "x")]) == 2
    assert f"{missing}: no such file" in capsys.readouterr().err
    no_codes = str(tmp_path / "wrong.npz")
    np.savez(no_codes, embeddings=np.ones((2, 8)))
    assert main(["index", "build", "--codes", no_codes, "--out", str(tmp_path / "x")]) == 2
    assert "must hold the arrays ['codes']; missing ['codes']" in capsys.readouterr().err
    ternary = write_codes(tmp_path / "t.npz", np.array([[1, 0, -1, 1, 1, 1, 1, 1]]))
    assert main(["index", "build", "--codes", ternary, "--out", str(tmp_path / "x")]) == 2
    assert "codes are ternary" in capsys.readouterr().err
    bad_param = write_codes(tmp_path / "b.npz", np.ones((2, 8)))
    argv = ["index", "build", "--codes", bad_param, "--param", "nlist", "--out", "x"]
    assert main(argv) == 2
    assert "--param must look like NAME=VALUE" in capsys.readouterr().err
    not_an_index = str(tmp_path / "not.index")
    open(not_an_index, "wb").write(b"hello")
    argv = ["index", "search", "--index", not_an_index, "--codes", bad_param, "-k", "1"]
    assert main([*argv, "--out", str(tmp_path / "r.npz")]) == 2
    assert f"{not_an_index} is not a readable pml-hashing" in capsys.readouterr().err


def test_help_shows_an_example(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["index", "--help"])
    assert exit_info.value.code == 0
    assert "pml-hashing index build --codes" in capsys.readouterr().out
