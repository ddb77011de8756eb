"""Independent references for the training loops of mnist_grok.py, modadd_transformer.py, imdb_grok.py and
qm9_grok.py (toy_teacher_student.py has its own: test_toy_teacher_student.py::test_single_run_equals_textbook_pytorch).

Each script trains a batched ensemble (stacked parameters with a leading dim E, its own step function,
common.EnsembleAdam or Adam + common.decay_weights_, common.scale_by_alpha_*, the fused norm projection). Here
every experiment is also trained the textbook way, in float64, for a few steps: torch.nn modules / functional
ops, torch.optim.AdamW (the optimizer the paper and the authors' code use), the loss the script documents, the
batch rule the script documents re-implemented from its description (a seeded generator's permutations), every
parameter times alpha, and for fixed-norm runs the authors' rescale p *= (alpha w0) / ||theta|| after each step.
Both start from the same initial weights (copied from the script's init function: the init is not what is
tested). Asserted, for a single run (E = 1) and for every member of an ensemble whose members differ in alpha
and weight decay (QM9: alpha only; its members share one wd): the parameters after the last step, and the
weight norm and the whole-training-set loss after every step (test-set loss too), to float64 rounding.

The scripts' train functions return only metrics; the trained tensors are read through a spy on the object
that holds them (mnist: common.EnsembleAdam, modadd: stack_members, imdb: make_model, qm9: ensemble), which
changes nothing in what the script computes.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import common
import imdb_grok as ig
import mnist_grok as mg
import modadd_transformer as mt
import qm9_grok as qg
from test_contract import data as fixture_data  # noqa: F401 - the scripts' fixture data, used as a fixture
from test_mnist_grok import idx_bytes
from test_modadd_transformer import TINY as MODADD_TINY

# torch_geometric calls torch.jit.script on import (qm9_grok silences this too, but pytest resets the filters)
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
CPU, F64 = torch.device("cpu"), torch.float64
STEPS = 4
# Equal to rounding: the two computations order their float64 sums differently (batched GEMMs, a fused Adam,
# the efficient last-position forward), so they agree to rounding: measured (2 CPU cores, torch 2.14.1) at most
# 9e-15 absolute in a parameter and 3e-14 relative in a curve value. A real change of a step (a batch, the
# decay, a skipped update, the clip) moves them by far more than these tolerances.
PARAM_TOL = dict(rtol=1e-10, atol=1e-13)
CURVE_TOL = dict(rtol=1e-10, atol=1e-13)


def assert_params(ours, ref, what):
    assert len(ours) == len(ref), what
    for i, (a, b) in enumerate(zip(ours, ref)):
        assert a.shape == b.shape, f"{what}: parameter {i}"
        torch.testing.assert_close(a.detach(), b.detach(), **PARAM_TOL, msg=lambda m: f"{what}: parameter {i}: {m}")


def assert_curves(ours, ref, keys, what):
    """ours: the script's metrics of one member (lists over the evaluated steps 0..STEPS); ref: the same keys."""
    for k in keys:
        torch.testing.assert_close(torch.tensor(ours[k], dtype=F64), torch.tensor(ref[k], dtype=F64), **CURVE_TOL,
                                   msg=lambda m: f"{what}: {k}: {m}")


def norm(params):
    return torch.sqrt(sum(p.detach().pow(2).sum() for p in params))


@torch.no_grad()
def rescale_to(params, target):
    """The authors' fixed-norm step: every parameter times target / ||theta||."""
    factor = target / norm(params)
    for p in params:
        p.mul_(factor)


def scale_init(params, alpha):
    """The authors' p.data = alpha * p.data for every parameter; returns the new norm alpha * w0."""
    params = list(params)
    with torch.no_grad():
        for p in params:
            p.mul_(alpha)
    return norm(params)


class Recorder:
    """Wraps a function of a script; keeps what each call returned."""

    def __init__(self, fn):
        self.fn, self.out = fn, []

    def __call__(self, *a, **k):
        r = self.fn(*a, **k)
        self.out.append(r)
        return r


# ----------------------------------------------------------------------------------------------
# MNIST: nn.Sequential MLP, AdamW, nn.MSELoss on one-hot targets (or cross-entropy), batches of a
# stream of seeded permutations of the training subset
# ----------------------------------------------------------------------------------------------
MNIST_N, MNIST_BATCH, MNIST_WIDTH = 100, 32, 64  # 4 x 32 = 128 > 100: the 4th batch spans two permutations


@pytest.fixture(scope="module")
def mnist_data():
    """The IDX fixture of test_mnist_grok read as ToTensor would (uint8 / 255), in float64."""
    files = idx_bytes()
    out = []
    for prefix in ("train", "t10k"):
        img = files[f"{prefix}-images-idx3-ubyte"]
        lab = files[f"{prefix}-labels-idx1-ubyte"]
        n = len(lab) - 8
        x = torch.frombuffer(bytearray(img[16:]), dtype=torch.uint8).view(n, 784).to(F64) / 255
        out.append((x, torch.frombuffer(bytearray(lab[8:]), dtype=torch.uint8).long()))
    return out


def mnist_textbook(data, args, alpha, wd, *, constrain):
    (x_all, y_all), (x_te, y_te) = data
    sub = torch.randperm(len(x_all), generator=torch.Generator().manual_seed(args.seed))[:MNIST_N]
    x, y = x_all[sub], y_all[sub]
    g = torch.Generator().manual_seed(args.seed + 1)  # the batches' own stream, documented in Batches
    stream = torch.cat([torch.randperm(MNIST_N, generator=g) for _ in range(math.ceil(STEPS * MNIST_BATCH / MNIST_N))])
    net = nn.Sequential(nn.Linear(784, MNIST_WIDTH), nn.ReLU(), nn.Linear(MNIST_WIDTH, MNIST_WIDTH), nn.ReLU(),
                        nn.Linear(MNIST_WIDTH, 10)).to(F64)
    with torch.no_grad():
        for p, t in zip(net.parameters(), mg.mlp_params(args.seed, MNIST_WIDTH, F64, CPU)):
            p.copy_(t)
    target = scale_init(net.parameters(), alpha)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0 if constrain else wd)

    def loss_fn(out, lab):
        if args.loss == "mse":
            return F.mse_loss(out, F.one_hot(lab, 10).to(F64))  # nn.MSELoss: mean over batch x 10
        return F.cross_entropy(out, lab)

    curves = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}

    def measure():
        with torch.no_grad():
            for split, (xs, ys) in (("train", (x, y)), ("test", (x_te, y_te))):
                out = net(xs)
                per = ((out - F.one_hot(ys, 10).to(F64)) ** 2).sum(1) if args.loss == "mse" else \
                    F.cross_entropy(out, ys, reduction="none")  # the logged MSE sums the 10 outputs
                curves[f"{split}_loss"].append(per.mean().item())
                curves[f"{split}_acc"].append((out.argmax(1) == ys).double().mean().item())
            curves["w"].append(norm(net.parameters()).item())

    measure()
    for k in range(STEPS):
        b = stream[k * MNIST_BATCH:(k + 1) * MNIST_BATCH]
        opt.zero_grad()
        loss_fn(net(x[b]), y[b]).backward()
        opt.step()
        if constrain:
            rescale_to(list(net.parameters()), target)
        measure()
    return list(net.parameters()), curves


@pytest.mark.parametrize("members, loss, constrain", [
    ([(9.0, 0.3)], "mse", False),                           # the main run's settings, E = 1
    ([(0.5, 0.0), (4.0, 0.3), (9.0, 1.0)], "mse", False),   # an ensemble: members differ in alpha and wd
    ([(3.0, 0.0), (1.0, 0.0)], "ce", True),                 # cross-entropy, fixed norm (landscape's kind)
], ids=["single", "ensemble", "ensemble-ce-constrained"])
def test_mnist_equals_textbook_pytorch(mnist_data, monkeypatch, members, loss, constrain):
    args = mg.parse_args(["--data-dir", "unused", "--dtype", "float64", "--n-train", str(MNIST_N),
                          "--batch-size", str(MNIST_BATCH), "--width", str(MNIST_WIDTH), "--eval-points", "50",
                          "--loss", loss])
    spy = []

    class SpyAdam(common.EnsembleAdam):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            spy.append(self)
    monkeypatch.setattr(common, "EnsembleAdam", SpyAdam)
    mems = [{"alpha": a, "wd": w, "n_train": MNIST_N} for a, w in members]
    steps, ms, err = mg.train_ensemble(args, mnist_data, mems, STEPS, constrain="global" if constrain else None, desc="t", device=CPU,
                                       dtype=F64)
    assert err is None and steps == list(range(STEPS + 1))
    [opt] = spy
    for e, (alpha, wd) in enumerate(members):
        ref_params, ref_curves = mnist_textbook(mnist_data, args, alpha, wd, constrain=constrain)
        what = f"member {e} (alpha {alpha}, wd {wd})"
        assert_params([p[e] for p in opt.params], ref_params, what)
        assert_curves(ms[e], ref_curves, ("train_loss", "test_loss", "train_acc", "test_acc", "w"), what)
        assert ref_curves["train_loss"][-1] != ref_curves["train_loss"][0]  # it trained


# ----------------------------------------------------------------------------------------------
# modular addition: a 1-layer transformer (full sequence, causal mask) written with torch ops, full-batch
# cross-entropy at the last position, AdamW betas (0.9, 0.98); fixed norm: wd 0 and the rescale
# ----------------------------------------------------------------------------------------------
class TextbookTransformer(nn.Module):
    """Embedding + positional, one attention layer (no biases), a ReLU MLP, unembedding; no LayerNorm."""

    def __init__(self, P):
        super().__init__()
        for k, v in P.items():
            setattr(self, k, nn.Parameter(v.detach().clone()))

    def forward(self, tokens):  # [B, T] -> logits [B, T, p + 1]
        B, T = tokens.shape
        H, dh, d = self.W_K.shape
        x = self.W_E.T[tokens] + self.W_pos[:T]                      # [B, T, d]
        q, k, v = (torch.einsum("hkd,btd->bhtk", W, x) for W in (self.W_Q, self.W_K, self.W_V))
        scores = q @ k.transpose(-1, -2) / math.sqrt(dh)               # [B, H, query, key]
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        attn = scores.masked_fill(~causal, float("-inf")).softmax(-1)
        z = (attn @ v).transpose(1, 2).reshape(B, T, H * dh)           # heads concatenated
        x = x + z @ self.W_O.T
        x = x + F.relu(x @ self.W_in.T + self.b_in) @ self.W_out.T + self.b_out
        return x @ self.W_U


def modadd_textbook(args, data, seed, alpha, wd, *, constrain):
    (x_tr, y_tr), (x_te, y_te) = data
    model = TextbookTransformer(mt.init_params(seed, args.p, args.d_model, args.n_heads, args.d_mlp, F64, CPU))
    target = scale_init(model.parameters(), alpha)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0 if constrain else wd)
    curves = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}

    def measure():
        with torch.no_grad():
            for split, (xs, ys) in (("train", (x_tr, y_tr)), ("test", (x_te, y_te))):
                logits = model(xs)[:, -1]
                curves[f"{split}_loss"].append(F.cross_entropy(logits, ys).item())
                curves[f"{split}_acc"].append((logits.argmax(1) == ys).double().mean().item())
            curves["w"].append(norm(model.parameters()).item())

    measure()
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x_tr)[:, -1], y_tr).backward()
        opt.step()
        if constrain:
            rescale_to(list(model.parameters()), target)
        measure()
    return list(model.parameters()), curves


@pytest.mark.parametrize("seeds, alphas, wds, constrain", [
    ([0], [1.0], [1.0], False),                          # the run's settings, E = 1
    ([0, 1, 0], [1.0, 0.7, 2.0], [1.0, 0.3, 0.0], False),  # members differ in seed, alpha and wd
    ([0, 0], [0.8, 2.0], [0.0, 0.0], True),              # fixed norm (Fig. 7b, the landscape)
], ids=["single", "ensemble", "ensemble-constrained"])
def test_modadd_equals_textbook_pytorch(monkeypatch, seeds, alphas, wds, constrain):
    args = mt.parse_args([*MODADD_TINY, "--eval-points", "50"])
    data = mt.make_data(args.p, args.train_frac, args.data_seed, CPU)
    spy = Recorder(mt.stack_members)
    monkeypatch.setattr(mt, "stack_members", spy)
    ms, err = mt.train_ensemble(args, data, seeds, alphas, wds, STEPS, constrain="global" if constrain else None,
                                desc="t", device=CPU, dtype=F64)
    assert err is None
    [P] = spy.out
    for e, (seed, alpha, wd) in enumerate(zip(seeds, alphas, wds)):
        assert ms[e]["steps"] == list(range(STEPS + 1))
        ref_params, ref_curves = modadd_textbook(args, data, seed, alpha, wd, constrain=constrain)
        what = f"member {e} (seed {seed}, alpha {alpha}, wd {wd})"
        assert_params([p[e] for p in P.values()], ref_params, what)
        assert_curves(ms[e], ref_curves, ("train_loss", "test_loss", "train_acc", "test_acc", "w"), what)
        assert ref_curves["train_loss"][-1] < ref_curves["train_loss"][0]


# ----------------------------------------------------------------------------------------------
# IMDb: Embedding -> 2-layer nn.LSTM -> Linear on the last position, BCE with logits, AdamW, gradient-norm
# clip, DataLoader(shuffle=True)-style batches (a seeded permutation per epoch, a short last batch)
# ----------------------------------------------------------------------------------------------
IMDB_TINY = ["--hidden", "8", "--embed", "8", "--seq-len", "24", "--vocab", "40"]
IMDB_BATCH = 40  # 90 training reviews: batches 40, 40, 10, then a new epoch
# The gradient norms of this tiny LSTM are 0.09 (alpha 0.5) to 0.55 (alpha 6): the default clip 5 would never
# act. At 0.15 it clips the large-alpha members and leaves the small ones alone, so both paths are checked.
IMDB_CLIP = "0.15"


class TextbookLSTM(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.embedding = nn.Embedding(args.vocab + 1, args.embed)
        self.lstm = nn.LSTM(args.embed, args.hidden, args.layers, batch_first=True)
        self.fc = nn.Linear(args.hidden, 1)

    def forward(self, x):  # a zero initial state for every batch
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1]).squeeze(-1)


def imdb_textbook(args, data, alpha, wd, *, constrain):
    (x_tr, y_tr), (x_te, y_te) = data
    y_tr, y_te = y_tr.to(F64), y_te.to(F64)
    model = TextbookLSTM(args).to(F64)
    model.load_state_dict(ig.make_model(args, CPU, F64).state_dict())
    target = scale_init(model.parameters(), alpha)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0 if constrain else wd)
    g = torch.Generator().manual_seed(args.seed + 1)
    order = []
    while len(order) < STEPS:
        order += list(torch.randperm(len(x_tr), generator=g).split(args.batch_size))
    curves = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}

    def measure():
        with torch.no_grad():
            for split, (xs, ys) in (("train", (x_tr, y_tr)), ("test", (x_te, y_te))):
                logits = model(xs)
                curves[f"{split}_loss"].append(F.binary_cross_entropy_with_logits(logits, ys).item())
                curves[f"{split}_acc"].append(((logits > 0) == (ys > 0.5)).double().mean().item())
            curves["w"].append(norm(model.parameters()).item())

    measure()
    for b in order[:STEPS]:
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(model(x_tr[b]), y_tr[b]).backward()
        nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if constrain:
            rescale_to(list(model.parameters()), target)
        measure()
    return list(model.parameters()), curves


@pytest.mark.parametrize("members, constrain", [
    ([(6.0, 1.0)], None),                            # the grokking run's alpha and wd, E = 1
    ([(6.0, 1.0), (1.0, 0.0), (2.0, 0.3)], None),   # with the control and a third member
    ([(0.5, 0.0), (3.0, 0.0)], "global"),           # fixed norm (the landscape's kind)
], ids=["single", "ensemble", "ensemble-constrained"])
def test_imdb_equals_textbook_pytorch(fixture_data, monkeypatch, members, constrain):
    args = ig.parse_args(["--data-dir", str(fixture_data / "imdb"), "--size", "120", "--dtype", "float64",
                          "--batch-size", str(IMDB_BATCH), "--clip", IMDB_CLIP, "--device", "cpu", *IMDB_TINY])
    data = ig.load_imdb(args, args.size, CPU)
    assert len(data[0][0]) == 90
    spy = Recorder(ig.make_model)
    monkeypatch.setattr(ig, "make_model", spy)
    mems = [{"alpha": a, "wd": w} for a, w in members]
    steps, ms, err = ig.train(args, data, mems, STEPS, constrain=constrain, desc="t", device=CPU, dtype=F64,
                              eval_at=list(range(STEPS + 1)))
    assert err is None and steps == list(range(STEPS + 1))
    monkeypatch.undo()
    assert len(spy.out) == len(members)
    for e, (alpha, wd) in enumerate(members):
        ref_params, ref_curves = imdb_textbook(args, data, alpha, wd, constrain=constrain)
        what = f"member {e} (alpha {alpha}, wd {wd})"
        assert_params(list(spy.out[e].parameters()), ref_params, what)
        assert_curves(ms[e], ref_curves, ("train_loss", "test_loss", "train_acc", "test_acc", "w"), what)
        assert ref_curves["train_loss"][-1] != ref_curves["train_loss"][0]


# ----------------------------------------------------------------------------------------------
# QM9: the authors' ExampleNet (NNConv with edge networks on every edge), PyG's collation of each batch,
# F.mse_loss, AdamW; DataLoader(shuffle=True)-style batches over the training molecules
# ----------------------------------------------------------------------------------------------
QM9_SIZE, QM9_BATCH = 30, 8  # 15 training molecules: batches 8, 7, then a new epoch


@pytest.fixture(scope="module")
def qm9_graphs(tmp_path_factory):
    """The first 30 real QM9 molecules (the installed qm9pack's first CSV rows), featurized by the script."""
    _, paths = qg.qm9pack_csvs()
    d = tmp_path_factory.mktemp("qm9")
    (d / "csv").mkdir()
    with open(paths[0]) as src, open(d / "csv" / "qm9_part1.csv", "w") as dst:
        dst.writelines(src.readline() for _ in range(QM9_SIZE + 1))
    args = qg.parse_args(["--csv-dir", str(d / "csv"), "--data-dir", str(d / "data"), "--dtype", "float64",
                          "--batch-size", str(QM9_BATCH), "--eval-points", "50", "--size", str(QM9_SIZE)])
    return args, qg.load_qm9(args, QM9_SIZE)


class ExampleNet(nn.Module):
    def __init__(self):
        from torch_geometric.nn import NNConv
        super().__init__()
        self.conv1 = NNConv(11, 32, nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 11 * 32)))
        self.conv2 = NNConv(32, 16, nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 32 * 16)))
        self.fc_1 = nn.Linear(16, 32)
        self.out = nn.Linear(32, 1)

    def forward(self, data):
        from torch_geometric.nn import global_add_pool
        x = F.relu(self.conv1(data.x, data.edge_index, data.edge_attr))
        x = F.relu(self.conv2(x, data.edge_index, data.edge_attr))
        x = global_add_pool(x, data.batch, size=data.num_graphs)
        return self.out(F.relu(self.fc_1(x))).squeeze(-1)


def qm9_textbook(args, molecules, tr, te, alpha, wd, *, constrain):
    from torch_geometric.data import Batch

    def collate(idx):
        b = Batch.from_data_list([molecules[int(i)] for i in idx])
        b.x, b.edge_attr, b.y = b.x.to(F64), b.edge_attr.to(F64), b.y.to(F64)
        return b
    train_set, test_set = collate(tr), collate(te)
    net = ExampleNet().to(F64)
    net.load_state_dict(qg.make_net(args.seed, F64, CPU).state_dict())
    target = scale_init(net.parameters(), alpha)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0 if constrain else wd)
    g = torch.Generator().manual_seed(args.seed + 1)
    order = []
    while len(order) < STEPS:
        order += list(torch.randperm(len(tr), generator=g).split(args.batch_size))
    curves = {k: [] for k in ("train_loss", "test_loss", "w")}

    def measure():
        with torch.no_grad():
            for split, b in (("train", train_set), ("test", test_set)):
                curves[f"{split}_loss"].append(F.mse_loss(net(b), b.y).item())
            curves["w"].append(norm(net.parameters()).item())

    measure()
    for idx in order[:STEPS]:
        b = collate(tr[idx])
        opt.zero_grad()
        F.mse_loss(net(b), b.y).backward()
        opt.step()
        if constrain:
            rescale_to(list(net.parameters()), target)
        measure()
    return [p for _, p in sorted(net.named_parameters())], curves


@pytest.mark.parametrize("alphas, wd, constrain", [
    ([3.0], 0.0, None),              # the run's settings (Fig. 5d), E = 1
    ([3.0], 0.3, None),              # with AdamW's weight decay
    ([0.5, 2.0, 3.0], 0.3, None),    # an ensemble (vmap): members differ in alpha, share wd
    ([0.5, 2.0], 0.0, "global"),     # fixed norm (the landscape)
], ids=["single", "single-wd", "ensemble", "ensemble-constrained"])
def test_qm9_equals_textbook_pytorch(qm9_graphs, monkeypatch, alphas, wd, constrain):
    args, batch = qm9_graphs
    tr, te = qg.split(QM9_SIZE, args.seed)
    train, test = qg.Graphs(batch, tr, CPU, F64), qg.Graphs(batch, te, CPU, F64)
    spy = Recorder(qg.ensemble)
    monkeypatch.setattr(qg, "ensemble", spy)
    steps, ms, err = qg.train_ensemble(args, train, test, alphas, STEPS, wd=wd, constrain=constrain, desc="t",
                                       device=CPU, dtype=F64)
    assert err is None and steps == list(range(STEPS + 1))
    monkeypatch.undo()
    [(_, plist, _)] = spy.out
    names = [k for k, _ in qg.make_net(args.seed, F64, CPU).named_parameters()]
    ours = dict(zip(names, plist))
    molecules = [batch.get_example(i) for i in range(QM9_SIZE)]
    for e, alpha in enumerate(alphas):
        ref_params, ref_curves = qm9_textbook(args, molecules, tr, te, alpha, wd, constrain=constrain)
        what = f"member {e} (alpha {alpha}, wd {wd})"
        assert_params([ours[k][e] for k in sorted(names)], ref_params, what)
        assert_curves(ms[e], ref_curves, ("train_loss", "test_loss", "w"), what)
        assert ref_curves["train_loss"][-1] != ref_curves["train_loss"][0]
