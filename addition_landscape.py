"""Representation-vs-weight-norm landscapes of toy addition (Omnigrok, Sec. 5.1, Fig. 6, App. D, Table 1).

Task: inputs 0 <= i <= j <= p-1 (p = 10: 55 pairs), output k = i + j; every output symbol is a fixed
random 30-D target vector Y_k. Each input digit has an embedding E_i (the representation R); a decoder
MLP maps E_i + E_j to a 30-D vector; loss = MSE to Y_k; a prediction is correct when the nearest target
vector is Y_k. The representation is the paper's Eq. 4: R = m * R_random + (1 - m) * R_linear, with m the
"representation messiness". The decoder's weight norm is w = alpha * w0 (w0: the norm of PyTorch's
default init; alpha multiplies every decoder parameter).

Setup (--setup, each knob also its own flag). The paper's App. D and the authors' notebook differ:
    paper: scalar embeddings, R_linear = k, R_random ~ N(0, 1); 1-200-200-30 ReLU decoder; Adam lr 1e-3, 1e4 steps.
    code (default): 2-D embeddings, R_linear = (linspace(-1, 1, p), 0.3 * U(-1, 1)), R_random ~ U(-1, 1)^2;
          2-200-200-30 LeakyReLU(0.2) decoder; Adam lr 1e-2, betas (0.9, 0.99), lr x0.2 every 5000 steps.
We default to the code: it is what made Fig. 6, and it reproduces the picture. The paper's setup does
not: measured on alpha in {1..9} x m in {0, 0.2, 0.5, 1}, its best train loss after 15k steps stays
>= 0.18 everywhere (scalar inputs up to 18 at lr 1e-3 barely train), so there is no region II at all.
Labels are i + j (2p - 1 symbols), as in the paper; the notebook used (i + j) mod p
(`--labels mod`; it gives the same picture, measured). The notebook's 15k steps per point would take
~1.5 h for the 21 x 21 grid on 2 CPU cores; its lr schedule compressed 2.5x (6000 steps, lr x0.2 every
2000) gives best train losses within 0.004 of the 15k ones for m <= 0.1 (0.011 at alpha = 9, m = 0.2)
and the same test losses except at alpha = 9 (measured on 7 alphas x 4 m), so that is the default;
`--steps 15000 --lr-decay-every 5000` is the notebook's. 4000 steps was not enough (0.06 at alpha = 9).
The grids are the notebook's: coarse alpha in [0, 9] x m in [0, 0.2] (Fig. 6a,b; the paper's axis
says "0..1" for m, the notebook's values are 0..0.2), fine alpha in [2.5, 4] x m in [0, 0.1] (Fig. 6d,e).
The notebook's files named trainbest_*/testbest_* hold each point's losses after the LAST step (the
minimum is computed, never saved), so analyses and plots use those (--record final); --record best
uses the minimum over training (train: every step, test: the log-spaced evaluations). summary.json
has both. With seed 58 one of the 10 test pairs (9 + 9 = 18) has an output symbol no training pair
has, so test accuracy is at most 0.9.

Modes (every grid is ONE batched ensemble: one decoder per grid point, trained together):
    python addition_landscape.py --mode landscape     # Fig. 6a,b: train/test loss over (alpha, m), contour 0.05
    python addition_landscape.py --mode gradient --landscape-from RUN_DIR
                                                      # Fig. 6d: -gradient arrows on the fine grid (N = 45)
    python addition_landscape.py --mode trajectory --landscape-from RUN_DIR
                                                      # Fig. 6c: Eq. 6 integrated on the coarse landscape
    python addition_landscape.py --mode n-sweep       # Fig. 6e: train-loss contour 0.02 for N = 25, 35, 45, 55
    python addition_landscape.py                      # run (Table 1, last row): R and decoder trainable
RUN_DIR is an earlier landscape run (trajectory) or n-sweep run (gradient: its N = 45 landscape);
without --landscape-from those modes compute their own grid first.
Quick versions: --grid-points 9 --steps 4000 --lr-decay-every 1333 (a few minutes each).
The grid modes save one file per landscape row (one (N, m), all alphas) in <out>/points/; --shard i/n
trains every n-th row (a job array: slurm/submit.py) and --merge draws from the rows saved.

CUDA graphs (common.graph_step; CPU path unchanged): on CUDA each training step (forward, backward, Adam,
projection or weight decay) is one graph replay, in the grid modes and in run mode; the grid modes
capture anew after each lr decay, since a graph keeps the lr it was captured with.

Runtimes on 2 CPU cores (measured, README.md): run ~1 min; trajectory and gradient from a saved grid:
seconds; landscape 11 x 11: 18 min wall (4.6 CPU-min); 21 x 21 x 6000 steps: 9.2 min (idle machine).
Expected result (seed 58, --record best, 21 x 21 grid): train loss ~0.7 at alpha = 0.9 (region I),
< 0.01 for alpha >= 4.05 at every m (region II), contour 0.05 from alpha ~2.5 at m = 0 to ~3.8 at
m = 0.2; in region II the train loss varies by 0.002 along m, the test loss by 0.56; the lowest test
loss (0.69, green star) is at m = 0.01, alpha = 2.25. The reduced trajectory (on the 11 x 11 grid)
from A = (8, 0.15) moves to smaller w, then to smaller m alongside the boundary, and ends at the star.
In run mode the train set is fitted first (90% at step ~700), the test accuracy follows (90% at ~1150):
a grokking delay of only ~1.6x, as the learned representation becomes linear early (m_hat -> 0 by ~250).
n-sweep (9 x 9 fine grid, 4000 steps, --record best): the 0.02 contour moves to larger alpha as N
grows (more pairs are harder to fit), as in the notebook's Fig. 6e; at m = 0 it sits at alpha 2.51
(N = 45, where the star is) and 2.68 (N = 55); N = 35 and 25 cross m = 0 left of the window.
"""
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import common

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "landscape", "gradient", "trajectory", "n-sweep"]
SETUPS = {  # the two setups of the header; every value is also its own flag
    "code": dict(embed_dim=2, activation="leaky_relu", repr_style="code", lr=1e-2, beta2=0.99,
                 lr_decay=0.2, lr_decay_every=2000, landscape_steps=6000),
    "paper": dict(embed_dim=1, activation="relu", repr_style="paper", lr=1e-3, beta2=0.999,
                  lr_decay=1.0, lr_decay_every=0, landscape_steps=10_000),
}
# Grids of the authors' notebook: coarse (Fig. 6a,b) and fine (Fig. 6d,e).
COARSE = dict(alpha=(0.0, 9.0), m=(0.0, 0.2))
FINE = dict(alpha=(2.5, 4.0), m=(0.0, 0.1))


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    # 0.9: with seed 58 and N = 45 one of the 10 test pairs (9 + 9 = 18) has an output symbol that is in no
    # training pair, so 90% is the best reachable test accuracy (summary.json: test_acc_ideal).
    common.add_standard_args(
        p, modes=MODES, steps=None, acc_threshold=0.9,
        steps_help="optimizer steps: per grid point in the grid modes (code preset 6000, paper 1e4; the notebook "
                   "15000), of the training run in run mode (1e4)")
    p.set_defaults(seed=58)  # the authors' notebook
    p.add_argument("--setup", default="code", choices=list(SETUPS),
                   help="preset for the knobs below that are left unset: the authors' notebook or the paper's App. D")
    p.add_argument("--p", type=int, default=10, help="base of the addition: inputs 0..p-1")
    p.add_argument("--labels", default="sum", choices=["sum", "mod"],
                   help="output symbol: i + j (paper) or (i + j) mod p (authors' notebook)")
    p.add_argument("--n-train", type=int, default=45, help="training pairs out of the p(p+1)/2 pairs i <= j")
    p.add_argument("--out-dim", type=int, default=30, help="dimension of the random target vectors")
    p.add_argument("--width", type=int, default=200, help="decoder hidden width (two hidden layers)")
    p.add_argument("--embed-dim", type=int, default=None, help="embedding dimension (code: 2, paper: 1)")
    p.add_argument("--activation", default=None, choices=["relu", "leaky_relu"],
                   help="decoder activation (code: LeakyReLU(0.2), paper: ReLU)")
    p.add_argument("--repr-style", default=None, choices=["code", "paper"],
                   help="R_linear/R_random: code = noisy line in [-1,1] / U(-1,1); paper = E_k = k / N(0,1)")
    p.add_argument("--lr", type=float, default=None, help="decoder Adam learning rate (code: 1e-2, paper: 1e-3)")
    p.add_argument("--beta2", type=float, default=None, help="Adam beta2 (code: 0.99, paper: torch default 0.999)")
    p.add_argument("--lr-decay", type=float, default=None, help="lr factor applied every --lr-decay-every steps")
    p.add_argument("--lr-decay-every", type=int, default=None, help="steps between lr decays (0: never)")
    # grids
    p.add_argument("--grid-points", type=int, default=21, help="points per axis of each grid (authors: 21)")
    p.add_argument("--alpha-range", default=None,
                   help="'lo,hi' of alpha = w/w0 (default: 0,9 for landscape/trajectory, 2.5,4 for gradient/n-sweep)")
    p.add_argument("--m-range", default=None,
                   help="'lo,hi' of m (default: 0,0.2 for landscape/trajectory, 0,0.1 for gradient/n-sweep)")
    p.add_argument("--n-trains", default="25,35,45,55", help="n-sweep mode: training sizes (Fig. 6e)")
    p.add_argument("--contour", type=float, default=None,
                   help="train-loss level of the I/II boundary (paper: 0.05 in Fig. 6a, 0.02 in Fig. 6e)")
    p.add_argument("--record", default="final", choices=["final", "best"],
                   help="grid modes: the loss of a grid point that every analysis and plot uses: final (after the last "
                        "step: what the authors' notebook saved, in files named *best*, and plotted) or best (the "
                        "minimum over training); summary.json holds both")
    p.add_argument("--chunk", type=int, default=0, help="grid points per batched ensemble (0: the whole grid)")
    common.add_shard_arg(p, "landscape, n-sweep (a point = one row of a landscape: one (N, m), all alphas)")
    p.add_argument("--landscape-from", default=None,
                   help="gradient/trajectory/run: reuse the summary.json of an earlier landscape/gradient run dir")
    # Eq. 6 (reduced trajectory and gradient field)
    p.add_argument("--wd", type=float, default=None,
                   help="weight decay gamma: Eq. 6 in gradient/trajectory (default 0 / 3e-4: the path ends at the star), "
                        "AdamW in run (default 0.3)")
    p.add_argument("--eta-ratio", type=float, default=1e-3,
                   help="trajectory: eta_R / eta_D of Eq. 6. The paper's footnote takes 1, but m spans 0..0.2 while "
                        "w spans 0..120 here, so with 1 m collapses at once; 1e-3 gives the paper's A->D->E path")
    p.add_argument("--start", default="8,0.15", help="trajectory mode: start point A as 'alpha,m'")
    p.add_argument("--smooth", type=float, default=1.0,
                   help="Gaussian smoothing (grid cells) of the landscape before taking gradients (authors: 1)")
    # full trajectory (run mode)
    p.add_argument("--alpha", type=float, default=6.0, help="run mode: decoder init scale alpha")
    p.add_argument("--m-init", type=float, default=0.15,
                   help="run mode: messiness of the initial representation (inside the landscape's m range)")
    p.add_argument("--lr-repr", type=float, default=3e-3, help="run mode: Adam learning rate of the representation")
    p.add_argument("--run-lr", type=float, default=1e-3, help="run mode: AdamW learning rate of the decoder")
    p.add_argument("--wd-repr", type=float, default=0.0,
                   help="run mode: weight decay of the representation (Eq. 6: none; with --m-init 1 and a large "
                        "--lr-repr, |R| can inflate instead of w shrinking)")
    args = p.parse_args(argv)

    for k, v in SETUPS[args.setup].items():
        if k != "landscape_steps" and getattr(args, k) is None:
            setattr(args, k, v)
    fine = args.mode in ("gradient", "n-sweep")
    if args.steps is None:
        args.steps = 10_000 if args.mode == "run" else SETUPS[args.setup]["landscape_steps"]
    if args.wd is None:
        args.wd = {"run": 0.3, "trajectory": 3e-4}.get(args.mode, 0.0)
    if args.contour is None:
        args.contour = 0.02 if args.mode == "n-sweep" else 0.05
    args.alpha_lohi = _pair(args.alpha_range, "--alpha-range", (FINE if fine else COARSE)["alpha"])
    args.m_lohi = _pair(args.m_range, "--m-range", (FINE if fine else COARSE)["m"])
    args.start_am = _pair(args.start, "--start", None)
    args.n_train_list = common.parse_ints(args.n_trains, "--n-trains")
    args.shard_pair = common.parse_shard(args.shard)

    common.check_standard_args(args)
    n_pairs = args.p * (args.p + 1) // 2
    common.require(2 <= args.p <= 1000, f"--p must be in 2..1000 (p(p+1)/2 pairs), got {args.p}.")
    common.require(0 < args.n_train <= n_pairs, f"--n-train must be in 1..{n_pairs} (pairs i <= j), got {args.n_train}.")
    common.require(all(0 < n <= n_pairs for n in args.n_train_list), f"--n-trains must be in 1..{n_pairs}.")
    common.require(args.out_dim > 0 and args.width > 0 and args.embed_dim > 0,
                   "--out-dim, --width and --embed-dim must be positive.")
    common.require(args.lr > 0 and args.run_lr > 0 and args.lr_repr >= 0, "learning rates must be positive.")
    common.require(0 < args.beta2 < 1, f"--beta2 must be in (0, 1), got {args.beta2}.")
    common.require(0 < args.lr_decay <= 1 and args.lr_decay_every >= 0, "--lr-decay must be in (0, 1], --lr-decay-every >= 0.")
    common.require(args.grid_points >= 2, f"--grid-points must be at least 2, got {args.grid_points}.")
    common.require(args.alpha_lohi[0] >= 0 and args.alpha_lohi[1] > args.alpha_lohi[0],
                   "--alpha-range must be 'lo,hi' with 0 <= lo < hi.")
    common.require(0 <= args.m_lohi[0] < args.m_lohi[1] <= 1, "--m-range must be 'lo,hi' with 0 <= lo < hi <= 1.")
    common.require(args.contour > 0, f"--contour must be positive, got {args.contour}.")
    common.require(args.chunk >= 0, f"--chunk must be >= 0, got {args.chunk}.")
    common.require(args.wd >= 0 and args.wd_repr >= 0 and args.eta_ratio > 0 and args.smooth >= 0,
                   "--wd and --smooth must be >= 0, --eta-ratio positive.")
    common.require(args.alpha > 0 and 0 <= args.m_init <= 1, "--alpha must be positive and --m-init in [0, 1].")
    if args.landscape_from:
        saved_landscape(args)  # refused here, before anything is written
    return args


def saved_landscape(args):
    """The landscape for --n-train that --landscape-from's run folder holds (an n-sweep holds one per N)."""
    path = Path(args.landscape_from)
    try:
        config = json.loads((path / "config.json").read_text())
        saved = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        raise common.UserError(f"--landscape-from: {path} holds no finished run (config.json and summary.json); give "
                               "a landscape or n-sweep run folder of this script.") from None
    script, mode = config.get("script"), config.get("args", {}).get("mode")
    common.require(script == "addition_landscape" and mode in MODES[1:],
                   f"--landscape-from: {path} is a {script} --mode {mode} run, not "
                   "an addition_landscape landscape, n-sweep, gradient or trajectory run.")
    land = saved.get("landscape") or next((la for la in saved.get("landscapes", []) if la["n_train"] == args.n_train),
                                          None)
    common.require(land is not None, f"--landscape-from: {path} holds no landscape for N = {args.n_train}.")
    return land


def _pair(text, name, default):
    if text is None:
        return default
    v = common.parse_floats(text, name)
    common.require(len(v) == 2, f"{name} must be two comma-separated numbers, got {text!r}.")
    return tuple(v)


def grid_axes(args):
    alphas = np.linspace(*args.alpha_lohi, args.grid_points)
    ms = np.linspace(*args.m_lohi, args.grid_points)
    return alphas, ms


# ----------------------------------------------------------------------------------------------
# data: pairs, targets, the two reference representations
# ----------------------------------------------------------------------------------------------
def make_task(args, device, dtype):
    """Everything random about the task comes from one generator seeded with --seed, so the split
    (nested: the first N of one permutation), targets and representations are the same for every grid
    point and every N, as in the notebook (one seed for all)."""
    p, d = args.p, args.embed_dim
    g = torch.Generator().manual_seed(args.seed)
    i, j = torch.triu_indices(p, p)  # all pairs i <= j, in the notebook's order
    k = (i + j) % p if args.labels == "mod" else i + j
    n_classes = p if args.labels == "mod" else 2 * p - 1
    targets = torch.randn(n_classes, args.out_dim, generator=g)
    perm = torch.randperm(len(i), generator=g)
    if args.repr_style == "code":
        # notebook: a line along the first axis with 0.3 x uniform noise on the others; random = U(-1, 1)
        line = (2 * torch.rand(p, d, generator=g) - 1) * 0.3
        line[:, 0] = torch.linspace(-1, 1, p)
        rand = 2 * torch.rand(p, d, generator=g) - 1
    else:  # paper Sec. 5.1: E_k = [k, 0, ...], E_k ~ N(0, I)
        line = torch.zeros(p, d)
        line[:, 0] = torch.arange(p, dtype=torch.float32)
        rand = torch.randn(p, d, generator=g)
    to = dict(device=device, dtype=dtype)
    return dict(i=i.to(device), j=j.to(device), k=k.to(device), targets=targets.to(**to), perm=perm.to(device),
                line=line.to(**to), rand=rand.to(**to))


def split(task, n_train):
    return task["perm"][:n_train], task["perm"][n_train:]


def ideal_test_acc(task, n_train):
    """Fraction of test pairs whose output symbol occurs in some training pair: no decoder can name a
    target vector it never saw, so this bounds the test accuracy (the notebook's acc_ideal_test, simplified)."""
    tr, te = split(task, n_train)
    seen = set(task["k"][tr].tolist())
    return sum(k in seen for k in task["k"][te].tolist()) / max(len(te), 1)


def representation(task, m):
    """Eq. 4 for a vector of messiness values m [E] -> R [E, p, d]."""
    m = m.view(-1, 1, 1)
    return m * task["rand"] + (1 - m) * task["line"]


# ----------------------------------------------------------------------------------------------
# model: batched decoder MLP, parameters stacked along a leading ensemble dim E
# ----------------------------------------------------------------------------------------------
def decoder_params(args, device, dtype):
    """[W1, b1, W2, b2, W3, b3] of d-width-width-out nn.Linear layers with their default init, seeded
    with --seed: every ensemble member starts exactly where the single run with that seed starts."""
    torch.manual_seed(args.seed)
    dims = [args.embed_dim, args.width, args.width, args.out_dim]
    layers = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    return [t.detach().to(device, dtype) for layer in layers for t in (layer.weight, layer.bias)]


def decode(args, params, x):
    """x [E, N, d] (E_i + E_j for each pair) -> [E, N, out_dim]."""
    act = (lambda h: torch.nn.functional.leaky_relu(h, 0.2)) if args.activation == "leaky_relu" else torch.relu
    W1, b1, W2, b2, W3, b3 = params
    h = act(torch.baddbmm(b1[:, None], x, W1.transpose(1, 2)))
    h = act(torch.baddbmm(b2[:, None], h, W2.transpose(1, 2)))
    return torch.baddbmm(b3[:, None], h, W3.transpose(1, 2))


def loss_acc(args, task, params, R, idx):
    """MSE and nearest-target accuracy per member ([E] each) on the pairs idx, representation R [E, p, d]."""
    x = R[:, task["i"][idx]] + R[:, task["j"][idx]]
    out = decode(args, params, x)
    y = task["targets"][task["k"][idx]]
    loss = (out - y).pow(2).mean((1, 2))
    pred = torch.cdist(out, task["targets"].expand(out.shape[0], -1, -1)).argmin(-1)
    return loss, (pred == task["k"][idx]).double().mean(1)  # float64: 9/10 must compare >= 0.9


def keep_freed_memory():
    """glibc hands blocks above 32 MB (a 441-model 200x200 weight or gradient is 70 MB) back to the OS
    when freed, so every training step page-faults its tensors in again. Raising the mmap/trim
    thresholds keeps them in the heap: 3x fewer page faults, ~20% faster grid steps on CPU (measured).
    Linux/glibc only; elsewhere nothing happens."""
    import ctypes
    import sys
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6")
            libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: 1 GiB
            libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD: never trim the heap top
        except (OSError, AttributeError):
            pass


# ----------------------------------------------------------------------------------------------
# landscape analysis (Table 1, first row): R and w fixed, only the decoder direction trained
# ----------------------------------------------------------------------------------------------
def train_fixed_norm(args, task, alphas, ms, n_train, *, device, dtype, desc):
    """One decoder per (alpha, m) pair, all trained at once at fixed norm alpha * w0 on the frozen
    representation R(m). Returns (eval steps, curves {key: [[E values] per eval step]}, best train loss
    [E] (minimum over every step, as the notebook computes it), w0)."""
    E, steps = len(alphas), args.steps
    tr_idx, te_idx = split(task, n_train)
    R = representation(task, torch.tensor(ms, device=device, dtype=dtype))
    x_tr = R[:, task["i"][tr_idx]] + R[:, task["j"][tr_idx]]
    y_tr = task["targets"][task["k"][tr_idx]]
    params = [torch.stack([t] * E).requires_grad_() for t in decoder_params(args, device, dtype)]
    w0 = common.global_norm(decoder_params(args, device, dtype)).item()
    w_target = common.scale_by_alpha_batched_(params, alphas)  # alpha multiplies every decoder parameter
    # Fused Adam (4x faster than foreach on CPU for a 441-model grid) whose members' numbers do not depend on
    # the ensemble (a shard == the whole grid); capturable (CUDA): its step count stays on the device.
    opt = common.EnsembleAdam(params, lr=args.lr, betas=(0.9, args.beta2), weight_decay=0.0,
                              capturable=device.type == "cuda")
    params = opt.params
    best_train = torch.full((E,), math.inf, device=device, dtype=dtype)

    def train_step():  # on CUDA one graph replay (common.graph_step), on CPU as written
        loss = (decode(args, params, x_tr) - y_tr).pow(2).mean((1, 2))
        torch.minimum(best_train, loss.detach(), out=best_train)  # on the device: no sync; in place: a graph's output
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        opt.step()
        common.project_to_norm_batched_(params, w_target)
    run_step = common.graph_step(train_step, device)

    eval_at = set(common.log_steps(steps, args.eval_points))
    curves = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}
    evaluated = []
    bar = common.progress(steps, desc)
    for step in range(steps + 1):
        if step in eval_at:
            with torch.no_grad():
                rows = [*loss_acc(args, task, params, R, tr_idx)]
                rows += [*loss_acc(args, task, params, R, te_idx)] if len(te_idx) else [rows[0] * math.nan] * 2
                row = torch.stack([t.double() for t in (rows[0], rows[2], rows[1], rows[3],
                                                        common.batched_norm(params))]).tolist()
            err = common.nonfinite(row[0], step, hint="Lower --lr or use --dtype float64.")
            if err:
                bar.close()
                return evaluated, curves, best_train.tolist(), w0, err
            evaluated.append(step)
            for key, v in zip(curves, row):
                curves[key].append(v)
            bar.set_postfix_str(f"train loss {min(row[0]):.1e}..{max(row[0]):.1e}")
        if step == steps:
            break
        if args.lr_decay_every and (step + 1) % args.lr_decay_every == 0:  # the notebook's schedule
            for group in opt.param_groups:
                group["lr"] *= args.lr_decay
            # A graph holds the float lr it was captured with: capture anew (a few times a run). This keeps
            # the lr a float, as on CPU; a tensor lr would have to be float32 (fused Adam's CUDA kernel).
            run_step = common.graph_step(train_step, device)
        run_step()
        bar.update()
    bar.close()
    return evaluated, curves, best_train.tolist(), w0, None


CURVES = ("train_loss", "test_loss", "train_acc", "test_acc", "w")


def train_rows(args, task, n_train, row_ms, *, device, dtype, desc):
    """Rows of the (m, alpha) grid - one m each, all alphas - as one batched ensemble (or --chunk sized
    pieces of it). Returns (one record per row: {m, steps, best_train, w0, curves [n_eval][alphas]}, error
    or None; on an error the records hold what was measured, for metrics.json)."""
    alphas, _ = grid_axes(args)
    A, M = np.meshgrid(alphas, np.asarray(row_ms, dtype=float))  # row = m, column = alpha
    flat_a, flat_m = A.ravel(), M.ravel()
    chunk = args.chunk or len(flat_a)
    steps, curves, best_train, err, w0 = None, None, [], None, None
    for lo in range(0, len(flat_a), chunk):
        s, c, b, w0, err = train_fixed_norm(args, task, flat_a[lo:lo + chunk], flat_m[lo:lo + chunk], n_train,
                                            device=device, dtype=dtype, desc=f"{desc} N={n_train}")
        steps = s
        curves = c if curves is None else {k: [a + b_ for a, b_ in zip(curves[k], c[k])] for k in curves}
        best_train += b
        if err:  # keep what was measured, then stop (the caller saves metrics and raises)
            break
    n_a = len(alphas)
    rows = [dict(m=float(m), steps=steps, w0=w0, best_train=best_train[r * n_a:(r + 1) * n_a],
                 **{k: [v[r * n_a:(r + 1) * n_a] for v in curves[k]] for k in CURVES})
            for r, m in enumerate(row_ms) if (r + 1) * n_a <= len(best_train)]
    return rows, err


def assemble_landscape(args, task, n_train, rows):
    """The landscape dict (axes, 2-D arrays [len(m)][len(alpha)] of best/final losses and accuracies, the
    star) and metrics (curves) from row records, in grid order; rows not given (not trained yet) are None."""
    alphas, ms = grid_axes(args)
    by_m = {round(r["m"], 12): r for r in rows}
    present = [by_m.get(round(float(m), 12)) for m in ms]
    have = [r for r in present if r is not None]
    A, M = np.meshgrid(alphas, ms)  # row = m, column = alpha
    flat_a, flat_m = A.ravel(), M.ravel()
    shape, n_a = M.shape, len(alphas)
    steps, w0 = have[0]["steps"], have[0]["w0"]
    arr = {k: np.full((len(steps), len(flat_a)), np.nan) for k in CURVES}  # [n_eval, E]
    best_train = np.full(len(flat_a), np.nan)
    for r, rec in enumerate(present):
        if rec is not None:
            for k in CURVES:
                arr[k][:, r * n_a:(r + 1) * n_a] = np.array(rec[k], dtype=float)
            best_train[r * n_a:(r + 1) * n_a] = rec["best_train"]
    has_test = n_train < len(task["perm"])  # N = 55 uses every pair: no test set (stored as null)

    def grid(x):
        return [[v if math.isfinite(v) else None for v in row] for row in np.asarray(x, dtype=float).reshape(shape).tolist()]

    nan = np.full(len(flat_a), np.nan)
    test_best = arr["test_loss"].min(0) if has_test else nan
    land = dict(n_train=n_train, test_acc_ideal=ideal_test_acc(task, n_train), alphas=alphas.tolist(), ms=ms.tolist(), w0=w0, ws=(alphas * w0).tolist(),
                train_loss_best=grid(np.minimum(best_train, arr["train_loss"].min(0))),
                test_loss_best=grid(test_best),
                train_loss_final=grid(arr["train_loss"][-1]), test_loss_final=grid(arr["test_loss"][-1]),
                train_acc_best=grid(arr["train_acc"].max(0)), test_acc_best=grid(arr["test_acc"].max(0) if has_test else nan),
                train_acc_final=grid(arr["train_acc"][-1]), test_acc_final=grid(arr["test_acc"][-1]))
    set_star(land, args.record)
    cols = [r * n_a + j for r, rec in enumerate(present) if rec is not None for j in range(n_a)]  # flat, present
    curves = {k: [[row[c] for c in cols] for row in arr[k].tolist()] for k in CURVES}
    if not has_test:
        curves = {k: (v if k.startswith(("train", "w")) else None) for k, v in curves.items()}
    metrics = dict(steps=steps, alpha=flat_a[cols].tolist(), m=flat_m[cols].tolist(), **curves)
    return land, metrics


def set_star(land, record):
    """The generalizing solution (green star): the grid point of lowest recorded test loss at w > 0; none
    without a test set. Set on every load, so a saved landscape's star follows the current --record."""
    te = np.array(land[f"test_loss_{record}"], dtype=float)  # null (no test set) -> nan
    te[:, np.array(land["alphas"]) == 0] = np.nan
    land.pop("star", None)
    if np.isfinite(te).any():
        r, c = np.unravel_index(np.nanargmin(te), te.shape)
        land["star"] = dict(alpha=land["alphas"][c], m=land["ms"][r], test_loss=float(te[r, c]))


def compute_landscape(args, n_train, *, device, dtype, desc="landscape"):
    """The whole (m, alpha) grid in memory (gradient, trajectory modes): (land, metrics, error or None)."""
    task = make_task(args, device, dtype)
    _, ms = grid_axes(args)
    rows, err = train_rows(args, task, n_train, ms, device=device, dtype=dtype, desc=desc)
    if err:
        return None, dict(members=rows), err
    land, metrics = assemble_landscape(args, task, n_train, rows)
    return land, metrics, None


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for
    the modes without grid points. A point is one row of a landscape: one (N, m), all alphas."""
    if args.mode not in ("landscape", "n-sweep"):
        return None
    keys = ("mode", "seed", "setup", "p", "labels", "out_dim", "width", "embed_dim", "activation", "repr_style", "lr",
            "beta2", "lr_decay", "lr_decay_every", "steps", "eval_points", "dtype", "grid_points", "alpha_lohi", "m_lohi")
    return {k: getattr(args, k) for k in keys + (("n_train",) if args.mode == "landscape" else ())}


def row_name(n_train, m):
    return f"n_{n_train}_m_{m:g}"


def grid_landscapes(args, out, n_trains, *, device, dtype, desc):
    """The grid modes' points: one file per (N, m) row, out/points/n_<N>_m_<m>.json. Trains the rows this
    shard owns that are not saved yet (per N one ensemble), then - for the whole grid or --merge - returns
    ({N: land}, {N: metrics}, seconds) of the rows saved; None for one shard of several."""
    _, ms = grid_axes(args)
    names = [row_name(n, m) for n in n_trains for m in ms]
    todo = set(common.shard_todo(names, out, args.shard_pair, grid_settings(args)))
    task = make_task(args, device, dtype)
    for n in n_trains:
        mine = [m for m in ms if row_name(n, m) in todo]
        if not mine:
            continue
        t0 = time.time()
        rows, err = train_rows(args, task, n, mine, device=device, dtype=dtype, desc=desc)
        if err:
            common.write_json(out / "metrics.json", dict(n_train=n, members=rows))
            raise err
        for rec in rows:
            rec["seconds"] = (time.time() - t0) / len(rows)  # the ensemble's wall time, shared by its rows
            common.write_json(common.point_path(out, row_name(n, rec["m"])), dict(n_train=n, **rec))
    if common.is_piece(args.shard_pair):
        common.piece_done(out, names, args.shard_pair, [nm for nm in names if nm in todo])
        return None
    saved, missing = common.collect_points(out, names)
    lands, metrics, seconds = {}, {}, 0.0
    for n in n_trains:
        rows = [rec for rec in saved.values() if rec["n_train"] == n]
        if rows:
            lands[n], metrics[n] = assemble_landscape(args, task, n, rows)
            seconds += sum(rec["seconds"] for rec in rows)
    return lands, metrics, seconds, missing


# ----------------------------------------------------------------------------------------------
# landscape post-processing: smoothing, gradients, interpolation (numpy only)
# ----------------------------------------------------------------------------------------------
def smooth(z, sigma):
    """Gaussian filter in grid cells (as the notebook's scipy gaussian_filter(sigma=1)), edges clamped."""
    if sigma <= 0:
        return z
    r = int(math.ceil(3 * sigma))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        zp = np.pad(z, [(r, r) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        z = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), axis, zp)
    return z


def bilinear(z, xs, ys, x, y):
    """z[i, j] given at (xs[j], ys[i]) -> value at (x, y), clamped to the grid."""
    x = min(max(x, xs[0]), xs[-1])
    y = min(max(y, ys[0]), ys[-1])
    j = min(int(np.searchsorted(xs, x, side="right")) - 1, len(xs) - 2)
    i = min(int(np.searchsorted(ys, y, side="right")) - 1, len(ys) - 2)
    tx = (x - xs[j]) / (xs[j + 1] - xs[j])
    ty = (y - ys[i]) / (ys[i + 1] - ys[i])
    return ((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i, j + 1]
            + (1 - tx) * ty * z[i + 1, j] + tx * ty * z[i + 1, j + 1])


def eq6_field(land, args, sigma):
    """Eq. 6 on the grid: the (smoothed) reduced train loss and its velocity field
    dw/dt = -(dl/dw + gamma w), dm/dt = -(eta_R/eta_D) dl/dm (time in units of 1/eta_D).
    Grid columns with alpha = 0 are dropped (w = 0 has no direction)."""
    alphas, ms = np.array(land["alphas"]), np.array(land["ms"])
    keep = alphas > 0
    ws = alphas[keep] * land["w0"]
    z = smooth(np.array(land[f"train_loss_{args.record}"])[:, keep], sigma)
    dz_dm, dz_dw = np.gradient(z, ms, ws)
    vw = -(dz_dw + args.wd * ws[None, :])
    vm = -args.eta_ratio * dz_dm
    return ws, ms, z, vw, vm


# ----------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------
def heatmap(ax, land, kind, record, title, *, contour=None, vmin=0.0, vmax=None, gamma=0.25):
    """The paper's style: Reds, m = 0 at the top, a power colour scale that resolves small losses. Draws
    land[<kind>_loss_<record>] and the contour of the train loss of the same record."""
    from matplotlib.colors import PowerNorm
    xs = np.array(land["alphas"])
    z = np.array(land[f"{kind}_loss_{record}"], dtype=float)
    vmin = np.nanmin(z) if vmin is None else vmin
    vmax = vmax or np.nanmax(z)
    im = ax.pcolormesh(xs, land["ms"], z, shading="nearest", cmap="Reds", norm=PowerNorm(gamma, vmin, vmax))
    ax.figure.colorbar(im, ax=ax)
    if contour is not None:
        train = np.array(land[f"train_loss_{record}"], dtype=float)
        if np.nanmin(train) < contour < np.nanmax(train):
            cs = ax.contour(xs, land["ms"], train, levels=[contour], colors="gold", linestyles="--", linewidths=1.5)
            ax.clabel(cs, fmt=f"train {contour:g}", fontsize=7)
    if "star" in land:
        ax.plot(land["star"]["alpha"], land["star"]["m"], "*", color="green", ms=16, mec="k")
    ax.set_ylim(max(land["ms"]), min(land["ms"]))  # m = 0 on top, as Fig. 6
    ax.set_xlabel(f"relative weight norm alpha = w / w0  (w0 = {land['w0']:.1f})")
    ax.set_ylabel("representation messiness m")
    ax.set_title(title)


def plot_landscape(land, args, path, which):
    land = dict(land)
    set_star(land, which)  # the star of the losses shown
    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    heatmap(axes[0], land, "train", which, f"training loss ({which}, N={land['n_train']})",
            contour=args.contour, vmax=1.0)
    if np.isfinite(np.array(land[f"test_loss_{which}"], dtype=float)).any():
        heatmap(axes[1], land, "test", which, f"test loss ({which})", contour=args.contour, vmin=None, gamma=0.5)
    fig.tight_layout()
    common.savefig(fig, path)


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def landscape_mode(args, out, device, dtype):
    """Fig. 6a,b. A grid point (file) is one row: one m, all alphas; --shard i/n splits the rows."""
    got = grid_landscapes(args, out, [args.n_train], device=device, dtype=dtype, desc="landscape")
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    lands, metrics, wall, missing = got
    land = lands[args.n_train]
    common.write_json(out / "metrics.json", metrics[args.n_train])
    n = len(metrics[args.n_train]["alpha"])  # grid points trained (all, unless rows are missing)
    summary = dict(landscape=land, record=args.record, contour=args.contour, wall_seconds=wall, missing=missing,
                   grid_points=n, steps=args.steps, point_steps_per_second=n * args.steps / wall)
    summary.update(_region_check(land, args.contour, args.record))
    common.write_json(out / "summary.json", summary)
    other = "best" if args.record == "final" else "final"
    plot_landscape(land, args, out / "landscape.png", args.record)
    plot_landscape(land, args, out / f"landscape_{other}.png", other)
    print(f"grid {n} points x {args.steps} steps in {wall:.0f} s; star at {land.get('star')}")
    return summary


def _region_check(land, contour, record):
    """Numbers behind Fig. 6a,b: train loss at small vs large alpha, and how much train and test loss
    vary along m (averaged over the region II columns)."""
    tr = np.array(land[f"train_loss_{record}"], dtype=float)
    te = np.array(land[f"test_loss_{record}"], dtype=float)
    alphas = np.array(land["alphas"])
    big = tr.max(0) < contour  # columns entirely in region II
    out = dict(train_loss_small_alpha=float(np.nanmean(tr[:, 1 if alphas[0] == 0 else 0])),
               train_loss_large_alpha=float(np.nanmean(tr[:, -1])),
               region2_alpha_min=float(alphas[big].min()) if big.any() else None)
    if big.any() and np.isfinite(te).any():
        out.update(region2_train_loss_m_range=float(np.ptp(tr[:, big].mean(1))),
                   region2_test_loss_m_range=float(np.ptp(te[:, big].mean(1))))
    return out


def _load_or_compute(args, out, device, dtype):
    if args.landscape_from:
        land = saved_landscape(args)
        set_star(land, args.record)
        return land
    land, metrics, err = compute_landscape(args, args.n_train, device=device, dtype=dtype)
    common.write_json(out / "metrics.json", metrics)
    if err:
        raise err
    return land


def gradient_mode(args, out, device, dtype):
    """Fig. 6d: the fine grid near the boundary, with the negative gradient of the (smoothed) reduced
    train loss, plus the weight-decay term 1/2 gamma w^2 of Eq. 6 when --wd > 0, drawn as arrows in
    the displayed (log w, m) plane (directions only: magnitudes span decades across the boundary)."""
    t0 = time.time()
    land = _load_or_compute(args, out, device, dtype)
    alphas, ms = np.array(land["alphas"]), np.array(land["ms"])
    keep = alphas > 0
    ws = alphas[keep] * land["w0"]
    lw = np.log(ws)
    z = smooth(np.array(land[f"train_loss_{args.record}"], dtype=float)[:, keep], args.smooth)
    dz_dm, dz_dlw = np.gradient(z, ms, lw)
    g_lw = -(dz_dlw + args.wd * ws[None, :] ** 2)  # d(1/2 gamma w^2)/d(log w) = gamma w^2
    g_m = -dz_dm
    plt = common.plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    im = ax.pcolormesh(lw, ms, z, shading="nearest", cmap="Reds", vmin=0, vmax=min(1.0, np.nanmax(z)))
    fig.colorbar(im, ax=ax, label="reduced train loss (smoothed)")
    levels = [lv for lv in (0.001, 0.01, 0.03, 0.1) if np.nanmin(z) < lv < np.nanmax(z)]
    if levels:
        cs = ax.contour(lw, ms, z, levels=levels, colors="k", linestyles="--", linewidths=1)
        ax.clabel(cs, fmt="%g", fontsize=7)
    # The gradient in axes-normalised coordinates (x / width, y / height), so arrows are perpendicular
    # to the contours as drawn; converted back to data units for quiver.
    sx, sy = np.ptp(lw), np.ptp(ms)
    u, v = g_lw * sx, g_m * sy
    norm = np.hypot(u, v) + 1e-30
    step = max(1, len(ms) // 10)
    near = (z > 0.1 * args.contour) & (z < 10 * args.contour)  # arrows near the boundary, as Fig. 6d
    sl = (slice(None, None, step), slice(None, None, step))
    Lw, Mm = np.meshgrid(lw, ms)
    mask = near[sl]
    ax.quiver(Lw[sl][mask], Mm[sl][mask], (u / norm * sx)[sl][mask], (v / norm * sy)[sl][mask],
              angles="xy", scale_units="xy", scale=12, width=0.005)
    if "star" in land and land["star"]["alpha"] * land["w0"] >= ws[0]:
        ax.plot(math.log(land["star"]["alpha"] * land["w0"]), land["star"]["m"], "*", color="green", ms=14, mec="k")
    ticks = np.linspace(lw[0], lw[-1], 4)
    ax.set_xticks(ticks, [f"{math.exp(t) / land['w0']:.2f}" for t in ticks])
    ax.set_ylim(ms[-1], ms[0])
    ax.set_xlabel("relative weight norm alpha = w/w0 (log axis)")
    ax.set_ylabel("representation messiness m")
    ax.set_title(f"training loss (N={land['n_train']}), -gradient" + (f" + wd {args.wd:g}" if args.wd else ""))
    common.savefig(fig, out / "gradient.png")
    # Fig. 6d's claim in numbers: near the boundary the negative gradient points to larger w, smaller m.
    summary = dict(landscape=land, record=args.record, wd=args.wd, smooth=args.smooth,
                   frac_arrows_to_larger_w=float((g_lw[near] > 0).mean()) if near.any() else None,
                   frac_arrows_to_smaller_m=float((g_m[near] < 0).mean()) if near.any() else None,
                   wall_seconds=time.time() - t0)
    common.write_json(out / "summary.json", summary)
    print(f"near the boundary: {summary['frac_arrows_to_larger_w']} of arrows point to larger w, "
          f"{summary['frac_arrows_to_smaller_m']} to smaller m")
    return summary


def integrate_eq6(land, args, start, max_steps=200_000):
    """Euler steps of Eq. 6 on the smoothed, bilinearly interpolated landscape; each step moves at most
    1/20 of a grid cell. Stops at a fixed point (or when it moved less than a grid cell in 1000 steps)
    or when w leaves the grid."""
    ws, ms, z, vw, vm = eq6_field(land, args, args.smooth)
    te = smooth(np.array(land[f"test_loss_{args.record}"], dtype=float)[:, np.array(land["alphas"]) > 0], args.smooth)
    dw, dm = (ws[1] - ws[0]) / 20, (ms[1] - ms[0]) / 20
    w, m, t = start[0] * land["w0"], start[1], 0.0
    path = dict(t=[], w=[], alpha=[], m=[], train_loss=[], test_loss=[])

    def record():
        for k, v in zip(path, (t, w, w / land["w0"], m, bilinear(z, ws, ms, w, m), bilinear(te, ws, ms, w, m))):
            path[k].append(float(v))

    mark = (w, m)
    for it in range(max_steps):
        if it % 20 == 0:
            record()
        a, b = bilinear(vw, ws, ms, w, m), bilinear(vm, ws, ms, w, m)
        if (m <= ms[0] and b < 0) or (m >= ms[-1] and b > 0):
            b = 0.0  # pushing into the m = 0 (or m = max) wall: only the motion along it remains
        speed = max(abs(a) / dw, abs(b) / dm)
        if speed < 1e-9:  # a fixed point of Eq. 6 (train-loss pull balances weight decay)
            break
        dt = 1.0 / speed
        w_new = w + a * dt
        if not ws[0] <= w_new <= ws[-1]:
            break  # the path leaves the computed grid
        # m >= 0 is a wall (m = 0 is the linear representation): the path slides along it in w
        w, m, t = w_new, min(max(m + b * dt, ms[0]), ms[-1]), t + dt
        if it % 1000 == 999:  # settled: less than one grid step moved in the last 1000 steps
            if abs(w - mark[0]) < 20 * dw and abs(m - mark[1]) < 20 * dm:
                break
            mark = (w, m)
    if path["t"][-1] != t:
        record()
    return path


def trajectory_mode(args, out, device, dtype):
    """Fig. 6c: the reduced trajectory (Table 1, middle row) from A = --start, and the losses along it."""
    t0 = time.time()
    land = _load_or_compute(args, out, device, dtype)
    path = integrate_eq6(land, args, args.start_am)
    common.write_json(out / "path.json", path)
    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    heatmap(axes[0], land, "train", args.record, "training loss + reduced trajectory", contour=args.contour, vmax=1.0)
    heatmap(axes[1], land, "test", args.record, "test loss + reduced trajectory", contour=args.contour, vmin=None,
            gamma=0.5)
    for ax in axes[:2]:
        ax.plot(path["alpha"], path["m"], color="purple", lw=2.5)
        ax.plot(path["alpha"][0], path["m"][0], "ko")
        ax.annotate("A", (path["alpha"][0], path["m"][0]), textcoords="offset points", xytext=(5, 5))
    t = np.maximum(np.array(path["t"]), 1e-3)
    axes[2].plot(t, path["train_loss"], label="train (reduced)")
    axes[2].plot(t, path["test_loss"], label="test (reduced)")
    axes[2].set_xscale("log")
    axes[2].set_yscale("log")
    axes[2].set_xlabel("time (units of 1/eta_D)")
    axes[2].set_ylabel("loss along the path")
    axes[2].set_title(f"losses along the path (gamma = {args.wd:g})")
    axes[2].legend()
    fig.tight_layout()
    common.savefig(fig, out / "trajectory.png")
    end = dict(alpha=path["alpha"][-1], m=path["m"][-1], train_loss=path["train_loss"][-1],
               test_loss=path["test_loss"][-1])
    summary = dict(landscape=land, record=args.record, start=dict(alpha=args.start_am[0], m=args.start_am[1]),
                   wd=args.wd, eta_ratio=args.eta_ratio, end=end, path_points=len(path["t"]),
                   path_test_loss=path["test_loss"], path_train_loss=path["train_loss"],  # for Fig. 6c's descents
                   wall_seconds=time.time() - t0)
    common.write_json(out / "summary.json", summary)
    print(f"path from {summary['start']} ends at {end}")
    return summary


def n_sweep_mode(args, out, device, dtype):
    """Fig. 6e: the fine landscape for each training size, one batched ensemble per size; the contour
    train loss = --contour (0.02) of each size on one plot, with the N = --n-train star. A grid point
    (file) is one (N, m) row, all alphas; --shard i/n splits them."""
    got = grid_landscapes(args, out, args.n_train_list, device=device, dtype=dtype, desc="n-sweep")
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    by_n, metrics, wall, missing = got
    lands = list(by_n.values())
    common.write_json(out / "metrics.json", dict(members=[dict(n_train=n, **m) for n, m in metrics.items()]))
    plt = common.plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(lands)))
    contour_alpha, smoothed = {}, {}
    for land, c in zip(lands, colors):
        tr = smoothed[land["n_train"]] = smooth(np.array(land[f"train_loss_{args.record}"], dtype=float), args.smooth)
        if tr.min() < args.contour < tr.max():
            cs = ax.contour(land["alphas"], land["ms"], tr, levels=[args.contour], colors=[c], linestyles="--")
            ax.clabel(cs, fmt=f"N={land['n_train']}", fontsize=8)
        # where the contour crosses m = 0 and m = max: the boundary's position and tilt (theta)
        contour_alpha[land["n_train"]] = [_crossing(land["alphas"], row, args.contour) for row in (tr[0], tr[-1])]
    # One star for all N, as the authors' Fig. 6e: the N = --n-train one (they placed it by hand there).
    # "Connects to the star" is read as the distance from the star to each N's drawn contour.
    star = next((la["star"] for la in lands if la["n_train"] == args.n_train and "star" in la), None)
    distance = {}
    if star:
        ax.plot(star["alpha"], star["m"], "*", color="green", ms=16, mec="k")
        distance = {str(n): contour_distance(lands[0]["alphas"], lands[0]["ms"], tr, args.contour,
                                             (star["alpha"], star["m"])) for n, tr in smoothed.items()}
    ax.set_ylim(lands[0]["ms"][-1], lands[0]["ms"][0])
    ax.set_xlim(lands[0]["alphas"][0], lands[0]["alphas"][-1])
    ax.set_xlabel("relative weight norm alpha = w / w0")
    ax.set_ylabel("representation messiness m")
    ax.set_title(f"training loss = {args.contour:g} contour")
    common.savefig(fig, out / "n_sweep.png")
    summary = dict(landscapes=lands, record=args.record, contour=args.contour, star=star,
                   contour_distance_to_star=distance,
                   contour_alpha_at_m_min_max={str(k): v for k, v in contour_alpha.items()},
                   missing=missing, wall_seconds=wall)
    common.write_json(out / "summary.json", summary)
    print(f"contour alpha at (m_min, m_max) per N: {contour_alpha}")
    return summary


def contour_distance(xs, ys, z, level, point, upsample=10):
    """Distance from point (x, y) to the level contour of z[i, j] (at xs[j], ys[i]), in units of the grid's
    sides. z is interpolated bilinearly onto a grid `upsample` times finer (as the authors' plots do) and
    the contour is where it crosses level along the fine grid's edges. None if it never does."""
    u, v = ((np.asarray(a, dtype=float) - a[0]) / (a[-1] - a[0]) for a in (xs, ys))
    fu, fv = (np.linspace(0, 1, upsample * (len(a) - 1) + 1) for a in (u, v))
    z = np.array([np.interp(fu, u, row) for row in np.asarray(z, dtype=float)])
    z = np.array([np.interp(fv, v, col) for col in z.T]).T
    px, py = (point[0] - xs[0]) / (xs[-1] - xs[0]), (point[1] - ys[0]) / (ys[-1] - ys[0])
    pts = []
    for a, b, x0, x1, y0, y1 in ((z[:, :-1], z[:, 1:], fu[:-1], fu[1:], fv[:, None], fv[:, None]),   # along x
                                 (z[:-1], z[1:], fu[None], fu[None], fv[:-1, None], fv[1:, None])):  # along y
        cross = ((a - level) * (b - level) <= 0) & (a != b)
        t = np.where(cross, (level - a) / np.where(a != b, b - a, 1), 0)
        x, y = np.broadcast_to(x0 + t * (x1 - x0), t.shape), np.broadcast_to(y0 + t * (y1 - y0), t.shape)
        pts.append(np.hypot(x[cross] - px, y[cross] - py))
    d = np.concatenate(pts)
    return float(d.min()) if d.size else None


def _crossing(xs, row, level):
    """First x where row (decreasing in x, roughly) drops below level, linearly interpolated; None if never."""
    for a in range(len(row) - 1):
        if row[a] >= level > row[a + 1]:
            return float(xs[a] + (xs[a + 1] - xs[a]) * (row[a] - level) / (row[a] - row[a + 1]))
    return None


# ----------------------------------------------------------------------------------------------
# full trajectory (Table 1, last row): representation and decoder both trainable, weight decay
# ----------------------------------------------------------------------------------------------
def messiness(R, task, m_grid=np.linspace(0, 1, 201)):
    """m estimated from a learned representation R [p, d]. Least-squares fit of the best straight,
    equally spaced line, E_k ~ c + k u (any direction u, any offset c); f = |residual|_F / |R - mean|_F
    is 0 for a perfect line and grows with disorder; it is invariant to rotation, scale and offset.
    f is mapped to m by the same measure on the reference family R(m) = m R_random + (1-m) R_linear of
    this seed (monotone interpolation), so m_hat = m exactly for any representation of Eq. 4."""
    def frac(X):
        k = np.arange(len(X), dtype=float)
        A = np.stack([np.ones_like(k), k], 1)
        coef, *_ = np.linalg.lstsq(A, X, rcond=None)
        res = np.linalg.norm(X - A @ coef)
        tot = np.linalg.norm(X - X.mean(0))
        return res / tot if tot > 0 else 0.0
    line, rand = task["line"].cpu().double().numpy(), task["rand"].cpu().double().numpy()
    ref = np.maximum.accumulate([frac(m * rand + (1 - m) * line) for m in m_grid])  # monotone for inversion
    return float(np.interp(frac(np.asarray(R, dtype=float)), ref, m_grid))


def run_mode(args, out, device, dtype):
    """Full trajectory (Table 1, last row): R starts at R(--m-init), the decoder at --alpha * w0; Adam on
    R (--lr-repr, no decay as in Eq. 6), AdamW on the decoder (--run-lr, --wd). The (w, m_hat) path is
    drawn on a landscape when --landscape-from is given; R's scale is free here (frozen in the
    landscape), so the overlay is a guide, not an exact position."""
    t0 = time.time()
    task = make_task(args, device, dtype)
    tr_idx, te_idx = split(task, args.n_train)
    common.require(len(te_idx) > 0, "run mode needs a test set: --n-train must be below p(p+1)/2.")
    R = representation(task, torch.tensor([args.m_init], device=device, dtype=dtype)).clone().requires_grad_()
    params = [t[None].clone().requires_grad_() for t in decoder_params(args, device, dtype)]
    w0, _ = common.scale_by_alpha_(params, args.alpha)
    # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
    opt = torch.optim.Adam([{"params": params, "lr": args.run_lr}, {"params": [R], "lr": args.lr_repr}],
                           betas=(0.9, args.beta2), weight_decay=0.0, capturable=device.type == "cuda")

    def train_step():  # on CUDA one graph replay (common.graph_step), on CPU as written
        loss, _ = loss_acc(args, task, params, R, tr_idx)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        common.decay_weights_(params, args.run_lr, args.wd)  # AdamW's decoupled decay on the decoder
        common.decay_weights_([R], args.lr_repr, args.wd_repr)
        opt.step()
    run_step = common.graph_step(train_step, device)
    eval_at = set(common.log_steps(args.steps, args.eval_points))
    keys = ("train_loss", "test_loss", "train_acc", "test_acc", "w", "m")
    m, steps = {k: [] for k in keys}, []
    bar = common.progress(args.steps, f"alpha={args.alpha:g} wd={args.wd:g}")
    err = None
    for step in range(args.steps + 1):
        if step in eval_at:
            with torch.no_grad():
                trl, tra = loss_acc(args, task, params, R, tr_idx)
                tel, tea = loss_acc(args, task, params, R, te_idx)
                row = torch.stack([t.double() for t in (trl[0], tel[0], tra[0], tea[0],
                                                        common.global_norm(params))]).tolist()
            err = common.nonfinite(row[:2], step, hint="Lower --run-lr or --alpha, or use --dtype float64.")
            if err:
                break
            row.append(messiness(R[0].detach().cpu().numpy(), task))
            steps.append(step)
            for k, v in zip(keys, row):
                m[k].append(v)
            bar.set_postfix_str(f"train {row[2]:.2f} test {row[3]:.2f} | w {row[4]:.1f} m {row[5]:.3f}")
        if step == args.steps:
            break
        run_step()
        bar.update()
    bar.close()
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, **m, "w0": w0,
                                             "representation_final": R[0].detach().cpu().tolist()})
    if err:
        raise err
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    summary.update(alpha=args.alpha, wd=args.wd, wd_repr=args.wd_repr, w0=w0, m_init=m["m"][0], m_final=m["m"][-1],
                   test_acc_ideal=ideal_test_acc(task, args.n_train),
                   wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    common.plot_curves(axes[0], steps, m, title=f"alpha={args.alpha:g}, wd={args.wd:g}: accuracy")
    common.plot_curves(axes[1], steps, m, acc=False, w=False, title="MSE")
    ax2 = axes[1].twinx()
    ax2.plot(np.maximum(steps, 1), m["m"], color="purple", ls=":", label="m (estimated)")
    ax2.set_ylabel("estimated messiness m")
    land = _load_or_compute(args, out, device, dtype) if args.landscape_from else None
    ax = axes[2]
    if land:
        heatmap(ax, land, "train", args.record, "(w, m) over training, on the train landscape", contour=args.contour,
                vmax=1.0)
    else:
        ax.set_ylim(1, 0)
        ax.set_xlabel("relative weight norm alpha = w / w0")
        ax.set_ylabel("estimated messiness m")
        ax.set_title("(w, m) position over training")
    sc = ax.scatter(np.array(m["w"]) / w0, m["m"], c=np.log10(np.maximum(steps, 1)), cmap="viridis", s=12, zorder=3)
    ax.plot(np.array(m["w"]) / w0, m["m"], color="purple", lw=1, zorder=2)
    fig.colorbar(sc, ax=ax, label="log10 step")
    fig.tight_layout()
    common.savefig(fig, out / "curves.png")
    print(f"train acc {args.acc_threshold:.0%} at step {summary['train_acc_step']}, test at {summary['test_acc_step']}")
    return summary


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    if device.type == "cpu":
        keep_freed_memory()
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    mode = {"run": run_mode, "landscape": landscape_mode, "gradient": gradient_mode,
            "trajectory": trajectory_mode, "n-sweep": n_sweep_mode}[args.mode]
    summary = mode(args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
