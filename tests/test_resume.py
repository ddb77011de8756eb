"""A long single run survives a kill (common.Checkpoint): run mode saves its state at evaluations, and the same
command with the same --out resumes from it; its metrics.json equals an uninterrupted run's, bit for bit.

Every script: in this process, a run stopped right after a checkpoint past its middle (as a kill would stop it:
nothing after the checkpoint is kept), then run again. One script also for real: SIGKILL to a running process.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import common
from conftest import REPO
from test_contract import SCRIPTS, base, data, run  # noqa: F401 - data: the scripts' fixture data, used as a fixture

STEPS = 40


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the scripts catches it."""


def test_every_script_resumes_bit_for_bit(script, data, tmp_path, capsys, monkeypatch):
    argv = base(script, data) + ["--steps", str(STEPS), "--eval-points", "12", "--checkpoint-every", "0"]
    code, _, err = run(script, argv + ["--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err

    save = common.Checkpoint.save

    def save_then_die(self, state):
        save(self, state)
        if self.path.is_file() and state()["step"] >= STEPS // 2:
            raise Killed
    monkeypatch.setattr(common.Checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run(script, argv + ["--out", str(tmp_path / "killed")], capsys)
    assert (tmp_path / "killed" / "checkpoint.pt").is_file() and not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(common.Checkpoint, "save", save)

    code, out, err = run(script, argv + ["--out", str(tmp_path / "killed")], capsys)
    assert code == 0, err
    assert "resuming from" in out + err
    assert (tmp_path / "killed" / "metrics.json").read_bytes() == (tmp_path / "whole" / "metrics.json").read_bytes()
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()


def test_sigkill_then_rerun_gives_the_same_metrics(tmp_path):
    cmd = [sys.executable, str(REPO / "toy_teacher_student.py"), "--steps", "3000", "--threads", "1", "--width", "16",
           "--checkpoint-every", "0"]
    subprocess.run(cmd + ["--out", str(tmp_path / "whole")], check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd + ["--out", str(tmp_path / "killed")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not ckpt.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.is_file() and not (tmp_path / "killed" / "metrics.json").exists(), "the run ended before the kill"
    r = subprocess.run(cmd + ["--out", str(tmp_path / "killed")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "resuming from" in r.stdout + r.stderr, r.stderr[-2000:]
    assert (tmp_path / "killed" / "metrics.json").read_bytes() == (tmp_path / "whole" / "metrics.json").read_bytes()


def pytest_generate_tests(metafunc):
    if "script" in metafunc.fixturenames:
        metafunc.parametrize("script", list(SCRIPTS))


@pytest.mark.parametrize("grid_script", ["mnist", "modadd"])
def test_norm_modes_ensemble_resumes_bit_for_bit(grid_script, data, tmp_path, capsys, monkeypatch):
    """norm-modes: each condition's ensemble checkpoints as a run does; killed in its second condition (global) and
    run again, the saved points of the first are kept, the second resumes, and every output equals the whole run's."""
    from test_sharding import GRIDS
    script = grid_script
    argv = base(script, data) + ["--mode", "norm-modes", *GRIDS[(script, "norm-modes")], "--checkpoint-every", "0"]
    code, _, err = run(script, argv + ["--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err

    save = common.Checkpoint.save

    def save_then_die(self, state):
        save(self, state)
        if self.path.name.startswith("checkpoint_global") and state()["step"] >= 3:
            raise Killed
    monkeypatch.setattr(common.Checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run(script, argv + ["--out", str(tmp_path / "killed")], capsys)
    killed = tmp_path / "killed"
    assert (killed / "checkpoint_global_seeds_0_1.pt").is_file() and (killed / "points" / "wd_seed_1.json").is_file()
    monkeypatch.setattr(common.Checkpoint, "save", save)

    code, out, err = run(script, argv + ["--out", str(killed)], capsys)
    assert code == 0, err
    assert "resuming from" in out + err and not list(killed.glob("*.pt"))
    assert (killed / "metrics.json").read_bytes() == (tmp_path / "whole" / "metrics.json").read_bytes()
    for f in (f"points/{c}_seed_{s}.json" for c in ("wd", "global", "cap") for s in (0, 1)):  # timing aside
        assert {**json.loads((killed / f).read_text()), "seconds": 0} == {
            **json.loads((tmp_path / "whole" / f).read_text()), "seconds": 0}, f
