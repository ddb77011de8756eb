"""toy_teacher_student.py: every mode end to end, the batched ensemble, bad input, NaN, and the
paper's claim that time to generalize scales as 1/wd while time to fit does not (Fig. 2c)."""
import json

import pytest
import torch

import common
import toy_teacher_student as ts
from conftest import run_main

RUN_KEYS = {"acc_threshold", "train_acc_step", "test_acc_step", "grok_ratio", "final_train_acc", "final_test_acc",
            "final_train_loss", "final_test_loss", "w_init", "w_min", "w_final", "wall_seconds", "steps_per_second"}
CPU = torch.device("cpu")


def run_script(*args):
    return run_main(ts.main, args)


def load(out, name):
    return json.loads((out / name).read_text())


@pytest.mark.parametrize("mode,extra,figure", [
    ("run", ["--steps", "30"], "curves.png"),
    ("run", ["--steps", "30", "--constrain"], "curves.png"),
    ("grid", ["--steps", "20"], "grid.png"),
    ("landscape", ["--landscape-steps", "20", "--alphas", "0.5,1,2"], "landscape.png"),
    ("wd-sweep", ["--steps", "20", "--wds", "0.1,1"], "wd_sweep.png"),
])
def test_every_mode_writes_its_files(tmp_path, mode, extra, figure):
    out = tmp_path / mode
    r = run_script("--mode", mode, "--out", str(out), "--eval-points", "10", *extra)
    assert r.returncode == 0, r.stderr
    for name in ("config.json", "metrics.json", "summary.json", figure):
        assert (out / name).is_file(), name
    config, metrics, summary = load(out, "config.json"), load(out, "metrics.json"), load(out, "summary.json")
    assert config["args"]["mode"] == mode and config["torch"] == torch.__version__
    assert metrics["steps"][0] == 0
    if mode == "run":
        assert RUN_KEYS <= set(summary)
        assert metrics["steps"][-1] == 30 and len(metrics["w"]) == len(metrics["steps"])
    if mode == "landscape":
        assert [p["alpha"] for p in summary["points"]] == [0.5, 1, 2]
        assert {"train_loss_best", "test_loss_best", "train_loss_final", "test_loss_final"} <= set(summary["points"][0])
    if mode == "wd-sweep":
        assert {"slope_train", "slope_test"} <= set(summary) and len(summary["members"]) == 2


def test_constrained_run_holds_the_weight_norm(tmp_path):
    r = run_script("--steps", "50", "--constrain", "--alpha", "3", "--out", str(tmp_path), "--dtype", "float64")
    assert r.returncode == 0, r.stderr
    w = load(tmp_path, "metrics.json")["w"]
    assert max(w) == pytest.approx(min(w), rel=1e-10)


def test_ensemble_member_equals_single_run():
    """Member e of a batched ensemble is the same computation as a run on its own."""
    args = ts.parse_args(["--dtype", "float64", "--eval-points", "20"])
    kw = dict(device=CPU, dtype=torch.float64, desc="t")
    alphas, wds = [0.5, 2.0, 1.3], [0.0, 1.0, 0.3]
    steps, ens, _ = ts.train_ensemble(args, alphas, wds, 200, constrain=None, **kw)
    for e in (1, 2):
        steps1, [single], _ = ts.train_ensemble(args, [alphas[e]], [wds[e]], 200, constrain=None, **kw)
        assert steps1 == steps
        for k in ("train_loss", "test_loss", "w"):
            torch.testing.assert_close(torch.tensor(ens[e][k]), torch.tensor(single[k]), rtol=1e-9, atol=1e-12)


def test_single_run_equals_textbook_pytorch():
    """The batched functional MLP + Adam + decay_weights_ is an nn.Sequential trained with torch's AdamW."""
    args = ts.parse_args(["--dtype", "float64"])
    (x, y), _ = ts.make_data(args, torch.float64, CPU)
    torch.manual_seed(args.seed)
    net = torch.nn.Sequential(torch.nn.Linear(5, 100), torch.nn.Tanh(), torch.nn.Linear(100, 100), torch.nn.Tanh(),
                              torch.nn.Linear(100, 5)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.3)
    losses = []
    for _ in range(101):
        loss = (net(x) - y).pow(2).mean()
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    steps, [m], _ = ts.train_ensemble(args, [2.0], [0.3], 100, constrain=None, device=CPU, dtype=torch.float64, desc="t")
    torch.testing.assert_close(torch.tensor(m["train_loss"]), torch.tensor([losses[s] for s in steps]), rtol=1e-7, atol=0)


@pytest.mark.parametrize("bad", [["--alpha", "0"], ["--alpha", "-1"], ["--wd", "-0.1"], ["--steps", "0"],
                                 ["--mode", "nope"], ["--wds", "0.1,x"]])
def test_bad_input_is_one_clear_error(tmp_path, bad):
    out = tmp_path / "out"
    r = run_script(*bad, "--out", str(out))
    assert r.returncode == 2
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_nan_stops_with_message_and_keeps_metrics(tmp_path):
    r = run_script("--lr", "1e30", "--steps", "200", "--out", str(tmp_path))
    assert r.returncode == 1
    assert "became" in r.stderr and "Traceback" not in r.stderr
    metrics = load(tmp_path, "metrics.json")
    assert metrics["steps"][0] == 0 and len(metrics["train_loss"]) == len(metrics["steps"])
    assert not (tmp_path / "summary.json").exists()


def test_paper_claim_generalization_time_scales_inversely_with_wd():
    """Fig. 2c at alpha = 2: 95% test accuracy is reached ~1/wd later, 95% train accuracy at the same time."""
    args = ts.parse_args(["--eval-points", "300"])
    steps, (m03, m1), _ = ts.train_ensemble(args, [2.0, 2.0], [0.3, 1.0], 9_000, constrain=None,
                                            device=CPU, dtype=torch.float32, desc="claim")
    s03, s1 = (common.grok_summary(steps, m, acc_threshold=0.95) for m in (m03, m1))
    assert s03["test_acc_step"] is not None and s1["test_acc_step"] is not None
    assert 2 <= s03["test_acc_step"] / s1["test_acc_step"] <= 5  # 1/0.3 = 3.3
    assert 0.67 <= s03["train_acc_step"] / s1["train_acc_step"] <= 1.5


def test_constrain_modes_hold_their_norms():
    """--constrain global holds ||w|| = alpha * w0, per-tensor each tensor's norm, cap keeps ||w|| <= alpha * w0
    (and weight decay still acts, so the norm moves below where global stays)."""
    args = ts.parse_args(["--width", "16", "--n-train", "20", "--n-test", "20", "--steps", "30", "--eval-points", "5",
                          "--lr", "0.05", "--wd", "3"])
    def norms(constrain, wd=args.wd):
        seen = {}

        def project(params, targets, c):
            real(params, targets, c)
            seen.setdefault("targets", targets)
            seen["w"] = common.batched_norm(params)
            seen["per"] = torch.stack([p[0].norm() for p in params])
        real, common.project_ = common.project_, project
        try:
            _, [m], err = ts.train_ensemble(args, [2.0], [wd], args.steps, constrain=constrain, desc="t",
                                            device=CPU, dtype=torch.float64)
        finally:
            common.project_ = real
        assert err is None
        return seen, m

    g, mg = norms("global")
    assert torch.allclose(g["w"], g["targets"], rtol=1e-10) and all(abs(w / mg["w"][0] - 1) < 1e-10 for w in mg["w"])
    pt, _ = norms("per-tensor")
    assert pt["targets"].held == list(range(6)) and torch.allclose(pt["per"], pt["targets"].norms[0], rtol=1e-10)
    c, mc = norms("cap")
    assert max(mc["w"]) <= mc["w"][0] * (1 + 1e-12) and mc["w"][-1] < 0.99 * mc["w"][0]  # capped, and wd shrinks it
    assert mc["test_loss"] != mg["test_loss"]
    assert norms("cap", wd=0.0)[1]["w"] != mc["w"]  # weight decay acts under a cap
