"""Every grid mode of every script shards the same way (common.py's one implementation): --shard i/n trains
every n-th point and saves one file per point, a shard draws nothing, --merge draws from the points present and
lists the missing ones, points already saved are skipped, and sharded-then-merged points equal the unsharded
run's bit for bit. Bad input (--shard 3/2, --shard slurm outside SLURM, a points folder made with other settings)
ends in one sentence and exit code 2, writing nothing.

Bit for bit also where the unsharded run trains the whole grid as one ensemble and a shard only its own members:
a member's numbers do not depend on its ensemble (common.EnsembleAdam; common.batched_norm; batched GEMMs, not
einsum or one shared GEMM, where float64 results would depend on the ensemble size). The float64 cases check
that last part, in every grid mode that trains points of several rows as one ensemble.
"""
import json
from pathlib import Path

import pytest

import common
from test_contract import data, run  # noqa: F401 - data: the scripts' fixture data, used as a fixture

IMDB_TINY = ["--hidden", "8", "--embed", "8", "--seq-len", "24", "--vocab", "40", "--batch-size", "10"]
GRIDS = {  # tiny versions of every grid mode
    ("toy", "landscape"): ["--alphas", "0.5,1,2", "--landscape-steps", "40", "--eval-points", "6"],
    ("toy", "grid"): ["--steps", "30", "--eval-points", "5"],
    ("toy", "wd-sweep"): ["--wds", "0.1,0.3,1", "--steps", "40", "--eval-points", "6"],
    ("mnist", "landscape"): ["--sizes", "20,60,120", "--alphas", "0.5,4", "--steps", "20", "--slice-sizes", "20,120",
                             "--b-alpha", "4", "--eval-points", "4"],
    ("mnist", "repr"): ["--n-train", "100", "--ms", "0,0.5,1", "--alphas", "1,3", "--path-alphas", "1,3", "--steps", "20",
                        "--eval-points", "4"],
    ("mnist", "n-sweep"): ["--sizes", "40,80,120", "--batch-size", "20", "--steps", "60", "--eval-points", "6",
                           "--acc-threshold", "0.3"],
    ("mnist", "wd-sweep"): ["--wds", "0.1,1,3", "--n-train", "100", "--steps", "60", "--eval-points", "6",
                            "--acc-threshold", "0.3"],
    ("mnist", "norm-modes"): ["--n-train", "100", "--seeds", "0,1", "--steps", "30", "--eval-points", "5"],
    ("modadd", "landscape"): ["--p", "23", "--alphas", "0.3,3", "--fracs", "0.3,0.5,0.7", "--landscape-steps", "20",
                              "--eval-points", "5"],
    ("modadd", "wd-sweep"): ["--p", "23", "--train-frac", "0.5", "--wds", "0.5,2", "--seeds", "0,1", "--sweep-steps", "40",
                             "--eval-points", "6", "--acc-threshold", "0.2"],
    ("modadd", "norm-modes"): ["--p", "23", "--train-frac", "0.5", "--seeds", "0,1", "--steps", "20", "--eval-points", "5"],
    ("addition", "landscape"): ["--grid-points", "3", "--steps", "20", "--width", "16", "--eval-points", "5"],
    ("addition", "n-sweep"): ["--grid-points", "2", "--steps", "20", "--width", "16", "--eval-points", "5",
                              "--n-trains", "35,45"],
    ("imdb", "landscape"): ["--sizes", "40,80,120", "--alphas", "0.3,1,5", "--epochs", "2", "--min-steps", "0",
                            "--eval-points", "4", *IMDB_TINY],
    ("qm9", "landscape"): ["--sizes", "8,12,20", "--alphas", "0.5,1,4", "--steps", "20", "--slice-sizes", "8,20",
                           "--eval-points", "6"],
}
# float64 in every grid mode whose whole run trains points of several rows as one ensemble (where a shard's smaller
# ensemble could change a member's last bits); in these a point is one row, the same ensemble whole or sharded
ROWS = {("mnist", "landscape"), ("mnist", "repr"), ("modadd", "landscape"), ("imdb", "landscape"), ("qm9", "landscape")}
FLOAT64 = [g for g in GRIDS if g not in ROWS]


@pytest.fixture(scope="module")
def data_dirs(data):
    """{script: its data flags}, on test_contract's fixture data (MNIST IDX files, IMDb reviews, qm9pack CSV rows)."""
    return {"mnist": ["--data-dir", str(data / "mnist")],
            "imdb": ["--data-dir", str(data / "imdb")],
            "qm9": ["--csv-dir", str(data / "qm9csv"), "--data-dir", str(data / "qm9cache")]}


def argv_of(script, mode, out, data_dirs, dtype="float32"):
    return ["--mode", mode, "--out", str(out), "--dtype", dtype] + data_dirs.get(script, []) + GRIDS[(script, mode)]


def missing(out):
    """The point names summary.json lists as missing."""
    return json.loads((out / "summary.json").read_text())["missing"]


def points(out):
    """{file name: record without its timing} of the grid points saved in out/points/."""
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
            for p in sorted((out / "points").glob("*.json")) if p.name != "settings.json"}


@pytest.mark.parametrize("script, mode, dtype", [(*g, "float32") for g in GRIDS] + [(*g, "float64") for g in FLOAT64])
def test_grid_mode_shards_and_merges(script, mode, dtype, tmp_path, data_dirs, capsys, monkeypatch):
    if dtype == "float64":  # the numbers; the mode's float32 case renders the same figures (most of a case's time)
        monkeypatch.setattr(common, "savefig", lambda fig, path: (Path(path).write_bytes(b""), common.plt().close(fig)))
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    argv = lambda out: argv_of(script, mode, out, data_dirs, dtype)  # noqa: E731
    code, _, err = run(script, argv(whole), capsys)
    assert code == 0, err
    names = sorted(points(whole))
    assert len(names) >= 2 and missing(whole) == []
    owned = [len(range(i, len(names), 3)) for i in range(3)]  # points of shard i/3 (every third from i)

    # one shard of three: saves its points (every third), draws nothing
    code, out, err = run(script, argv(sharded) + ["--shard", "1/3"], capsys)
    assert code == 0, err
    mine = sorted(points(sharded))
    assert len(mine) == owned[1] and set(mine) <= set(names)
    assert not (sharded / "summary.json").exists() and not list(sharded.glob("*.png"))
    assert f"shard 1/3: {owned[1]} point(s) to train" in out and "--merge" in out
    # the merge of what is there: a figure of the points present, the missing ones listed
    code, out, err = run(script, argv(sharded) + ["--merge"], capsys)
    assert code == 0, err
    assert sorted(f"{m}.json" for m in missing(sharded)) == sorted(set(names) - set(mine)) and "missing" in out
    assert list(sharded.glob("*.png"))
    # the other shards, and a rerun of shard 1 that finds nothing to do; then the merge
    before = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in (sharded / "points").glob("*.json")}
    for i in (0, 1, 2):
        code, out, err = run(script, argv(sharded) + ["--shard", f"{i}/3"], capsys)
        assert code == 0, err
        assert f"shard {i}/3: {0 if i == 1 else owned[i]} point(s) to train" in out, out
    # saved points are never retrained: the same file (inode, time, bytes, its "seconds" included)
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in before} == before
    code, out, err = run(script, argv(sharded) + ["--merge"], capsys)
    assert code == 0, err
    assert missing(sharded) == []
    assert sorted(points(sharded)) == names
    assert points(sharded) == points(whole)


@pytest.mark.parametrize("script, mode", [("toy", "landscape"), ("mnist", "n-sweep"), ("modadd", "wd-sweep"),
                                          ("addition", "landscape")])
def test_bad_shard_input_exits_2_and_writes_nothing(script, mode, tmp_path, data_dirs, capsys, monkeypatch):
    for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(k, raising=False)
    for bad, words in ((["--shard", "3/2"], "0 <= i < n"), (["--shard", "slurm"], "SLURM_ARRAY_TASK_ID"),
                       (["--shard", "x"], "i/n")):
        out = tmp_path / bad[1].replace("/", "_")
        code, _, err = run(script, argv_of(script, mode, out, data_dirs) + bad, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    # a points folder made with other settings: refused before anything is written (config.json included)
    out = tmp_path / "grid"
    code, _, err = run(script, argv_of(script, mode, out, data_dirs) + ["--shard", "0/2"], capsys)
    assert code == 0, err
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    changed = ["--eval-points", "7"]
    for extra in ([], ["--shard", "1/2"], ["--merge"]):
        code, _, err = run(script, argv_of(script, mode, out, data_dirs) + changed + extra, capsys)
        assert code == 2 and "other settings" in err and "eval_points" in err and len(err.strip().splitlines()) == 1, err
        assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_parse_shard(monkeypatch):
    assert common.parse_shard("2/5") == (2, 5) and common.parse_shard("0/1") == (0, 1)
    assert common.parse_shard("merge") is None  # --merge
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert common.parse_shard("slurm") == (3, 8)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "8")  # an array not numbered 0..n-1
    with pytest.raises(common.UserError, match="--array=0-7"):
        common.parse_shard("slurm")
    monkeypatch.delenv("SLURM_ARRAY_TASK_COUNT")
    with pytest.raises(common.UserError, match="outside SLURM"):
        common.parse_shard("slurm")
    for bad in ("3/2", "1", "a/b", "-1/2", "1/0"):
        with pytest.raises(common.UserError):
            common.parse_shard(bad)


def test_shard_todo_deals_points_round_robin_and_skips_saved(tmp_path, capsys):
    names = [f"p{k}" for k in range(7)]
    settings = {"mode": "landscape", "steps": 10}
    assert common.shard_todo(names, tmp_path, (1, 3), settings) == ["p1", "p4"]
    common.write_json(common.point_path(tmp_path, "p4"), {"x": 1})
    assert common.shard_todo(names, tmp_path, (1, 3), settings) == ["p1"]
    assert common.shard_todo(names, tmp_path, None, settings) == []  # --merge trains nothing
    saved, missing = common.collect_points(tmp_path, names)
    assert list(saved) == ["p4"] and missing == [n for n in names if n != "p4"]
    assert "1/7 grid points" in capsys.readouterr().out
    with pytest.raises(common.UserError, match="steps differ"):
        common.shard_todo(names, tmp_path, (0, 3), {"mode": "landscape", "steps": 11})
