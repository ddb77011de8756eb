"""Representation-vs-weight-norm landscapes of toy addition (Omnigrok, Sec. 5.1, Fig. 6, App. D, Table 1).

Inputs 0 <= i <= j <= p-1 (p = 10: 55 pairs), output k = i + j, each output symbol a fixed random 30-D target Y_k.
A decoder MLP maps E_i + E_j (the representation R: one embedding per digit) to 30-D; loss = MSE to Y_k; correct
when the nearest target is Y_k. R is Eq. 4, R = m R_random + (1 - m) R_linear (m: the "messiness"); the decoder's
norm is w = alpha * w0. --setup code (default: the authors' notebook, which made Fig. 6) or paper (App. D's text);
docs/NOTES.md says how the two differ and why the defaults are what they are.

    python addition_landscape.py                     # run (Table 1, last row): R and decoder trainable
    python addition_landscape.py --mode landscape    # Fig. 6a,b: train/test loss over (alpha, m), contour 0.05
    python addition_landscape.py --mode trajectory --landscape-from DIR   # Fig. 6c: Eq. 6 on a landscape run
    python addition_landscape.py --mode gradient --landscape-from DIR     # Fig. 6d: -gradient, an n-sweep's N = 45
    python addition_landscape.py --mode n-sweep      # Fig. 6e: the train-loss contour 0.02 for N = 25, 35, 45, 55
Without --landscape-from those two train their own grid. Each grid is one batched ensemble; the grid modes save a
file per landscape row (one (N, m), all alphas) in <out>/points/ and take --shard i/n and --merge.

Expected (README.md "Results measured here", docs/reproduce-quick/REPORT.md): the train loss is high at small alpha
(region I) and low at large alpha for every m (region II), where the test loss depends on m and is lowest near m = 0
(the star); the reduced trajectory from A = (8, 0.15) goes to smaller w, then along the boundary to the star; in run
mode the test accuracy follows the train accuracy after ~1.6x the steps; the n-sweep's contour moves right as N grows.
"""
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

import common

MODES = ["run", "landscape", "gradient", "trajectory", "n-sweep"]
SETUPS = {  # every value is also its own flag (docs/NOTES.md: the two setups)
    "code": dict(embed_dim=2, activation="leaky_relu", repr_style="code", lr=1e-2, beta2=0.99,
                 lr_decay=0.2, lr_decay_every=2000, landscape_steps=6000),
    "paper": dict(embed_dim=1, activation="relu", repr_style="paper", lr=1e-3, beta2=0.999,
                  lr_decay=1.0, lr_decay_every=0, landscape_steps=10_000),
}
# Grids of the authors' notebook: coarse (Fig. 6a,b) and fine (Fig. 6d,e).
COARSE = dict(alpha=(0.0, 9.0), m=(0.0, 0.2))
FINE = dict(alpha=(2.5, 4.0), m=(0.0, 0.1))
CURVES = ("train_loss", "test_loss", "train_acc", "test_acc", "w")


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    # acc 0.9: with seed 58 and N = 45 one of the 10 test pairs (9 + 9 = 18) has an output symbol that is in no
    # training pair, so 90% is the best reachable test accuracy (summary.json: test_acc_ideal).
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=0.9, steps_help="optimizer steps per grid point "
                             "(code setup 6000, paper 1e4; the notebook 15000), or of the run in run mode (1e4)")
    p.set_defaults(seed=58)  # the authors' notebook
    add = p.add_argument
    add("--setup", default="code", choices=list(SETUPS),
        help="defaults of the flags below that are left unset: the authors' notebook or the paper's App. D")
    add("--p", type=int, default=10, help="base of the addition: inputs 0..p-1")
    add("--labels", default="sum", choices=["sum", "mod"], help="output symbol: i + j (paper) or (i + j) mod p (notebook)")
    add("--n-train", type=int, default=45, help="training pairs out of the p(p+1)/2 pairs i <= j")
    add("--out-dim", type=int, default=30, help="dimension of the random target vectors")
    add("--width", type=int, default=200, help="decoder hidden width (two hidden layers)")
    add("--embed-dim", type=int, help="embedding dimension (code: 2, paper: 1)")
    add("--activation", choices=["relu", "leaky_relu"], help="decoder activation (code: LeakyReLU(0.2), paper: ReLU)")
    add("--repr-style", choices=["code", "paper"],
        help="R_linear/R_random: code = noisy line in [-1,1] / U(-1,1); paper = E_k = k / N(0,1)")
    add("--lr", type=float, help="decoder Adam learning rate (code: 1e-2, paper: 1e-3)")
    add("--beta2", type=float, help="Adam beta2 (code: 0.99, paper: torch default 0.999)")
    add("--lr-decay", type=float, help="lr factor applied every --lr-decay-every steps (code: 0.2, paper: 1)")
    add("--lr-decay-every", type=int, help="steps between lr decays (0: never; code: 2000, paper: 0)")
    add("--grid-points", type=int, default=21, help="points per axis of each grid (authors: 21)")
    add("--alpha-range", help="'lo,hi' of alpha = w/w0 (default: 0,9 for landscape/trajectory, 2.5,4 for gradient/n-sweep)")
    add("--m-range", help="'lo,hi' of m (default: 0,0.2 for landscape/trajectory, 0,0.1 for gradient/n-sweep)")
    add("--n-trains", default="25,35,45,55", help="n-sweep mode: training sizes (Fig. 6e)")
    add("--contour", type=float, help="train-loss level of the I/II boundary (default 0.05 as Fig. 6a; n-sweep: 0.02 as 6e)")
    add("--record", default="final", choices=["final", "best"],
        help="grid modes: the loss of a grid point that analyses and plots use: final (after the last step, as the "
             "authors' notebook) or best (the minimum over training); summary.json holds both")
    add("--chunk", type=int, default=0, help="grid points per batched ensemble (0: the whole grid)")
    common.add_shard_arg(p, "landscape, n-sweep (a point = one row of a landscape: one (N, m), all alphas)")
    add("--landscape-from", help="gradient/trajectory/run: the landscape of an earlier run dir of this script")
    add("--wd", type=float, help="weight decay gamma: Eq. 6 in gradient/trajectory (default 0 / 3e-4: the path ends "
                                 "at the star), AdamW in run (default 0.3)")
    add("--eta-ratio", type=float, default=1e-3, help="trajectory: eta_R / eta_D of Eq. 6 (docs/NOTES.md: why not 1)")
    add("--start", default="8,0.15", help="trajectory mode: start point A as 'alpha,m'")
    add("--smooth", type=float, default=1.0, help="Gaussian smoothing (grid cells) of a landscape before its gradient")
    add("--alpha", type=float, default=6.0, help="run mode: decoder init scale alpha")
    add("--m-init", type=float, default=0.15, help="run mode: messiness of the initial representation")
    add("--lr-repr", type=float, default=3e-3, help="run mode: Adam learning rate of the representation")
    add("--run-lr", type=float, default=1e-3, help="run mode: AdamW learning rate of the decoder")
    add("--wd-repr", type=float, default=0.0, help="run mode: weight decay of the representation (Eq. 6: none)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    for k, v in SETUPS[args.setup].items():
        if getattr(args, k, 0) is None:
            setattr(args, k, v)
    if args.steps is None:
        args.steps = 10_000 if args.mode == "run" else SETUPS[args.setup]["landscape_steps"]
    if args.wd is None:
        args.wd = {"run": 0.3, "trajectory": 3e-4}.get(args.mode, 0.0)
    if args.contour is None:
        args.contour = 0.02 if args.mode == "n-sweep" else 0.05
    grid = FINE if args.mode in ("gradient", "n-sweep") else COARSE
    args.alpha_lohi = _pair(args.alpha_range, "--alpha-range", grid["alpha"])
    args.m_lohi = _pair(args.m_range, "--m-range", grid["m"])
    args.start_am = _pair(args.start, "--start", None)
    args.n_train_list = common.parse_ints(args.n_trains, "--n-trains")
    args.shard_pair = common.parse_shard(args.shard)

    common.check_standard_args(args)
    n_pairs = args.p * (args.p + 1) // 2
    common.require(2 <= args.p <= 1000, f"--p must be in 2..1000 (p(p+1)/2 pairs), got {args.p}.")
    common.require(0 < args.n_train <= n_pairs, f"--n-train must be in 1..{n_pairs} (pairs i <= j), got {args.n_train}.")
    common.require(all(0 < n <= n_pairs for n in args.n_train_list), f"--n-trains must be in 1..{n_pairs}.")
    common.positive(args, "out_dim", "width", "embed_dim", "lr", "run_lr", "contour", "eta_ratio", "alpha")
    common.nonnegative(args, "lr_repr", "wd", "wd_repr", "smooth")
    common.require(0 < args.beta2 < 1, f"--beta2 must be in (0, 1), got {args.beta2}.")
    common.require(0 < args.lr_decay <= 1, f"--lr-decay must be in (0, 1], got {args.lr_decay}.")
    common.require(args.grid_points >= 2, f"--grid-points must be at least 2, got {args.grid_points}.")
    common.require(0 <= args.alpha_lohi[0] < args.alpha_lohi[1], "--alpha-range must be 'lo,hi' with 0 <= lo < hi.")
    common.require(0 <= args.m_lohi[0] < args.m_lohi[1] <= 1, "--m-range must be 'lo,hi' with 0 <= lo < hi <= 1.")
    common.require(0 <= args.m_init <= 1, f"--m-init must be in [0, 1], got {args.m_init}.")
    if args.landscape_from:
        saved_landscape(args)  # refused here, before anything is written
    return args


def saved_landscape(args):
    """--landscape-from's landscape for --n-train (an n-sweep holds one per N), its star set for --record."""
    path = Path(args.landscape_from)
    try:
        config, saved = (json.loads((path / f).read_text()) for f in ("config.json", "summary.json"))
    except (OSError, ValueError):
        raise common.UserError(f"--landscape-from: {path} holds no finished run (config.json and summary.json); give "
                               "a landscape or n-sweep run folder of this script.") from None
    script, mode = config.get("script"), config.get("args", {}).get("mode")
    common.require(script == "addition_landscape" and mode in MODES[1:], f"--landscape-from: {path} is a {script} "
                   f"--mode {mode} run, not an addition_landscape landscape, n-sweep, gradient or trajectory run.")
    land = saved.get("landscape") or next((la for la in saved.get("landscapes", []) if la["n_train"] == args.n_train),
                                          None)
    common.require(land is not None, f"--landscape-from: {path} holds no landscape for N = {args.n_train}.")
    set_star(land, args.record)
    return land


def _pair(text, name, default):
    v = default if text is None else tuple(common.parse_floats(text, name))
    common.require(v is None or len(v) == 2, f"{name} must be two comma-separated numbers, got {text!r}.")
    return v


def grid_axes(args):
    return np.linspace(*args.alpha_lohi, args.grid_points), np.linspace(*args.m_lohi, args.grid_points)


# ----------------------------------------------------------------------------------------------
# data: pairs, targets, the two reference representations; the batched decoder
# ----------------------------------------------------------------------------------------------
def make_task(args, device, dtype):
    """Everything random about the task comes from one generator seeded with --seed, so the split (nested: the
    first N of one permutation), targets and representations are the same for every grid point and every N, as
    in the notebook (one seed for all)."""
    p, d, g = args.p, args.embed_dim, torch.Generator().manual_seed(args.seed)
    i, j = torch.triu_indices(p, p)  # all pairs i <= j, in the notebook's order
    k = (i + j) % p if args.labels == "mod" else i + j
    targets = torch.randn(p if args.labels == "mod" else 2 * p - 1, args.out_dim, generator=g)
    perm = torch.randperm(len(i), generator=g)
    if args.repr_style == "code":  # the notebook: a line along axis 0, 0.3 x U(-1, 1) on the others; random U(-1, 1)
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
    """Fraction of test pairs whose output symbol occurs in some training pair: no decoder can name a target vector
    it never saw, so this bounds the test accuracy (the notebook's acc_ideal_test, simplified)."""
    tr, te = split(task, n_train)
    seen = set(task["k"][tr].tolist())
    return sum(k in seen for k in task["k"][te].tolist()) / max(len(te), 1)


def representation(task, m):
    """Eq. 4 for a vector of messiness values m [E] -> R [E, p, d]."""
    m = m.view(-1, 1, 1)
    return m * task["rand"] + (1 - m) * task["line"]


def decoder_params(args, device, dtype):
    """[W1, b1, W2, b2, W3, b3] of d-width-width-out nn.Linear layers with their default init, seeded with --seed:
    every ensemble member starts exactly where the single run with that seed starts."""
    torch.manual_seed(args.seed)
    dims = [args.embed_dim, args.width, args.width, args.out_dim]
    layers = [torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:])]
    return [t.detach().to(device, dtype) for layer in layers for t in (layer.weight, layer.bias)]


def decode(args, params, x):
    """x [E, N, d] (E_i + E_j for each pair) -> [E, N, out_dim], parameters stacked along a leading dim E."""
    act = (lambda h: torch.nn.functional.leaky_relu(h, 0.2)) if args.activation == "leaky_relu" else torch.relu
    W1, b1, W2, b2, W3, b3 = params
    h = act(torch.baddbmm(b1[:, None], x, W1.transpose(1, 2)))
    h = act(torch.baddbmm(b2[:, None], h, W2.transpose(1, 2)))
    return torch.baddbmm(b3[:, None], h, W3.transpose(1, 2))


def loss_acc(args, task, params, R, idx):
    """MSE and nearest-target accuracy per member ([E] each) on the pairs idx, representation R [E, p, d]."""
    out = decode(args, params, R[:, task["i"][idx]] + R[:, task["j"][idx]])
    loss = (out - task["targets"][task["k"][idx]]).pow(2).mean((1, 2))
    pred = torch.cdist(out, task["targets"].expand(out.shape[0], -1, -1)).argmin(-1)
    return loss, (pred == task["k"][idx]).double().mean(1)  # float64: 9/10 must compare >= 0.9


def keep_freed_memory():
    """glibc hands blocks above 32 MB (a 441-model 200x200 weight or gradient is 70 MB) back to the OS when freed,
    so every training step page-faults them in again. Higher mmap/trim thresholds keep them in the heap: 3x fewer
    page faults, ~20% faster grid steps on CPU (measured). Linux/glibc only; elsewhere nothing happens."""
    import ctypes
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD: 1 GiB
        libc.mallopt(-1, (1 << 31) - 1)  # M_TRIM_THRESHOLD: never trim the heap top
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------------------------
# training: the loop of every mode; the landscape (Table 1, first row: R and w fixed, only the decoder's direction
# trained) as one ensemble of fixed-norm decoders
# ----------------------------------------------------------------------------------------------
def fit(args, task, n_train, params, R, opt, train_step, *, desc, device, run=False, ckpt=None):
    """args.steps calls of train_step (on CUDA one graph replay each), evaluated at log-spaced steps. A grid
    (run=False) follows the notebook's lr schedule; run mode also checks the test loss, estimates m at every
    evaluation and resumes from / saves to ckpt. Returns (evaluated steps, {key: [[value per member] per step]},
    the NaN error or None)."""
    tr_idx, te_idx = split(task, n_train)
    run_step, eval_at = common.graph_step(train_step, device), set(common.log_steps(args.steps, args.eval_points))
    curves, evaluated, start, err = {k: [] for k in CURVES + (("m",) if run else ())}, [], 0, None
    if state := ckpt and ckpt.resume([*params, R], opt):
        evaluated, curves, start = state["evaluated"], state["curves"], state["step"]
    bar = common.progress(args.steps, desc)
    bar.update(start)
    for step in range(start, args.steps + 1):
        if step in eval_at and step not in evaluated[-1:]:
            with torch.no_grad():
                trl, tra = loss_acc(args, task, params, R, tr_idx)
                tel, tea = loss_acc(args, task, params, R, te_idx) if len(te_idx) else (trl * math.nan,) * 2
                w = common.global_norm(params).view(1) if run else common.batched_norm(params)
                row = torch.stack([t.double() for t in (trl, tel, tra, tea, w)]).tolist()  # the one sync
            err = common.nonfinite(row[0] + row[1] if run else row[0], step, hint="Lower --run-lr or --alpha, or use "
                                   "--dtype float64." if run else "Lower --lr or use --dtype float64.")
            if err:
                break
            if run:
                row.append([messiness(R[0].detach().cpu().numpy(), task)])
            evaluated.append(step)
            for k, v in zip(curves, row):
                curves[k].append(v)
            bar.set_postfix_str(common.postfix(*row[:5]) + (f" m {row[5][0]:.3f}" if run else ""))
            if ckpt:
                ckpt.save(lambda: {"step": step, "evaluated": evaluated, "curves": curves, "params": [*params, R],
                                   "opt": opt.state_dict()})
        if step == args.steps:
            break
        if not run and args.lr_decay_every and (step + 1) % args.lr_decay_every == 0:  # the notebook's schedule
            for group in opt.param_groups:
                group["lr"] *= args.lr_decay
            # A graph holds the float lr it was captured with: capture anew (a few times a run). This keeps the lr
            # a float, as on CPU; a tensor lr would have to be float32 (fused Adam's CUDA kernel).
            run_step = common.graph_step(train_step, device)
        run_step()
        bar.update()
    bar.close()
    return evaluated, curves, err


def train_fixed_norm(args, task, alphas, ms, n_train, *, device, dtype, desc):
    """One decoder per (alpha, m) pair, all trained at once at fixed norm alpha * w0 on the frozen representation
    R(m). Returns (eval steps, curves {key: [[E values] per eval step]}, best train loss [E] (the minimum over every
    step, as the notebook computes it), w0, NaN error or None)."""
    tr_idx, _ = split(task, n_train)
    R = representation(task, torch.tensor(ms, device=device, dtype=dtype))
    x_tr, y_tr = R[:, task["i"][tr_idx]] + R[:, task["j"][tr_idx]], task["targets"][task["k"][tr_idx]]
    init = decoder_params(args, device, dtype)
    params = [torch.stack([t] * len(alphas)).requires_grad_() for t in init]
    w_target = common.scale_by_alpha_batched_(params, alphas)  # alpha multiplies every decoder parameter
    # Fused Adam (4x faster than foreach on CPU for a 441-model grid) whose members' numbers do not depend on the
    # ensemble (a shard == the whole grid); capturable (CUDA): its step count stays on the device.
    opt = common.EnsembleAdam(params, lr=args.lr, betas=(0.9, args.beta2), weight_decay=0.0,
                              capturable=device.type == "cuda")
    params, best_train = opt.params, torch.full((len(alphas),), math.inf, device=device, dtype=dtype)

    def train_step():
        loss = (decode(args, params, x_tr) - y_tr).pow(2).mean((1, 2))
        torch.minimum(best_train, loss.detach(), out=best_train)  # on the device: no sync; in place: a graph's output
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        opt.step()
        common.project_to_norm_batched_(params, w_target)
    steps, curves, err = fit(args, task, n_train, params, R, opt, train_step, desc=desc, device=device)
    return steps, curves, best_train.tolist(), common.global_norm(init).item(), err


def train_rows(args, task, n_train, row_ms, *, device, dtype, desc):
    """Rows of the (m, alpha) grid - one m each, all alphas - as one batched ensemble (or --chunk sized pieces of
    it). Returns (one record per row: {m, steps, w0, best_train, curves [n_eval][alphas]}, error or None; after an
    error the records hold what was measured, for metrics.json)."""
    alphas, _ = grid_axes(args)
    A, M = (g.ravel() for g in np.meshgrid(alphas, np.asarray(row_ms, dtype=float)))  # row = m, column = alpha
    chunk, parts, best, n_a = args.chunk or len(A), [], [], len(alphas)
    for lo in range(0, len(A), chunk):
        steps, c, b, w0, err = train_fixed_norm(args, task, A[lo:lo + chunk], M[lo:lo + chunk], n_train,
                                                device=device, dtype=dtype, desc=f"{desc} N={n_train}")
        parts, best = parts + [c], best + b
        if err:  # keep what was measured, then stop (the caller saves metrics and raises)
            break
    curves = {k: [sum(rows, []) for rows in zip(*(c[k] for c in parts))] for k in CURVES}  # chunks side by side
    return [dict(m=float(m), steps=steps, w0=w0, best_train=best[r * n_a:(r + 1) * n_a],
                 **{k: [v[r * n_a:(r + 1) * n_a] for v in curves[k]] for k in CURVES})
            for r, m in enumerate(row_ms) if (r + 1) * n_a <= len(best)], err


def assemble_landscape(args, task, n_train, rows):
    """The landscape dict (axes, 2-D arrays [len(m)][len(alpha)] of best/final losses and accuracies, the star) and
    metrics (curves) from row records, in grid order; rows not given (not trained yet) are None."""
    alphas, ms = grid_axes(args)
    by_m = {round(r["m"], 12): r for r in rows}
    present = [by_m.get(round(float(m), 12)) for m in ms]
    have, steps, w0 = np.array([r is not None for r in present]), rows[0]["steps"], rows[0]["w0"]
    nan = np.full((len(ms), len(alphas)), np.nan)
    arr = {k: np.stack([np.full((len(steps), len(alphas)), np.nan) if r is None else np.array(r[k], dtype=float)
                        for r in present], 1) for k in CURVES}  # [n_eval, m, alpha]
    best_train = np.array([nan[0] if r is None else r["best_train"] for r in present], dtype=float)
    has_test = n_train < len(task["perm"])  # N = 55 uses every pair: no test set (stored as null)

    def grid(x):
        return [[v if math.isfinite(v) else None for v in row] for row in np.asarray(x, dtype=float).tolist()]

    land = dict(n_train=n_train, test_acc_ideal=ideal_test_acc(task, n_train), alphas=alphas.tolist(), ms=ms.tolist(),
                w0=w0, ws=(alphas * w0).tolist(), train_loss_best=grid(np.minimum(best_train, arr["train_loss"].min(0))),
                test_loss_best=grid(arr["test_loss"].min(0) if has_test else nan),
                train_loss_final=grid(arr["train_loss"][-1]), test_loss_final=grid(arr["test_loss"][-1]),
                train_acc_best=grid(arr["train_acc"].max(0)),
                test_acc_best=grid(arr["test_acc"].max(0) if has_test else nan),
                train_acc_final=grid(arr["train_acc"][-1]), test_acc_final=grid(arr["test_acc"][-1]))
    set_star(land, args.record)
    return land, dict(steps=steps, alpha=np.tile(alphas, have.sum()).tolist(), m=np.repeat(ms[have], len(alphas)).tolist(),
                      **{k: arr[k][:, have].reshape(len(steps), -1).tolist() if has_test or k.startswith(("train", "w")) else None
                         for k in CURVES})


def set_star(land, record):
    """The generalizing solution (green star): the grid point of lowest recorded test loss at w > 0; none without a
    test set. Set on every load, so a saved landscape's star follows the current --record."""
    te = np.array(land[f"test_loss_{record}"], dtype=float)  # null (no test set) -> nan
    te[:, np.array(land["alphas"]) == 0] = np.nan
    land.pop("star", None)
    if np.isfinite(te).any():
        r, c = np.unravel_index(np.nanargmin(te), te.shape)
        land["star"] = dict(alpha=land["alphas"][c], m=land["ms"][r], test_loss=float(te[r, c]))


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for the modes
    without grid points."""
    keys = ("mode", "seed", "setup", "p", "labels", "out_dim", "width", "embed_dim", "activation", "repr_style", "lr",
            "beta2", "lr_decay", "lr_decay_every", "steps", "eval_points", "dtype", "grid_points", "alpha_lohi", "m_lohi")
    return {k: getattr(args, k) for k in keys + ("n_train",) * (args.mode == "landscape")} if args.mode in (
        "landscape", "n-sweep") else None


def row_name(n_train, m):
    return f"n_{n_train}_m_{m:g}"


def grid_landscapes(args, out, n_trains, *, device, dtype, desc):
    """The grid modes' points: one file per (N, m) row, trained per N as one ensemble (common.run_grid). Returns None
    for one shard of several, else ({N: land}, {N: metrics}, seconds, [missing rows]) of the rows saved."""
    _, ms = grid_axes(args)
    task = make_task(args, device, dtype)

    def train(todo):
        for n in n_trains:
            if mine := [m for m in ms if row_name(n, m) in todo]:
                t0 = time.time()
                rows, err = train_rows(args, task, n, mine, device=device, dtype=dtype, desc=desc)
                if err:
                    common.write_json(out / "metrics.json", dict(n_train=n, members=rows))
                    raise err
                for rec in rows:
                    rec["seconds"] = (time.time() - t0) / len(rows)  # the ensemble's wall time, shared by its rows
                    yield row_name(n, rec["m"]), dict(n_train=n, **rec)

    got = common.run_grid(args, out, [row_name(n, m) for n in n_trains for m in ms], grid_settings(args), train)
    if got is None:
        return None
    rows = {n: [rec for rec in got[0].values() if rec["n_train"] == n] for n in n_trains}
    lands = {n: assemble_landscape(args, task, n, rows[n]) for n in n_trains if rows[n]}
    return ({n: v[0] for n, v in lands.items()}, {n: v[1] for n, v in lands.items()},
            sum(rec["seconds"] for rec in got[0].values()), got[1])


def landscape_for(args, out, device, dtype):
    """--landscape-from's landscape, or the whole grid trained here in memory (its curves in metrics.json)."""
    if args.landscape_from:
        return saved_landscape(args)
    task = make_task(args, device, dtype)
    rows, err = train_rows(args, task, args.n_train, grid_axes(args)[1], device=device, dtype=dtype, desc="landscape")
    land, metrics = (None, dict(members=rows)) if err else assemble_landscape(args, task, args.n_train, rows)
    common.write_json(out / "metrics.json", metrics)
    if err:
        raise err
    return land


# ----------------------------------------------------------------------------------------------
# landscape post-processing (numpy only) and plots
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


def surface(land, args, kind="train"):
    """(w axis, the smoothed recorded `kind` loss [m, w]) without the alpha = 0 column (w = 0 has no direction)."""
    keep = np.array(land["alphas"]) > 0
    z = np.array(land[f"{kind}_loss_{args.record}"], dtype=float)[:, keep]
    return np.array(land["alphas"])[keep] * land["w0"], smooth(z, args.smooth)


def bilinear(z, xs, ys, x, y):
    """z[i, j] given at (xs[j], ys[i]) -> value at (x, y), clamped to the grid."""
    x, y = min(max(x, xs[0]), xs[-1]), min(max(y, ys[0]), ys[-1])
    j = min(int(np.searchsorted(xs, x, side="right")) - 1, len(xs) - 2)
    i = min(int(np.searchsorted(ys, y, side="right")) - 1, len(ys) - 2)
    tx, ty = (x - xs[j]) / (xs[j + 1] - xs[j]), (y - ys[i]) / (ys[i + 1] - ys[i])
    return ((1 - tx) * (1 - ty) * z[i, j] + tx * (1 - ty) * z[i, j + 1]
            + (1 - tx) * ty * z[i + 1, j] + tx * ty * z[i + 1, j + 1])


def heatmap(ax, land, kind, record, title, contour):
    """The paper's style: Reds on a power colour scale (resolves small losses), m = 0 at the top, the train-loss
    contour `contour` of the same record and the star."""
    from matplotlib.colors import PowerNorm
    z = np.array(land[f"{kind}_loss_{record}"], dtype=float)
    common.plot_heatmap(ax, land["alphas"], land["ms"], z, cmap="Reds", norm=PowerNorm(0.25, 0, np.nanmax(z)),
                        title=title, ylabel="representation messiness m",
                        xlabel=f"relative weight norm alpha = w / w0  (w0 = {land['w0']:.1f})")
    train = np.array(land[f"train_loss_{record}"], dtype=float)
    if np.nanmin(train) < contour < np.nanmax(train):
        cs = ax.contour(land["alphas"], land["ms"], train, levels=[contour], colors="gold", linestyles="--", linewidths=1.5)
        ax.clabel(cs, fmt=f"train {contour:g}", fontsize=7)
    if "star" in land:
        ax.plot(land["star"]["alpha"], land["star"]["m"], "*", color="green", ms=16, mec="k")
    ax.set_ylim(max(land["ms"]), min(land["ms"]))  # m = 0 on top, as Fig. 6


def plot_landscape(axes, land, args, record, note=""):
    """The train and test loss (`record`) heat maps on axes[0] and axes[1], with the star of the losses shown."""
    land = dict(land)
    set_star(land, record)
    heatmap(axes[0], land, "train", record, f"training loss ({record}, N={land['n_train']}){note}", args.contour)
    if np.isfinite(np.array(land[f"test_loss_{record}"], dtype=float)).any():
        heatmap(axes[1], land, "test", record, f"test loss ({record}){note}", args.contour)


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def landscape_mode(args, out, device, dtype):
    """Fig. 6a,b. A grid point (file) is one row: one m, all alphas; --shard i/n splits the rows."""
    got = grid_landscapes(args, out, [args.n_train], device=device, dtype=dtype, desc="landscape")
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    lands, metrics, wall, missing = got
    land, metrics = lands[args.n_train], metrics[args.n_train]
    common.write_json(out / "metrics.json", metrics)
    n = len(metrics["alpha"])  # grid points trained (all, unless rows are missing)
    # Numbers behind Fig. 6a,b: train loss at small vs large alpha, and how much train and test loss vary along m
    # (averaged over the columns entirely in region II).
    tr, te = (np.array(land[f"{k}_loss_{args.record}"], dtype=float) for k in ("train", "test"))
    alphas, big = np.array(land["alphas"]), tr.max(0) < args.contour
    summary = dict(landscape=land, record=args.record, contour=args.contour, wall_seconds=wall, missing=missing,
                   grid_points=n, steps=args.steps, point_steps_per_second=n * args.steps / wall,
                   train_loss_small_alpha=float(np.nanmean(tr[:, 1 if alphas[0] == 0 else 0])),
                   train_loss_large_alpha=float(np.nanmean(tr[:, -1])),
                   region2_alpha_min=float(alphas[big].min()) if big.any() else None)
    if big.any() and np.isfinite(te).any():
        summary.update(region2_train_loss_m_range=float(np.ptp(tr[:, big].mean(1))),
                       region2_test_loss_m_range=float(np.ptp(te[:, big].mean(1))))
    common.write_json(out / "summary.json", summary)
    for record in (args.record, "best" if args.record == "final" else "final"):
        fig, axes = common.plt().subplots(1, 2, figsize=(11, 4.2), layout="constrained")
        plot_landscape(axes, land, args, record)
        common.savefig(fig, out / ("landscape.png" if record == args.record else f"landscape_{record}.png"))
    print(f"grid {n} points x {args.steps} steps in {wall:.0f} s; star at {land.get('star')}")
    return summary


def gradient_mode(args, out, device, dtype):
    """Fig. 6d: the fine grid near the boundary, with the negative gradient of the (smoothed) reduced train loss,
    plus the weight-decay term 1/2 gamma w^2 of Eq. 6 when --wd > 0, drawn as arrows in the displayed (log w, m)
    plane (directions only: magnitudes span decades across the boundary)."""
    t0 = time.time()
    land = landscape_for(args, out, device, dtype)
    (ws, z), ms = surface(land, args), np.array(land["ms"])
    lw = np.log(ws)
    dz_dm, dz_dlw = np.gradient(z, ms, lw)
    g_lw, g_m = -(dz_dlw + args.wd * ws[None, :] ** 2), -dz_dm  # d(1/2 gamma w^2)/d(log w) = gamma w^2
    fig, ax = common.plt().subplots(figsize=(5.5, 4.5))
    common.plot_heatmap(ax, lw, ms, z, cmap="Reds", colorbar_label="reduced train loss (smoothed)",
                        xlabel="relative weight norm alpha = w/w0 (log axis)", ylabel="representation messiness m",
                        title=f"training loss (N={land['n_train']}), -gradient" + (f" + wd {args.wd:g}" if args.wd else ""))
    levels = [lv for lv in (0.001, 0.01, 0.03, 0.1) if np.nanmin(z) < lv < np.nanmax(z)]
    if levels:
        ax.clabel(ax.contour(lw, ms, z, levels=levels, colors="k", linestyles="--", linewidths=1), fmt="%g", fontsize=7)
    # The gradient in axes-normalised coordinates (x / width, y / height), so arrows are perpendicular to the
    # contours as drawn; converted back to data units for quiver. Arrows near the boundary only, as Fig. 6d.
    sx, sy = np.ptp(lw), np.ptp(ms)
    norm = np.hypot(g_lw * sx, g_m * sy) + 1e-30
    near = (z > 0.1 * args.contour) & (z < 10 * args.contour)
    sl = (slice(None, None, max(1, len(ms) // 10)),) * 2
    ax.quiver(*(a[sl][near[sl]] for a in (*np.meshgrid(lw, ms), g_lw * sx ** 2 / norm, g_m * sy ** 2 / norm)),
              angles="xy", scale_units="xy", scale=12, width=0.005)
    if "star" in land and land["star"]["alpha"] * land["w0"] >= ws[0]:
        ax.plot(math.log(land["star"]["alpha"] * land["w0"]), land["star"]["m"], "*", color="green", ms=14, mec="k")
    ticks = np.linspace(lw[0], lw[-1], 4)
    ax.set_xticks(ticks, [f"{math.exp(t) / land['w0']:.2f}" for t in ticks])
    ax.set_ylim(ms[-1], ms[0])
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
    """Euler steps of Eq. 6 on the smoothed, bilinearly interpolated landscape: dw/dt = -(dl/dw + gamma w),
    dm/dt = -(eta_R/eta_D) dl/dm (time in units of 1/eta_D); each step moves at most 1/20 of a grid cell. Stops at
    a fixed point (or when it moved less than a grid cell in 1000 steps) or when w leaves the grid."""
    (ws, z), (_, te), ms = surface(land, args), surface(land, args, "test"), np.array(land["ms"])
    dz_dm, dz_dw = np.gradient(z, ms, ws)
    vw, vm = -(dz_dw + args.wd * ws[None, :]), -args.eta_ratio * dz_dm
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
    land = landscape_for(args, out, device, dtype)
    path = integrate_eq6(land, args, args.start_am)
    common.write_json(out / "path.json", path)
    fig, axes = common.plt().subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    plot_landscape(axes, land, args, args.record, note=" + reduced trajectory")
    for ax in axes[:2]:
        ax.plot(path["alpha"], path["m"], color="purple", lw=2.5)
        ax.plot(path["alpha"][0], path["m"][0], "ko")
        ax.annotate("A", (path["alpha"][0], path["m"][0]), textcoords="offset points", xytext=(5, 5))
    t = np.maximum(np.array(path["t"]), 1e-3)
    axes[2].plot(t, path["train_loss"], label="train (reduced)")
    axes[2].plot(t, path["test_loss"], label="test (reduced)")
    axes[2].set(xscale="log", yscale="log", xlabel="time (units of 1/eta_D)", ylabel="loss along the path",
                title=f"losses along the path (gamma = {args.wd:g})")
    axes[2].legend()
    common.savefig(fig, out / "trajectory.png")
    end = {k: path[k][-1] for k in ("alpha", "m", "train_loss", "test_loss")}
    summary = dict(landscape=land, record=args.record, start=dict(alpha=args.start_am[0], m=args.start_am[1]),
                   wd=args.wd, eta_ratio=args.eta_ratio, end=end, path_points=len(path["t"]),
                   path_test_loss=path["test_loss"], path_train_loss=path["train_loss"],  # for Fig. 6c's descents
                   wall_seconds=time.time() - t0)
    common.write_json(out / "summary.json", summary)
    print(f"path from {summary['start']} ends at {end}")
    return summary


def n_sweep_mode(args, out, device, dtype):
    """Fig. 6e: the fine landscape for each training size, one batched ensemble per size; the contour train loss =
    --contour (0.02) of each size on one plot, with the N = --n-train star. A grid point is one (N, m) row."""
    got = grid_landscapes(args, out, args.n_train_list, device=device, dtype=dtype, desc="n-sweep")
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    by_n, metrics, wall, missing = got
    lands = list(by_n.values())
    common.write_json(out / "metrics.json", dict(members=[dict(n_train=n, **m) for n, m in metrics.items()]))
    plt = common.plt()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    contour_alpha, smoothed = {}, {}
    for land, c in zip(lands, plt.cm.viridis(np.linspace(0, 0.9, len(lands)))):
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
    ax.set(ylim=(lands[0]["ms"][-1], lands[0]["ms"][0]), xlim=(lands[0]["alphas"][0], lands[0]["alphas"][-1]),
           xlabel="relative weight norm alpha = w / w0", ylabel="representation messiness m",
           title=f"training loss = {args.contour:g} contour")
    common.savefig(fig, out / "n_sweep.png")
    summary = dict(landscapes=lands, record=args.record, contour=args.contour, star=star,
                   contour_distance_to_star=distance,
                   contour_alpha_at_m_min_max={str(k): v for k, v in contour_alpha.items()},
                   missing=missing, wall_seconds=wall)
    common.write_json(out / "summary.json", summary)
    print(f"contour alpha at (m_min, m_max) per N: {contour_alpha}")
    return summary


def contour_distance(xs, ys, z, level, point, upsample=10):
    """Distance from point (x, y) to the level contour of z[i, j] (at xs[j], ys[i]), in units of the grid's sides.
    z is interpolated bilinearly onto a grid `upsample` times finer (as the authors' plots do) and the contour is
    where it crosses level along the fine grid's edges. None if it never does."""
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
    a = next((a for a in range(len(row) - 1) if row[a] >= level > row[a + 1]), None)
    return None if a is None else float(xs[a] + (xs[a + 1] - xs[a]) * (row[a] - level) / (row[a] - row[a + 1]))


def messiness(R, task, m_grid=np.linspace(0, 1, 201)):
    """m estimated from a learned representation R [p, d]. Least-squares fit of the best straight, equally spaced
    line, E_k ~ c + k u (any direction u, any offset c); f = |residual|_F / |R - mean|_F is 0 for a perfect line and
    grows with disorder; it is invariant to rotation, scale and offset. f is mapped to m by the same measure on the
    reference family R(m) = m R_random + (1-m) R_linear of this seed (monotone interpolation), so m_hat = m exactly
    for any representation of Eq. 4."""
    def frac(X):
        A = np.stack([np.ones(len(X)), np.arange(len(X), dtype=float)], 1)
        coef, *_ = np.linalg.lstsq(A, X, rcond=None)
        tot = np.linalg.norm(X - X.mean(0))
        return np.linalg.norm(X - A @ coef) / tot if tot > 0 else 0.0
    line, rand = task["line"].cpu().double().numpy(), task["rand"].cpu().double().numpy()
    ref = np.maximum.accumulate([frac(m * rand + (1 - m) * line) for m in m_grid])  # monotone for inversion
    return float(np.interp(frac(np.asarray(R, dtype=float)), ref, m_grid))


def run_mode(args, out, device, dtype):
    """Full trajectory (Table 1, last row): R starts at R(--m-init), the decoder at --alpha * w0; Adam on R
    (--lr-repr, no decay as in Eq. 6), AdamW on the decoder (--run-lr, --wd). The (w, m_hat) path is drawn on a
    landscape when --landscape-from is given; R's scale is free here (frozen in the landscape), so the overlay is a
    guide, not an exact position."""
    t0 = time.time()
    task = make_task(args, device, dtype)
    common.require(args.n_train < len(task["perm"]), "run mode needs a test set: --n-train must be below p(p+1)/2.")
    tr_idx, _ = split(task, args.n_train)
    R = representation(task, torch.tensor([args.m_init], device=device, dtype=dtype)).clone().requires_grad_()
    params = [t[None].clone().requires_grad_() for t in decoder_params(args, device, dtype)]
    w0, _ = common.scale_by_alpha_(params, args.alpha)
    # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
    opt = torch.optim.Adam([{"params": params, "lr": args.run_lr}, {"params": [R], "lr": args.lr_repr}],
                           betas=(0.9, args.beta2), weight_decay=0.0, capturable=device.type == "cuda")

    def train_step():
        loss, _ = loss_acc(args, task, params, R, tr_idx)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        common.decay_weights_(params, args.run_lr, args.wd)  # AdamW's decoupled decay on the decoder
        common.decay_weights_([R], args.lr_repr, args.wd_repr)
        opt.step()
    ckpt = common.Checkpoint(out, args.checkpoint_every)
    steps, curves, err = fit(args, task, args.n_train, params, R, opt, train_step, run=True, ckpt=ckpt, device=device,
                             desc=f"alpha={args.alpha:g} wd={args.wd:g}")
    wall = time.time() - t0
    m = common.split_members(curves, 1)[0]
    common.write_json(out / "metrics.json", {"steps": steps, **m, "w0": w0,
                                             "representation_final": R[0].detach().cpu().tolist()})
    ckpt.done()
    if err:
        raise err
    summary = dict(common.grok_summary(steps, m, acc_threshold=args.acc_threshold), alpha=args.alpha, wd=args.wd,
                   wd_repr=args.wd_repr, w0=w0, m_init=m["m"][0], m_final=m["m"][-1],
                   test_acc_ideal=ideal_test_acc(task, args.n_train), wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    fig, axes = common.plt().subplots(1, 3, figsize=(16, 4), layout="constrained")
    common.plot_curves(axes[0], steps, m, title=f"alpha={args.alpha:g}, wd={args.wd:g}: accuracy")
    common.plot_curves(axes[1], steps, m, acc=False, w=False, title="MSE")
    ax2 = axes[1].twinx()
    ax2.plot(np.maximum(steps, 1), m["m"], color="purple", ls=":")
    ax2.set_ylabel("estimated messiness m (dotted)")
    ax = axes[2]
    if args.landscape_from:
        heatmap(ax, saved_landscape(args), "train", args.record, "(w, m) over training, on the train landscape",
                args.contour)
    else:
        ax.set(ylim=(1, 0), xlabel="relative weight norm alpha = w / w0", ylabel="estimated messiness m",
               title="(w, m) position over training")
    alpha = np.array(m["w"]) / w0
    ax.plot(alpha, m["m"], color="purple", lw=1, zorder=2)
    fig.colorbar(ax.scatter(alpha, m["m"], c=np.log10(np.maximum(steps, 1)), s=12, zorder=3), ax=ax, label="log10 step")
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
    summary = globals()[args.mode.replace("-", "_") + "_mode"](args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
