"""slurm/submit.py without a cluster: the sbatch commands it would run (--dry-run) and its refusals."""
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def submit(*argv):
    return subprocess.run([sys.executable, "slurm/submit.py", *argv], capture_output=True, text=True, cwd=REPO, timeout=60)


def test_dry_run_prints_an_array_and_a_dependent_merge(tmp_path):
    r = submit("fig2a", "--shards", "4", "--out", str(tmp_path / "run"), "--slurm-args", "-p gpu --gres=gpu:1 -t 2:00:00",
               "--dry-run")
    assert r.returncode == 0, r.stderr
    array, merge = [line for line in r.stdout.splitlines() if line.startswith("$ sbatch")]
    for line in (array, merge):
        assert "-p gpu --gres=gpu:1 -t 2:00:00" in line and "slurm/omnigrok.sbatch" in line
        assert "toy_teacher_student.py --mode landscape --out " + str(tmp_path / "run") in line
    assert "--array=0-3" in array and array.endswith("--shard slurm")
    assert "--dependency=afterok:<id>" in merge and "--kill-on-invalid-dep=yes" in merge and merge.endswith("--merge")
    assert "squeue -j" in r.stdout and "sacct -j" in r.stdout
    assert not (tmp_path / "run").exists()  # a dry run creates nothing


@pytest.mark.parametrize("argv, words", [
    (["--", "toy_teacher_student.py", "--mode", "run"], "not a grid mode"),
    (["--", "toy_teacher_student.py", "--mode", "landscape", "--shard", "0/2"], "leave out --shard"),
    (["--", "bench/kernel_bench.py"], "not one of the scripts"),
    (["fig99"], "unknown figure"),
    (["fig2a", "--shards", "0"], "at least 1"),
])
def test_bad_input_exits_2(argv, words):
    r = submit(*argv, "--dry-run")
    assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
