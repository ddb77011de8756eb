"""Tests of mnist_grok.py on small IDX fixture files written here (never the network, never real MNIST).

Covers: the loader on IDX files, bad input (missing data, --n-train larger than the data set, alpha <= 0,
a removed flag: one line, exit code 2, nothing written), --scale paper, a smoke run of every mode (files +
summary keys), that an ensemble member equals a single run, the --constrain modes, and norm-modes (a member is
the single run with its seed; a shard + merge equals the whole). Fetching: tests/test_fetch_data.py.
"""
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import common
import kernels
import mnist_grok as mg

REPO = Path(__file__).resolve().parents[1]

RUN_KEYS = {"acc_threshold", "train_acc_step", "test_acc_step", "grok_ratio", "final_train_acc", "final_test_acc",
            "final_train_loss", "final_test_loss", "w_init", "w_min", "w_final", "wall_seconds", "steps_per_second"}


def idx_bytes(n_train=160, n_test=60, seed=0):
    """The 4 MNIST files in IDX format: noisy 28x28 images with a bright bar whose row encodes the label."""
    rng = np.random.default_rng(seed)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, lab in enumerate(labels):
            images[i, 2 * lab + 3:2 * lab + 6, 4:24] = 255
        out[f"{prefix}-images-idx3-ubyte"] = struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes()
        out[f"{prefix}-labels-idx1-ubyte"] = struct.pack(">II", 0x801, n) + labels.tobytes()
    return out


def write_mnist(folder, **kw):
    """idx_bytes(**kw) as the four files of <folder>/MNIST/raw (where the scripts look); returns folder."""
    raw = Path(folder) / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, b in idx_bytes(**kw).items():
        (raw / name).write_bytes(b)
    return folder


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("mnist"))


def stamp(path):
    """A saved file's identity: inode, modification time and bytes (a point written again - atomically, a new
    file - changes all three; its "seconds" alone differs between two trainings)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def run_main(argv, capsys):
    """mnist_grok's CLI in this process (exit code, stderr); torch stays imported between tests."""
    try:
        common.main_guard(lambda: mg.main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def test_loader_reads_idx_fixture(data_dir):
    args = mg.parse_args(["--data-dir", str(data_dir)])
    (x, y), (xt, yt) = mg.load_mnist(args, torch.device("cpu"), torch.float32)
    files = idx_bytes()
    want = np.frombuffer(files["train-images-idx3-ubyte"][16:], dtype=np.uint8).reshape(160, 784) / 255
    assert x.shape == (160, 784) and xt.shape == (60, 784)
    np.testing.assert_allclose(x.numpy(), want, rtol=0, atol=1e-7)  # ToTensor's scaling
    assert y.tolist() == list(files["train-labels-idx1-ubyte"][8:])
    assert yt.tolist() == list(files["t10k-labels-idx1-ubyte"][8:])
    # the subset is seeded and nested: N=50 is the start of N=100
    assert mg.subset(160, 100, 0)[:50].tolist() == mg.subset(160, 50, 0).tolist()
    assert mg.subset(160, 50, 0).tolist() != mg.subset(160, 50, 1).tolist()


@pytest.mark.parametrize("damage", ["truncated", "foreign", "labels"])
def test_a_damaged_idx_file_is_one_sentence_exit_2(damage, tmp_path, capsys):
    raw = write_mnist(tmp_path) / "MNIST" / "raw"
    name = "train-labels-idx1-ubyte" if damage == "labels" else "train-images-idx3-ubyte"
    b = (raw / name).read_bytes()
    (raw / name).write_bytes({"truncated": b[:-5], "foreign": b"<html>not found</html>" + b,
                              "labels": b[:4] + struct.pack(">I", 159) + b[8:-1]}[damage])
    code, err = run_main(["--data-dir", str(tmp_path), "--steps", "5", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "could not read MNIST" in err and len(err.strip().splitlines()) == 1, err


def test_missing_data_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(tmp_path / "empty"), "--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "MNIST is not in" in lines[0] and "fetch_data.py" in lines[0]  # says what to do
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("flags, words", [
    (["--n-train", "161"], "larger than the 160 training images"),
    (["--alpha", "0"], "--alpha must be positive"),
    (["--alpha", "-2"], "--alpha must be positive"),
    (["--mode", "landscape", "--sizes", "20,500"], "larger than the 160"),
    (["--mode", "wd-sweep", "--wds", "0.1,x"], "--wds must be"),
    (["--mode", "n-sweep", "--sizes", "40,120", "--batch-size", "50"], "must be >= --batch-size (50)"),
])
def test_bad_input_exit_2(data_dir, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out), "--steps", "5"] + flags, capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("old, new", [(["--mode", "fetch"], "python fetch_data.py mnist"),
                                      (["--offline"], "python fetch_data.py --offline"),
                                      (["--mnist-tarball", "x.tgz"], "python fetch_data.py mnist --mnist-tarball FILE"),
                                      (["--mode", "landscape", "--paper-grid"], "--scale paper")])
def test_a_removed_flag_names_its_replacement(data_dir, tmp_path, capsys, old, new):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out)] + old, capsys)
    assert code == 2 and "is gone: use" in err and new in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_scale_paper_is_the_papers_grid():
    quick, paper = (mg.parse_args(["--mode", "landscape", "--scale", s]) for s in ("quick", "paper"))
    assert (len(quick.alpha_list), len(quick.size_list), quick.steps) == (9, 8, 2000)
    assert (len(paper.alpha_list), len(paper.size_list), paper.steps) == (21, 28, 10_000)
    assert paper.size_list == mg.PAPER_SIZES and paper.size_list[-1] == 60000
    rq, rp = (mg.parse_args(["--mode", "repr", "--scale", s]) for s in ("quick", "paper"))
    assert (len(rq.m_list), len(rq.alpha_list), len(rp.m_list), len(rp.alpha_list), rp.steps) == (6, 8, 21, 20, 10_000)
    run = mg.parse_args(["--scale", "paper"])  # the run mode has no grid: the same defaults at both scales
    assert (run.steps, run.n_train, run.batch_size) == (100_000, 1000, 200)


# ----------------------------------------------------------------------------------------------
# smoke: every mode on the fixture, tiny sizes
# ----------------------------------------------------------------------------------------------
def test_run_mode_cli_from_a_copied_folder(data_dir, tmp_path):
    """The script with common.py and kernels/ beside it runs in an empty folder (docs/DESIGN.md, Copying)."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    shutil.copy(REPO / "mnist_grok.py", work)
    shutil.copy(REPO / "common.py", work)
    shutil.copytree(REPO / "kernels", work / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "run"
    p = subprocess.run([sys.executable, "mnist_grok.py", "--data-dir", str(data_dir), "--n-train", "100",
                        "--steps", "40", "--eval-points", "10", "--out", str(out)],
                       cwd=work, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    for f in ("config.json", "metrics.json", "summary.json", "curves.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert RUN_KEYS <= set(s)
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"][0] == 0 and m["steps"][-1] == 40 and len(m["train_acc"]) == len(m["steps"])
    assert s["w_init"] == pytest.approx(9 * _w0(), rel=1e-5)  # alpha multiplies every parameter
    assert s["w_final"] < s["w_init"]  # weight decay 0.3 at work


def _w0():
    return float(common.global_norm(mg.mlp_params(0, 200, torch.float32, torch.device("cpu"))))


def test_run_mode_ce_constrained(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out), "--loss", "ce", "--alpha", "3",
                          "--n-train", "120", "--batch-size", "40", "--steps", "60", "--constrain", "--eval-points", "8"],
                         capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert np.allclose(m["w"], m["w"][0], rtol=1e-5)  # the norm held at alpha * w0
    assert m["train_acc"][-1] > 0.5  # the fixture is learnable: the loop really trains


def test_landscape_mode(data_dir, tmp_path, capsys):
    out = tmp_path / "land"
    argv = ["--mode", "landscape", "--data-dir", str(data_dir), "--out", str(out), "--sizes", "20,60,150",
            "--alphas", "0.5,1,4", "--steps", "30", "--slice-sizes", "20,150", "--b-alpha", "4", "--eval-points", "5"]
    code, err = run_main(argv + ["--shard", "1/2"], capsys)  # shard 1 of 2: only the middle row
    assert code == 0, err
    assert sorted(p.name for p in (out / "points").iterdir()) == ["n_train_60.json", "settings.json"]
    row60 = stamp(out / "points" / "n_train_60.json")
    code, err = run_main(argv + ["--steps", "31"], capsys)  # other settings into the same folder: refused
    assert code == 2 and "steps" in err
    code, err = run_main(argv, capsys)  # the rest; row 60 is skipped, not retrained
    assert code == 0, err
    assert stamp(out / "points" / "n_train_60.json") == row60  # the same file: not written again
    assert sorted(p.name for p in (out / "points").iterdir()) == ["n_train_150.json", "n_train_20.json",
                                                                  "n_train_60.json", "settings.json"]
    s = json.loads((out / "summary.json").read_text())
    assert s["rows_done"] == 3 and np.array(s["test_error_best"]).shape == (3, 3)
    for f in ("landscape.png", "landscape_loss.png", "config.json"):
        assert (out / f).is_file()
    rec = json.loads((out / "points" / "n_train_150.json").read_text())
    for p in rec["points"]:  # best is the best over the evaluations, so never worse than final
        assert p["train_loss_best"] <= p["train_loss_final"] and p["test_acc_best"] >= p["test_acc_final"]
        assert p["w"] == pytest.approx(p["alpha"] * _w0(), rel=1e-4)  # fixed norm


@pytest.mark.parametrize("mode, flags, key", [
    ("n-sweep", ["--sizes", "40,80", "--batch-size", "20"], "n_train"),
    ("wd-sweep", ["--wds", "0.1,1", "--n-train", "100"], "wd"),
])
def test_sweep_modes(data_dir, tmp_path, capsys, mode, flags, key):
    out = tmp_path / mode
    code, err = run_main(["--mode", mode, "--data-dir", str(data_dir), "--out", str(out), "--steps", "40",
                          "--eval-points", "8", "--acc-threshold", "0.3"] + flags, capsys)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert len(s["members"]) == 2 and {"slope_test", "slope_train"} <= set(s)
    assert {key, "test_acc_step", "train_acc_step", "final_test_acc"} <= set(s["members"][0])
    assert (out / f"{mode.replace('-', '_')}.png").is_file() and (out / "metrics.json").is_file()


def test_repr_mode(data_dir, tmp_path, capsys):
    out = tmp_path / "repr"
    code, err = run_main(["--mode", "repr", "--data-dir", str(data_dir), "--out", str(out), "--n-train", "100",
                          "--ms", "0,0.5,1", "--alphas", "1,2,3", "--path-alphas", "1,3", "--steps", "30",
                          "--eval-points", "5"], capsys)
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["rows_done"] == 3 and len(s["path"]) == 5  # A, (2, 1), B, (3, 0.5), C
    assert (s["path"][0]["alpha"], s["path"][0]["m"]) == (1, 1) and (s["path"][-1]["alpha"], s["path"][-1]["m"]) == (3, 0)
    assert all(np.isfinite([p["train_loss"], p["test_loss"]]).all() for p in s["path"])
    loss = np.array(s["train_loss_best"])  # rows: m = 0, 0.5, 1; columns: alpha
    assert loss.shape == (3, 3) and not np.allclose(loss[0], loss[2])  # m changes the inputs
    assert (out / "repr.png").is_file()


# ----------------------------------------------------------------------------------------------
# the batched ensemble is exactly E independent runs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shared", [True, False])
def test_batch_table_gives_the_cpu_paths_batches(data_dir, monkeypatch, shared):
    """The CUDA path draws every step's batch up front into a device table that the graphed step reads by a
    counter; forced on CPU, it must train exactly what the CPU path trains (same batches, same numbers)."""
    args = mg.parse_args(["--data-dir", str(data_dir), "--batch-size", "32", "--eval-points", "6"])
    cpu = torch.device("cpu")
    data = mg.load_mnist(args, cpu, torch.float32)
    members = [{"alpha": a, "wd": 0.3, "n_train": 120 if shared else n} for a, n in ((1.0, 60), (4.0, 120))]
    kw = dict(constrain=None, desc="t", device=cpu, dtype=torch.float32, independent=not shared)
    plain = mg.train_ensemble(args, data, members, 30, **kw)
    monkeypatch.setattr(mg, "batch_table", lambda device: True)
    assert mg.train_ensemble(args, data, members, 30, **kw) == plain


@pytest.mark.parametrize("table", [False, True])
def test_a_killed_run_resumes_bit_for_bit(data_dir, tmp_path, capsys, monkeypatch, table):
    """Run mode from its checkpoint (tests/test_resume.py does it for every script); here also with the batch table
    of the CUDA path forced on CPU: the resumed run starts at the saved step's row of the table."""
    monkeypatch.setattr(mg, "batch_table", lambda device: table)
    argv = ["--data-dir", str(data_dir), "--n-train", "100", "--batch-size", "30", "--steps", "300", "--eval-points",
            "12", "--checkpoint-every", "0"]  # batches are drawn 256 at a time: the generator's state matters at 256
    assert run_main(argv + ["--out", str(tmp_path / "whole")], capsys)[0] == 0
    save = common.Checkpoint.save

    def save_then_die(self, state):
        save(self, state)
        if state()["step"] >= 150:
            raise KeyboardInterrupt  # not an Exception: as a kill, nothing after the checkpoint runs
    monkeypatch.setattr(common.Checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run_main(argv + ["--out", str(tmp_path / "killed")], capsys)
    monkeypatch.setattr(common.Checkpoint, "save", save)
    code, err = run_main(argv + ["--out", str(tmp_path / "killed")], capsys)
    assert code == 0, err
    assert (tmp_path / "killed" / "metrics.json").read_bytes() == (tmp_path / "whole" / "metrics.json").read_bytes()
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()


@pytest.mark.parametrize("constrain", [None, "global"])
def test_ensemble_member_equals_single_run(data_dir, constrain):
    args = mg.parse_args(["--data-dir", str(data_dir), "--batch-size", "32", "--eval-points", "6",
                          "--dtype", "float64"])
    cpu, f64 = torch.device("cpu"), torch.float64
    data = mg.load_mnist(args, cpu, f64)
    kw = dict(constrain=constrain, desc="t", device=cpu, dtype=f64)
    members = [{"alpha": a, "wd": w, "n_train": 120} for a, w in ((0.5, 0.0), (4.0, 0.3), (9.0, 1.0))]
    steps, ms, _ = mg.train_ensemble(args, data, members, 40, **kw)
    steps1, [single], _ = mg.train_ensemble(args, data, members[1:2], 40, **kw)
    assert steps == steps1
    for k in single:
        np.testing.assert_allclose(ms[1][k], single[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert not np.allclose(ms[0]["train_loss"], single["train_loss"])  # members do differ


def test_ensemble_with_different_training_sets_equals_single_runs(data_dir):
    args = mg.parse_args(["--data-dir", str(data_dir), "--batch-size", "20", "--eval-points", "6",
                          "--dtype", "float64"])
    cpu, f64 = torch.device("cpu"), torch.float64
    data = mg.load_mnist(args, cpu, f64)
    members = [{"alpha": 4.0, "wd": 0.3, "n_train": n} for n in (40, 120)]
    steps, ms, _ = mg.train_ensemble(args, data, members, 30, constrain=None, desc="t", device=cpu, dtype=f64,
                                     independent=True)
    for mem, m in zip(members, ms):  # independent (the sweeps' setting): bit for bit, as a shard of one
        _, [single], _ = mg.train_ensemble(args, data, [mem], 30, constrain=None, desc="t", device=cpu, dtype=f64,
                                           independent=True)
        assert m == single, mem
        _, [shared], _ = mg.train_ensemble(args, data, [mem], 30, constrain=None, desc="t", device=cpu, dtype=f64)
        for k in single:  # a single run (the shared batch's one GEMM): equal to rounding
            np.testing.assert_allclose(m[k], shared[k], rtol=1e-9, atol=1e-12, err_msg=f"N={mem['n_train']} {k}")


# ----------------------------------------------------------------------------------------------
# --constrain MODE and --mode norm-modes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constrain", ["global", "per-tensor", "cap"])
def test_constrain_modes_hold_their_norms(data_dir, monkeypatch, constrain):
    args = mg.parse_args(["--data-dir", str(data_dir), "--batch-size", "32", "--eval-points", "10"])
    cpu = torch.device("cpu")
    data = mg.load_mnist(args, cpu, torch.float32)
    members = [{"alpha": a, "wd": 0.3, "n_train": 120} for a in (3.0, 9.0)]
    seen, project = [], common.project_

    def spy(params, targets, mode):  # after every projection: each member's tensor norms, and the targets
        project(params, targets, mode)
        seen.append((kernels.batched_tensor_norms(params), targets))
    monkeypatch.setattr(common, "project_", spy)
    steps, ms, err = mg.train_ensemble(args, data, members, 40, constrain=constrain, desc="t", device=cpu,
                                       dtype=torch.float32)
    assert err is None and len(seen) == 40 and ms[1]["train_acc"][-1] > ms[1]["train_acc"][0]  # it trains
    init = [torch.stack(ts) for ts in zip(*[mg.mlp_params(0, 200, torch.float32, cpu)] * 2)]
    w0 = common.batched_norm(init)  # one seed: both members start from the same init
    alpha_w0 = torch.tensor([3.0, 9.0]) * w0
    for e, m in enumerate(ms):
        if constrain == "global":
            np.testing.assert_allclose(m["w"], alpha_w0[e].item(), rtol=1e-5)
        else:  # cap: never above alpha * w0, and weight decay pulls it below
            assert max(m["w"]) <= alpha_w0[e].item() * (1 + 1e-6)
    if constrain == "per-tensor":
        want = torch.tensor([[3.0], [9.0]]) * kernels.batched_tensor_norms(init)
        for norms, targets in seen:  # each tensor held at alpha times its initial norm
            assert targets.held == list(range(6))  # every tensor of nn.Linear's init starts non-zero: all held
            torch.testing.assert_close(targets.norms, want, rtol=1e-6, atol=0)
            torch.testing.assert_close(norms, want, rtol=1e-5, atol=0)
    if constrain == "cap":
        _, held, _ = mg.train_ensemble(args, data, members, 40, constrain="global", desc="t", device=cpu,
                                       dtype=torch.float32)
        assert ms[0]["w"][-1] < 0.999 * held[0]["w"][-1]  # weight decay acts under the cap: not the global run
        assert ms[0]["train_loss"] != held[0]["train_loss"]


@pytest.mark.parametrize("constrain", [None, "per-tensor", "cap"])
def test_norm_modes_member_equals_single_run_with_its_seed(data_dir, constrain):
    """A norm-modes ensemble (one member per seed, independent) vs `--seed s` single runs (the run mode's
    shared-batch path): the same init, subset, batches and test images, equal to rounding in float64."""
    argv = ["--data-dir", str(data_dir), "--batch-size", "32", "--eval-points", "6", "--dtype", "float64"]
    cpu, f64 = torch.device("cpu"), torch.float64
    args = mg.parse_args(argv)
    data = mg.load_mnist(args, cpu, f64)
    members = [{"alpha": 5.0, "wd": 0.3, "n_train": 100, "seed": s} for s in (0, 1, 2)]
    steps, ms, _ = mg.train_ensemble(args, data, members, 30, constrain=constrain, desc="t", device=cpu, dtype=f64,
                                     independent=True)
    for s in (0, 2):
        single_args = mg.parse_args(argv + ["--seed", str(s)])
        steps1, [single], _ = mg.train_ensemble(single_args, data, [{"alpha": 5.0, "wd": 0.3, "n_train": 100}], 30,
                                                constrain=constrain, desc="t", device=cpu, dtype=f64)
        assert steps1 == steps
        for k in single:
            np.testing.assert_allclose(ms[s][k], single[k], rtol=1e-9, atol=1e-12, err_msg=f"seed {s} {k}")
    assert ms[0]["w"][0] != ms[1]["w"][0] and ms[0]["test_loss"] != ms[2]["test_loss"]  # the seeds do differ


def test_norm_modes_smoke_and_shard_plus_merge_equals_whole(data_dir, tmp_path, capsys):
    argv = ["--mode", "norm-modes", "--data-dir", str(data_dir), "--n-train", "100", "--steps", "40",
            "--eval-points", "6", "--seeds", "0,1", "--acc-threshold", "0.2", "--norm-alpha", "4"]
    code, err = run_main(argv + ["--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    for shard in ("0/3", "2/3", "1/3"):
        assert run_main(argv + ["--out", str(tmp_path / "parts"), "--shard", shard], capsys)[0] == 0
    code, err = run_main(argv + ["--out", str(tmp_path / "parts"), "--merge"], capsys)
    assert code == 0, err
    names = [f"{c}_seed_{s}" for c in ("wd", "global", "per-tensor", "cap") for s in (0, 1)]
    assert sorted(p.stem for p in (tmp_path / "whole" / "points").glob("*_seed_*.json")) == sorted(names)

    def load(out, f, drop=("seconds", "wall_seconds")):
        d = json.loads((tmp_path / out / f).read_text())
        return {k: v for k, v in d.items() if k not in drop}
    for name in names:  # a member's numbers do not depend on which seeds share its ensemble
        assert load("whole", f"points/{name}.json") == load("parts", f"points/{name}.json"), name
    s = load("whole", "summary.json")
    assert s == load("parts", "summary.json")
    assert list(s["conditions"]) == ["wd", "global", "per-tensor", "cap"] and s["missing"] == []
    assert (s["alpha"], s["norm_alpha"], s["wd"], s["acc_threshold"]) == (9.0, 4.0, 0.3, 0.2)
    assert len(s["members"]) == 8 and {"condition", "seed", "test_acc_step", "grok_ratio"} <= set(s["members"][0])
    for v in s["conditions"].values():
        assert v["seeds"] == 2 and set(v["test_acc_step"]) == {"mean", "std", "min", "max", "reached"}
    m = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert len(m["members"]) == 8 and m["steps"][-1] == 40
    assert (tmp_path / "whole" / "norm_modes.png").is_file()
