"""Grokking on real MNIST (Omnigrok, Sec. 4 + 5.2, App. A, C, E; Fig. 3, 8, 10b, 11, 12).

A depth-3 width-200 ReLU MLP (784-200-200-10, PyTorch's default init) whose every parameter is multiplied by
alpha, trained with AdamW (lr 1e-3, batch 200) on MSE to one-hot targets (--loss ce: App. E) on a random subset
of --n-train MNIST training images, tested on all 10,000 test images. MNIST is read from <data-dir>/MNIST/raw
(`python fetch_data.py mnist` puts it there).

    python mnist_grok.py --alpha 9 --wd 0.3            # run, Fig. 3d: the main job
    python mnist_grok.py --loss ce --alpha 100 --n-train 200 --wd 0.03   # Fig. 12 (App. E; wd: ours)
    python mnist_grok.py --mode landscape              # Fig. 3a-c (--loss ce: Fig. 11; --scale paper: 21 x 28 x 1e4)
    python mnist_grok.py --mode n-sweep                # Fig. 3e: steps to generalize vs training-set size
    python mnist_grok.py --mode wd-sweep               # Fig. 10b: steps to generalize vs weight decay
    python mnist_grok.py --mode repr                   # Fig. 8: loss over (alpha, messiness m) at N = 60000
    python mnist_grok.py --mode norm-modes             # beyond the paper: the main job vs each --constrain mode
Sweeps train all their members at once, as one batched ensemble. Grid modes save one file per point in
<out>/points/ and take --shard i/n and --merge (README.md).

Expected (README.md "Results measured here"; measurements and choices: docs/NOTES.md): the main job reaches 80%
train accuracy at ~1.2e3 steps and 80% test accuracy at ~3.6e3, as the weight norm falls from 105 to 11; >90% at
1e5 steps (1,000 training images cap it, hence --acc-threshold 0.8). Landscape: at small N the reduced training
error is an L and the test error a U, flatter at large N. The steps to generalize grow as N shrinks and fall
with wd (slope ~ -0.7 for wd in [0.1, 1]). repr: train and test loss agree everywhere; nothing groks.
"""
import math
import struct
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common

MODES = ["run", "landscape", "n-sweep", "wd-sweep", "repr", "norm-modes"]
# The authors' landscape sizes: 22 log-spaced in [10, 1e4], 5 more up to 1e5 (cut at 60000), and 60000.
PAPER_SIZES = ([int(s) for s in 10 ** np.linspace(1, 4, 22)]
               + [int(s) for s in 10 ** np.linspace(4, 5, 8)[1:6]] + [60000])
RENAMED = {"--mode fetch": "python fetch_data.py mnist",
           "--offline": "python fetch_data.py --offline (the scripts never download)",
           "--mnist-tarball": "python fetch_data.py mnist --mnist-tarball FILE", "--paper-grid": "--scale paper"}


def parse_args(argv=None):
    p = common.ArgumentParser(renamed=RENAMED, description=__doc__.split("\n")[0])
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=0.8)
    p.set_defaults(eval_points=None)  # None here and below: the paper's value for the mode (set after parsing)
    p.add_argument("--data-dir", default="data", help="MNIST lives in <data-dir>/MNIST/raw (torchvision's layout)")
    p.add_argument("--alpha", type=float, default=9.0, help="init scale, w = alpha * w0 (paper App. C: 9)")
    p.add_argument("--wd", type=float, default=0.3, help="AdamW weight decay (paper App. C: t ~ 1/wd in [0.1, 1])")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (paper App. A)")
    p.add_argument("--batch-size", type=int, default=None, help="default: 200 (paper App. A); landscape, repr: 100")
    p.add_argument("--n-train", type=int, default=None, help="training images, a seeded subset (default 1000; repr: 60000)")
    p.add_argument("--loss", default="mse", choices=["mse", "ce"], help="MSE on one-hot targets or cross-entropy")
    common.add_constrain_arg(p)
    p.add_argument("--width", type=int, default=200, help="hidden width of the two hidden layers")
    p.add_argument("--normalize", action="store_true", help="standardize pixels (MNIST's mean/std), not ToTensor's [0, 1]")
    p.add_argument("--eval-size", type=int, default=None,
                   help="evaluate on at most this many train and test images (default: all; landscape, repr: 2000)")
    p.add_argument("--scale", default="quick", choices=["quick", "paper"], help="landscape, repr: paper = the paper's "
                   "grids, 21 alphas x 28 sizes / 21 m x 20 alphas, 1e4 steps a point (hours on a CPU)")
    p.add_argument("--alphas", default=None, help="landscape: init scales (default: 9 log-spaced in [0.1, 10]); "
                                                  "repr: default 1,2,3,4,5,6,8,10")
    p.add_argument("--sizes", default=None, help="landscape: training-set sizes (default: 8 in [30, 60000]); "
                                                 "n-sweep: default 300,500,1000,2000,4000")
    p.add_argument("--slice-sizes", default="200,8000", help="landscape: small,large N of the slices (A, B: small; C)")
    p.add_argument("--b-alpha", type=float, default=6.3, help="landscape: alpha of points B and C (A: alpha 1)")
    p.add_argument("--wds", default=",".join(f"{x:.4g}" for x in np.logspace(math.log10(0.03), math.log10(3), 9)),
                   help="wd-sweep: weight decays (default: 9 log-spaced in [0.03, 3], paper Fig. 10b)")
    p.add_argument("--full-length", action="store_true", help="sweeps: train all --steps even once all are done")
    p.add_argument("--ms", default=None, help="repr: messiness values m (default: 6 in [0, 1])")
    p.add_argument("--template", default="code", choices=["code", "paper"],
                   help="repr: R_linear = linspace(-0.5, 0.5, 10)[label] (authors' code) or = label (paper text)")
    p.add_argument("--path-alphas", default="1,3", help="repr: alphas of A and B on the path A -> B (m=1) -> C (m=0)")
    p.add_argument("--norm-alpha", type=float, default=9.0, help="norm-modes: init scale of the constrained runs")
    p.add_argument("--seeds", default="0,1,2", help="norm-modes: seeds (init and batch order), one ensemble each")
    common.add_shard_arg(p, "landscape/repr (a point = a row: one N or one m, all alphas), n-sweep (one N), "
                            "wd-sweep (one wd), norm-modes (one condition and seed)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    grid, paper, repr_ = args.mode in ("landscape", "repr"), args.scale == "paper", args.mode == "repr"
    fmt = lambda xs: ",".join(f"{x:.4g}" for x in xs)  # noqa: E731
    for name, value in (("batch_size", 100 if grid else 200), ("n_train", 60000 if repr_ else 1000),
                        ("steps", (10_000 if paper else 2000) if grid else 20_000 if args.mode == "norm-modes" else 100_000),
                        ("eval_points", 30 if grid else 150), ("eval_size", 2000 if grid else 0),  # 0: everything
                        ("alphas", fmt(np.linspace(0, 10, 21)[1:] if paper else [1, 2, 3, 4, 5, 6, 8, 10]) if repr_
                         else fmt(np.logspace(-1, 1, 21 if paper else 9))),
                        ("sizes", "300,500,1000,2000,4000" if args.mode == "n-sweep" else ",".join(
                            map(str, PAPER_SIZES if paper else [30, 100, 200, 500, 1000, 2000, 8000, 60000]))),
                        ("ms", fmt(np.linspace(0, 1, 21 if paper else 6)))):
        if getattr(args, name) is None:
            setattr(args, name, value)

    common.check_standard_args(args)
    common.positive(args, "alpha")
    common.nonnegative(args, "wd")
    common.positive(args, "lr", "batch_size", "n_train", "width", "b_alpha", "norm_alpha")
    floats, ints = common.parse_floats, common.parse_ints
    for name, parse, ok, what in (("alphas", floats, lambda v: v and min(v) > 0, "must be positive numbers"),
                                  ("wds", floats, lambda v: v and min(v) >= 0, "must be numbers >= 0"),
                                  ("ms", floats, lambda v: v and 0 <= min(v) <= max(v) <= 1, "must be numbers in [0, 1]"),
                                  ("sizes", ints, lambda v: v and min(v) > 0, "must be positive integers"),
                                  ("seeds", ints, lambda v: v and min(v) >= 0 and len(set(v)) == len(v),
                                   "must be distinct integers >= 0"),
                                  ("slice_sizes", ints, lambda v: len(v) == 2 and min(v) > 0,
                                   "takes two positive sizes (small,large)"),
                                  ("path_alphas", floats, lambda v: len(v) == 2 and min(v) > 0,
                                   "takes two positive alphas (A,B)")):
        flag, text = "--" + name.replace("_", "-"), getattr(args, name)
        setattr(args, name[:-1] + "_list", parse(text, flag))  # e.g. args.alpha_list
        common.require(ok(getattr(args, name[:-1] + "_list")), f"{flag} {what}, got {text!r}.")
    common.require(args.mode != "n-sweep" or len({min(args.batch_size, n) for n in args.size_list}) == 1,
                   f"--mode n-sweep: the members share one batch size, so every --sizes value must be >= --batch-size "
                   f"({args.batch_size}).")
    args.shard_pair = common.parse_shard(args.shard)
    return args


# ---- data: the four IDX files of MNIST (python fetch_data.py mnist), and the model ------------------------------
def raw_dir(data_dir):
    return Path(data_dir) / "MNIST" / "raw"  # where torchvision.datasets.MNIST looks


def read_idx(path, ndim):
    """An IDX file of unsigned bytes (MNIST's format: 0x0000, 0x08, ndim, ndim big-endian sizes, the data) as a
    uint8 tensor: what torchvision reads, without importing it (1.8 s of CPU, half a grid shard's start-up)."""
    data = Path(path).read_bytes()
    head = 4 + 4 * ndim
    ok = len(data) >= head and data[:4] == bytes([0, 0, 8, ndim])
    sizes = struct.unpack(f">{ndim}I", data[4:head]) if ok else ()
    common.require(ok and len(data) == head + math.prod(sizes), f"could not read MNIST: {path} is not a complete "
                   f"{ndim}-d IDX file of bytes; delete the folder and run `python fetch_data.py mnist`.")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=head).view(*sizes)


def load_mnist(args, device, dtype):
    """All of MNIST as tensors on the device: x [n, 784] scaled as ToTensor does (/255), labels [n]."""
    raw = raw_dir(args.data_dir)
    files = [raw / f"{s}-{k}-ubyte" for s in ("train", "t10k") for k in ("images-idx3", "labels-idx1")]
    common.require(all(f.is_file() for f in files), f"MNIST is not in {raw}; run `python fetch_data.py mnist` (or "
                                                    f"make data), or put its four IDX files ({files[0].name}, ...) there.")
    sets = []
    for prefix in ("train", "t10k"):
        images, labels = (read_idx(raw / f"{prefix}-{k}-ubyte", d) for k, d in (("images-idx3", 3), ("labels-idx1", 1)))
        ok = len(images) == len(labels) and images.shape[1:] == (28, 28) and (len(labels) == 0 or labels.max() <= 9)
        common.require(ok, f"could not read MNIST: {prefix} holds {len(images)} images of {tuple(images.shape[1:])} "
                           f"pixels and {len(labels)} labels; MNIST has one label per 28 x 28 image and no labels "
                           f"above 9; delete {raw} and fetch again.")
        x = images.reshape(len(images), -1).to(dtype) / 255
        if args.normalize:
            x = (x - 0.1307) / 0.3081  # MNIST's pixel mean and std
        sets.append((x.to(device), labels.long().to(device)))
    return sets


def subset(n_total, n, seed):
    """The first n of a seeded permutation: a random subset, nested in n (N = 100 is the start of N = 1000)."""
    return torch.randperm(n_total, generator=torch.Generator().manual_seed(seed))[:n]


class Batches:
    """Endless random batches of a fixed size: permutations of range(n) laid end to end, cut into pieces of
    `batch` (each image seen once per epoch, every batch full), made ahead in chunks (a step costs one slice)."""

    def __init__(self, n, batch, seed, device):
        self.n, self.batch, self.device = n, min(batch, n), device
        self.g = torch.Generator().manual_seed(seed + 1)  # +1: not the subset's stream
        self.buf, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self):
        if self.pos + self.batch > len(self.buf):
            perms = [torch.randperm(self.n, generator=self.g) for _ in range(max(1, 256 * self.batch // self.n))]
            self.buf, self.pos = torch.cat([self.buf[self.pos:].cpu()] + perms).to(self.device), 0
        self.pos += self.batch
        return self.buf[self.pos - self.batch:self.pos]


def mlp_params(seed, width, dtype, device):
    """784-width-width-10 as nn.Linear initialises it (Kaiming uniform) for a seed: [W1, b1, W2, b2, W3, b3]."""
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(784, width), torch.nn.Linear(width, width), torch.nn.Linear(width, 10)]
    return [t.detach().to(device, dtype) for layer in layers for t in (layer.weight, layer.bias)]


def forward(params, x):
    """Logits [E, B, 10] of E MLPs (parameters with a leading ensemble dim E). x is [B, 784] (one batch for every
    member) or [E, B, 784] (one per member)."""
    W1, b1, W2, b2, W3, b3 = params
    E, width = W1.shape[0], W1.shape[1]
    if x.dim() == 2:  # shared batch: the widest layer of all members is one GEMM [B, 784] x [784, E*width]
        h = (x @ W1.reshape(E * width, -1).T).view(len(x), E, width).transpose(0, 1) + b1[:, None]
    else:
        h = torch.baddbmm(b1[:, None], x, W1.transpose(1, 2))
    h = torch.baddbmm(b2[:, None], h.relu(), W2.transpose(1, 2)).relu()
    return torch.baddbmm(b3[:, None], h, W3.transpose(1, 2))


def per_image_loss(logits, y, loss):
    """[E, B]: squared error summed over the 10 outputs (the authors' logged MSE) or cross-entropy."""
    if loss == "mse":
        return (logits - F.one_hot(y, 10).to(logits.dtype)).pow(2).sum(-1)
    E, B = logits.shape[:2]
    return F.cross_entropy(logits.reshape(E * B, 10), y.expand(E, B).reshape(-1), reduction="none").view(E, B)


@torch.no_grad()
def evaluate(params, x, y, loss, chunk=2500, independent=False):
    """Mean loss and accuracy [E] of every member on (x [n, 784], y [n]), in large chunks. independent: the
    chunk goes to the members as a stride-0 [E, chunk, 784] view (batched GEMMs; see train_ensemble)."""
    E = params[0].shape[0]
    tot_loss = torch.zeros(E, dtype=torch.float64, device=x.device)
    correct = torch.zeros_like(tot_loss)
    for i in range(0, len(x), chunk):
        xc = x[i:i + chunk]
        out = forward(params, xc.expand(E, *xc.shape) if independent else xc)
        tot_loss += per_image_loss(out, y[i:i + chunk], loss).sum(1)
        correct += (out.argmax(-1) == y[i:i + chunk]).sum(1)
    return tot_loss / len(x), correct / len(x)


# ---- training: E independent runs (one per member) as one batched ensemble -------------------------------------
def batch_table(device):
    """Whether a run draws its batches up front into a device table: on CUDA, for graph replays (tests force it)."""
    return device.type == "cuda"


def train_ensemble(args, data, members, steps, *, constrain, desc, device, dtype, stop_when_reached=False,
                   independent=False, ckpt=None):
    """members: dicts with alpha, wd, n_train and optionally seed (default --seed); each trains exactly as a single
    run with those values would. constrain: None or a --constrain mode. Returns (eval steps, per-member metric
    dicts, error or None). stop_when_reached: stop once every member is done (_done_index). independent: a
    member's numbers must not depend on its ensemble (a grid's shard): each member gets its own batch [E, B, 784]
    and every layer is a batched GEMM; otherwise a shared batch's first layer is one GEMM for all members (~5%
    faster a step; its float64 results depend on E). ckpt: a common.Checkpoint to resume from and save to."""
    (x_all, y_all), (x_test, y_test) = data
    E = len(members)
    keys = [(m["n_train"], m.get("seed", args.seed)) for m in members]  # a member's training set and batches
    sets, seeds = sorted(set(keys)), sorted({s for _, s in keys})
    common.require(independent or len(sets) == 1, "members with different training sets need independent=True.")
    idx = {k: subset(len(x_all), *k).to(device) for k in sets}
    batches = {k: Batches(k[0], args.batch_size, k[1], device) for k in sets}
    x_sub, y_sub = (None, None) if independent else (x_all[idx[sets[0]]], y_all[idx[sets[0]]])  # contiguous
    # Evaluation sets (members, images, labels, metric rows): the training set, the test set (<= --eval-size each)
    evals = [([e for e, kk in enumerate(keys) if kk == k], *(t[idx[k][:args.eval_size or k[0]]] for t in (x_all, y_all)),
              (0, 2)) for k in sets]
    for s in seeds:
        sel = subset(len(x_test), args.eval_size or len(x_test), s).to(device)
        evals.append(([e for e, kk in enumerate(keys) if kk[1] == s], x_test[sel], y_test[sel], (1, 3)))

    inits = {s: mlp_params(s, args.width, dtype, device) for s in seeds}
    params = [torch.stack(ts).requires_grad_() for ts in zip(*(inits[s] for _, s in keys))]
    wd = torch.tensor([m["wd"] for m in members], dtype=dtype, device=device)
    # alpha multiplies every parameter of member e (the authors: p.data = alpha * p.data)
    w_target = common.scale_by_alpha_batched_(params, [m["alpha"] for m in members])
    targets = constrain and common.norm_targets(params, w_target, constrain)
    # fused Adam whose members' numbers do not depend on the ensemble (a shard == the whole sweep);
    # capturable (CUDA): its step count stays on the device, as a CUDA graph needs
    opt = common.EnsembleAdam(params, lr=args.lr, weight_decay=0.0, capturable=device.type == "cuda")
    params = opt.params
    scale = 10.0 if args.loss == "mse" else 1.0  # nn.MSELoss averages over the 10 outputs too

    def next_indices():  # the next batch, as indices for gather(): one per member, from its own training set
        if not independent:
            return batches[sets[0]].next()
        bs = {k: idx[k][batches[k].next()] for k in sets}
        return torch.stack([bs[k] for k in keys])

    def gather(i):  # index_select: a plain row gather, cheaper than advanced indexing
        return (x_all[i], y_all[i]) if independent else (x_sub.index_select(0, i), y_sub.index_select(0, i))

    def train_step(x, y):
        loss = per_image_loss(forward(params, x), y, args.loss).mean(1) / scale
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if common.decays(constrain):
            common.decay_weights_(params, args.lr, wd)  # AdamW's decoupled decay, per member
        opt.step()
        if constrain:
            common.project_(params, targets, constrain)

    row_of_step = torch.zeros(1, dtype=torch.long, device=device)
    if batch_table(device):
        # One CUDA graph replay per step (common.graph_step). A graph replays fixed addresses, so every
        # step's batch indices are drawn up front, from the same stream as on CPU (same batches), and laid
        # out on the device (steps x batch int64, 160 MB for the main job); step k reads row k.
        order = torch.stack([next_indices() for _ in range(steps)])

        def device_step():
            i = order.index_select(0, row_of_step)[0]
            row_of_step.add_(1)
            train_step(*gather(i))
        run_step = common.graph_step(device_step, device)
    else:
        def run_step():
            train_step(*gather(next_indices()))

    eval_at = set(common.log_steps(steps, args.eval_points))
    m = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}
    evaluated, err, start = [], None, 0
    if state := ckpt and ckpt.resume(params, opt):  # everything the loop reads, as at step `start` (evaluated)
        evaluated, m, start = state["evaluated"], state["m"], state["step"]
        for b, (g, buf, pos) in zip(batches.values(), state["batches"]):
            b.g.set_state(g)
            b.buf, b.pos = buf, pos
        row_of_step.fill_(start)
    bar = common.progress(steps, desc)
    bar.update(start)
    last = start
    for step in range(start, steps + 1):
        if step in eval_at and step not in evaluated[-1:]:
            with torch.no_grad():
                row = torch.zeros(5, E, dtype=torch.float64, device=device)
                for sel, x, y, (i, j) in evals:
                    row[i, sel], row[j, sel] = evaluate([p[sel] for p in params] if independent else params, x, y,
                                                        args.loss, independent=independent)
                row[4] = common.batched_norm(params)
                row = row.tolist()  # the one sync
            if not any(math.isfinite(a) and math.isfinite(b) for a, b in zip(row[0], row[1])):
                err = common.nonfinite(row[0] + row[1], step)  # every member diverged: stop, keep what was measured
                break
            evaluated.append(step)
            for k, v in zip(m, row):
                m[k].append([x if math.isfinite(x) else None for x in v])  # a diverged member: None
            bar.set_postfix_str(common.postfix(*row))
            if stop_when_reached and all(_done_index(args, [r[e] for r in m["train_acc"]], [r[e] for r in m["test_acc"]])
                                         is not None for e in range(E)):
                break
            if ckpt:
                ckpt.save(lambda: {"step": step, "evaluated": evaluated, "m": m, "params": params, "opt": opt.state_dict(),
                                   "batches": [(b.g.get_state(), b.buf, b.pos) for b in batches.values()]})
        if step == steps:
            break
        run_step()
        if step % 200 == 0:
            bar.update(step - last)
            last = step
    bar.update(min(step, steps) - last)
    bar.close()
    return evaluated, common.split_members(m, E), err


def _done_index(args, train_acc, test_acc):
    """Index of the first evaluation at which a sweep member is done: test accuracy at the threshold after train
    accuracy has been (both steps of Fig. 3e / 10b known); None while not done. Its curve ends there, so its
    numbers do not depend on the other members of its ensemble (the whole sweep, or one shard of it)."""
    train_seen = False
    for i, (tr, te) in enumerate(zip(train_acc, test_acc)):
        train_seen = train_seen or (tr is not None and tr >= args.acc_threshold)
        if train_seen and te is not None and te >= args.acc_threshold:
            return i
    return None


def _member_summary(args, steps, m):
    """grok_summary for one member; a member that diverged (None values) keeps its finite prefix."""
    k = next((i for i, v in enumerate(m["train_loss"]) if v is None or m["test_loss"][i] is None), len(steps))
    if k == 0:
        return {"diverged_at": steps[0]}
    s = common.grok_summary(steps[:k], {key: v[:k] for key, v in m.items()}, acc_threshold=args.acc_threshold)
    return s | ({"diverged_at": steps[k]} if k < len(steps) else {})


# ---- modes ---------------------------------------------------------------------------------------------------
def run_mode(args, out, data, device, dtype):
    """Fig. 3d (or Fig. 12 with --loss ce): one run, curves of accuracy, loss and weight norm."""
    t0, ckpt, mem = time.time(), common.Checkpoint(out, args.checkpoint_every), {"alpha": args.alpha, "wd": args.wd}
    steps, [m], err = train_ensemble(args, data, [mem | {"n_train": args.n_train}], args.steps, constrain=args.constrain,
                                     device=device, dtype=dtype, ckpt=ckpt, desc=f"alpha={args.alpha:g} wd={args.wd:g}")
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, **m})
    ckpt.done()
    if err:
        raise err
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    summary.update(alpha=args.alpha, wd=args.wd, n_train=args.n_train, loss=args.loss, constrain=args.constrain,
                   wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    fig, axes = common.plt().subplots(1, 2, figsize=(12.5, 4.2))
    fig.subplots_adjust(wspace=0.45)  # room for the weight-norm axis between the panels
    how = f"Constrained ({args.constrain} norm)" if args.constrain else "Unconstrained"
    common.plot_curves(axes[0], steps, m, title=f"depth-3 width-{args.width} ReLU MLP on MNIST, N={args.n_train}\n"
                                                f"{how} optimization, alpha={args.alpha:g}, wd={args.wd:g}")
    common.plot_curves(axes[1], steps, m, acc=False, title=f"{args.loss.upper()} loss")
    common.savefig(fig, out / "curves.png")
    print(f"train acc >= {args.acc_threshold} at step {summary['train_acc_step']}, test at {summary['test_acc_step']} "
          f"(ratio {summary['grok_ratio']}); final test acc {summary['final_test_acc']:.4f}; {args.steps / wall:.0f} steps/s")
    return summary


def sweep_mode(args, out, data, device, dtype):
    """Fig. 3e (n-sweep): steps until test accuracy reaches the threshold vs training-set size, at the run's alpha
    and wd; Fig. 10b (wd-sweep): the same vs weight decay (paper: log-log slope about -1 for wd in [0.1, 1]). A grid
    point is one member: its curves up to its own done step (_done_index), or to --steps. A member that never
    reaches the threshold is censored: drawn at the step budget, left out of the fit."""
    key = "n_train" if args.mode == "n-sweep" else "wd"
    values = sorted(args.size_list) if key == "n_train" else args.wd_list
    names = [f"{key}_{v:g}" for v in values]
    members = [{"alpha": args.alpha, "wd": args.wd, "n_train": args.n_train, key: v} for v in values]

    def train(todo):
        mine = [(name, mem) for name, mem in zip(names, members) if name in todo]
        t0 = time.time()
        steps, ms, err = train_ensemble(args, data, [mem for _, mem in mine], args.steps, constrain=None, device=device,
                                        dtype=dtype, desc=args.mode, stop_when_reached=not args.full_length,
                                        independent=True)
        if err:
            common.write_json(out / "metrics.json", {"steps": steps, "members": [mem | m for (_, mem), m in zip(mine, ms)]})
            raise err
        seconds = (time.time() - t0) / len(mine)  # the ensemble's wall time, shared by its members
        for (name, mem), m in zip(mine, ms):
            k = None if args.full_length else _done_index(args, m["train_acc"], m["test_acc"])
            k = len(steps) - 1 if k is None else k
            yield name, {**mem, "seconds": seconds, "steps": steps[:k + 1], **{c: v[:k + 1] for c, v in m.items()}}

    got = common.run_grid(args, out, names, grid_settings(args), train)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, missing = list(got[0].values()), got[1]
    common.write_json(out / "metrics.json", {"steps": max((r["steps"] for r in recs), key=len), "members": recs})
    summaries = [{k: r[k] for k in ("alpha", "wd", "n_train")} | _member_summary(args, r["steps"], {
        k: r[k] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}) for r in recs]
    fit = [s for s in summaries if s[key] > 0]  # wd = 0 has no log: reported, not fitted

    def slope(ss, split):
        return common.fit_loglog_slope([s[key] for s in ss], [s.get(f"{split}_acc_step") for s in ss])
    summary = {"alpha": args.alpha, **({"wd": args.wd} if key == "n_train" else {"n_train": args.n_train}),
               "members": summaries, "slope_test": slope(fit, "test"), "slope_train": slope(fit, "train")}
    if key == "wd":
        summary["slope_test_wd_0.1_to_1"] = slope([s for s in fit if 0.1 - 1e-9 <= s["wd"] <= 1 + 1e-9], "test")
    summary.update(missing=missing, wall_seconds=sum(r["seconds"] for r in recs))
    common.write_json(out / "summary.json", summary)
    print(f"steps to test acc >= {args.acc_threshold:g}: {dict((s[key], s.get('test_acc_step')) for s in summaries)}; "
          f"fitted log-log slope (test) {summary['slope_test']}")

    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    common.plot_steps_to(axes[0], [s[key] for s in fit], [{f"{sp}_acc_step": s.get(f"{sp}_acc_step") for sp in
                                                           ("train", "test")} for s in fit], args.steps,
                         threshold=args.acc_threshold, slope=summary["slope_test"],
                         xlabel="training set size N" if key == "n_train" else "weight decay")
    axes[0].set_title(f"MNIST, alpha={args.alpha:g}, " + (f"wd={args.wd:g}" if key == "n_train" else
                                                         f"N={args.n_train} (paper: slope ~ -1 for wd in [0.1, 1])"))
    for i, r in enumerate(recs):  # the test accuracy curves, each up to its member's done step
        axes[1].plot(np.maximum(r["steps"], 1), [np.nan if v is None else v for v in r["test_acc"]],
                     color=plt.get_cmap("viridis")(i / max(1, len(recs) - 1)), label=f"{key}={r[key]:g}")
    axes[1].set(xscale="log", xlabel="optimization steps", ylabel="test accuracy")
    axes[1].axhline(args.acc_threshold, color="k", ls=":", lw=1)
    axes[1].legend(fontsize=7)
    common.savefig(fig, out / f"{args.mode.replace('-', '_')}.png")
    return summary


def grid_rows(args, out, rows, row_key, row_data, device, dtype):
    """landscape and repr: a grid point is a row (one N or one m) whose alphas train as one ensemble on the sphere
    ||w|| = alpha * w0 (no weight decay); best (over the evaluations) and final values are kept. row_data(value) ->
    (data, n_train). Returns None for one shard of several, else ({field: z[row, alpha]} of the saved rows, NaN
    where missing; their seconds; the missing rows' names)."""
    names, ks = [f"{row_key}_{v:g}" for v in rows], ("train_loss", "test_loss", "train_acc", "test_acc")

    def best(k, v):
        v = [x for x in v if x is not None]
        return (min if "loss" in k else max)(v) if v else None

    def train(todo):
        for r, (name, value) in enumerate(zip(names, rows)):
            if name in todo:
                rdata, n_train = row_data(value)
                members = [{"alpha": a, "wd": 0.0, "n_train": n_train} for a in args.alpha_list]
                t0 = time.time()
                steps, ms, err = train_ensemble(args, rdata, members, args.steps, constrain="global", device=device,
                                                dtype=dtype, desc=f"{args.mode} {row_key}={value:g} ({r + 1}/{len(rows)})")
                if err:
                    raise err
                yield name, {"steps": steps, "seconds": time.time() - t0, "points": [
                    {"alpha": mem["alpha"], row_key: value, **{f"{k}_best": best(k, m[k]) for k in ks},
                     **{f"{k}_final": m[k][-1] for k in ks}, "w": m["w"][-1]} for mem, m in zip(members, ms)]}

    got = common.run_grid(args, out, names, grid_settings(args), train)
    fields = [f"{k}_{b}" for b in ("best", "final") for k in ks]
    return got and (common.grid_z(got[0], names, args.alpha_list, fields), sum(r["seconds"] for r in got[0].values()),
                    got[1])


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for run mode."""
    common_keys = ("mode", "steps", "batch_size", "eval_size", "eval_points", "lr", "loss", "width", "normalize", "dtype")
    rows = common_keys + ("alphas", "seed", "n_train", "template", "path_alphas")  # landscape, repr: a row's numbers
    sweep = common_keys + ("alpha", "seed", "full_length", "acc_threshold")  # a member stops once done (acc_threshold)
    keys = {"landscape": rows, "repr": rows, "n-sweep": sweep + ("wd",), "wd-sweep": sweep + ("n_train",),
            "norm-modes": common_keys + ("alpha", "norm_alpha", "wd", "n_train")}.get(args.mode)
    return None if keys is None else {k: getattr(args, k) for k in keys}


def landscape_mode(args, out, data, device, dtype):
    """Fig. 3a-c (Fig. 11 with --loss ce): for each N (rows) and alpha (one ensemble per row), minimise the
    training loss on the sphere ||w|| = alpha * w0 and record the reduced train/test error and loss."""
    sizes, alphas = sorted(args.size_list), args.alpha_list
    got = grid_rows(args, out, sizes, "n_train", lambda n: (data, n), device, dtype)
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    z, seconds, missing = got
    done = int(np.isfinite(z["train_acc_best"]).all(1).sum())
    tables = ("train_error_best", "test_error_best", "train_loss_best", "test_loss_best", "train_error_final",
              "test_error_final")  # error = 1 - accuracy
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": done, "missing": missing, "loss": args.loss,
               "steps": args.steps, **{k: (1 - z[k.replace("error", "acc")] if "error" in k else z[k]).tolist()
                                       for k in tables}, "wall_seconds": seconds}
    common.write_json(out / "summary.json", summary)

    # A (alpha 1, small N) -> B (large alpha, small N): grokking; B -> C (large N): de-grokking.
    n_small, n_large = (common.nearest(sizes, n) for n in args.slice_size_list)
    a_one, a_b = common.nearest(alphas, 1), common.nearest(alphas, args.b_alpha)
    title = f"MNIST reduced landscape ({args.loss.upper()}, {args.steps} steps per point, {done}/{len(sizes)} rows)"
    common.plot_lu_landscape(out / "landscape.png", alphas, sizes, 1 - z["train_acc_best"], 1 - z["test_acc_best"],
                             what="error", levels=[0.1, 0.2, 0.3, 0.4], slices=[n_small, n_large], title=title,
                             marks={"A": (a_one, n_small), "B": (a_b, n_small), "C": (a_b, n_large)})
    common.plot_lu_landscape(out / "landscape_loss.png", alphas, sizes, z["train_loss_best"], z["test_loss_best"],
                             what="loss", levels=[0.1, 1], slices=[n_small, n_large], title=title, log_color=True)
    print(f"landscape: {done}/{len(sizes)} rows in {out}")
    return summary


def repr_mode(args, out, data, device, dtype):
    """Fig. 8: inputs R = m * R_raw + (1 - m) * R_linear; reduced train/test loss over (alpha, m) at N images,
    and the path A (alpha_A, m=1) -> B (alpha_B, m=1) -> C (alpha_B, m=0), along which nothing groks."""
    alphas, ms = args.alpha_list, sorted(args.m_list)
    # R_linear: a constant image per label (--template; docs/NOTES.md says why the code's, by default)
    values = (torch.linspace(-0.5, 0.5, 10) if args.template == "code" else torch.arange(10.0)).to(device, dtype)

    def mixed(mess):  # the whole data set as seen at messiness m (training and evaluation alike)
        return [(mess * x + (1 - mess) * values[y].unsqueeze(-1), y) for x, y in data], args.n_train

    got = grid_rows(args, out, ms, "m", mixed, device, dtype)
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    z, seconds, missing = got
    done = int(np.isfinite(z["train_loss_best"]).all(1).sum())
    ja, jb = (int(np.argmin([abs(a - t) for a in alphas])) for t in args.path_alpha_list)  # nearest, linearly
    # Path on the grid: A -> B along m = 1 (alpha grows), then B -> C along alpha_B (m falls to 0).
    path = [(len(ms) - 1, j) for j in range(ja, jb + 1)] + [(i, jb) for i in range(len(ms) - 2, -1, -1)]
    curves = {s: [z[f"{s}_loss_best"][i, j] for i, j in path] for s in ("train", "test")}
    summary = {"alphas": alphas, "ms": ms, "rows_done": done, "missing": missing, "template": args.template,
               "n_train": args.n_train, **{f"{s}_{k}_best": z[f"{s}_{k}_best"].tolist() for k in ("loss", "acc")
                                           for s in ("train", "test")},
               "path": [{"alpha": alphas[j], "m": ms[i], "train_loss": tr, "test_loss": te}
                        for (i, j), tr, te in zip(path, curves["train"], curves["test"])], "wall_seconds": seconds}
    common.write_json(out / "summary.json", summary)

    fig, axes = common.plt().subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for ax, split in zip(axes[:2], ("train", "test")):
        im = common.plot_heatmap(ax, alphas, ms, z[f"{split}_loss_best"], cmap="Reds", levels=[0.01, 0.05, 0.1],
                                 title=f"{split} loss (colour clipped at 1)", xlabel="relative weight norm alpha = w/w0",
                                 ylabel="representation messiness m")
        im.set_clim(0, 1)  # as the paper's colour bar: large-alpha losses (up to ~7) would wash out the rest
        ax.invert_yaxis()
        ax.plot([alphas[j] for _, j in path], [ms[i] for i, _ in path], "k-")
        for name, (i, j) in {"A": path[0], "B": (len(ms) - 1, jb), "C": path[-1]}.items():
            ax.plot(alphas[j], ms[i], "ko")
            ax.annotate(name, (alphas[j], ms[i]), textcoords="offset points", xytext=(6, 4), fontsize=12)
    for split in ("train", "test"):
        axes[2].plot(curves[split], label=split)
    for t in (0, jb - ja, len(path) - 1):
        axes[2].axvline(t, color="0.7", ls="--")
    axes[2].set_xticks([0, jb - ja, len(path) - 1], ["A", "B", "C"])
    axes[2].set(xlabel="path", ylabel="loss (best during fixed-norm training)", title="A -> B -> C: no grokking")
    axes[2].legend()
    fig.suptitle(f"MNIST representation landscape (N={args.n_train}, {args.steps} steps per point, {done}/{len(ms)} rows)")
    common.savefig(fig, out / "repr.png")
    print(f"repr: {done}/{len(ms)} rows in {out}")
    return summary


def norm_modes_mode(args, out, data, device, dtype):
    """Beyond the paper: the run of --alpha and --wd (the main job by default) against each --constrain mode, over
    --seeds (common.run_norm_modes); a condition's seeds train as one independent ensemble."""
    def train_condition(alpha, constrain, seeds, desc, ckpt):
        members = [{"alpha": alpha, "wd": args.wd, "n_train": args.n_train, "seed": s} for s in seeds]
        steps, ms, err = train_ensemble(args, data, members, args.steps, constrain=constrain, device=device,
                                        dtype=dtype, desc=desc, independent=True, ckpt=ckpt)
        return [{"steps": steps, **m} for m in ms], err
    return common.run_norm_modes(args, out, grid_settings(args), train_condition, f"MNIST, N={args.n_train}: wd "
                                 f"(alpha={args.alpha:g}, wd={args.wd:g}) vs each norm constraint (alpha={args.norm_alpha:g})")


def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    data = load_mnist(args, device, dtype)
    n_avail, where = len(data[0][0]), raw_dir(args.data_dir)
    common.require(args.n_train <= n_avail or args.mode in ("landscape", "n-sweep"),
                   f"--n-train {args.n_train} is larger than the {n_avail} training images in {where}.")
    common.require(max(args.size_list) <= n_avail or args.mode not in ("landscape", "n-sweep"),
                   f"--sizes: {max(args.size_list)} is larger than the {n_avail} training images in {where}.")
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    modes = {"run": run_mode, "landscape": landscape_mode, "n-sweep": sweep_mode, "wd-sweep": sweep_mode,
             "repr": repr_mode, "norm-modes": norm_modes_mode}
    summary = modes[args.mode](args, out, data, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
