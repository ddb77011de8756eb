"""Grokking and de-grokking of a 1-layer transformer on modular addition (Omnigrok Fig. 7, 9, 10a).

Paper Sec. 5.1 (Fig. 7), App. B (Fig. 9), App. C(a) (Fig. 10a).

Setup of Nanda et al. (2023), as in the authors' notebook: p = 113, inputs [a, b, =] (the '=' token has
id p), label (a + b) mod p; one layer, d_model 128, 4 heads of 32, d_mlp 512, ReLU, no LayerNorm, no
attention biases, learned positional embedding, unembedding to all p + 1 tokens (the notebook's
d_vocab = p + 1; '=' is never a label); Nanda's init (randn / sqrt(fan)). All p^2 pairs, a random 30%
train split drawn from its own generator (--data-seed); full batch; cross-entropy on the last
position; AdamW lr 1e-3, betas (0.9, 0.98), wd 1. The authors ran float64; float32 is the default
here, with the cross-entropy taken in float64 (see loss_and_acc; --dtype float64 available).

Only the last position's output is ever read, so the training forward computes just that: keys,
values and queries of a (token, position) pair do not depend on the example, so they are computed once
per step for the p + 1 tokens and gathered; the MLP and unembedding run on the last position only.
`forward_full` is the plain full-sequence model (the notebook's); a test proves both give the same logits.

Modes (sweeps train all their models at once, as one batched ensemble):
    python modadd_transformer.py                          # Fig. 7a: grokking, weight norm up then below start
    python modadd_transformer.py --constrain --alpha 0.8 --steps 3000   # Fig. 7b: fixed norm, no grokking
    python modadd_transformer.py --mode landscape         # Fig. 9: reduced loss over alpha x train fraction
    python modadd_transformer.py --mode wd-sweep          # Fig. 10a: steps to generalize vs wd, per seed
    python modadd_transformer.py --mode wd-sweep --shard 3/8 --out runs/wd   # job 3 of an 8-job array
    python modadd_transformer.py --mode wd-sweep --merge --out runs/wd      # then: figure from the saved points
    python modadd_transformer.py --p 23 --steps 300       # a tiny instance, seconds

Runtimes on 2 idle CPU cores (AMD EPYC Zen 5, both threads, float32, 2026-11-29): default run 7.9 min
(1.5e4 steps, 31.8 steps/s; 1 thread ~1.6x slower); constrained 3000 steps 1.7 min. The authors' loop vs
this one (bench/authors_loops.py --experiment modadd): 8.9x in float32, 11x for the fixed-norm loop.
Full size, one seed, one decade of wd (`--mode wd-sweep --wds 0.3,0.55,1,1.73,3 --seeds 0 --sweep-steps
60000`): 43 min (74k member-steps at 28.5/s). Steps to 99% test accuracy 38,525 / 17,100 / 10,980 / 4,873
/ 2,700 for wd 0.3 / 0.55 / 1 / 1.73 / 3, to 99% train 131-176: fitted log-log slope -1.14 (test),
+0.13 (train); the paper: about -1 and 0 (Fig. 10a). The default wd-sweep (7 wds in [0.1, 3] x 3 seeds,
~2.6e5 member-steps per seed) and landscape (9 alphas x 9 fractions x 3000 steps) are GPU jobs: ~8 h
and ~4-5 h of this machine at the measured rates (not run here). Both split into points (one
(wd, seed) run; one training fraction) that `--shard i/n` spreads over a job array.
Measured (seed 0, float32, default run; the same numbers with 1 or 2 threads): train accuracy 99% at
step 135; the weight norm rises from 42.2 to 60.3 (step 175), stays there to ~1e3, then falls; test
accuracy creeps to ~0.2 by 8k, then jumps: 50% at 10.2k, 99% at 10.9k (80x the train step; the
authors' seed: ~100% by ~8k), when the norm drops below its start; it ends at 30.4 (the authors': ~30).
Fixed norm, alpha 0.8: train and test rise together, but how far test goes depends on the seed. Seeds
1 / 2 / 3 (2000 steps): train 99% at steps 290 / 329 / 714, test 99% at 329 / 375 / 1050 (1.1-1.5x;
the authors': both ~100% at ~300). Seed 0 (the default; 3000 steps): train 99% at 598, test peaks at
0.97 and stays there to step 3000 (float64, 2000 steps: 0.986) while the training loss creeps down
(0.13 at step 3000: at this norm the logits are bounded, so the loss cannot reach 0).
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

import common

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "landscape", "wd-sweep"]


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    # 15k steps, the authors' run length: their test accuracy was ~100% by ~8k; ours (seed 0) reaches
    # 99% at 10.9k and the weight norm settles at ~30 by 15k, so 1e4 would stop mid-transition.
    common.add_standard_args(p, modes=MODES, steps=15_000, acc_threshold=0.99)
    p.add_argument("--p", type=int, default=113, help="modulus (inputs a, b in [0, p), '=' is token p)")
    p.add_argument("--train-frac", type=float, default=0.3, help="fraction of the p^2 pairs used for training")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the train/test split (its own generator)")
    p.add_argument("--d-model", type=int, default=128, help="residual stream width")
    p.add_argument("--n-heads", type=int, default=4, help="attention heads (d_head = d_model / n_heads)")
    p.add_argument("--d-mlp", type=int, default=512, help="MLP hidden width")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (AdamW; Adam in fixed-norm runs)")
    p.add_argument("--wd", type=float, default=1.0, help="AdamW weight decay (run mode; ignored with --constrain)")
    p.add_argument("--alpha", type=float, default=1.0, help="init scale: every parameter times alpha (run mode)")
    p.add_argument("--constrain", action="store_true",
                   help="run mode: hold the weight norm fixed at alpha * w0 after every step, wd 0 (Fig. 7b)")
    p.add_argument("--alphas", default=",".join(f"{a:.3g}" for a in np.logspace(-1, 1, 9)),
                   help="landscape mode: init scales / fixed norms alpha (comma-separated; paper: [0.1, 10])")
    p.add_argument("--fracs", default="0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                   help="landscape mode: training fractions (comma-separated; paper: [0.1, 0.9])")
    p.add_argument("--landscape-steps", type=int, default=3000,
                   help="landscape mode: fixed-norm steps per grid point (the paper does not say)")
    p.add_argument("--wds", default=",".join(f"{w:.3g}" for w in np.logspace(-1, math.log10(3), 7)),
                   help="wd-sweep mode: weight decays (comma-separated; paper: about [0.1, 3])")
    p.add_argument("--seeds", default="0,1,2", help="wd-sweep mode: init seeds (comma-separated)")
    p.add_argument("--sweep-steps", type=int, default=200_000,
                   help="wd-sweep mode: step budget (t ~ 1/wd: over 1e5 at wd = 0.1); members that reach the "
                        "test-accuracy threshold leave the ensemble, the run ends when all have")
    common.add_shard_arg(p, "landscape (a point = one training fraction, all alphas) and wd-sweep "
                            "(a point = one (wd, seed) run)")
    args = p.parse_args(argv)

    common.check_standard_args(args)
    common.require(2 <= args.p <= 1000, f"--p must be in 2..1000 (p^2 pairs, p^3 logits), got {args.p}.")
    common.require(0 < args.train_frac < 1, f"--train-frac must be in (0, 1), got {args.train_frac}.")
    common.require(args.d_model > 0 and args.d_mlp > 0 and args.n_heads > 0,
                   "--d-model, --d-mlp and --n-heads must be positive.")
    common.require(args.d_model % args.n_heads == 0,
                   f"--d-model ({args.d_model}) must be divisible by --n-heads ({args.n_heads}).")
    common.require(args.lr > 0, f"--lr must be positive, got {args.lr}.")
    common.require(args.wd >= 0, f"--wd must be >= 0, got {args.wd}.")
    common.require(args.alpha > 0, f"--alpha must be positive, got {args.alpha}.")
    common.require(args.landscape_steps > 0, f"--landscape-steps must be positive, got {args.landscape_steps}.")
    common.require(args.sweep_steps > 0, f"--sweep-steps must be positive, got {args.sweep_steps}.")
    args.shard_pair = common.parse_shard(args.shard)
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    args.frac_list = common.parse_floats(args.fracs, "--fracs")
    args.wd_list = common.parse_floats(args.wds, "--wds")
    args.seed_list = common.parse_ints(args.seeds, "--seeds")
    common.require(args.alpha_list and min(args.alpha_list) > 0, "--alphas must be positive numbers.")
    common.require(args.frac_list and all(0 < f < 1 for f in args.frac_list), "--fracs must be numbers in (0, 1).")
    common.require(args.wd_list and min(args.wd_list) > 0, "--wds must be positive numbers (log-log fit).")
    common.require(args.seed_list and max(args.seed_list) < 2 ** 32, "--seeds must list seeds in 0..2**32-1.")
    for frac in [args.train_frac] + args.frac_list:
        n = int(frac * args.p ** 2)
        common.require(0 < n < args.p ** 2, f"train fraction {frac} of {args.p}^2 pairs leaves an empty split.")
    return args


# ----------------------------------------------------------------------------------------------
# data: all p^2 pairs [a, b, =] -> (a + b) mod p, split by a seeded permutation
# ----------------------------------------------------------------------------------------------
def make_data(p, train_frac, data_seed, device):
    """(train_tokens [N, 3], train_labels [N]), (test_tokens, test_labels), as int64 on the device.
    The split uses its own generator, so it does not depend on the model seed; for a fixed data seed
    the train sets of different fractions are nested (prefixes of one permutation)."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    a, b = a.flatten(), b.flatten()
    tokens = torch.stack([a, b, torch.full_like(a, p)], dim=1)
    labels = (a + b) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(data_seed))
    n_train = int(train_frac * p * p)  # the notebook's int(fraction * len(data)): 3830 for p = 113
    tr, te = perm[:n_train], perm[n_train:]
    return (tokens[tr].to(device), labels[tr].to(device)), (tokens[te].to(device), labels[te].to(device))


# ----------------------------------------------------------------------------------------------
# model: a 1-layer attention + MLP transformer, parameters with a leading ensemble dim E
# ----------------------------------------------------------------------------------------------
def init_params(seed, p, d_model, n_heads, d_mlp, dtype, device):
    """One model's parameters, drawn as the notebook draws them (same order, same scales), from a
    generator seeded with `seed`. Drawn in float32 and cast, so both dtypes start from the same point."""
    g = torch.Generator().manual_seed(seed)
    d_vocab, d_head = p + 1, d_model // n_heads

    def randn(*shape, fan):
        return (torch.randn(*shape, generator=g) / math.sqrt(fan)).to(device, dtype)

    params = {
        "W_E": randn(d_model, d_vocab, fan=d_model),             # token embedding (columns = tokens)
        "W_pos": randn(3, d_model, fan=d_model),                 # positional embedding
        "W_K": randn(n_heads, d_head, d_model, fan=d_model),
        "W_Q": randn(n_heads, d_head, d_model, fan=d_model),
        "W_V": randn(n_heads, d_head, d_model, fan=d_model),
        "W_O": randn(d_model, n_heads * d_head, fan=d_model),
        "W_in": randn(d_mlp, d_model, fan=d_model),
        "b_in": torch.zeros(d_mlp, device=device, dtype=dtype),
        "W_out": randn(d_model, d_mlp, fan=d_model),             # the notebook's scale: 1/sqrt(d_model)
        "b_out": torch.zeros(d_model, device=device, dtype=dtype),
        "W_U": randn(d_model, d_vocab, fan=d_vocab),             # unembedding to all p + 1 tokens
    }
    return params


def stack_members(members):
    """[{name: tensor}] -> {name: leaf tensor [E, ...]}: the ensemble's trainable parameters."""
    return {k: torch.stack([m[k] for m in members]).requires_grad_() for k in members[0]}


def forward_full(P, tokens):
    """The plain model, every position (the notebook's code with an ensemble dim): [E, B, 3, p + 1].
    Reference for `forward` and the model of the authors' loop in bench/authors_loops.py."""
    E, n_heads, d_head, _ = P["W_K"].shape
    n_ctx = tokens.shape[1]
    x = torch.einsum("edbp->ebpd", P["W_E"][:, :, tokens]) + P["W_pos"][:, None, :n_ctx]
    k = torch.einsum("eihd,ebpd->ebiph", P["W_K"], x)
    q = torch.einsum("eihd,ebpd->ebiph", P["W_Q"], x)
    v = torch.einsum("eihd,ebpd->ebiph", P["W_V"], x)
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
    E, n_heads, d_head, d_model = P["W_K"].shape
    B, n_ctx = tokens.shape
    d_vocab = P["W_E"].shape[2]
    # x_table[e, pos, tok] = residual stream at `pos` holding `tok`: [E, n_ctx, V, d]
    x_table = P["W_E"].transpose(1, 2)[:, None] + P["W_pos"][:, :n_ctx, None]
    k_table = torch.einsum("eihd,epvd->epvih", P["W_K"], x_table).reshape(E, n_ctx * d_vocab, n_heads, d_head)
    v_table = torch.einsum("eihd,epvd->epvih", P["W_V"], x_table).reshape(E, n_ctx * d_vocab, n_heads, d_head)
    q_table = torch.einsum("eihd,evd->evih", P["W_Q"], x_table[:, -1])
    # row of (position, token) in the flattened tables; index_select's backward is a cheap index_add
    rows = (torch.arange(n_ctx, device=tokens.device) * d_vocab + tokens).flatten()
    k = k_table.index_select(1, rows).view(E, B, n_ctx, n_heads, d_head)
    v = v_table.index_select(1, rows).view(E, B, n_ctx, n_heads, d_head)
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
    # The cross-entropy is taken in float64 (a [B, p + 1] tensor: cheap). Once memorised, the train loss
    # reaches ~1e-7, where float32 resolves 1 - p_correct to only a few bits: the gradient turns into
    # rounding noise that Adam scales up to full-size steps, and float32 runs show loss spikes and the
    # weight norm regrowing instead of grokking (measured: train loss 4e-7 -> 1e-3 spikes, w back to 60
    # at step 4000). The notebook avoided this by running everything in float64. With the loss in
    # float64, float32 tracks a float64 run (p = 31, frac 0.5, 3000 steps: test acc 0.983 vs 0.983,
    # w 23.4 vs 23.3; with a float32 loss: 0.909, w 30.0).
    loss = F.cross_entropy(logits.reshape(E * B, V).double(), labels.repeat(E), reduction="none").view(E, B).mean(1)
    acc = (logits.argmax(-1) == labels).to(loss.dtype).mean(1)
    return loss.to(logits.dtype), acc.to(logits.dtype)


# ----------------------------------------------------------------------------------------------
# training: E models at once (one per (seed, alpha, wd)), exactly E independent AdamW runs
# ----------------------------------------------------------------------------------------------
def train_ensemble(args, data, seeds, alphas, wds, steps, *, constrain, desc, device, dtype, retire_at=None,
                   on_eval=None):
    """Train one model per (seed, alpha, wd); return (per-member metric dicts, error or None). Each
    member's dict holds "steps" (its evaluated steps) and the curves train/test loss, acc and w.
    constrain=True holds member e's weight norm at alphas[e] * w0[e] (wds ignored, as the authors).
    retire_at (a float, or one per member): a member leaves the ensemble at the first evaluation where
    its test accuracy reached it (wd-sweep: its time to generalize is then known), so a sweep costs the
    sum of the members' times, not E x the longest; the run ends when every member has left.
    on_eval(ms): called after each evaluation (run mode saves metrics.json: a killed run keeps its curves)."""
    (x_tr, y_tr), (x_te, y_te) = data
    device = torch.device(device)  # a name ("cpu") works too
    E = len(seeds)
    members = [init_params(s, args.p, args.d_model, args.n_heads, args.d_mlp, dtype, device) for s in seeds]
    P = stack_members(members)
    params = list(P.values())
    w_target = common.scale_by_alpha_batched_(params, alphas)  # every parameter (the paper, the authors' code)
    wd_t = torch.tensor(wds, dtype=dtype, device=device)
    # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
    opt = torch.optim.Adam(params, lr=args.lr, betas=(0.9, 0.98), weight_decay=0.0, capturable=device.type == "cuda")

    def train_step():  # full batch: on CUDA one graph replay (common.graph_step), on CPU as written
        loss, _ = loss_and_acc(P, x_tr, y_tr)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if not constrain:
            common.decay_weights_(params, args.lr, wd_t)  # + Adam(weight_decay=0) = AdamW, per member
        opt.step()
        if constrain:
            common.project_to_norm_batched_(params, w_target)  # fused, no host sync
    run_step = common.graph_step(train_step, device)

    eval_at = set(common.log_steps(steps, args.eval_points))
    ms = [{k: [] for k in ("steps", "train_loss", "test_loss", "train_acc", "test_acc", "w")} for _ in range(E)]
    active = list(range(E))  # ensemble row i holds member active[i]
    if retire_at is not None and not isinstance(retire_at, (list, tuple)):
        retire_at = [retire_at] * E
    bar = common.progress(steps, desc)
    for step in range(steps + 1):
        if step in eval_at:
            with torch.no_grad():
                tr_loss, tr_acc = loss_and_acc(P, x_tr, y_tr)
                te_loss, te_acc = loss_and_acc(P, x_te, y_te)
                w = common.batched_norm(params)
                row = torch.stack([tr_loss, te_loss, tr_acc, te_acc, w]).tolist()  # the one host sync
            err = common.nonfinite(row[0] + row[1], step)
            if err:
                bar.close()
                return ms, err
            for i, e in enumerate(active):
                ms[e]["steps"].append(step)
                for k, col in zip(("train_loss", "test_loss", "train_acc", "test_acc", "w"), row):
                    ms[e][k].append(col[i])
            bar.set_postfix_str(_postfix(row, E, len(active)))
            if on_eval is not None:
                on_eval(ms)
            if retire_at is not None:
                keep = [i for i, e in enumerate(active) if row[3][i] < retire_at[e]]
                if not keep:
                    break
                if len(keep) < len(active):
                    active = [active[i] for i in keep]
                    P, opt = _keep_rows(P, opt, keep)
                    params = list(P.values())
                    w_target, wd_t = w_target[keep], wd_t[keep]
                    run_step = common.graph_step(train_step, device)  # a graph holds the old tensors: capture anew
        if step == steps:
            break
        run_step()
        bar.update()
    bar.close()
    return ms, None


def _keep_rows(P, opt, keep):
    """The ensemble restricted to rows `keep`: new parameters and an Adam carrying their moments on
    (Adam is element-wise, so the kept members continue exactly as before)."""
    idx = torch.tensor(keep, device=next(iter(P.values())).device)
    new_P = {k: v.detach()[idx].clone().requires_grad_() for k, v in P.items()}
    new_opt = torch.optim.Adam(list(new_P.values()), **{k: opt.defaults[k] for k in ("lr", "betas", "eps", "capturable")})
    for old, new in zip(P.values(), new_P.values()):
        state = opt.state.get(old)
        if state:
            new_opt.state[new] = {k: (v[idx].clone() if k != "step" else v.clone()) for k, v in state.items()}
    return new_P, new_opt


def _postfix(row, E, n_active):
    tr_loss, te_loss, tr_acc, te_acc, w = row
    if E == 1:
        return f"train {tr_acc[0]:.3f} test {te_acc[0]:.3f} | loss {tr_loss[0]:.1e}/{te_loss[0]:.1e} | w {w[0]:.1f}"
    return (f"train acc {min(tr_acc):.2f}..{max(tr_acc):.2f} test acc {min(te_acc):.2f}..{max(te_acc):.2f}"
            + (f" | {n_active}/{E} training" if n_active < E else ""))


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def run_mode(args, out, device, dtype):
    """Fig. 7a (default) or, with --constrain, Fig. 7b."""
    data = make_data(args.p, args.train_frac, args.data_seed, device)
    wd = 0.0 if args.constrain else args.wd
    t0 = time.time()
    [m], err = train_ensemble(args, data, [args.seed], [args.alpha], [wd], args.steps,
                              constrain=args.constrain, device=device, dtype=dtype,
                              desc=f"alpha={args.alpha:g} " + ("fixed norm" if args.constrain else f"wd={wd:g}"),
                              on_eval=lambda ms: common.write_json(out / "metrics.json", ms[0]))
    wall = time.time() - t0
    common.write_json(out / "metrics.json", m)
    steps = m["steps"]
    if err:
        raise err
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    peak = int(np.argmax(m["w"]))
    summary.update(alpha=args.alpha, wd=wd, constrain=args.constrain, p=args.p, train_frac=args.train_frac,
                   n_train=len(data[0][1]), w_max=m["w"][peak], w_max_step=steps[peak],
                   wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"wspace": 0.45})
    kind = f"Constrained norm alpha = {args.alpha:g}" if args.constrain else \
        f"Unconstrained, alpha = {args.alpha:g}, weight decay = {wd:g}"
    common.plot_curves(axes[0], steps, m, title=f"1L transformer, modular addition (p={args.p})\n{kind}")
    common.plot_curves(axes[1], steps, m, acc=False, title="cross-entropy")
    for twin in fig.axes[2:]:  # the weight-norm axes: a fixed norm would otherwise be zoomed into float noise
        twin.set_ylim(0.7 * min(m["w"]), 1.15 * max(m["w"]))
    common.savefig(fig, out / "curves.png")
    print(f"train {args.acc_threshold:.0%} at step {summary['train_acc_step']}, test at {summary['test_acc_step']}; "
          f"w: start {summary['w_init']:.1f}, peak {summary['w_max']:.1f} (step {summary['w_max_step']}), "
          f"end {summary['w_final']:.1f}")
    return summary


def landscape_mode(args, out, device, dtype):
    """Fig. 9 (App. B): for each training fraction, train one fixed-norm model per alpha (one ensemble,
    Adam, no wd) and record its reduced train and test loss: best over training (plotted) and final.
    A grid point is one training fraction (all alphas): out/points/frac_<f>.json; --shard i/n splits them.
    Cost ~ len(alphas) x sum(fracs) x p^2 x steps: the default grid is a GPU job (hours on 2 CPU cores);
    a CPU look (63 s; 7 min on 2 busy cores): --p 31 --alphas 0.1,0.3,1,3,10 --fracs 0.2,0.4,0.6,0.8 --landscape-steps 600
    --eval-points 40."""
    alphas, fracs = args.alpha_list, args.frac_list
    names = [f"frac_{f:g}" for f in fracs]
    todo = common.shard_todo(names, out, args.shard_pair, grid_settings(args))
    for frac, name in zip(fracs, names):
        if name not in todo:
            continue
        data = make_data(args.p, frac, args.data_seed, device)
        t0 = time.time()
        ms, err = train_ensemble(args, data, [args.seed] * len(alphas), alphas, [0.0] * len(alphas),
                                 args.landscape_steps, constrain=True, desc=f"frac={frac:g}",
                                 device=device, dtype=dtype)
        curves = [{"frac": frac, "alpha": a, **m} for a, m in zip(alphas, ms)]
        if err:
            common.write_json(out / "metrics.json", {"members": curves})
            raise err
        points = [{"frac": frac, "alpha": a, "w": m["w"][-1],
                   "train_loss_best": min(m["train_loss"]), "test_loss_best": min(m["test_loss"]),
                   "train_loss_final": m["train_loss"][-1], "test_loss_final": m["test_loss"][-1],
                   "train_acc_best": max(m["train_acc"]), "test_acc_best": max(m["test_acc"]),
                   "train_acc_final": m["train_acc"][-1], "test_acc_final": m["test_acc"][-1]} for a, m in zip(alphas, ms)]
        common.write_json(common.point_path(out, name),
                          {"seconds": time.time() - t0, "steps": args.landscape_steps, "points": points, "members": curves})
    if common.is_piece(args.shard_pair):  # one shard of several: rows saved, the merge draws
        common.piece_done(out, names, args.shard_pair, todo)
        return None

    rows, missing = common.collect_points(out, names)
    common.write_json(out / "metrics.json", {"members": [c for r in rows.values() for c in r["members"]]})
    summary = {"alphas": alphas, "fracs": fracs, "fracs_done": [f for f, n in zip(fracs, names) if n in rows],
               "missing": missing,
               "steps": args.landscape_steps, "points": [pt for r in rows.values() for pt in r["points"]],
               "wall_seconds": sum(r["seconds"] for r in rows.values())}
    common.write_json(out / "summary.json", summary)
    plot_landscape(summary, args.p, out / "landscape.png")
    print(f"landscape: {len(rows)}/{len(fracs)} training fractions in {out}")
    return summary


def grid_settings(args):
    """The flags a grid point's numbers depend on (points of different settings never share an --out);
    None for the modes without grid points."""
    mode_keys = {"landscape": ("alphas", "landscape_steps"),
                 "wd-sweep": ("train_frac", "sweep_steps", "acc_threshold")}.get(args.mode)
    if mode_keys is None:
        return None
    keys = ("mode", "p", "data_seed", "seed", "d_model", "n_heads", "d_mlp", "lr", "eval_points", "dtype") + mode_keys
    return {k: getattr(args, k) for k in keys}


def plot_landscape(summary, p, path):
    """Heatmaps of the reduced train/test loss (best during training) and best test accuracy over
    (log10 alpha, training fraction), from a landscape summary.json."""
    alphas, fracs, grid = summary["alphas"], summary["fracs"], summary["points"]

    def z(key, floor=None):  # [frac, alpha]; NaN where a point is missing (a shard not run yet)
        v = np.full((len(fracs), len(alphas)), np.nan)
        for g in grid:
            v[fracs.index(g["frac"]), int(np.argmin([abs(math.log(a / g["alpha"])) for a in alphas]))] = g[key]
        return np.maximum(v, floor) if floor else v  # a loss of exactly 0 has no place on a log colour scale

    # log10(alpha) on a linear axis: the heatmap's cell edges are then midpoints in log space
    x = np.log10(alphas)
    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), gridspec_kw={"wspace": 0.35})
    for ax, key, title in ((axes[0], "train_loss_best", "reduced train loss"),
                           (axes[1], "test_loss_best", "reduced test loss")):
        common.plot_heatmap(ax, x, fracs, z(key, 1e-7), log_color=True, levels=[0.01, 0.1, 1],
                            xlabel="log10 alpha  (w = alpha w0)", ylabel="training fraction", title=title,
                            colorbar_label="loss")
    common.plot_heatmap(axes[2], x, fracs, z("test_acc_best"), levels=[0.5, 0.9, 0.99],
                        xlabel="log10 alpha  (w = alpha w0)", ylabel="training fraction",
                        title="test accuracy (best)", colorbar_label="accuracy")
    fig.suptitle(f"1L transformer on modular addition (p={p}): fixed-norm landscape, "
                 f"{summary['steps']} steps per point ({len(summary['fracs_done'])}/{len(fracs)} fractions)")
    common.savefig(fig, path)


def wd_sweep_mode(args, out, device, dtype):
    """Fig. 10a (App. C(a)): steps until test accuracy reaches --acc-threshold vs weight decay, per seed,
    with a fitted log-log slope per seed (paper: t ~ 1/wd, slope -1). All (wd, seed) pairs train as one
    ensemble; a member leaves it once it reached the threshold, the run ends when all have (or at
    --sweep-steps; a member that never reaches it is censored: drawn at the budget, left out of the fit).
    A grid point is one (wd, seed) run: out/points/wd_<wd>_seed_<s>.json, written when the member leaves the
    ensemble (a killed sweep keeps the members that finished); --shard i/n splits them.
    Cost: (3830 examples) x the sum over members of their t (t > 1e5 at wd = 0.1): a GPU job.
    A CPU look (2.4 min; 24 min on 2 busy cores; measured slopes -1.29 and -0.89): --p 31 --train-frac 0.5
    --wds 0.5,0.8,1.25,2 --seeds 0,1 --acc-threshold 0.9 --sweep-steps 10000."""
    pairs = [(w, s) for s in args.seed_list for w in args.wd_list]
    names = [f"wd_{w:g}_seed_{s}" for w, s in pairs]
    owned = set(common.shard_todo(names, out, args.shard_pair, grid_settings(args)))
    todo = [(pair, name) for pair, name in zip(pairs, names) if name in owned]
    t0, saved = time.time(), set()

    def save(ms, final=False):  # a member's point is saved once it retires (reached) or at the end (censored)
        for i, (((w, s), name), m) in enumerate(zip(todo, ms)):
            if i not in saved and (final or (m["test_acc"] and m["test_acc"][-1] >= args.acc_threshold)):
                common.write_json(common.point_path(out, name),
                                  {"wd": w, "seed": s, "seconds": time.time() - t0, **m})
                saved.add(i)
    if todo:
        data = make_data(args.p, args.train_frac, args.data_seed, device)
        ms, err = train_ensemble(args, data, [s for (_, s), _ in todo], [1.0] * len(todo), [w for (w, _), _ in todo],
                                 args.sweep_steps, constrain=False, desc="wd-sweep", device=device, dtype=dtype,
                                 retire_at=args.acc_threshold, on_eval=save)
        if err:
            common.write_json(out / "metrics.json", {"members": [{"wd": w, "seed": s, **m} for ((w, s), _), m in zip(todo, ms)]})
            raise err
        save(ms, final=True)
    if common.is_piece(args.shard_pair):  # one shard of several: points saved, the merge draws
        common.piece_done(out, names, args.shard_pair, [name for _, name in todo])
        return None
    saved, missing = common.collect_points(out, names)
    done = list(saved.values())
    common.write_json(out / "metrics.json", {"members": done})
    members = [{"wd": m["wd"], "seed": m["seed"], **common.grok_summary(m["steps"], m, acc_threshold=args.acc_threshold)}
               for m in done]
    slopes = {}
    for s in args.seed_list:
        mine = [mem for mem in members if mem["seed"] == s]
        slopes[str(s)] = {"slope_test": common.fit_loglog_slope([m["wd"] for m in mine], [m["test_acc_step"] for m in mine]),
                          "slope_train": common.fit_loglog_slope([m["wd"] for m in mine], [m["train_acc_step"] for m in mine])}
    pooled = {f"slope_{k}": common.fit_loglog_slope([m["wd"] for m in members], [m[f"{k}_acc_step"] for m in members])
              for k in ("train", "test")}  # all seeds in one fit (keys: docs/DESIGN.md, The contract every script keeps); the paper's claim is per seed
    summary = {"members": members, "members_done": f"{len(done)}/{len(pairs)}", "missing": missing,
               "slopes_per_seed": slopes, **pooled,
               "steps_budget": args.sweep_steps, "p": args.p, "train_frac": args.train_frac,
               "wall_seconds": max((m["seconds"] for m in done), default=0.0)}  # one job: its wall time
    common.write_json(out / "summary.json", summary)
    print("fitted log-log slope of test steps vs wd, per seed (paper: about -1): "
          + ", ".join(f"seed {s}: {v['slope_test']}" for s, v in slopes.items()))

    plt = common.plt()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for i, s in enumerate(args.seed_list):
        color = f"C{i}"
        mine = [m for m in members if m["seed"] == s]
        reached = [(m["wd"], m["test_acc_step"]) for m in mine if m["test_acc_step"] is not None]
        censored = [m["wd"] for m in mine if m["test_acc_step"] is None]
        slope = slopes[str(s)]["slope_test"]
        if reached:
            ax.plot(*zip(*reached), "o-", color=color,
                    label=f"seed {s}" + (f" (slope {slope:.2f})" if slope is not None else ""))
        if censored:
            ax.plot(censored, [args.sweep_steps] * len(censored), "^", mfc="none", color=color)
    x = np.array(args.wd_list)
    tests = [(m["wd"], m["test_acc_step"]) for m in members if m["test_acc_step"]]
    if tests:  # a 1/wd guide through the geometric mean of the reached points
        c = np.exp(np.mean([np.log(t * w) for w, t in tests]))
        ax.plot(x, c / x, "k:", label="~ 1/wd")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("weight decay")
    ax.set_ylabel(f"steps to {args.acc_threshold:.0%} test accuracy")
    ax.set_title(f"1L transformer, modular addition (p={args.p})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    common.savefig(fig, out / "wd_sweep.png")
    return summary


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    mode = {"run": run_mode, "landscape": landscape_mode, "wd-sweep": wd_sweep_mode}[args.mode]
    summary = mode(args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
