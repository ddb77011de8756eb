"""Grokking and de-grokking of a 1-layer transformer on modular addition (Omnigrok Sec. 5.1, App. B, C: Fig. 7, 9, 10a).

Setup of Nanda et al. (2023), as in the authors' notebook: p = 113, inputs [a, b, =] ('=' is token p), label
(a + b) mod p; one layer, d_model 128, 4 heads, d_mlp 512, ReLU, no LayerNorm, no attention biases, learned
positions, unembedding to all p + 1 tokens, Nanda's init; a random 30% train split (--data-seed), full batch,
cross-entropy on the last position, AdamW lr 1e-3, betas (0.9, 0.98), wd 1; float32 with the loss in float64
(the authors ran float64; see loss_and_acc).

    python modadd_transformer.py                          # Fig. 7a: grokking, weight norm up then below start
    python modadd_transformer.py --constrain --alpha 0.8 --steps 3000   # Fig. 7b: fixed norm, no grokking
    python modadd_transformer.py --mode landscape         # Fig. 9: reduced loss over alpha x train fraction
    python modadd_transformer.py --mode wd-sweep          # Fig. 10a: steps to generalize vs wd, per seed
    python modadd_transformer.py --mode norm-modes        # beyond the paper: wd vs each --constrain mode, per seed
    python modadd_transformer.py --p 23 --steps 300       # a tiny instance, seconds
Grid modes train batched ensembles and take --shard i/n and --merge (README.md, "Run on a cluster").

Expected (seed 0, default run, 8 min on 2 CPU cores): train accuracy 99% at step 135 while the weight norm rises
from 42 to 60; test 99% at 10.9k (80x), as the norm falls below its start (it ends at ~30, as the authors').
At a fixed norm train and test rise together. Steps to generalize scale as wd^-1 (full size, one seed: fitted
slope -1.14). Results: README.md, "Results measured here", docs/reproduce-quick/REPORT.md; more: docs/NOTES.md.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import common

CURVES = ("train_loss", "test_loss", "train_acc", "test_acc", "w")


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    # 15k steps, the authors' run length: ours reaches 99% test accuracy at 10.9k, so 1e4 stops mid-transition
    common.add_standard_args(p, modes=["run", "landscape", "wd-sweep", "norm-modes"], steps=15_000, acc_threshold=0.99)
    p.add_argument("--p", type=int, default=113, help="modulus (inputs a, b in [0, p), '=' is token p)")
    p.add_argument("--train-frac", type=float, default=0.3, help="fraction of the p^2 pairs used for training")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split (its own generator)")
    p.add_argument("--d-model", type=int, default=128, help="residual stream width")
    p.add_argument("--n-heads", type=int, default=4, help="attention heads (d_head = d_model / n_heads)")
    p.add_argument("--d-mlp", type=int, default=512, help="MLP hidden width")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW; Adam in fixed-norm runs)")
    p.add_argument("--wd", type=float, default=1.0, help="AdamW weight decay (run, norm-modes)")
    p.add_argument("--alpha", type=float, default=1.0, help="init scale: every parameter times alpha (run, norm-modes)")
    common.add_constrain_arg(p)  # Fig. 7b: --constrain --alpha 0.8
    p.add_argument("--norm-alpha", type=float, default=0.8, help="norm-modes: the held norm's alpha (Fig. 7b's)")
    p.add_argument("--alphas", default=",".join(f"{a:.3g}" for a in np.logspace(-1, 1, 9)),
                   help="landscape mode: init scales / fixed norms alpha (comma-separated; paper: [0.1, 10])")
    p.add_argument("--fracs", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                   help="landscape mode: training fractions (comma-separated; paper: [0.1, 0.9])")
    p.add_argument("--landscape-steps", type=int, default=3000, help="landscape: steps per point (the paper: unsaid)")
    p.add_argument("--wds", default=",".join(f"{w:.3g}" for w in np.logspace(-1, math.log10(3), 7)),
                   help="wd-sweep mode: weight decays (comma-separated; paper: about [0.1, 3])")
    p.add_argument("--seeds", default="0,1,2", help="wd-sweep, norm-modes: init seeds (comma-separated)")
    p.add_argument("--sweep-steps", type=int, default=200_000, help="wd-sweep: step budget (t ~ 1/wd: 1e5+ at wd 0.1)")
    common.add_shard_arg(p, "landscape (a fraction, all alphas), wd-sweep (a wd, seed), norm-modes (a condition, seed)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    common.check_standard_args(args)
    common.require(2 <= args.p <= 1000, f"--p must be in 2..1000 (p^2 pairs, p^3 logits), got {args.p}.")
    common.require(0 < args.train_frac < 1, f"--train-frac must be in (0, 1), got {args.train_frac}.")
    common.positive(args, "d_model", "d_mlp", "n_heads", "lr", "alpha", "norm_alpha", "landscape_steps", "sweep_steps")
    common.nonnegative(args, "wd")
    common.require(args.d_model % args.n_heads == 0,
                   f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads}).")
    args.shard_pair = common.parse_shard(args.shard)
    args.alpha_list, args.frac_list, args.wd_list = (common.parse_floats(getattr(args, k), f"--{k}")
                                                     for k in ("alphas", "fracs", "wds"))
    args.seed_list = common.parse_ints(args.seeds, "--seeds")
    common.require(args.alpha_list and min(args.alpha_list) > 0, "--alphas must be positive numbers.")
    common.require(args.frac_list and all(0 < f < 1 for f in args.frac_list), "--fracs must be numbers in (0, 1).")
    common.require(args.wd_list and min(args.wd_list) > 0, "--wds must be positive numbers (log-log fit).")
    common.require(args.seed_list and max(args.seed_list) < 2 ** 32, "--seeds must list seeds in 0..2**32-1.")
    for frac in [args.train_frac] + args.frac_list:
        common.require(0 < int(frac * args.p ** 2) < args.p ** 2, f"train fraction {frac} leaves an empty split.")
    return args


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for run."""
    keys = {"landscape": ("alphas", "landscape_steps"), "wd-sweep": ("train_frac", "sweep_steps", "acc_threshold"),
            "norm-modes": ("train_frac", "steps", "alpha", "norm_alpha", "wd")}
    base = ("mode", "p", "data_seed", "seed", "d_model", "n_heads", "d_mlp", "lr", "eval_points", "dtype")
    return {k: getattr(args, k) for k in base + keys[args.mode]} if args.mode in keys else None


# ---- data: all p^2 pairs [a, b, =] -> (a + b) mod p, split by a seeded permutation ---------------------------
def make_data(p, train_frac, data_seed, device):
    """(train_tokens [N, 3], train_labels [N]), (test_tokens, test_labels), as int64 on the device.
    The split uses its own generator, so it does not depend on the model seed; for a fixed data seed
    the train sets of different fractions are nested (prefixes of one permutation)."""
    a, b = (t.flatten() for t in torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij"))
    tokens, labels = torch.stack([a, b, torch.full_like(a, p)], dim=1), (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(data_seed))
    n_train = int(train_frac * p * p)  # the notebook's int(fraction * len(data)): 3830 for p = 113
    tr, te = perm[:n_train], perm[n_train:]
    return (tokens[tr].to(device), labels[tr].to(device)), (tokens[te].to(device), labels[te].to(device))


# ---- model: a 1-layer attention + MLP transformer, parameters with a leading ensemble dim E -------------------
def init_params(seed, p, d_model, n_heads, d_mlp, dtype, device):
    """One model's parameters, drawn as the notebook draws them (same order, same scales), from a
    generator seeded with `seed`. Drawn in float32 and cast, so both dtypes start from the same point."""
    g = torch.Generator().manual_seed(seed)
    d_vocab, d_head = p + 1, d_model // n_heads

    randn = lambda *shape, fan: (torch.randn(*shape, generator=g) / math.sqrt(fan)).to(device, dtype)  # noqa: E731
    return {
        "W_E": randn(d_model, d_vocab, fan=d_model),             # token embedding (columns = tokens)
        "W_pos": randn(3, d_model, fan=d_model),                 # positional embedding
        **{k: randn(n_heads, d_head, d_model, fan=d_model) for k in ("W_K", "W_Q", "W_V")},
        "W_O": randn(d_model, n_heads * d_head, fan=d_model),
        "W_in": randn(d_mlp, d_model, fan=d_model),
        "b_in": torch.zeros(d_mlp, device=device, dtype=dtype),
        "W_out": randn(d_model, d_mlp, fan=d_model),             # the notebook's scale: 1/sqrt(d_model)
        "b_out": torch.zeros(d_model, device=device, dtype=dtype),
        "W_U": randn(d_model, d_vocab, fan=d_vocab),             # unembedding to all p + 1 tokens
    }


def stack_members(members):
    """[{name: tensor}] -> {name: leaf tensor [E, ...]}: the ensemble's trainable parameters."""
    return {k: torch.stack([m[k] for m in members]).requires_grad_() for k in members[0]}


def forward_full(P, tokens):
    """The plain model, every position (the notebook's code with an ensemble dim): [E, B, 3, p + 1].
    Reference for `forward` and the model of the authors' loop in bench/authors_loops.py."""
    E, n_heads, d_head, _ = P["W_K"].shape
    n_ctx = tokens.shape[1]
    x = torch.einsum("edbp->ebpd", P["W_E"][:, :, tokens]) + P["W_pos"][:, None, :n_ctx]
    k, q, v = (torch.einsum("eihd,ebpd->ebiph", P[f"W_{c}"], x) for c in "KQV")
    scores = torch.einsum("ebiph,ebiqh->ebiqp", k, q)
    causal = torch.tril(torch.ones(n_ctx, n_ctx, dtype=x.dtype, device=x.device))
    scores = torch.tril(scores) - 1e10 * (1 - causal)             # the notebook's mask
    attn = F.softmax(scores / math.sqrt(d_head), dim=-1)
    z = torch.einsum("ebiph,ebiqp->ebiqh", v, attn)
    z = z.permute(0, 1, 3, 2, 4).reshape(E, -1, n_ctx, n_heads * d_head)   # b i q h -> b q (i h)
    x = x + torch.einsum("edf,ebqf->ebqd", P["W_O"], z)
    h = F.relu(torch.einsum("emd,ebpd->ebpm", P["W_in"], x) + P["b_in"][:, None, None])
    x = x + torch.einsum("edm,ebpm->ebpd", P["W_out"], h) + P["b_out"][:, None, None]
    return torch.einsum("ebpd,edv->ebpv", x, P["W_U"])


def forward(P, tokens):
    """Logits at the last position only, [E, B, p + 1]: the same numbers as forward_full(P, tokens)[:, :, -1].
    In one layer the last position reads the keys/values of all positions but nothing else of them,
    and keys, values, queries of a position depend only on its token: compute them for the p + 1
    tokens (a few hundred rows) instead of for B x 3 rows, then gather by token."""
    (E, n_heads, d_head, _), (B, n_ctx), d_vocab = P["W_K"].shape, tokens.shape, P["W_E"].shape[2]
    # x_table[e, pos, tok] = residual stream at `pos` holding `tok`: [E, n_ctx, V, d]
    x_table = P["W_E"].transpose(1, 2)[:, None] + P["W_pos"][:, :n_ctx, None]
    # row of (position, token) in the flattened k, v tables; index_select's backward is a cheap index_add
    rows = (torch.arange(n_ctx, device=tokens.device) * d_vocab + tokens).flatten()
    k, v = (torch.einsum("eihd,epvd->epvih", P[f"W_{c}"], x_table).reshape(E, n_ctx * d_vocab, n_heads, d_head)
            .index_select(1, rows).view(E, B, n_ctx, n_heads, d_head) for c in "KV")
    q_table = torch.einsum("eihd,evd->evih", P["W_Q"], x_table[:, -1])
    q = q_table.index_select(1, tokens[:, -1])                    # [E, B, H, d_head]: last position only
    resid = x_table[:, -1].index_select(1, tokens[:, -1])         # [E, B, d]
    # the last position attends to every position (the causal mask hides nothing from it)
    attn = F.softmax((k * q[:, :, None]).sum(-1) / math.sqrt(d_head), dim=2)   # [E, B, n_ctx, H]
    z = (attn[..., None] * v).sum(2).flatten(2)                    # [E, B, H * d_head]
    resid = resid + torch.bmm(z, P["W_O"].transpose(1, 2))
    h = F.relu(torch.baddbmm(P["b_in"][:, None], resid, P["W_in"].transpose(1, 2)))
    resid = resid + torch.baddbmm(P["b_out"][:, None], h, P["W_out"].transpose(1, 2))
    return torch.bmm(resid, P["W_U"])


def loss_and_acc(P, tokens, labels):
    """Per-member cross-entropy and accuracy at the last position: two tensors [E]."""
    logits = forward(P, tokens)
    E, B, V = logits.shape
    # The cross-entropy is taken in float64 (a [B, p + 1] tensor: cheap). Once memorised, the train loss reaches
    # ~1e-7, where float32 resolves 1 - p_correct to a few bits: the gradient turns into rounding noise that Adam
    # scales up to full-size steps, and float32 runs spike and regrow the weight norm instead of grokking.
    loss = F.cross_entropy(logits.reshape(E * B, V).double(), labels.repeat(E), reduction="none").view(E, B).mean(1)
    acc = (logits.argmax(-1) == labels).to(loss.dtype).mean(1)
    return loss.to(logits.dtype), acc.to(logits.dtype)


# ---- training: E models at once (one per (seed, alpha, wd)), exactly E independent AdamW runs -----------------
def training(args, data, seeds, alphas, wds, steps, *, constrain, desc, device, dtype, retire_at=None, ckpt=None):
    """Train one model per (seed, alpha, wd); after every evaluation yield (ms, err): each member's metrics so far
    ("steps" evaluated, CURVES) and a NonFiniteLoss (training then stops) or None. constrain: None or the norm held
    (common.add_constrain_arg). retire_at (a float, or one per member): a member leaves the ensemble once its test
    accuracy reached it (wd-sweep: the cost is the sum of the members' times, not E x the longest). ckpt: a
    common.Checkpoint to resume from and save to (run mode)."""
    (x_tr, y_tr), (x_te, y_te) = data
    device = torch.device(device)  # a name ("cpu") works too
    P = stack_members([init_params(s, args.p, args.d_model, args.n_heads, args.d_mlp, dtype, device) for s in seeds])
    params = list(P.values())
    w_target = common.scale_by_alpha_batched_(params, alphas)  # every parameter (the paper, the authors' code)
    targets = common.norm_targets(params, w_target, constrain)
    wd_t = torch.tensor(wds, dtype=dtype, device=device)
    # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0, capturable=device.type == "cuda")

    def train_step():  # full batch: on CUDA one graph replay (common.graph_step), on CPU as written
        loss, _ = loss_and_acc(P, x_tr, y_tr)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if common.decays(constrain):
            common.decay_weights_(params, args.lr, wd_t)  # + Adam(weight_decay=0) = AdamW, per member
        opt.step()
        if constrain:
            common.project_(params, targets, constrain)  # fused, no host sync
    run_step = common.graph_step(train_step, device)

    eval_at = set(common.log_steps(steps, args.eval_points))
    ms = [{k: [] for k in ("steps", *CURVES)} for _ in seeds]
    start = 0
    if state := ckpt and ckpt.resume(params, opt):
        ms, start = state["ms"], state["step"]
    active = list(range(len(seeds)))  # ensemble row i holds member active[i]
    retire = retire_at if isinstance(retire_at, (list, tuple)) else [retire_at] * len(seeds)
    bar = common.progress(steps, desc)
    bar.update(start)
    for step in range(start, steps + 1):
        if step in eval_at and step not in ms[0]["steps"][-1:]:  # a resumed run's first step: evaluated already
            with torch.no_grad():
                (tr_loss, tr_acc), (te_loss, te_acc) = loss_and_acc(P, x_tr, y_tr), loss_and_acc(P, x_te, y_te)
                row = torch.stack([tr_loss, te_loss, tr_acc, te_acc, common.batched_norm(params)]).tolist()  # 1 sync
            err = common.nonfinite(row[0] + row[1], step)
            if err:
                bar.close()
                yield ms, err
                return
            for i, e in enumerate(active):
                ms[e]["steps"].append(step)
                for k, col in zip(CURVES, row):
                    ms[e][k].append(col[i])
            bar.set_postfix_str(common.postfix(*row))
            if ckpt and step < steps:  # the last step's metrics are written right after: nothing to resume
                ckpt.save(lambda: {"step": step, "ms": ms, "params": params, "opt": opt.state_dict()})
            yield ms, None
            keep = [i for i, e in enumerate(active) if retire[e] is None or row[3][i] < retire[e]]
            if not keep:
                break
            if len(keep) < len(active):  # new tensors for the rows kept; Adam (element-wise) carries their moments on
                idx, old = torch.tensor(keep, device=device), opt.state
                active, targets, wd_t = [active[i] for i in keep], targets[keep], wd_t[keep]
                P = {k: v.detach()[idx].clone().requires_grad_() for k, v in P.items()}
                opt = torch.optim.Adam(list(P.values()), **opt.defaults)
                for p_old, p_new in zip(params, P.values()):
                    opt.state[p_new] = {k: v if k == "step" else v[idx] for k, v in old[p_old].items()}
                params = list(P.values())
                run_step = common.graph_step(train_step, device)  # a graph holds the old tensors: capture anew
        if step == steps:
            break
        run_step()
        bar.update()
    bar.close()


def train_ensemble(*args, **kwargs):
    """training(...) run to its end: (each member's metrics, NonFiniteLoss or None)."""
    *_, (ms, err) = training(*args, **kwargs)
    return ms, err


# ---- modes ----------------------------------------------------------------------------------------------------
def run_mode(args, out, device, dtype):
    """Fig. 7a (default) or, with --constrain, Fig. 7b."""
    data = make_data(args.p, args.train_frac, args.data_seed, device)
    wd = args.wd if common.decays(args.constrain) else 0.0
    t0, ckpt = time.time(), common.Checkpoint(out, args.checkpoint_every)
    [m], err = train_ensemble(args, data, [args.seed], [args.alpha], [wd], args.steps, constrain=args.constrain,
                              desc=f"alpha={args.alpha:g} wd={wd:g}", device=device, dtype=dtype, ckpt=ckpt)
    wall = time.time() - t0
    common.write_json(out / "metrics.json", m)
    ckpt.done()
    if err:
        raise err
    steps, peak = m["steps"], int(np.argmax(m["w"]))
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    summary.update(alpha=args.alpha, wd=wd, constrain=args.constrain, p=args.p, train_frac=args.train_frac,
                   n_train=len(data[0][1]), w_max=m["w"][peak], w_max_step=steps[peak],
                   wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    fig, axes = common.plt().subplots(1, 2, figsize=(12, 4), gridspec_kw={"wspace": 0.45})
    kind = f"alpha = {args.alpha:g}, weight decay = {wd:g}" + (f", {args.constrain} norm held" * bool(args.constrain))
    common.plot_curves(axes[0], steps, m, title=f"1L transformer, modular addition (p={args.p})\n{kind}")
    common.plot_curves(axes[1], steps, m, acc=False, title="cross-entropy")
    for twin in fig.axes[2:]:  # the weight-norm axes: a fixed norm would otherwise be zoomed into float noise
        twin.set_ylim(0.7 * min(m["w"]), 1.15 * max(m["w"]))
    common.savefig(fig, out / "curves.png")
    print(f"train {args.acc_threshold:.0%} at step {summary['train_acc_step']}, test at {summary['test_acc_step']}; "
          f"w: start {m['w'][0]:.1f}, peak {m['w'][peak]:.1f} (step {steps[peak]}), end {m['w'][-1]:.1f}")
    return summary


def landscape_mode(args, out, device, dtype):
    """Fig. 9 (App. B): per training fraction (a grid point), one fixed-norm model per alpha (one ensemble, no wd);
    their reduced train and test loss and accuracy: best over training (plotted) and final."""
    alphas, fracs = args.alpha_list, args.frac_list
    names = [f"frac_{f:g}" for f in fracs]

    def train(todo):
        for frac, name in [(f, n) for f, n in zip(fracs, names) if n in todo]:
            data, t0 = make_data(args.p, frac, args.data_seed, device), time.time()
            ms, err = train_ensemble(args, data, [args.seed] * len(alphas), alphas, [0.0] * len(alphas),
                                     args.landscape_steps, constrain="global", desc=f"frac={frac:g}",
                                     device=device, dtype=dtype)
            curves = [{"frac": frac, "alpha": a, **m} for a, m in zip(alphas, ms)]
            if err:
                common.write_json(out / "metrics.json", {"members": curves})
                raise err
            pts = [{"frac": frac, "alpha": a, "w": m["w"][-1], **{f"{k}_final": m[k][-1] for k in CURVES[:4]},
                    **{f"{k}_best": (min if "loss" in k else max)(m[k]) for k in CURVES[:4]}}
                   for a, m in zip(alphas, ms)]
            yield name, {"seconds": time.time() - t0, "steps": args.landscape_steps, "points": pts, "members": curves}

    got = common.run_grid(args, out, names, grid_settings(args), train)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    rows, missing = got
    common.write_json(out / "metrics.json", {"members": [c for r in rows.values() for c in r["members"]]})
    summary = {"alphas": alphas, "fracs": fracs, "fracs_done": [f for f, n in zip(fracs, names) if n in rows],
               "missing": missing, "steps": args.landscape_steps,
               "points": [p for r in rows.values() for p in r["points"]],
               "wall_seconds": sum(r["seconds"] for r in rows.values())}
    common.write_json(out / "summary.json", summary)

    z = common.grid_z(rows, names, alphas, ["train_loss_best", "test_loss_best"])
    common.plot_lu_landscape(  # a loss of exactly 0 has no place on a log colour scale: floored at 1e-7
        out / "landscape.png", alphas, fracs, *(np.maximum(z[f"{k}_loss_best"], 1e-7) for k in ("train", "test")),
        what="loss", levels=[0.01, 0.1, 1], log_color=True, size_label="training fraction",
        slices=list(dict.fromkeys([common.nearest(fracs, args.train_frac), fracs[-1]])),
        title=f"1L transformer on modular addition (p={args.p}): fixed-norm landscape, "
              f"{args.landscape_steps} steps per point ({len(rows)}/{len(fracs)} fractions)")
    return summary


def wd_sweep_mode(args, out, device, dtype):
    """Fig. 10a (App. C(a)): steps to --acc-threshold test accuracy vs wd, a log-log slope per seed (paper: t ~ 1/wd).
    One ensemble; a member leaves it at the threshold and its point is saved then (a killed sweep keeps it); one that
    never gets there is censored: saved at the end, drawn at the budget, left out of the fit."""
    pairs = [(w, s) for s in args.seed_list for w in args.wd_list]
    names = [f"wd_{w:g}_seed_{s}" for w, s in pairs]

    def train(todo):
        mine = [(w, s, name) for (w, s), name in zip(pairs, names) if name in todo]
        data = make_data(args.p, args.train_frac, args.data_seed, device)
        t0, left = time.time(), list(range(len(mine)))  # left: the members still training
        for ms, err in training(args, data, [s for _, s, _ in mine], [1.0] * len(mine), [w for w, _, _ in mine],
                                args.sweep_steps, constrain=None, desc="wd-sweep", device=device, dtype=dtype,
                                retire_at=args.acc_threshold):
            if err:
                common.write_json(out / "metrics.json",
                                  {"members": [{"wd": w, "seed": s, **m} for (w, s, _), m in zip(mine, ms)]})
                raise err
            ended = [i for i in left if ms[i]["test_acc"][-1] >= args.acc_threshold  # retiring now
                     or ms[i]["steps"][-1] == args.sweep_steps]  # censored: not reached within --sweep-steps
            for i in ended:
                left.remove(i)
                yield mine[i][2], {"wd": mine[i][0], "seed": mine[i][1], "seconds": time.time() - t0, **ms[i]}

    got = common.run_grid(args, out, names, grid_settings(args), train)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    done, missing = list(got[0].values()), got[1]
    common.write_json(out / "metrics.json", {"members": done})
    members = [{"wd": m["wd"], "seed": m["seed"],
                **common.grok_summary(m["steps"], m, acc_threshold=args.acc_threshold)} for m in done]
    fit = lambda ms, k: common.fit_loglog_slope([m["wd"] for m in ms], [m[f"{k}_acc_step"] for m in ms])  # noqa: E731
    of_seed = {s: [m for m in members if m["seed"] == s] for s in args.seed_list}
    slopes = {str(s): {"slope_test": fit(ms, "test"), "slope_train": fit(ms, "train")} for s, ms in of_seed.items()}
    # all seeds in one fit (keys: docs/DESIGN.md, The contract every script keeps); the paper's claim is per seed
    summary = {"members": members, "members_done": f"{len(done)}/{len(pairs)}", "missing": missing,
               "slopes_per_seed": slopes, **{f"slope_{k}": fit(members, k) for k in ("train", "test")},
               "steps_budget": args.sweep_steps, "p": args.p, "train_frac": args.train_frac,
               "wall_seconds": max((m["seconds"] for m in done), default=0.0)}  # one job: its wall time
    common.write_json(out / "summary.json", summary)
    print("fitted log-log slope of test steps vs wd, per seed (paper: about -1): "
          + ", ".join(f"seed {s}: {v['slope_test']}" for s, v in slopes.items()))

    n = len(of_seed)
    fig, axes = common.plt().subplots(1, n, figsize=(4.5 * n, 4), squeeze=False, layout="constrained")
    for ax, (s, ms) in zip(axes[0], of_seed.items()):
        common.plot_steps_to(ax, [m["wd"] for m in ms], ms, args.sweep_steps, threshold=args.acc_threshold,
                             slope=slopes[str(s)]["slope_test"], guide=True)
        ax.set_title(f"seed {s}")
    fig.suptitle(f"1L transformer, modular addition (p={args.p})")
    common.savefig(fig, out / "wd_sweep.png")
    return summary


def norm_modes_mode(args, out, device, dtype):
    """Beyond the paper: the grokking run against each --constrain mode at Fig. 7b's norm (--norm-alpha), over
    --seeds (common.run_norm_modes); a condition's seeds train as one ensemble."""
    data = make_data(args.p, args.train_frac, args.data_seed, device)

    def train_condition(alpha, constrain, seeds, desc, ckpt):
        wd = args.wd if common.decays(constrain) else 0.0
        return train_ensemble(args, data, seeds, [alpha] * len(seeds), [wd] * len(seeds), args.steps,
                              constrain=constrain, desc=desc, device=device, dtype=dtype, ckpt=ckpt)
    return common.run_norm_modes(args, out, grid_settings(args), train_condition, f"1L transformer, modular addition "
                                 f"(p={args.p}): alpha {args.alpha:g} with wd {args.wd:g} vs norm held at "
                                 f"{args.norm_alpha:g} w0")


def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    mode = {"run": run_mode, "landscape": landscape_mode, "wd-sweep": wd_sweep_mode, "norm-modes": norm_modes_mode}
    summary = mode[args.mode](args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
