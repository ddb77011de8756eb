"""Tests of bench/compile_vs_capture.py on the CPU: each experiment's eager step runs from the script's own init and
data, rows and files come out, CUDA-only variants are reported skipped, the compile variants go through
torch.compile with their mode, and bad input exits 2. (The GPU comparison itself runs in gpu_check.sh.)"""
import csv
import json
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import compile_vs_capture as cvc  # noqa: E402
import modadd_transformer as mt  # noqa: E402


def test_eager_rows_and_files(tmp_path, monkeypatch, capsys):
    compiled = []

    def fake_compile(fn, mode=None):  # the wiring, without minutes of C++ compilation
        compiled.append(mode)
        return fn
    monkeypatch.setattr(torch, "compile", fake_compile)
    rows = cvc.main(["--device", "cpu", "--steps", "3", "--warmup", "4", "--out", str(tmp_path)])
    by = {(r["experiment"], r["variant"]): r for r in rows}
    assert set(by) == {(e, v) for e in cvc.EXPERIMENTS for v in cvc.VARIANTS}
    for e in cvc.EXPERIMENTS:
        assert by[(e, "capture")]["status"] == by[(e, "compile_ro")]["status"] == "skipped: CUDA only"
        eager, comp = by[(e, "eager")], by[(e, "compile")]
        assert eager["status"] == comp["status"] == "ok" and eager["rel_diff"] == 0.0
        assert comp["rel_diff"] == 0.0  # torch.compile stubbed: the same step, so the same numbers
        assert eager["main_job_steps"] == {"toy": 100_000, "modadd": mt.parse_args([]).steps}[e]
        assert eager["main_job_s"] == pytest.approx(eager["setup_s"] + eager["main_job_steps"] * eager["us_per_step"] / 1e6)
    assert compiled == [None, None]
    with open(tmp_path / "bench.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert json.loads((tmp_path / "bench.json").read_text())["rows"] == json.loads(json.dumps(rows))
    assert "main job s" in capsys.readouterr().out


def test_steps_change_the_model():
    """The measured step trains: the loss after some steps is not the initial one."""
    loss_fn, optimizer, _ = cvc.toy(torch.device("cpu"), torch.float32)
    before = loss_fn().item()
    step = cvc.make_step(loss_fn, optimizer)
    for _ in range(20):
        step()
    assert loss_fn().item() < before


@pytest.mark.parametrize("argv, words", [(["--variants", "nope"], "unknown variant"),
                                         (["--experiments", "x"], "unknown experiment"), (["--warmup", "2"], "at least 4")])
def test_bad_input_exits_2(argv, words, capsys):
    with pytest.raises(SystemExit) as e:
        cvc.parse_args(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err
