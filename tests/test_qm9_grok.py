"""Tests of qm9_grok.py: RDKit featurization as PyG's QM9, real molecules from the installed qm9pack
(a few rows), the seeded split, the device batching against PyG's collation, and every mode on a fixture
folder in qm9pack's CSV format (the first 40 real rows, copied). Never the network.

Covers: methane / acetonitrile / benzene features (counts, one-hot columns, aromatic flags, the PyG-SDF
variant); formulas of real molecules against qm9pack's Elements; bad input (alpha <= 0, size < 4, unknown
target, missing data, the renamed --paper-grid: one line, exit code 2, nothing written); --scale; a smoke run,
each --constrain mode (its norms held), a compiled run resumed from its checkpoint, a tiny landscape with --shard;
ensemble member e equals the single run (the copied script: tests/test_copy.py; every script's resume:
tests/test_resume.py).
"""
import ast
import csv
import itertools
import json
from collections import Counter

import numpy as np
import pytest
import torch

import common
import qm9_grok as qg

RUN_KEYS = {"loss_threshold", "train_loss_step", "test_loss_step", "grok_ratio", "final_train_loss", "final_test_loss",
            "w_init", "w_min", "w_final", "wall_seconds", "steps_per_second"}
N_FIXTURE = 40


@pytest.fixture(scope="module")
def csv_dir(tmp_path_factory):
    """qm9pack's format for real: the header and the first 40 rows of the installed qm9_part1.csv."""
    _, paths = qg.qm9pack_csvs()
    d = tmp_path_factory.mktemp("qm9csv")
    with open(paths[0]) as src, open(d / "qm9_part1.csv", "w") as dst:
        for _ in range(N_FIXTURE + 1):
            dst.write(src.readline())
    return d


def stamp(path):
    """A saved file's identity: inode, modification time and bytes (a point written again - atomically, a new
    file - changes all three; its "seconds" alone differs between two trainings)."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def run_main(argv, capsys):
    """qm9_grok's CLI in this process (exit code, stderr)."""
    try:
        common.main_guard(lambda: qg.main(argv))
        code = 0
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def base(csv_dir, tmp_path):
    return ["--csv-dir", str(csv_dir), "--data-dir", str(tmp_path / "data"), "--eval-points", "6"]


# ----------------------------------------------------------------------------------------------
# featurization (PyG QM9's columns: 0-4 one-hot H C N O F, 5 Z, 6 aromatic, 7 sp, 8 sp2, 9 sp3, 10 num H)
# ----------------------------------------------------------------------------------------------
def test_methane():
    d = qg.featurize("C")
    assert d.x.shape == (5, 11) and d.edge_index.shape == (2, 8) and d.edge_attr.shape == (8, 4)
    c = d.x[d.z == 6][0].tolist()
    assert c == [0, 1, 0, 0, 0, 6, 0, 0, 0, 1, 4]  # carbon, sp3, four bonded hydrogens
    assert (d.x[d.z == 1] == torch.tensor([1., 0, 0, 0, 0, 1, 0, 0, 0, 0, 0])).all()  # H: no hybridization set
    assert (d.edge_attr[:, 0] == 1).all()  # single bonds only
    assert set(map(tuple, d.edge_index.t().tolist())) == {(i, j) for i in range(5) for j in range(5)
                                                            if (i == 0) != (j == 0)}  # both directions


def test_acetonitrile():
    d = qg.featurize("CC#N")
    assert d.num_nodes == 6 and d.edge_index.shape[1] == 10  # C, C, N + 3 H; 5 bonds, both directions
    assert d.edge_attr.sum(0).tolist() == [8, 0, 2, 0]  # C-C and 3 C-H single, C#N triple
    methyl, nitrile, n = d.x[0].tolist(), d.x[1].tolist(), d.x[2].tolist()
    assert methyl[:5] == [0, 1, 0, 0, 0] and methyl[7:] == [0, 0, 1, 3]
    assert nitrile[:5] == [0, 1, 0, 0, 0] and nitrile[7:] == [1, 0, 0, 0]  # sp, no H
    assert n[:6] == [0, 0, 1, 0, 0, 7] and n[7:] == [1, 0, 0, 0]
    # edges sorted by (source, target), as PyG's QM9 processing
    key = (d.edge_index[0] * 6 + d.edge_index[1]).tolist()
    assert key == sorted(key)


def test_benzene_aromatic_and_the_pyg_sdf_variant():
    d = qg.featurize("c1ccccc1")
    assert d.num_nodes == 12 and d.edge_index.shape[1] == 24
    carbons = d.x[d.z == 6]
    assert (carbons[:, 6] == 1).all() and (carbons[:, 8] == 1).all() and (carbons[:, 10] == 1).all()  # aromatic sp2, 1 H
    assert d.edge_attr.sum(0).tolist() == [12, 0, 0, 12]  # 6 C-H single, 6 aromatic ring bonds
    k = qg.featurize("c1ccccc1", "sdf")  # as PyG reads the Kekule SDF with sanitize=False
    assert (k.x[:, 6:10] == 0).all()  # no aromatic flag, no hybridization
    assert k.edge_attr.sum(0).tolist() == [18, 6, 0, 0]  # 3 single + 3 double ring bonds, 6 C-H
    assert torch.equal(k.x[:, :6], d.x[:, :6]) and torch.equal(k.x[:, 10], d.x[:, 10])


def test_real_molecules_match_qm9pack_formulas():
    _, paths = qg.qm9pack_csvs()
    rows = qg.read_rows(paths, 30, "Polarizability_bohr3")
    assert [r[0] for r in rows] == list(range(1, 31))  # the first molecules by GDB index
    assert rows[0][1] == "C" and rows[0][3] == pytest.approx(13.21)  # gdb 1 = methane, alpha 13.21 bohr^3
    with open(paths[0], newline="") as f:
        elements = [ast.literal_eval(r["Elements"]) for r, _ in zip(csv.DictReader(f), range(30))]
    symbol = {1: "H", 6: "C", 7: "N", 8: "O", 9: "F"}
    for (gdb, smiles, n_atoms, _), want in zip(rows, elements):
        d = qg.featurize(smiles)
        assert Counter(symbol[int(z)] for z in d.z) == Counter(want), (gdb, smiles)
        assert d.num_nodes == n_atoms
        assert d.x[:, :5].sum(1).eq(1).all() and torch.equal(d.x[:, 5].long(), d.z)
    acetylene = qg.featurize(rows[3][1])  # gdb 4 = C#C: one triple + two single bonds
    assert rows[3][1] == "C#C" and acetylene.edge_attr.sum(0).tolist() == [4, 0, 2, 0]


def test_split_is_seeded_and_disjoint():
    tr, te = qg.split(100, 0)
    assert len(tr) == 50 and len(te) == 50 and not set(tr.tolist()) & set(te.tolist())
    assert sorted(tr.tolist() + te.tolist()) == list(range(100))
    assert torch.equal(qg.split(100, 0)[0], tr) and not torch.equal(qg.split(100, 1)[0], tr)
    tr7, te7 = qg.split(7, 0)
    assert len(tr7) == 3 and len(te7) == 4


def test_loader_cache_and_device_batching(csv_dir, tmp_path):
    from torch_geometric.data import Batch
    args = qg.parse_args(base(csv_dir, tmp_path))
    b = qg.load_qm9(args, 30)
    assert b.num_graphs == 30 and b.gdb.tolist() == list(range(1, 31)) and b.x.shape[1] == 11
    assert len(list((tmp_path / "data" / "qm9").glob("*_n30.pt"))) == 1
    again = qg.load_qm9(args, 30)  # from the cache
    assert torch.equal(again.x, b.x) and torch.equal(again.edge_index, b.edge_index)
    # Graphs.select (masks on the collated set) gives exactly PyG's collation of those molecules ...
    g = qg.Graphs(b, torch.arange(30), torch.device("cpu"), torch.float32)
    idx = torch.tensor([2, 3, 7, 19])
    x, ei, ea, batch, y, n = g.select(idx)
    ref = Batch.from_data_list([b.get_example(i) for i in idx.tolist()])
    assert n == 4 and torch.equal(y, ref.y) and torch.equal(batch, ref.batch)
    assert torch.equal(x, ref.x) and torch.equal(ei, ref.edge_index) and torch.equal(ea, ref.edge_attr)
    # ... and in any order the same predictions, in the order of idx (nodes keep the set's order)
    idx = torch.tensor([19, 2, 7, 3])
    inputs = g.select(idx)
    ref = Batch.from_data_list([b.get_example(i) for i in idx.tolist()])
    net = qg.make_net(0, torch.float32, torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(net(*inputs[:4], 4), net(ref.x, ref.edge_index, ref.edge_attr, ref.batch, 4))
    assert torch.equal(inputs[4], ref.y)


def test_batches_are_permutations_with_a_short_last_batch():
    bt = common.epoch_batches(50, 32, 0, torch.device("cpu"))
    for _ in range(3):
        a, b = next(bt), next(bt)
        assert len(a) == 32 and len(b) == 18 and sorted(torch.cat([a, b]).tolist()) == list(range(50))
    assert qg.default_steps(100, 32, 100 * 50000) == 100_000  # the authors' 50000 epochs of 2 batches


def test_batches_resume_by_skipping_the_taken_ones():
    """A resumed run skips the batches it took (the order is a function of the seed): the same batches as one run
    going on, across the refill of the permutations made ahead (n = 3000 makes 666 epochs at a time)."""
    cpu, k = torch.device("cpu"), 3 * 666 - 2
    want = list(itertools.islice(common.epoch_batches(3000, 1024, 0, cpu), k, k + 5))
    again = itertools.islice(common.epoch_batches(3000, 1024, 0, cpu), k, None)
    assert all(torch.equal(a, next(again)) for a in want)
    assert not torch.equal(want[0], next(common.epoch_batches(3000, 1024, 0, cpu)))


def test_onehot_edge_network_is_the_authors_network():
    torch.manual_seed(0)
    ours = qg.Net(onehot_edges=True)
    torch.manual_seed(0)
    theirs = qg.Net(onehot_edges=False)
    assert [k for k, _ in ours.named_parameters()] == [k for k, _ in theirs.named_parameters()]
    ea = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 0, 3]), 4).float()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.equal(a, b)
    torch.testing.assert_close(ours.conv2.nn(ea), theirs.conv2.nn(ea), rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# bad input: one sentence, exit code 2, nothing written
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, words", [
    (["--alpha", "0"], "--alpha must be positive"),
    (["--alpha", "-1"], "--alpha must be positive"),
    (["--size", "3"], "--size must be at least 4"),
    (["--target", "Color"], "--target 'Color' is not one of"),
    (["--size", "41"], "asked for 41 molecules"),
    (["--mode", "landscape", "--sizes", "3,10"], "--sizes must be integers >= 4"),
    (["--shard", "1/2"], "--mode run has no grid"),
    (["--mode", "landscape", "--compile"], "--compile applies to --mode run"),
    (["--paper-grid"], "--paper-grid is gone: use --scale paper"),
])
def test_bad_input_exit_2(csv_dir, tmp_path, capsys, flags, words):
    out = tmp_path / "run"
    code, err = run_main(base(csv_dir, tmp_path) + ["--out", str(out), "--steps", "5"] + flags, capsys)
    assert code == 2
    assert words in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_scale_sets_the_landscape_grid():
    quick = qg.parse_args(["--mode", "landscape"])
    assert quick.size_list == [20, 50, 100, 300, 1000, 3000] and quick.alphas.split(",")[::4] == ["0.1", "1", "10"]
    paper = qg.parse_args(["--mode", "landscape", "--scale", "paper"])  # the authors' 10**linspace grids
    assert len(paper.size_list) == 22 and paper.size_list[::7] == [10, 100, 1000, 10000]
    assert len(paper.alpha_list) == 21 and paper.alphas.split(",")[::10] == ["0.1", "1", "10"]
    assert qg.parse_args(["--mode", "landscape", "--scale", "paper", "--sizes", "30,20"]).size_list == [20, 30]


def test_missing_data_exit_2(tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(["--csv-dir", str(tmp_path / "nothing"), "--data-dir", str(tmp_path / "d"), "--out", str(out)],
                         capsys)
    assert code == 2 and "has no qm9_part1.csv" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------------------------
# smoke: every mode on the fixture
# ----------------------------------------------------------------------------------------------
def _w0():
    with torch.no_grad():
        return float(common.global_norm(list(qg.make_net(0, torch.float32, torch.device("cpu")).parameters())))


def test_run_mode(csv_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(base(csv_dir, tmp_path) + ["--out", str(out), "--size", "30", "--steps", "40"], capsys)
    assert code == 0, err
    for f in ("config.json", "metrics.json", "summary.json", "curves.png"):
        assert (out / f).is_file(), f
    s = json.loads((out / "summary.json").read_text())
    assert RUN_KEYS <= set(s) and s["n_train"] == 15 and s["n_test"] == 15 and s["steps"] == 40
    m = json.loads((out / "metrics.json").read_text())
    assert m["steps"][0] == 0 and m["steps"][-1] == 40 and len(m["train_loss"]) == len(m["steps"])
    assert s["w_init"] == pytest.approx(3 * _w0(), rel=1e-5)  # alpha 3 multiplies every parameter
    assert m["train_loss"][-1] < m["train_loss"][0]  # it trains


def test_compiled_run_agrees_with_eager(csv_dir, tmp_path, capsys):
    """--compile (torch.compile, Inductor's C++ on CPU) trains the same model: the curves agree to float rounding.
    And it is compiled: Dynamo captured the training forward, AOTAutograd its backward, Inductor built (or read from
    its cache) their code - not a silent fallback to eager, which would agree trivially."""
    from torch._dynamo.utils import counters
    curves = {}
    for flag in ([], ["--compile"]):
        out = tmp_path / ("compiled" if flag else "eager")
        torch._dynamo.reset()  # no compiled code, no counts from an earlier test in this process
        counters.clear()
        code, err = run_main(base(csv_dir, tmp_path) + ["--out", str(out), "--size", "30", "--steps", "30",
                                                        "--alpha", "1"] + flag, capsys)
        assert code == 0, err
        curves[bool(flag)] = json.loads((out / "metrics.json").read_text())
    got = {k: dict(v) for k, v in counters.items()}  # of the compiled run
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["unique_graphs"] >= 1, got
    assert counters["aot_autograd"]["ok"] >= 1 and sum(counters["inductor"].values()) > 0, got
    assert curves[True]["steps"] == curves[False]["steps"]
    for key in ("train_loss", "test_loss", "w"):
        assert np.allclose(curves[True][key], curves[False][key], rtol=1e-4), key
    assert json.loads((tmp_path / "compiled" / "summary.json").read_text())["compile"] is True


def test_compiled_run_resumes_from_its_checkpoint(csv_dir, tmp_path, capsys, monkeypatch):
    """--compile with a checkpoint: a run stopped after a checkpoint past its middle, run again, resumes (and may
    compile again) and ends with the curves of an uninterrupted compiled run."""
    argv = base(csv_dir, tmp_path) + ["--size", "30", "--steps", "30", "--alpha", "1", "--compile",
                                      "--checkpoint-every", "0"]
    torch._dynamo.reset()
    code, err = run_main(argv + ["--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    save = common.Checkpoint.save

    def save_then_stop(self, state):
        save(self, state)
        if state()["step"] >= 15:
            raise KeyboardInterrupt  # stands for a kill: nothing after the checkpoint is kept
    monkeypatch.setattr(common.Checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        run_main(argv + ["--out", str(tmp_path / "killed")], capsys)
    monkeypatch.undo()
    assert (tmp_path / "killed" / "checkpoint.pt").is_file() and not (tmp_path / "killed" / "metrics.json").exists()
    torch._dynamo.reset()
    code, err = run_main(argv + ["--out", str(tmp_path / "killed")], capsys)
    assert code == 0, err
    whole, resumed = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("whole", "killed"))
    assert resumed["steps"] == whole["steps"] and not (tmp_path / "killed" / "checkpoint.pt").exists()
    for key in ("train_loss", "test_loss", "w"):
        assert np.allclose(resumed[key], whole[key], rtol=1e-4), key


def test_constrained_run_keeps_the_norm(csv_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code, err = run_main(base(csv_dir, tmp_path) + ["--out", str(out), "--size", "30", "--steps", "30", "--constrain",
                                                    "--alpha", "2", "--wd", "0.1"], capsys)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert np.allclose(m["w"], 2 * _w0(), rtol=1e-5)


def test_landscape_mode(csv_dir, tmp_path, capsys):
    out = tmp_path / "land"
    argv = base(csv_dir, tmp_path) + ["--mode", "landscape", "--out", str(out), "--sizes", "8,12,20",
                                      "--alphas", "0.5,1,4", "--steps", "20", "--slice-sizes", "8,20"]
    code, err = run_main(argv + ["--shard", "1/3"], capsys)  # shard 1 of 3: only the middle size
    assert code == 0, err
    assert sorted(p.name for p in (out / "points").iterdir()) == ["settings.json", "size_12.json"]
    row12 = stamp(out / "points" / "size_12.json")
    code, err = run_main(argv + ["--steps", "21"], capsys)  # other settings into the same folder: refused
    assert code == 2 and "steps" in err
    assert not (out / "landscape.png").exists()  # a shard only saves its points; the merge draws
    code, err = run_main(argv, capsys)  # the rest; size 12 is reused, not retrained
    assert code == 0, err
    assert stamp(out / "points" / "size_12.json") == row12  # the same file: not written again
    assert sorted(p.name for p in (out / "points").iterdir()) == ["settings.json", "size_12.json", "size_20.json",
                                                                  "size_8.json"]
    code, err = run_main(argv + ["--merge"], capsys)  # the merge job of an array: trains nothing, draws
    assert code == 0, err
    s = json.loads((out / "summary.json").read_text())
    assert s["rows_done"] == 3 and np.array(s["test_loss_best"]).shape == (3, 3)
    assert (out / "landscape.png").is_file()
    rec = json.loads((out / "points" / "size_20.json").read_text())
    for p in rec["points"]:
        assert p["train_loss_best"] <= p["train_loss_final"] and p["test_loss_best"] <= p["test_loss_final"]
        assert p["w"] == pytest.approx(p["alpha"] * _w0(), rel=1e-4)  # fixed norm
    # the authors' step rule when --steps is not given: int(1e5 / size) epochs of ceil(size / 2 / 32) batches
    assert qg.default_steps(20, 32, 100 * 1000) == 5000 and qg.default_steps(1000, 32, 100 * 1000) == 1600


# ----------------------------------------------------------------------------------------------
# the batched ensemble (vmap over members) is exactly E independent runs
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("constrain", [None, "global", "per-tensor", "cap"])
def test_ensemble_member_equals_single_run(csv_dir, tmp_path, constrain):
    args = qg.parse_args(base(csv_dir, tmp_path) + ["--dtype", "float64", "--batch-size", "8"])
    cpu, f64 = torch.device("cpu"), torch.float64
    b = qg.load_qm9(args, 30)
    tr, te = qg.split(30, 0)
    train, test = qg.Graphs(b, tr, cpu, f64), qg.Graphs(b, te, cpu, f64)
    kw = dict(wd=0.0, constrain=constrain, desc="t", device=cpu, dtype=f64)
    steps, ms, _ = qg.train_ensemble(args, train, test, [0.5, 2.0, 4.0], 25, **kw)
    steps1, [single], _ = qg.train_ensemble(args, train, test, [2.0], 25, **kw)
    assert steps == steps1
    for k in single:
        np.testing.assert_allclose(ms[1][k], single[k], rtol=1e-9, atol=1e-9, err_msg=k)
    assert not np.allclose(ms[0]["train_loss"], single["train_loss"])  # members do differ


def test_norm_modes_hold_their_norms(csv_dir, tmp_path, monkeypatch):
    """--constrain MODE on a 2-member ensemble (float64): global holds ||w|| = alpha * w0, per-tensor each tensor's
    norm at alpha times its initial one (those that start at zero left free), cap never lets ||w|| exceed alpha * w0; cap with weight decay is not global."""
    args = qg.parse_args(base(csv_dir, tmp_path) + ["--dtype", "float64", "--batch-size", "8"])
    cpu, f64 = torch.device("cpu"), torch.float64
    b = qg.load_qm9(args, 30)
    train, test = (qg.Graphs(b, idx, cpu, f64) for idx in qg.split(30, 0))
    init = [float(p.detach().norm()) for p in qg.make_net(0, f64, cpu).parameters()]
    w0, alphas = float(np.linalg.norm(init)), [3.0, 0.5]
    made, ensemble = [], qg.ensemble
    monkeypatch.setattr(qg, "ensemble", lambda net, E: made.append(ensemble(net, E)) or made[-1])
    w = {}
    for c in ("global", "per-tensor", "cap"):
        steps, ms, err = qg.train_ensemble(args, train, test, alphas, 12, wd=1.0, constrain=c, desc="t", device=cpu,
                                           dtype=f64)
        assert err is None and steps[-1] == 12
        plist = made[-1][1]
        for e, (alpha, m) in enumerate(zip(alphas, ms)):
            w[c, alpha] = m["w"]
            if c == "global":
                np.testing.assert_allclose(m["w"], alpha * w0, rtol=1e-5)
            elif c == "per-tensor":
                got = [float(p[e].detach().norm()) for p in plist]
                held = [i for i, n in enumerate(init) if n > 0]  # NNConv's zero-initialised biases: left free
                np.testing.assert_allclose([got[i] for i in held], [alpha * init[i] for i in held], rtol=1e-9)
                assert len(held) < len(init) and all(got[i] > 0 for i in range(len(init)) if i not in held)
            else:
                assert max(m["w"]) <= alpha * w0 * (1 + 1e-9)
    assert not np.allclose(w["cap", 3.0], w["global", 3.0], rtol=1e-6)
