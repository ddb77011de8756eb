"""Tests for modadd_transformer.py: efficient forward == plain forward, ensemble member == single run,
each --constrain mode holds its norm, one smoke run per mode (tiny p and widths), a wd-sweep member saved as it
retires, norm-modes member == single run, bad input -> exit 2. A killed run resuming: tests/test_resume.py."""
import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import modadd_transformer as mt
from conftest import run_main

REPO = Path(__file__).resolve().parents[1]
TINY = ["--p", "23", "--d-model", "32", "--n-heads", "4", "--d-mlp", "64", "--device", "cpu"]


def run_script(tmp_path, *args, cwd=REPO, script=REPO / "modadd_transformer.py"):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), *TINY, "--out", str(out), *args],
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    return proc, out


def run_here(tmp_path, *args):
    """run_script's call in this process (no interpreter start-up): (result, out)."""
    out = tmp_path / "out"
    return run_main(mt.main, [*TINY, "--out", str(out), *args]), out


def stamp(path):
    """A saved file's identity: inode, modification time and bytes (a point written again - atomically, a new
    file - changes all three; its "seconds" alone differs between two trainings)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_efficient_forward_equals_full_sequence_forward(dtype, tol):
    p = 23
    # two members with different seeds and scales, so a mix-up of ensemble members would show
    members = [mt.init_params(s, p, 32, 4, 64, dtype, "cpu") for s in (0, 1)]
    P = mt.stack_members(members)
    with torch.no_grad():
        for t in P.values():
            t[1].mul_(3.0)
    (x_tr, _), (x_te, _) = mt.make_data(p, 0.3, 0, "cpu")
    tokens = torch.cat([x_tr, x_te])
    # also tokens other than '=' at the last position: the efficient forward must not assume it
    tokens = torch.cat([tokens, torch.randint(0, p + 1, (50, 3), generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        fast = mt.forward(P, tokens)
        full = mt.forward_full(P, tokens)
    assert fast.shape == (2, len(tokens), p + 1)
    scale = full.abs().max()
    assert (fast - full[:, :, -1]).abs().max() <= tol * scale
    # and the gradients agree too (the training step uses them)
    y = (tokens[:, 0] + tokens[:, 1]) % p
    g_fast = torch.autograd.grad(torch.nn.functional.cross_entropy(mt.forward(P, tokens)[0], y), list(P.values()))
    g_full = torch.autograd.grad(torch.nn.functional.cross_entropy(mt.forward_full(P, tokens)[0, :, -1], y),
                                 list(P.values()))
    for a, b in zip(g_fast, g_full):
        assert torch.allclose(a, b, rtol=100 * tol, atol=100 * tol * b.abs().max().item())


def test_split_sizes_and_labels():
    (x_tr, y_tr), (x_te, y_te) = mt.make_data(113, 0.3, 0, "cpu")
    assert len(y_tr) == 3830 and len(y_te) == 113 ** 2 - 3830  # the paper's 3830 / 8939
    assert torch.equal(y_tr, (x_tr[:, 0] + x_tr[:, 1]) % 113)
    assert (x_tr[:, 2] == 113).all()
    pairs = set(map(tuple, torch.cat([x_tr, x_te])[:, :2].tolist()))
    assert len(pairs) == 113 ** 2  # every pair exactly once


def _args(**kw):
    base = dict(p=23, d_model=32, n_heads=4, d_mlp=64, lr=1e-3, eval_points=10)
    base.update(kw)
    return argparse.Namespace(**base)


def test_ensemble_member_equals_single_run():
    args = _args()
    data = mt.make_data(23, 0.3, 0, "cpu")
    seeds, wds = [0, 1, 1], [0.3, 1.0, 3.0]
    kw = dict(constrain=None, desc="test", device="cpu", dtype=torch.float64)
    ens, err = mt.train_ensemble(args, data, seeds, [1.0] * 3, wds, 40, **kw)
    assert err is None
    for e in (1, 2):
        [single], _ = mt.train_ensemble(args, data, [seeds[e]], [1.0], [wds[e]], 40, **kw)
        for key in single:
            assert ens[e][key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key
    # members with different wd did diverge (the comparison above can fail)
    assert ens[1]["w"][-1] != pytest.approx(ens[2]["w"][-1], rel=1e-3)


def test_retired_members_leave_the_others_unchanged():
    """wd-sweep retires members once they reach the test threshold; the rest go on exactly as alone."""
    args = _args()
    data = mt.make_data(23, 0.3, 0, "cpu")
    kw = dict(constrain=None, desc="test", device="cpu", dtype=torch.float64)
    # member 0 retires at its first evaluation (accuracy >= 0), member 1 never (accuracy < 2)
    ens, _ = mt.train_ensemble(args, data, [0, 1], [1.0, 1.0], [1.0, 0.1], 60, retire_at=[0.0, 2.0], **kw)
    assert ens[0]["steps"] == [0]  # retired at its first evaluation
    ens2, _ = mt.train_ensemble(args, data, [0, 1], [1.0, 1.0], [1.0, 0.1], 60, **kw)
    [single], _ = mt.train_ensemble(args, data, [1], [1.0], [0.1], 60, **kw)
    for key in single:
        assert ens[1][key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key
        assert ens2[1][key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key


def test_constrained_ensemble_member_equals_single_run():
    args = _args()
    data = mt.make_data(23, 0.3, 0, "cpu")
    kw = dict(constrain="global", desc="test", device="cpu", dtype=torch.float64)
    ens, _ = mt.train_ensemble(args, data, [0, 0], [0.5, 2.0], [0.0, 0.0], 30, **kw)
    [single], _ = mt.train_ensemble(args, data, [0], [2.0], [0.0], 30, **kw)
    for key in single:
        assert ens[1][key] == pytest.approx(single[key], rel=1e-9, abs=1e-12), key


def test_constrain_modes_hold_their_norms(monkeypatch):
    """global: ||w|| = alpha * w0; per-tensor: every tensor that starts non-zero at alpha times its initial norm, the
    zero-initialised biases left free (they move off 0); cap: ||w|| never above alpha * w0, and with weight decay a different run from global.
    Members at alpha 0.8 and 2 (the norm rises while memorising, so the cap binds)."""
    args, data, alphas = _args(), mt.make_data(23, 0.5, 0, "cpu"), [0.8, 2.0]
    init = mt.stack_members([mt.init_params(s, 23, 32, 4, 64, torch.float32, "cpu") for s in (0, 1)])
    w0 = mt.common.batched_norm(list(init.values()))
    tensor_w0 = torch.stack([torch.stack([t[e].norm() for t in init.values()]) for e in (0, 1)])
    stack, stacked, runs = mt.stack_members, [], {}
    monkeypatch.setattr(mt, "stack_members", lambda members: stacked.append(stack(members)) or stacked[-1])
    for mode in ("global", "per-tensor", "cap"):
        ms, err = mt.train_ensemble(args, data, [0, 1], alphas, [1.0, 1.0], 60, constrain=mode, desc="t",
                                    device="cpu", dtype=torch.float32)
        assert err is None and ms[0]["train_loss"][-1] < ms[0]["train_loss"][0], mode
        runs[mode], P = ms, stacked[-1]
        for e, a in enumerate(alphas):
            w = torch.tensor(ms[e]["w"])
            if mode == "global":
                assert ((w / (a * w0[e]) - 1).abs() < 1e-5).all()
            if mode == "per-tensor":
                got = torch.stack([t[e].detach().norm() for t in P.values()])
                held = tensor_w0[e] > 0
                assert torch.allclose(got[held], a * tensor_w0[e][held], rtol=1e-5, atol=1e-7), (got, a * tensor_w0[e])
                assert (~held).any() and (got[~held] > 0).all()  # the zero-initialised biases: free, trained
            if mode == "cap":
                assert (w <= a * w0[e] * (1 + 1e-5)).all() and w.max() > 0.99 * a * w0[e]  # reached: it binds
    for e in (0, 1):  # the same norm bound, but weight decay moves cap's weights elsewhere on (or inside) the sphere
        assert runs["cap"][e]["train_loss"][-1] != pytest.approx(runs["global"][e]["train_loss"][-1], rel=1e-4)


# ----------------------------------------------------------------------------------------------
# the script, one smoke run per mode
# ----------------------------------------------------------------------------------------------
def test_run_mode_from_a_copied_folder(tmp_path):
    """The script with common.py and kernels/ beside it runs in an empty folder (docs/DESIGN.md, Copying)."""
    work = tmp_path / "copy"
    work.mkdir()
    shutil.copy(REPO / "modadd_transformer.py", work)
    shutil.copy(REPO / "common.py", work)
    shutil.copytree(REPO / "kernels", work / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    proc, out = run_script(tmp_path, "--steps", "250", "--eval-points", "40", cwd=work, script=work / "modadd_transformer.py")
    assert proc.returncode == 0, proc.stderr
    for name in ("config.json", "metrics.json", "summary.json", "curves.png"):
        assert (out / name).exists(), name
    s = json.loads((out / "summary.json").read_text())
    for key in ("acc_threshold", "train_acc_step", "test_acc_step", "grok_ratio", "final_train_acc",
                "final_test_acc", "w_init", "w_min", "w_final", "w_max", "wall_seconds", "steps_per_second"):
        assert key in s, key
    assert s["train_acc_step"] is not None  # 158 training pairs are memorised within 250 steps
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"][0] == 0 and m["steps"][-1] == 250
    assert s["w_max"] > s["w_init"]  # the norm rises while memorising (Fig. 7a)


def test_constrained_run_keeps_the_norm_fixed(tmp_path):
    proc, out = run_script(tmp_path, "--constrain", "--alpha", "0.8", "--steps", "100")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "metrics.json").read_text())
    s = json.loads((out / "summary.json").read_text())
    w = m["w"]
    assert s["wd"] == 0.0 and s["constrain"] == "global"
    # held at alpha * w0 (w0 of this tiny model is ~ sqrt(sum of fans ratios)); not a hard-coded value:
    # compare with a fresh init's norm
    P = mt.init_params(0, 23, 32, 4, 64, torch.float32, "cpu")
    w0 = mt.common.global_norm(list(P.values())).item()
    assert w[0] == pytest.approx(0.8 * w0, rel=1e-5)
    assert max(abs(v / w[0] - 1) for v in w) < 1e-5
    assert m["train_loss"][-1] < m["train_loss"][0]  # and it did train


def test_landscape_mode(tmp_path):
    proc, out = run_here(tmp_path, "--mode", "landscape", "--alphas", "0.3,1,3", "--fracs", "0.3,0.6",
                           "--landscape-steps", "30", "--eval-points", "5")
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert len(s["points"]) == 6
    for pt in s["points"]:
        assert pt["train_loss_best"] <= pt["train_loss_final"] + 1e-12
        assert pt["w"] == pytest.approx(pt["alpha"] * s["points"][0]["w"] / s["points"][0]["alpha"], rel=1e-4)
    assert (out / "landscape.png").exists()

    # the same grid as two shards into one folder: shard 1/2 saves one fraction and draws nothing; after shard
    # 0/2, --merge draws the whole grid, and its points are those of the unsharded run, bit for bit
    grid = ["--mode", "landscape", "--alphas", "0.3,1,3", "--fracs", "0.3,0.6", "--landscape-steps", "30",
            "--eval-points", "5"]
    proc, sharded = run_here(tmp_path / "sharded", *grid, "--shard", "1/2")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (sharded / "points").iterdir()) == ["frac_0.6.json", "settings.json"]
    assert not (sharded / "summary.json").exists()
    frac06 = stamp(sharded / "points" / "frac_0.6.json")
    proc, _ = run_here(tmp_path / "sharded", *grid, "--shard", "0/2")
    assert proc.returncode == 0, proc.stderr
    assert "shard 0/2: 1 point(s) to train: frac_0.3" in proc.stdout, proc.stdout  # its own fraction only
    assert stamp(sharded / "points" / "frac_0.6.json") == frac06  # shard 1's file: not written again
    proc, _ = run_here(tmp_path / "sharded", *grid, "--merge")
    assert proc.returncode == 0, proc.stderr
    merged = json.loads((sharded / "summary.json").read_text())
    assert merged["fracs_done"] == [0.3, 0.6] and merged["missing"] == []
    key = lambda pt: (pt["frac"], pt["alpha"])  # noqa: E731
    assert sorted(s["points"], key=key) == sorted(merged["points"], key=key)


def test_wd_sweep_mode(tmp_path):
    sweep = ["--mode", "wd-sweep", "--wds", "0.5,2", "--seeds", "0,1", "--sweep-steps", "40", "--eval-points", "8",
             "--acc-threshold", "0.2"]
    proc, out = run_here(tmp_path, *sweep)
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert len(s["members"]) == 4 and s["members_done"] == "4/4"
    assert set(s["slopes_per_seed"]) == {"0", "1"}
    assert (out / "wd_sweep.png").exists()
    # a killed/partial sweep: a shard's (wd, seed) points are saved; a rerun of the whole sweep trains only the rest
    proc, part = run_here(tmp_path / "part", *sweep, "--shard", "0/3")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (part / "points").iterdir()) == ["settings.json", "wd_0.5_seed_0.json",
                                                                  "wd_2_seed_1.json"]
    assert not (part / "summary.json").exists()  # a shard of several draws nothing
    saved = {p: stamp(p) for p in (part / "points").glob("wd_*.json")}
    proc, _ = run_here(tmp_path / "part", *sweep, "--merge")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((part / "summary.json").read_text())["members_done"] == "2/4"
    proc, _ = run_here(tmp_path / "part", *sweep)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((part / "summary.json").read_text())["members_done"] == "4/4"
    assert len(saved) == 2 and {p: stamp(p) for p in saved} == saved  # the shard's points: not written again
    assert sorted(p.name for p in (part / "points").glob("wd_*.json")) == [
        "wd_0.5_seed_0.json", "wd_0.5_seed_1.json", "wd_2_seed_0.json", "wd_2_seed_1.json"]
    # the same folder with a different step budget: refused, nothing mixed
    proc, _ = run_here(tmp_path / "part", *sweep, "--sweep-steps", "50")
    assert proc.returncode == 2 and "sweep_steps" in proc.stderr, proc.stderr


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so no handler of the script catches it."""


def test_wd_sweep_saves_a_member_when_it_retires(tmp_path, monkeypatch):
    """A member's point is saved when it reaches the threshold and leaves the ensemble, not at the end: a sweep
    killed after that keeps it, and the same command run again trains only the members still missing."""
    sweep = [*TINY, "--mode", "wd-sweep", "--wds", "0.3", "--seeds", "0,1", "--train-frac", "0.5",
             "--sweep-steps", "400", "--eval-points", "30", "--acc-threshold", "0.15", "--threads", "1",
             "--out", str(tmp_path)]
    training = mt.training

    def killed_after_a_retirement(*args, **kw):
        for ms, err in training(*args, **kw):
            yield ms, err  # the sweep saves the points of the members that reached the threshold here
            if any(m["test_acc"][-1] >= kw["retire_at"] for m in ms):
                raise Killed
    monkeypatch.setattr(mt, "training", killed_after_a_retirement)
    with pytest.raises(Killed):
        mt.main(sweep)
    # seed 1 reaches 15% test accuracy at step 215; seed 0 not within 400 steps (measured)
    assert sorted(p.name for p in (tmp_path / "points").glob("wd_*.json")) == ["wd_0.3_seed_1.json"]
    retired = json.loads((tmp_path / "points" / "wd_0.3_seed_1.json").read_text())
    assert retired["test_acc"][-1] >= 0.15 and retired["steps"][-1] < 400
    monkeypatch.setattr(mt, "training", training)
    saved = stamp(tmp_path / "points" / "wd_0.3_seed_1.json")
    s = mt.main(sweep)
    assert s["members_done"] == "2/2" and stamp(tmp_path / "points" / "wd_0.3_seed_1.json") == saved
    assert [m["test_acc_step"] is None for m in s["members"]] == [True, False]  # seed 0 censored


@pytest.mark.parametrize("bad", [["--d-model", "30"], ["--train-frac", "1.5"], ["--wds", "0.1,x"], ["--p", "1"],
                                 ["--shard", "2/2"], ["--shard", "1"]])
def test_bad_input_exits_2_and_writes_nothing(tmp_path, bad):
    proc, out = run_script(tmp_path, *bad)
    assert proc.returncode == 2, proc.stderr
    assert "error" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


NORM_MODES = [*TINY, "--mode", "norm-modes", "--seeds", "0,1", "--train-frac", "0.5", "--steps", "40",
              "--eval-points", "8", "--acc-threshold", "0.1", "--threads", "1"]


def _points(out):
    """The saved points, timing aside."""
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
            for p in sorted((out / "points").glob("*_seed_*.json"))}


def test_norm_modes_mode_and_its_shards(tmp_path, capsys):
    """The summary's structure, the table, and a sharded-then-merged grid equal to the whole, point for point: a
    member's numbers do not depend on the seeds that share its ensemble."""
    s = mt.main([*NORM_MODES, "--out", str(tmp_path / "whole")])
    assert list(s["conditions"]) == ["wd", "global", "per-tensor", "cap"] and s["missing"] == []
    assert [(m["condition"], m["seed"]) for m in s["members"]] == [(c, k) for c in s["conditions"] for k in (0, 1)]
    for c, v in s["conditions"].items():
        assert v["seeds"] == 2 and set(v) == {"seeds", "train_acc_step", "test_acc_step", "grok_ratio",
                                              "final_test_acc"}, c
        assert set(v["final_test_acc"]) == {"mean", "std", "min", "max", "reached"}
    assert (s["alpha"], s["norm_alpha"], s["wd"], s["acc_threshold"]) == (1.0, 0.8, 1.0, 0.1)
    assert "wall_seconds" in s and (tmp_path / "whole" / "norm_modes.png").exists()
    m = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert m["steps"][0] == 0 and m["steps"][-1] == 40 and len(m["members"]) == 8
    assert set(m["members"][0]) == {"condition", "seed", "train_loss", "test_loss", "train_acc", "test_acc", "w"}
    table = capsys.readouterr().out
    assert all(f"{c}: steps to 10% train" in table for c in s["conditions"]), table
    sharded = tmp_path / "sharded"
    for i in range(3):  # 8 points over 3 shards: every shard holds a condition's seeds apart
        assert mt.main([*NORM_MODES, "--out", str(sharded), "--shard", f"{i}/3"]) is None
    merged = mt.main([*NORM_MODES, "--out", str(sharded), "--merge"])
    assert _points(sharded) == _points(tmp_path / "whole") and len(_points(sharded)) == 8
    drop = lambda s: {k: v for k, v in s.items() if k != "wall_seconds"}  # noqa: E731
    assert drop(merged) == drop(s)


@pytest.mark.parametrize("condition, flags", [("wd", []), ("global", ["--constrain", "--alpha", "0.8"]),
                                              ("per-tensor", ["--constrain", "per-tensor", "--alpha", "0.8"]),
                                              ("cap", ["--constrain", "cap", "--alpha", "0.8"])])
def test_norm_modes_member_equals_single_run(tmp_path, condition, flags):
    """Seed 1 of a condition (the ensemble's second member) is the run mode's --seed 1 run with its flags."""
    f64 = ["--dtype", "float64"]
    mt.main([*NORM_MODES, *f64, "--out", str(tmp_path / "grid")])
    point = json.loads((tmp_path / "grid" / "points" / f"{condition}_seed_1.json").read_text())
    run = [a for a in NORM_MODES if a not in ("--mode", "norm-modes", "--seeds", "0,1")]
    mt.main([*run, *f64, *flags, "--seed", "1", "--out", str(tmp_path / "run")])
    single = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert point["steps"] == single["steps"]
    for k in mt.CURVES:
        assert point[k] == pytest.approx(single[k], rel=1e-12, abs=1e-14), k
