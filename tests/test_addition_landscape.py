"""Tests of addition_landscape.py (paper Sec. 5.1, Fig. 6): every mode at tiny size, the batched
ensemble against single runs, the m = 0 vs m = 1 test-loss gap, determinism, the recorded loss (final or
best), and bad flags."""
import json

import numpy as np
import pytest
import torch

import addition_landscape as al
import common
from conftest import run_main
CPU = torch.device("cpu")


def run(*argv, check=True):
    r = run_main(al.main, argv)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def read(path):
    return json.loads(path.read_text())


def fixed_norm(argv, alphas, ms, dtype=torch.float64):
    args = al.parse_args(["--mode", "landscape", *argv])
    task = al.make_task(args, CPU, dtype)
    return al.train_fixed_norm(args, task, np.array(alphas), np.array(ms), args.n_train, device=CPU, dtype=dtype, desc="t")


# ----------------------------------------------------------------------------------------------
def test_ensemble_member_equals_single_run():
    argv = ["--width", "24", "--steps", "40", "--eval-points", "10", "--lr-decay-every", "15"]
    alphas, ms = [0.0, 1.5, 4.0], [0.2, 0.0, 0.1]
    steps, curves, best, _, err = fixed_norm(argv, alphas, ms)
    assert err is None
    for e, (a, m) in enumerate(zip(alphas, ms)):
        s1, c1, b1, _, _ = fixed_norm(argv, [a], [m])
        assert s1 == steps
        for key in ("train_loss", "test_loss", "train_acc", "w"):
            np.testing.assert_allclose([row[e] for row in curves[key]], [row[0] for row in c1[key]],
                                       rtol=1e-9, atol=1e-12, err_msg=key)
        np.testing.assert_allclose(best[e], b1[0], rtol=1e-9)
    # the projection holds every member on its sphere w = alpha * w0
    w0 = float(np.array(curves["w"])[0, 1] / 1.5)
    np.testing.assert_allclose(np.array(curves["w"])[-1], np.array(alphas) * w0, rtol=1e-9, atol=1e-12)


def test_linear_representation_generalizes_random_does_not():
    # Fig. 6b in two points: at a moderate weight norm (alpha = 3, both fit the training set), m = 0
    # (linear) gives a low test loss and names most test sums; m = 1 (random) names almost none.
    steps, curves, best, _, err = fixed_norm(["--steps", "1500", "--eval-points", "30", "--lr-decay-every", "500"],
                                            [3.0, 3.0], [0.0, 1.0], dtype=torch.float32)
    test_loss = np.array(curves["test_loss"]).min(0)
    test_acc = np.array(curves["test_acc"]).max(0)
    assert err is None and max(best) < 0.05, best  # both in region II (train loss below the contour)
    assert test_acc[0] >= 0.6 and test_acc[1] <= 0.3, test_acc
    assert test_loss[0] < 0.8 * test_loss[1], test_loss


def test_messiness_estimate_recovers_m_and_ignores_rotation_scale_offset():
    args = al.parse_args(["--mode", "run"])
    task = al.make_task(args, CPU, torch.float64)
    rot = torch.tensor([[0.6, -0.8], [0.8, 0.6]], dtype=torch.float64)
    for m in (0.0, 0.05, 0.3, 0.8):
        R = al.representation(task, torch.tensor([m], dtype=torch.float64))[0]
        assert abs(al.messiness(R.numpy(), task) - m) < 0.01
        assert abs(al.messiness((3 * R @ rot + 5).numpy(), task) - m) < 0.01


def test_landscape_and_derived_modes_smoke_and_determinism(tmp_path):
    tiny = ["--grid-points", "3", "--steps", "30", "--width", "16", "--eval-points", "8"]
    a, b = tmp_path / "a", tmp_path / "b"
    run("--mode", "landscape", *tiny, "--out", str(a))
    run("--mode", "landscape", *tiny, "--out", str(b))
    sa, sb = read(a / "summary.json"), read(b / "summary.json")
    assert sa["landscape"] == sb["landscape"]  # bit-identical for a fixed seed
    land = sa["landscape"]
    assert np.array(land["train_loss_best"]).shape == (3, 3)
    assert all((a / f).exists() for f in ("config.json", "metrics.json", "landscape.png", "landscape_best.png"))
    # alpha = 0: the decoder is the zero function, the loss is the mean squared target
    assert np.allclose(np.array(land["train_loss_best"])[:, 0], np.array(land["train_loss_final"])[:, 0])

    g, t = tmp_path / "g", tmp_path / "t"
    run("--mode", "gradient", "--landscape-from", str(a), "--out", str(g))
    assert (g / "gradient.png").exists()
    run("--mode", "trajectory", "--landscape-from", str(a), "--start", "8,0.15", "--out", str(t))
    path = read(t / "path.json")
    assert len(path["t"]) >= 2 and path["alpha"][0] == pytest.approx(8.0)
    assert (t / "trajectory.png").exists()


def test_n_sweep_and_run_smoke(tmp_path):
    n, r = tmp_path / "n", tmp_path / "r"
    run("--mode", "n-sweep", "--grid-points", "3", "--steps", "20", "--width", "16", "--eval-points", "5",
        "--n-trains", "25,55", "--n-train", "25", "--out", str(n))
    s = read(n / "summary.json")
    assert [la["n_train"] for la in s["landscapes"]] == [25, 55] and (n / "n_sweep.png").exists()
    assert all(v is None or np.isnan(v) for v in np.array(s["landscapes"][1]["test_loss_best"]).ravel())  # N=55: no test set
    # one star (N = --n-train's) for every N, and each N's distance from it to its smoothed contour
    star, lands = s["star"], s["landscapes"]
    assert star == lands[0]["star"] and "star" not in lands[1]
    for la in lands:
        z = al.smooth(np.array(la["train_loss_final"]), 1)
        want = al.contour_distance(la["alphas"], la["ms"], z, s["contour"], (star["alpha"], star["m"]))
        assert s["contour_distance_to_star"][str(la["n_train"])] == (None if want is None else pytest.approx(want))
    run("--steps", "40", "--width", "16", "--eval-points", "8", "--out", str(r))
    s = read(r / "summary.json")
    for key in ("train_acc_step", "test_acc_step", "grok_ratio", "final_test_acc", "w_init", "w_final", "m_final"):
        assert key in s
    assert (r / "curves.png").exists()


def test_contour_distance_is_measured_in_units_of_the_window():
    xs, ys = [0.0, 1.0, 2.0], [0.0, 0.5]
    z = np.array([[1.0, 0.5, 0.0], [1.0, 0.5, 0.0]])  # level 0.5: the vertical line x = 1
    assert al.contour_distance(xs, ys, z, 0.5, (0.0, 0.25)) == pytest.approx(0.5)  # half the x side
    assert al.contour_distance(xs, ys, z, 0.25, (1.0, 0.0)) == pytest.approx(0.25)  # the line x = 1.5
    assert al.contour_distance(xs, ys, z, 2.0, (1.0, 0.0)) is None  # no contour at that level


def test_record_final_by_default_best_on_request(tmp_path):
    # The authors' notebook saved the losses after the last step (in files named *best*): every analysis
    # uses those by default; --record best switches them all to the minimum over training. A grid where
    # the two differ (lr 0.1, no decay: the losses oscillate).
    tiny = ["--mode", "landscape", "--grid-points", "3", "--width", "32", "--steps", "200", "--eval-points", "8",
            "--lr", "0.1", "--lr-decay-every", "0", "--alpha-range", "1,3"]
    f, b, t = tmp_path / "f", tmp_path / "b", tmp_path / "t"
    run(*tiny, "--out", str(f))
    run(*tiny, "--record", "best", "--out", str(b))
    sf, sb = read(f / "summary.json"), read(b / "summary.json")
    assert (sf["record"], sb["record"]) == ("final", "best")
    assert (f / "landscape_best.png").exists() and (b / "landscape_final.png").exists()
    land = sf["landscape"]
    for key in ("train_loss_final", "train_loss_best", "test_loss_final", "test_loss_best"):
        assert land[key] == sb["landscape"][key]  # both saved, whichever is analysed
    for s, rec in ((sf, "final"), (sb, "best")):
        tr, te = (np.array(land[f"{k}_loss_{rec}"]) for k in ("train", "test"))
        assert s["train_loss_small_alpha"] == pytest.approx(tr[:, 0].mean())  # alpha >= 1 here: column 0
        assert s["train_loss_large_alpha"] == pytest.approx(tr[:, -1].mean())
        r, c = np.unravel_index(np.argmin(te), te.shape)  # the star: lowest recorded test loss
        assert s["landscape"]["star"] == dict(alpha=land["alphas"][c], m=land["ms"][r], test_loss=te[r, c])
    assert sf["train_loss_small_alpha"] > sb["train_loss_small_alpha"]  # the final loss is above the minimum
    # a saved run is read with the current --record: its star follows
    run("--mode", "trajectory", "--landscape-from", str(f), "--record", "best", "--out", str(t))
    st = read(t / "summary.json")
    assert st["record"] == "best" and st["landscape"]["star"] == sb["landscape"]["star"]


@pytest.mark.parametrize("argv", [["--n-train", "56"], ["--alpha-range", "3,1"], ["--m-range", "0,2"],
                                  ["--grid-points", "1"], ["--steps", "0"], ["--lr", "-1"], ["--start", "1"],
                                  ["--n-trains", "25,x"], ["--mode", "trajectory", "--landscape-from", "/nonexistent"]])
def test_bad_flags_are_user_errors(argv):
    with pytest.raises(common.UserError):
        al.parse_args(argv)


def test_bad_input_exits_2_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    r = run("--mode", "landscape", "--m-range", "0,2", "--out", str(out), check=False)
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()  # flags are checked before the run dir exists
