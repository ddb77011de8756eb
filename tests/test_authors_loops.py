"""Tests of bench/authors_loops.py: each experiment's authors' loop and ours run a few steps on the
fixture data of the script's own tests (never the network) and write one table; bad input exits 2.
"""
import csv
import json
import sys
from pathlib import Path

import pytest

import common
import qm9_grok as qg
from test_imdb_grok import TINY as IMDB_TINY
from test_imdb_grok import fixture_reviews
from test_mnist_grok import write_mnist
from test_modadd_transformer import TINY as MODADD_TINY

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import authors_loops  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """MNIST IDX files, IMDb reviews and 40 real QM9 rows, in the formats the scripts read."""
    d = tmp_path_factory.mktemp("data")
    write_mnist(d)
    import imdb_grok
    imdb_grok.reviews_path(d).parent.mkdir(parents=True)
    imdb_grok.reviews_path(d).write_text(json.dumps(fixture_reviews()))
    _, paths = qg.qm9pack_csvs()
    (d / "qm9csv").mkdir()
    with open(paths[0]) as src, open(d / "qm9csv" / "qm9_part1.csv", "w") as dst:
        dst.writelines(src.readline() for _ in range(41))
    return d


def run_main(argv, capsys):
    try:
        common.main_guard(lambda: authors_loops.main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr()


def experiment_args(experiment, d):
    return {"mnist": ["--steps", "25", "--data-dir", str(d), "--n-train", "100"],
            "modadd": ["--steps", "5", "--rounds", "1", *MODADD_TINY],
            "imdb": ["--steps", "20", "--rounds", "2", "--data-dir", str(d), "--size", "120", *IMDB_TINY],
            "qm9": ["--steps", "6", "--csv-dir", str(d / "qm9csv"), "--data-dir", str(d / "qm9"), "--size", "30"],
            }[experiment]


LOOPS = {"mnist": ["authors_float64", "ours_float64", "ours_float32"],
         "modadd": ["ours_float32", "authors_loop", "ours_float64", "ours_constrained_float32",
                    "authors_loop_constrained"],
         "imdb": ["bare_lstm_step", "ours", "authors"],
         "qm9": ["authors", "ours", "ours --compile"]}


@pytest.mark.parametrize("experiment", list(LOOPS))
def test_each_experiment_writes_one_table(experiment, data, tmp_path, capsys):
    out = tmp_path / "bench"
    code, cap = run_main(["--experiment", experiment, "--device", "cpu", "--threads", "1", "--out", str(out),
                          *experiment_args(experiment, data)], capsys)
    assert code == 0, cap.err
    rows = list(csv.DictReader(open(out / "bench.csv")))
    assert [r["loop"] for r in rows] == LOOPS[experiment]
    assert all(r["experiment"] == experiment and float(r["steps_per_second"]) > 0 for r in rows)
    for r in rows:  # steps/s is what was timed, and the ratio is against the authors' loop of the same kind
        assert float(r["steps_per_second"]) == pytest.approx(int(r["steps"]) / float(r["seconds"]))
        if r["loop"].startswith("authors"):
            assert float(r["vs_authors"]) == 1
    saved = json.loads((out / "bench.json").read_text())
    assert saved["experiment"] == experiment and saved["device"] == "cpu" and len(saved["rows"]) == len(rows)
    assert "steps_per_second" in cap.out  # the table is printed


@pytest.mark.parametrize("bad, says", [(["--experiment", "mnist", "--rounds", "2"], "--rounds"),
                                       (["--experiment", "qm9", "--steps", "2"], "--steps"),
                                       (["--experiment", "modadd", "--p", "1"], "--p")])
def test_bad_input_exits_2(bad, says, tmp_path, capsys):
    out = tmp_path / "bench"
    code, cap = run_main([*bad, "--device", "cpu", "--out", str(out)], capsys)
    assert code == 2 and says in cap.err and "Traceback" not in cap.err
    assert not out.exists()
