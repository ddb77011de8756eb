"""Tests of bench/shard_overhead.py: a tiny teacher-student sweep, unsharded and as 2 shards + merge (real
subprocesses), gives one row per n with CPU times and equal points; bad input exits 2."""
import csv
import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import shard_overhead  # noqa: E402


def test_tiny_sweep_unsharded_vs_two_shards(tmp_path, capsys):
    out = tmp_path / "so"
    code = shard_overhead.main(["--grids", "ts-wd-sweep", "--shards", "2",
                                "--extra", "--steps 30 --eval-points 4 --wds 0.1,0.3,1", "--out", str(out)])
    assert code == 0
    rows = json.loads((out / "shard_overhead.json").read_text())["rows"]
    assert [(r["grid"], r["shards"]) for r in rows] == [("ts-wd-sweep", 1), ("ts-wd-sweep", 2)]
    assert all(r["equal"] for r in rows) and rows[0]["vs_unsharded"] == 1.0
    assert len(rows[1]["shard_cpu_seconds"]) == 2 and rows[1]["cpu_seconds"] > 0
    assert sorted(p.name for p in (out / "ts-wd-sweep" / "n2" / "points").glob("wd_*.json")) == \
        ["wd_0.1.json", "wd_0.3.json", "wd_1.json"]
    with open(out / "shard_overhead.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "vs n=1" in capsys.readouterr().out


@pytest.mark.parametrize("argv, words", [(["--grids", "nope"], "unknown nope"), (["--shards", "1"], ">= 2"),
                                         (["--shards", "a"], "integers")])
def test_bad_input_exits_2(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        shard_overhead.parse_args(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err
