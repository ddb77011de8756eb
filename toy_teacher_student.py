"""Grokking in a teacher-student MLP regression (Omnigrok, Sec. 3, Fig. 2).

A teacher and a student, both 5-100-100-5 tanh MLPs with PyTorch's default init (different seeds),
100 train + 100 test inputs x ~ N(0, I5), labels = teacher(x); full batch; MSE; AdamW lr 3e-4. The
student's init is scaled by alpha (every parameter). A sample counts as "correct" when its squared
error, averaged over the 5 outputs, is below --theta (1e-3, the authors' code; docs/NOTES.md).

Modes (each trains all its models at once, as one batched ensemble):
    python toy_teacher_student.py --alpha 2 --wd 0.05      # run: Fig. 2b-like curves (the authors' saved run)
    python toy_teacher_student.py --mode grid              # Fig. 2b: alpha {0.5, 2} x wd {0, 0.03, 1}
    python toy_teacher_student.py --mode landscape         # Fig. 2a: reduced train/test loss vs alpha (L and U)
    python toy_teacher_student.py --mode wd-sweep          # Fig. 2c: steps to 95% train/test acc vs wd
    python toy_teacher_student.py --mode wd-sweep --shard 2/3 --out runs/wd   # one job of three (then --merge)

Grid modes save one file per point in <out>/points/ and take --shard i/n and --merge (README.md).
Expected result: alpha = 2, wd = 0.05 fits the training set within ~1k steps and generalizes only
after ~3e4 steps (grokking); alpha = 0.5 generalizes right after fitting; in the wd sweep the steps to
95% test accuracy scale as wd^-1 while the steps to 95% train accuracy do not depend on wd.
"""
import math
import time

import numpy as np
import torch

import common

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "grid", "landscape", "wd-sweep"]


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_standard_args(p, modes=MODES, steps=100_000, acc_threshold=0.95)
    p.set_defaults(seed=1)  # the authors' student seed (teacher: seed 0)
    p.add_argument("--alpha", type=float, default=2.0, help="init scale of the student, w = alpha * w0 (run mode)")
    p.add_argument("--wd", type=float, default=0.05, help="AdamW weight decay (run mode)")
    p.add_argument("--lr", type=float, default=3e-4, help="learning rate (Adam / AdamW)")
    p.add_argument("--theta", type=float, default=1e-3,
                   help="a sample is correct when its mean squared error over the outputs is below theta")
    p.add_argument("--teacher-seed", type=int, default=0, help="seed of the teacher's init and of the inputs")
    p.add_argument("--n-train", type=int, default=100, help="training samples")
    p.add_argument("--n-test", type=int, default=100, help="test samples")
    p.add_argument("--width", type=int, default=100, help="hidden width of teacher and student")
    common.add_constrain_arg(p)
    p.add_argument("--alphas", default=",".join(f"{a:.4g}" for a in np.logspace(-1, 1, 11)),
                   help="landscape mode: init scales (comma-separated; the authors: 10**linspace(-1, 1, 11))")
    p.add_argument("--landscape-steps", type=int, default=10_000,
                   help="landscape mode: steps per alpha (the authors: 1e4)")
    p.add_argument("--wds", default=",".join(f"{w:.4g}" for w in np.logspace(math.log10(0.03), 0, 9)),
                   help="wd-sweep mode: weight decays (comma-separated; default 9 log-spaced in [0.03, 1])")
    p.add_argument("--sweep-alpha", type=float, default=2.0, help="wd-sweep mode: init scale (paper: 2)")
    common.add_shard_arg(p, "grid, landscape, wd-sweep (a point = one student: one (alpha, wd), one alpha, one wd)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    common.check_standard_args(args)
    common.positive(args, "alpha", "lr", "theta", "n_train", "n_test", "width", "landscape_steps", "sweep_alpha")
    common.nonnegative(args, "wd")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    args.wd_list = common.parse_floats(args.wds, "--wds")
    common.require(args.alpha_list and min(args.alpha_list) > 0, "--alphas must be positive numbers.")
    common.require(args.wd_list and min(args.wd_list) >= 0, "--wds must be numbers >= 0.")
    args.shard_pair = common.parse_shard(args.shard)
    return args


# ----------------------------------------------------------------------------------------------
# data: inputs x ~ N(0, I), labels from the teacher
# ----------------------------------------------------------------------------------------------
def mlp_params(seed, width, dtype, device):
    """A 5-width-width-5 MLP initialised as nn.Linear does by default, for a given seed: the list
    [W1, b1, W2, b2, W3, b3], so ensembles can stack members that equal single runs exactly."""
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(5, width), torch.nn.Linear(width, width), torch.nn.Linear(width, 5)]
    return [t.detach().to(device, dtype) for layer in layers for t in (layer.weight, layer.bias)]


def forward(params, x):
    """Batched tanh MLP: params have a leading ensemble dim E, x is [N, 5] -> [E, N, 5]."""
    W1, b1, W2, b2, W3, b3 = params
    # x expanded to [E, N, 5], not einsum: einsum takes another path for E = 1 (float64), and a member's numbers
    # would depend on the size of its ensemble
    h = torch.tanh(torch.baddbmm(b1[:, None], x.expand(len(W1), *x.shape), W1.transpose(1, 2)))
    h = torch.tanh(torch.baddbmm(b2[:, None], h, W2.transpose(1, 2)))
    return torch.baddbmm(b3[:, None], h, W3.transpose(1, 2))


def make_data(args, dtype, device):
    teacher = [t[None] for t in mlp_params(args.teacher_seed, args.width, dtype, device)]
    g = torch.Generator().manual_seed(args.teacher_seed)
    x = torch.randn(args.n_train + args.n_test, 5, generator=g).to(device, dtype)
    with torch.no_grad():
        y = forward(teacher, x)[0]
    return (x[:args.n_train], y[:args.n_train]), (x[args.n_train:], y[args.n_train:])


# ----------------------------------------------------------------------------------------------
# training: E students at once (one per (alpha, wd) pair), exactly E independent AdamW runs
# ----------------------------------------------------------------------------------------------
def train_ensemble(args, alphas, wds, steps, *, constrain, desc, device, dtype, ckpt=None):
    """Train one student per (alpha, wd) and return (eval steps, per-member metric dicts, NaN error or None).
    constrain: None, or the norm held (common.add_constrain_arg; "global": alpha * w0, the reduced landscape's).
    ckpt: a common.Checkpoint to resume from and save to (run mode)."""
    (x_tr, y_tr), (x_te, y_te) = make_data(args, dtype, device)
    E = len(alphas)
    members = [mlp_params(args.seed, args.width, dtype, device) for _ in range(E)]
    params = [torch.stack(ts).requires_grad_() for ts in zip(*members)]
    w_target = common.scale_by_alpha_batched_(params, alphas)  # alpha multiplies every parameter of member e
    wd_t = torch.tensor(wds, dtype=dtype, device=device)
    # fused Adam whose members' numbers do not depend on the ensemble (a shard == the whole grid);
    # capturable (CUDA): its step count stays on the device, as a CUDA graph needs
    opt = common.EnsembleAdam(params, lr=args.lr, weight_decay=0.0, capturable=device.type == "cuda")
    params = opt.params
    targets = constrain and common.norm_targets(params, w_target, constrain)

    def losses_and_acc(x, y):
        err = (forward(params, x) - y).pow(2).mean(-1)  # [E, N]: mean squared error per sample
        return err.mean(1), (err < args.theta).to(dtype).mean(1)

    def train_step():  # full batch: on CUDA one graph replay (common.graph_step), on CPU as written
        loss, _ = losses_and_acc(x_tr, y_tr)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if common.decays(constrain):
            common.decay_weights_(params, args.lr, wd_t)
        opt.step()
        if constrain:
            common.project_(params, targets, constrain)
    run_step = common.graph_step(train_step, device)

    eval_at = set(common.log_steps(steps, args.eval_points))
    m = {k: [] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}
    evaluated, start = [], 0
    if state := ckpt and ckpt.resume(params, opt):
        evaluated, m, start = state["evaluated"], state["m"], state["step"]
    bar = common.progress(steps, desc)
    bar.update(start)
    for step in range(start, steps + 1):
        if step in eval_at and step not in evaluated[-1:]:
            with torch.no_grad():
                tr_loss, tr_acc = losses_and_acc(x_tr, y_tr)
                te_loss, te_acc = losses_and_acc(x_te, y_te)
                w = common.batched_norm(params)
                row = torch.stack([tr_loss, te_loss, tr_acc, te_acc, w]).tolist()  # the one sync
            err = common.nonfinite(row[0] + row[1], step)
            if err:
                bar.close()
                return evaluated, common.split_members(m, E), err
            evaluated.append(step)
            for k, v in zip(m, row):
                m[k].append(v)
            bar.set_postfix_str(common.postfix(*row))
            if ckpt:
                ckpt.save(lambda: {"step": step, "evaluated": evaluated, "m": m, "params": params, "opt": opt.state_dict()})
        if step == steps:
            break
        run_step()
        bar.update()
    bar.close()
    return evaluated, common.split_members(m, E), None


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def run_mode(args, out, device, dtype):
    t0 = time.time()
    ckpt = common.Checkpoint(out, args.checkpoint_every)
    steps, [m], err = train_ensemble(args, [args.alpha], [args.wd], args.steps, constrain=args.constrain,
                                     desc=f"alpha={args.alpha:g} wd={args.wd:g}", device=device, dtype=dtype, ckpt=ckpt)
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, **m})
    ckpt.done()
    if err:
        raise err
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    summary.update(alpha=args.alpha, wd=args.wd, theta=args.theta, wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    title = f"alpha={args.alpha:g}, weight decay={args.wd:g}" + (f" ({args.constrain} norm)" if args.constrain else "")
    common.plot_curves(axes[0], steps, m, title=title)
    common.plot_curves(axes[1], steps, m, acc=False, title="MSE")
    common.savefig(fig, out / "curves.png")
    return summary


GRID_PAIRS = [(a, w) for a in (2.0, 0.5) for w in (0.0, 0.03, 1.0)]  # Fig. 2b: large/small init x no/small/large wd


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for run."""
    keys = {"grid": ("steps",), "landscape": ("landscape_steps",), "wd-sweep": ("steps", "sweep_alpha")}.get(args.mode)
    if keys is None:
        return None
    base = ("mode", "seed", "teacher_seed", "lr", "theta", "n_train", "n_test", "width", "eval_points", "dtype")
    return {k: getattr(args, k) for k in base + keys}


def train_points(args, out, points, steps, *, constrain, desc, device, dtype):
    """points: [(name, alpha, wd)], each one student; the ones this shard trains are one ensemble. Returns None
    for one shard of several, else the saved records ({alpha, wd, steps, curves, seconds}) and the missing names."""
    def train(todo):
        mine = [pt for pt in points if pt[0] in todo]
        t0 = time.time()
        evaluated, ms, err = train_ensemble(args, [a for _, a, _ in mine], [w for _, _, w in mine], steps,
                                            constrain=constrain, desc=desc, device=device, dtype=dtype)
        if err:
            common.write_json(out / "metrics.json", {"steps": evaluated, "members": [
                {"alpha": a, "wd": w, **m} for (_, a, w), m in zip(mine, ms)]})
            raise err
        seconds = (time.time() - t0) / len(mine)  # the ensemble's wall time, shared by its members
        for (name, a, w), m in zip(mine, ms):
            yield name, {"alpha": a, "wd": w, "steps": evaluated, "seconds": seconds, **m}

    got = common.run_grid(args, out, [name for name, _, _ in points], grid_settings(args), train)
    return got and (list(got[0].values()), got[1])


def _curves(rec):
    return {k: rec[k] for k in ("train_loss", "test_loss", "train_acc", "test_acc", "w")}


def grid_mode(args, out, device, dtype):
    """Fig. 2b: large (2.0) and small (0.5) init, each with no, small (0.03) and large (1) weight decay.
    A grid point is one (alpha, wd) student."""
    got = train_points(args, out, [(f"alpha_{a:g}_wd_{w:g}", a, w) for a, w in GRID_PAIRS], args.steps,
                       constrain=None, desc="grid", device=device, dtype=dtype)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, missing = got
    steps = recs[0]["steps"]
    common.write_json(out / "metrics.json", {"steps": steps, "members": [
        {"alpha": r["alpha"], "wd": r["wd"], **_curves(r)} for r in recs]})
    summary = {"members": [{"alpha": r["alpha"], "wd": r["wd"],
                            **common.grok_summary(steps, r, acc_threshold=args.acc_threshold)} for r in recs],
               "missing": missing, "wall_seconds": sum(r["seconds"] for r in recs)}
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), sharex=True, layout="constrained")
    by_pair = {(r["alpha"], r["wd"]): r for r in recs}
    for ax, (a, w) in zip(axes.flat, GRID_PAIRS):
        if (a, w) in by_pair:
            common.plot_curves(ax, steps, by_pair[(a, w)], title=f"alpha={a:g}, weight decay={w:g}")
        else:
            ax.set_title(f"alpha={a:g}, weight decay={w:g}: not trained yet")
    fig.suptitle("Teacher-student: large init groks (top) unless wd = 0; small init generalizes fast (bottom)")
    common.savefig(fig, out / "grid.png")
    return summary


def landscape_mode(args, out, device, dtype):
    """Fig. 2a: for each alpha, minimise the train loss on the sphere ||w|| = alpha * w0 (no weight
    decay) and record the reduced train and test losses (best over training, and final). A grid point is
    one alpha."""
    got = train_points(args, out, [(f"alpha_{a:g}", a, 0.0) for a in args.alpha_list], args.landscape_steps,
                       constrain="global", desc="landscape", device=device, dtype=dtype)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, missing = got
    common.write_json(out / "metrics.json", {"steps": recs[0]["steps"], "members": [
        {"alpha": r["alpha"], **_curves(r)} for r in recs]})
    points = [{"alpha": r["alpha"], "w": r["w"][-1],
               "train_loss_best": min(r["train_loss"]), "test_loss_best": min(r["test_loss"]),
               "train_loss_final": r["train_loss"][-1], "test_loss_final": r["test_loss"][-1],
               "train_acc_best": max(r["train_acc"]), "test_acc_best": max(r["test_acc"])} for r in recs]
    best_alpha = points[int(np.argmin([p["test_loss_best"] for p in points]))]["alpha"]
    summary = {"points": points, "test_loss_argmin_alpha": best_alpha, "missing": missing,
               "wall_seconds": sum(r["seconds"] for r in recs)}
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    alphas = [p["alpha"] for p in points]
    ax.plot(alphas, [p["train_loss_best"] for p in points], "o-", label="training (reduced)")
    ax.plot(alphas, [p["test_loss_best"] for p in points], "o-", label="test (reduced)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("alpha = w / w0")
    ax.set_ylabel("loss (best during fixed-norm training)")
    ax.set_title("Reduced landscape: training L, test U" + (f" ({len(missing)} alphas missing)" if missing else ""))
    ax.legend()
    common.savefig(fig, out / "landscape.png")
    return summary


def wd_sweep_mode(args, out, device, dtype):
    """Fig. 2c: at alpha = 2, steps to reach the accuracy threshold on train and test vs weight decay.
    A member that never reaches it within --steps is censored: drawn at the step budget, not fitted.
    A grid point is one wd."""
    names = [f"wd_{w:g}" for w in args.wd_list]
    got = train_points(args, out, [(n, args.sweep_alpha, w) for n, w in zip(names, args.wd_list)], args.steps,
                       constrain=None, desc="wd-sweep", device=device, dtype=dtype)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, missing = got
    steps, ms, wds = recs[0]["steps"], [_curves(r) for r in recs], [r["wd"] for r in recs]
    common.write_json(out / "metrics.json", {"steps": steps, "members": [{"wd": w, **m} for w, m in zip(wds, ms)]})
    members = [{"wd": w, **common.grok_summary(steps, m, acc_threshold=args.acc_threshold)} for w, m in zip(wds, ms)]
    for mem, m in zip(members, ms):  # weight norm when the threshold is reached (Fig. 2c, right)
        for split in ("train", "test"):
            s = mem[f"{split}_acc_step"]
            mem[f"w_at_{split}_acc"] = m["w"][steps.index(s)] if s is not None else None
    # Only wd > 0 has a log: wd = 0 members are reported but left out of the fit.
    fit = [(mem["wd"], mem) for mem in members if mem["wd"] > 0]
    summary = {"alpha": args.sweep_alpha, "members": members,
               "slope_train": common.fit_loglog_slope([w for w, _ in fit], [m["train_acc_step"] for _, m in fit]),
               "slope_test": common.fit_loglog_slope([w for w, _ in fit], [m["test_acc_step"] for _, m in fit]),
               "missing": missing, "wall_seconds": sum(r["seconds"] for r in recs)}
    common.write_json(out / "summary.json", summary)
    print(f"fitted log-log slopes: train {summary['slope_train']}, test {summary['slope_test']} (paper: 0 and -1)")

    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    x = [m["wd"] for _, m in fit]
    common.plot_steps_to(axes[0], x, [m for _, m in fit], args.steps, threshold=args.acc_threshold, guide=True)
    for split, color in (("train", "tab:blue"), ("test", "tab:red")):
        wr = [(m["wd"], m[f"w_at_{split}_acc"]) for _, m in fit if m[f"w_at_{split}_acc"] is not None]
        if wr:
            axes[1].plot(*zip(*wr), "o-", color=color, label=split)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("weight decay")
    axes[1].set_ylabel("weight norm w at that step")
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    axes[0].set_title(f"alpha = {args.sweep_alpha:g}")
    common.savefig(fig, out / "wd_sweep.png")
    return summary


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    mode = {"run": run_mode, "grid": grid_mode, "landscape": landscape_mode, "wd-sweep": wd_sweep_mode}[args.mode]
    summary = mode(args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
