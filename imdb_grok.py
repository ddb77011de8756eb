"""Grokking of an LSTM on real IMDb movie reviews, and its reduced landscape (Omnigrok Sec. 4, Fig. 4).

A 2-layer LSTM reads a review (its first --seq-len kept words among the training split's 1,000 most frequent,
left-padded); a linear read-out of the last position gives one logit (binary cross-entropy). Every parameter
is multiplied by alpha after PyTorch's default init. Reads <data-dir>/IMDB/reviews.json (`python fetch_data.py imdb`).

    python imdb_grok.py                              # run: alpha 6 / wd 1 beside the control alpha 1 / wd 0
    python imdb_grok.py --seq-len 120                # the same in 10 min on 2 CPU cores (a weaker signature)
    python imdb_grok.py --mode landscape             # Fig. 4 left: reduced train/test error over alpha x N
    python imdb_grok.py --mode landscape --scale paper --shard 3/8   # job 3 of 8: the authors' 11 x 15 grid

--scale quick (the default without a GPU): hidden 64, 200 tokens, 8,000 steps, a 7 x 4 landscape; paper (the default
on a GPU): hidden 256, 500 tokens, 75,000 steps, the authors' 11 x 15 grid. Why, and choices: docs/NOTES.md.

Expected (quick): alpha 6 / wd 1 fits the training set within ~350 steps, test accuracy stays near 0.55 while
the weight norm falls, then rises to ~0.68 as the norm passes w0; the control reaches 0.65 by step ~260. Weak,
as in the paper. Landscape at small N: training error 0 up to alpha ~5 (the L), test error rising with alpha
(the right arm of the U). Measured: README.md "Results measured here", docs/reproduce-quick/REPORT.md (Fig. 4).
"""
import hashlib
import itertools
import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common
import kernels

# --- arguments -------------------------------------------------------------------------------------------------
PAPER_SIZES = [int(s) for s in 10 ** np.linspace(2, 4, 11)] + [15848, 25118, 39810, 50000]  # the authors'
SCALES = {  # what --scale sets, unless the flag is given
    "paper": {"hidden": 256, "seq_len": 500, "steps": 75_000, "min_steps": 0, "sizes": ",".join(map(str, PAPER_SIZES)),
              "alphas": ",".join(f"{a:.4g}" for a in 10 ** np.linspace(-1, 1, 11))},
    "quick": {"hidden": 64, "seq_len": 200, "steps": 8000, "min_steps": 200, "sizes": "100,300,1000,3000",
              "alphas": ",".join(f"{a:.4g}" for a in np.logspace(-1, 1, 7))},
}
RENAMED = {"--preset": "--scale quick|paper", "--paper-grid": "--scale paper", "--mode fetch": "python fetch_data.py imdb",
           "--offline": "python fetch_data.py --offline (the scripts never download)",
           "--imdb-tarball": "python fetch_data.py imdb --imdb-tarball FILE"}


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0], renamed=RENAMED)
    common.add_standard_args(p, modes=["run", "landscape"], steps=None, acc_threshold=0.65,
                             steps_help="run: optimizer steps (default: the scale's); landscape: steps per grid point "
                                        "(default: --epochs epochs of the row's training set)")
    p.set_defaults(eval_points=None)
    p.add_argument("--scale", default="auto", choices=["auto", "quick", "paper"],
                   help="quick: hidden 64, 200 tokens, 8k steps, a small grid; paper: hidden 256, 500 tokens, 75k steps, "
                        "the authors' grid; auto = paper on a GPU, quick otherwise")
    p.add_argument("--data-dir", default="data", help="IMDb lives in <data-dir>/IMDB/reviews.json (+ a token cache)")
    p.add_argument("--size", type=int, default=1000, help="reviews used (train + test, a seeded subset of the 50,000)")
    p.add_argument("--test-frac", type=float, default=0.25, help="held-out fraction, stratified (paper App. A)")
    p.add_argument("--vocab", type=int, default=1000, help="vocabulary: most frequent words of the training split")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per review (default: the scale's)")
    p.add_argument("--embed", type=int, default=64, help="embedding dimension (paper App. A)")
    p.add_argument("--hidden", type=int, default=None, help="LSTM hidden size (default: the scale's; paper text 128)")
    p.add_argument("--layers", type=int, default=2, help="LSTM layers (paper App. A)")
    p.add_argument("--alpha", type=float, default=6.0, help="init scale, w = alpha * w0 (the authors' grokking run: 6)")
    p.add_argument("--wd", type=float, default=1.0, help="AdamW weight decay (the authors' grokking run: 1)")
    p.add_argument("--control-alpha", type=float, default=1.0, help="run: alpha of the control run (Fig. 4d bottom)")
    p.add_argument("--control-wd", type=float, default=0.0, help="run: weight decay of the control run")
    p.add_argument("--no-control", action="store_true", help="run: train only --alpha/--wd, not the control")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: run 3e-4, landscape 1e-3: the authors')")
    p.add_argument("--batch-size", type=int, default=50, help="batch size (the authors' code)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip (the authors' code; 0 = none)")
    common.add_constrain_arg(p, "run")
    p.add_argument("--eval-chunk", type=int, default=250, help="reviews per forward pass when evaluating")
    p.add_argument("--alphas", default=None, help="landscape: fixed norms alpha = w/w0 (default: the scale's)")
    p.add_argument("--sizes", default=None, help="landscape: data sizes N = train + test (default: the scale's)")
    p.add_argument("--epochs", type=int, default=5, help="landscape: epochs per grid point (the authors' code)")
    p.add_argument("--min-steps", type=int, default=None, help="landscape: at least this many steps a point")
    common.add_shard_arg(p, "landscape (a point = a row of the grid: one N, all alphas)")
    common.add_checkpoint_arg(p)
    args = p.parse_args(argv)

    if args.scale == "auto":
        args.scale = "paper" if args.device != "cpu" and torch.cuda.is_available() else "quick"
    landscape = args.mode == "landscape"
    for k, v in {**SCALES[args.scale], "lr": 1e-3 if landscape else 3e-4, "eval_points": 5 if landscape else 150}.items():
        if getattr(args, k) is None and not (k == "steps" and landscape):  # landscape: steps from --epochs
            setattr(args, k, v)
    common.check_standard_args(args)
    common.positive(args, "alpha", "control_alpha", "lr", "vocab", "seq_len", "embed", "hidden", "layers",
                    "batch_size", "eval_chunk", "epochs")
    common.nonnegative(args, "wd", "control_wd", "clip")
    common.require(args.size >= 4, f"--size must be at least 4 reviews (2 per class), got {args.size}.")
    common.require(0 < args.test_frac < 1, f"--test-frac must be in (0, 1), got {args.test_frac}.")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    common.require(args.alpha_list and min(args.alpha_list) > 0, f"--alphas must be positive numbers, got {args.alphas!r}.")
    args.size_list = sorted(set(common.parse_ints(args.sizes, "--sizes")))
    common.require(args.size_list and min(args.size_list) >= 4, f"--sizes must be integers >= 4, got {args.sizes!r}.")
    args.shard_pair = common.parse_shard(args.shard)
    return args


# --- data and model: <data-dir>/IMDB/reviews.json (docs/DATA.md, IMDb), tokenized once per setting and cached ---
def reviews_path(data_dir):
    return Path(data_dir) / "IMDB" / "reviews.json"


# NLTK's English stop-word list (179 words), the set the authors' code dropped.
STOP_WORDS = set("""
a about above after again against ain all am an and any are aren aren't as at be because been before being below
between both but by can couldn couldn't d did didn didn't do does doesn doesn't doing don don't down during each few
for from further had hadn hadn't has hasn hasn't have haven haven't having he her here hers herself him himself his
how i if in into is isn isn't it it's its itself just ll m ma me mightn mightn't more most mustn mustn't my myself
needn needn't no nor not now o of off on once only or other our ours ourselves out over own re s same shan shan't she
she's should should've shouldn shouldn't so some such t than that that'll the their theirs them themselves then there
these they this those through to too under until up ve very was wasn wasn't we were weren weren't what when where
which while who whom why will with won won't wouldn wouldn't y you you'd you'll you're you've your yours yourself
yourselves""".split())
_BR = re.compile(r"<br\s*/?>", re.IGNORECASE)
_NOT_LETTERS = re.compile(r"[^\w]|\d")  # punctuation, and digits (the authors' three regexes in one)


def words(text):
    """A review's kept words, in order: lower-case, <br /> tags out, per whitespace-separated word the
    punctuation and digits stripped ("don't" -> "dont", "it's" -> "its"), then stop words and empty words
    dropped. The stop-word test comes after stripping, as in the authors' code."""
    stripped = (_NOT_LETTERS.sub("", w) for w in _BR.sub(" ", text).lower().split())
    return [w for w in stripped if w and w not in STOP_WORDS]


def build_vocab(tokenized, n_words):
    """{word: index} for the n_words most frequent words (ties: first seen first), indices 1..n_words."""
    counts = Counter(w for ws in tokenized for w in ws)
    return {w: i + 1 for i, (w, _) in enumerate(counts.most_common(n_words))}


def encode(tokenized, vocab, seq_len):
    """[n, seq_len] int64: the first seq_len in-vocabulary words of each review, left-padded with 0
    (the read-out sees the review's last kept word at the last position)."""
    x = torch.zeros(len(tokenized), seq_len, dtype=torch.long)
    for i, ws in enumerate(tokenized):
        ids = [vocab[w] for w in ws if w in vocab][:seq_len]
        if ids:
            x[i, -len(ids):] = torch.tensor(ids)
    return x


def stratified_split(labels, test_frac, g):
    """Seeded per-class split: round(test_frac * n_c) of each class to test. Returns (train, test) index
    tensors, each in increasing order."""
    parts = []  # per class: (test, train)
    for c in (0, 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        parts.append(idx.tensor_split([round(test_frac * len(idx))]))
    test, train = zip(*parts)
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_imdb(args, size, device):
    """((x_train, y_train), (x_test, y_test)) for `size` reviews: tokens [n, seq_len] on the device, labels
    float {0, 1}. Built once per setting and cached under <data-dir>/IMDB/cache/."""
    path = reviews_path(args.data_dir)
    common.require(path.is_file(), f"IMDb is not in {path}; run `python fetch_data.py imdb` (or make data).")
    key = {"reviews_bytes": path.stat().st_size, "size": size, "seed": args.seed, "test_frac": args.test_frac,
           "vocab": args.vocab, "seq_len": args.seq_len, "tokenizer": 1}
    cache = path.parent / "cache" / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".pt")
    d = None
    if cache.is_file():
        try:
            d = torch.load(cache, weights_only=True)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file: it is only a cache, so rebuild it
            print(f"{cache} is unreadable ({str(e).strip()[:60]}); building it again.", flush=True)
    if d is None:
        try:
            reviews = json.loads(path.read_text())
            texts, labels = [r["t"] for r in reviews], [r["s"] for r in reviews]
            ok = all(isinstance(t, str) for t in texts) and all(v in (0, 1) and not isinstance(v, float) for v in labels)
        except (ValueError, KeyError, TypeError):
            ok = False
        common.require(ok, f"could not read {path}: not a list of {{\"t\": text, \"s\": 0 or 1}} reviews; delete it and "
                           "run `python fetch_data.py imdb`.")
        labels = torch.tensor(labels)
        common.require(size <= len(texts), f"--size {size} is larger than the {len(texts)} reviews in {path}.")
        g = torch.Generator().manual_seed(args.seed)  # the data's own generator (not the model init's)
        pick = torch.randperm(len(texts), generator=g)[:size]
        tr, te = stratified_split(labels[pick], args.test_frac, g)
        common.require(len(tr) > 0 and len(te) > 0, f"--size {size} leaves an empty train or test split.")
        tok_tr, tok_te = ([words(texts[pick[i]]) for i in split.tolist()] for split in (tr, te))
        vocab = build_vocab(tok_tr, args.vocab)  # from the training split only
        d = {"x_train": encode(tok_tr, vocab, args.seq_len), "y_train": labels[pick[tr]],
             "x_test": encode(tok_te, vocab, args.seq_len), "y_test": labels[pick[te]],
             "vocab": sorted(vocab, key=vocab.get)}
        cache.parent.mkdir(parents=True, exist_ok=True)
        common.save_atomic(d, cache)
    return [(d[f"x_{s}"].to(device), d[f"y_{s}"].to(device, torch.float32)) for s in ("train", "test")]


class SentimentLSTM(nn.Module):
    """Embedding(vocab + 1, embed) -> LSTM(layers, hidden) -> Linear(hidden, 1) on the last position."""

    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.embedding = nn.Embedding(vocab + 1, embed)
        self.lstm = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):  # x: [B, T] token ids -> logits [B]
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out[:, -1]).squeeze(-1)


def make_model(args, device, dtype):
    torch.manual_seed(args.seed)  # every member starts from the same init, as its single run would
    return SentimentLSTM(args.vocab, args.embed, args.hidden, args.layers).to(device, dtype)


@torch.no_grad()
def evaluate(model, x, y, chunk):
    """Mean BCE and accuracy on all of (x, y), as 0-d device tensors (no host sync)."""
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.float64, device=x.device)
    for i in range(0, len(x), chunk):
        logits = model(x[i:i + chunk])
        loss += F.binary_cross_entropy_with_logits(logits, y[i:i + chunk].to(logits.dtype), reduction="sum")
        correct += ((logits > 0) == (y[i:i + chunk] > 0.5)).sum()
    return loss / len(x), correct / len(x)


# --- training: members (alpha, wd) are separate models stepped in turn (own CUDA stream each on a GPU) ---------
def batch_buffers(device):
    """Whether a step reads its batch from a buffer, for CUDA graph replays (a test forces it on CPU)."""
    return device.type == "cuda"


def train(args, data, members, steps, *, constrain, desc, device, dtype, eval_at=None, ckpt=None):
    """members: dicts with alpha and wd, each exactly the single run with those values (same init, same batches).
    Evaluates at the steps eval_at (default: --eval-points log-spaced ones). ckpt: a common.Checkpoint to resume
    from and save to (run mode). Returns (evaluated steps, per-member metric dicts, NonFiniteLoss or None)."""
    x_tr, y_tr = data[0]
    state = ckpt and ckpt.load()
    start = state["step"] if state else 0
    runs = []
    for e, mem in enumerate(members):
        model = make_model(args, device, dtype)
        params = list(model.parameters())
        _, w = common.scale_by_alpha_(params, mem["alpha"])  # the authors: p.data = alpha * p.data
        if constrain == "per-tensor":  # each tensor's norm now, on the device
            w = torch.stack([p.detach().norm() for p in params])
        # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=mem["wd"] if common.decays(constrain) else 0.0,
                                foreach=True, capturable=device.type == "cuda")
        if state:
            with torch.no_grad():
                torch._foreach_copy_(params, state["params"][e])
            opt.load_state_dict(state["opt"][e])
        stream = torch.cuda.Stream(device) if device.type == "cuda" and len(members) > 1 else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))  # the init and data are made on the default stream
        batches = common.epoch_batches(len(x_tr), args.batch_size, args.seed, device)
        runs.append({"model": model, "params": params, "opt": opt, "w": w, "stream": stream, "graphs": {},
                     "batches": itertools.islice(batches, start, None)})

    def train_step(run, b):  # b: the batch's indices into the training set
        loss = F.binary_cross_entropy_with_logits(run["model"](x_tr[b]), y_tr[b].to(dtype))
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:  # the authors' clip 5; foreach, no host sync (error_if_nonfinite=False), so capturable
            nn.utils.clip_grad_norm_(run["params"], args.clip)
        run["opt"].step()
        if constrain:  # back onto ||theta|| = w (per-tensor: each tensor's norm = w[i]); separate models, no [E, ...]
            kernels.project_to_norm_(run["params"], run["w"], mode=common.CONSTRAIN[constrain])

    def graphed_step(run, b):  # one CUDA graph replay (common.graph_step); a graph replays fixed shapes and
        # addresses, so the batch's indices go into a buffer it reads, and an epoch's short last batch has its own
        if len(b) not in run["graphs"]:
            buf = torch.empty_like(b)
            run["graphs"][len(b)] = buf, common.graph_step(lambda: train_step(run, buf), device)
        buf, step_fn = run["graphs"][len(b)]
        buf.copy_(b)
        step_fn()
    run_step = graphed_step if batch_buffers(device) else train_step

    def measure(run):  # [train loss, test loss, train acc, test acc, w] as a device tensor (no host sync)
        with torch.cuda.stream(run["stream"]):  # None: a no-op
            run["model"].eval()
            (tr_loss, tr_acc), (te_loss, te_acc) = (evaluate(run["model"], x, y, args.eval_chunk) for x, y in data)
            run["model"].train()
            row = torch.stack([tr_loss, te_loss, tr_acc, te_acc, common.global_norm(run["params"]).to(torch.float64)])
        if run["stream"] is not None:  # the default stream waits for it (the host does not)
            torch.cuda.current_stream(device).wait_stream(run["stream"])
        return row

    eval_at = set(eval_at or common.log_steps(steps, args.eval_points))
    keys = ("train_loss", "test_loss", "train_acc", "test_acc", "w")
    evaluated, m = (state["evaluated"], state["m"]) if state else ([], [{k: [] for k in keys} for _ in members])
    err = None
    bar = common.progress(steps, desc)
    bar.update(start)
    for step in range(start, steps + 1):
        if step in eval_at and step not in evaluated[-1:]:
            table = torch.stack([measure(run) for run in runs]).tolist()  # the one host sync of an evaluation
            cols = [list(col) for col in zip(*table)]  # per key: the members' values
            err = common.nonfinite(cols[0] + cols[1], step)
            if err:
                break
            evaluated.append(step)
            for me, row in zip(m, table):
                for k, v in zip(keys, row):
                    me[k].append(v)
            bar.set_postfix_str(common.postfix(*cols))
            if ckpt:
                ckpt.save(lambda: {"step": step, "evaluated": evaluated, "m": m, "params": [r["params"] for r in runs],
                                   "opt": [r["opt"].state_dict() for r in runs]})
        if step == steps:
            break
        for run in runs:
            with torch.cuda.stream(run["stream"]):
                run_step(run, next(run["batches"]))
        bar.update(1)
    bar.close()
    return evaluated, m, err


# --- modes -----------------------------------------------------------------------------------------------------
def run_mode(args, out, data, device, dtype):
    """Fig. 4d: the grokking run (alpha, wd) and, unless --no-control, the control (alpha 1, wd 0)."""
    members = [{"alpha": args.alpha, "wd": args.wd}] + ([] if args.no_control else
                                                        [{"alpha": args.control_alpha, "wd": args.control_wd}])
    n_tr, n_te = len(data[0][0]), len(data[1][0])
    t0 = time.time()
    ckpt = common.Checkpoint(out, args.checkpoint_every)
    steps, ms, err = train(args, data, members, args.steps, constrain=args.constrain, device=device, dtype=dtype,
                           desc=" vs ".join(f"alpha={mem['alpha']:g} wd={mem['wd']:g}" for mem in members), ckpt=ckpt)
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, "runs": [mem | m for mem, m in zip(members, ms)]})
    ckpt.done()
    if err:
        raise err
    summaries = [common.grok_summary(steps, m, acc_threshold=args.acc_threshold) | mem | {"constrain": args.constrain}
                 for mem, m in zip(members, ms)]
    summary = summaries[0] | {"n_train": n_tr, "n_test": n_te, "preset": "paper" if args.scale == "paper" else "cpu",
                              "hidden": args.hidden, "seq_len": args.seq_len, "wall_seconds": wall,
                              "models_trained": len(members), "steps_per_second": args.steps / wall}
    summary |= {"control": summaries[1]} if len(summaries) > 1 else {}
    common.write_json(out / "summary.json", summary)

    fig, axes = common.plt().subplots(len(members), 2, figsize=(12.5, 4 * len(members)), squeeze=False, layout="constrained")
    for row, mem, m in zip(axes, members, ms):
        common.plot_curves(row[0], steps, m, title=f"LSTM on IMDb, {n_tr} train / {n_te} test reviews\nalpha="
                           f"{mem['alpha']:g}, wd={mem['wd']:g} ({args.constrain or 'unconstrained'} norm)")
        row[0].set_ylim(0.4, 1.02)  # as the paper's panels: chance is 0.5
        common.plot_curves(row[1], steps, m, acc=False, title="binary cross-entropy")
    common.savefig(fig, out / "curves.png")
    for s in summaries:
        print(f"alpha={s['alpha']:g} wd={s['wd']:g}: train acc >= {args.acc_threshold} at step {s['train_acc_step']}, "
              f"test at {s['test_acc_step']} (ratio {s['grok_ratio']}); final test acc {s['final_test_acc']:.3f}; "
              f"w {s['w_init']:.0f} -> {s['w_final']:.0f}")
    return summary


def grid_settings(args):
    """The flags a landscape row's numbers depend on (a points folder never mixes two settings); None for run."""
    keys = ("alphas", "steps", "epochs", "min_steps", "batch_size", "eval_points", "lr", "clip", "hidden", "seq_len",
            "embed", "layers", "vocab", "test_frac", "seed", "dtype")
    return {k: getattr(args, k) for k in keys} if args.mode == "landscape" else None


def landscape_mode(args, out, device, dtype):
    """Fig. 4 left: for each data size N (a row: one grid point) and alpha, train at fixed norm ||theta|| = alpha * w0
    (wd 0) and record the reduced train/test loss and accuracy (best over the evaluations, and final)."""
    sizes, alphas = args.size_list, args.alpha_list
    names = [f"size_{n}" for n in sizes]
    keys = ("train_loss", "test_loss", "train_acc", "test_acc")

    def train_rows(todo):
        for r, n in enumerate(sizes):
            if names[r] not in todo:
                continue
            data = load_imdb(args, n, device)
            n_tr = len(data[0][0])
            steps = args.steps or max(args.epochs * math.ceil(n_tr / args.batch_size), args.min_steps)
            # Evaluated --eval-points times at equal intervals (default 5: after each of the authors' 5 epochs).
            eval_at = sorted({math.ceil(steps * k / args.eval_points) for k in range(1, args.eval_points + 1)})
            t0 = time.time()
            _, ms, err = train(args, data, [{"alpha": a, "wd": 0.0} for a in alphas], steps, constrain="global",
                               device=device, dtype=dtype, desc=f"landscape N={n} ({r + 1}/{len(sizes)})", eval_at=eval_at)
            if err:
                raise err
            yield names[r], {"seconds": time.time() - t0, "points": [
                {"alpha": a, "size": n, "n_train": n_tr, "steps": steps, "w": m["w"][-1],
                 **{f"{k}_best": (min if "loss" in k else max)(m[k]) for k in keys},
                 **{f"{k}_final": m[k][-1] for k in keys}} for a, m in zip(alphas, ms)]}

    got = common.run_grid(args, out, names, grid_settings(args), train_rows)
    if got is None:  # one shard of several: rows saved, the merge draws
        return None
    saved, missing = got
    fields = [f"{k}_best" for k in keys] + ["train_loss_final", "test_loss_final"]
    z = common.grid_z(saved, names, alphas, fields)
    done = [n for n, name in zip(sizes, names) if name in saved]
    r = sizes.index(done[0])  # the LU diagnostics at the smallest N: where the training loss is small, where test is best
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": len(done), "missing": missing,
               "missing_sizes": [n for n, name in zip(sizes, names) if name in missing],
               "train_error_best": (1 - z["train_acc_best"]).tolist(), "test_error_best": (1 - z["test_acc_best"]).tolist(),
               **{f: z[f].tolist() for f in fields}, "wall_seconds": sum(rec["seconds"] for rec in saved.values()),
               "smallest_size": done[0], "test_loss_argmin_alpha": alphas[int(np.nanargmin(z["test_loss_best"][r]))],
               "train_loss_argmin_alpha": alphas[int(np.nanargmin(z["train_loss_best"][r]))]}
    common.write_json(out / "summary.json", summary)
    common.plot_lu_landscape(out / "landscape.png", alphas, sizes, 1 - z["train_acc_best"], 1 - z["test_acc_best"],
                             what="error", levels=[0.2, 0.25, 0.3], slices=sorted({done[0], done[-1]}),
                             size_label="data size N", title=f"IMDb reduced landscape (LSTM hidden {args.hidden}, "
                                                             f"{args.seq_len} tokens, {len(done)}/{len(sizes)} rows)")
    print(f"landscape: {len(done)}/{len(sizes)} rows in {out}")
    return summary


def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    # Data before the run directory: bad data or --size is refused with nothing written (landscape: its largest row)
    data = load_imdb(args, max(args.size_list) if args.mode == "landscape" else args.size, device)
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    print(f"scale {args.scale}: hidden {args.hidden}, {args.seq_len} tokens" + (f", {args.steps} steps" if args.steps else "")
          + ("" if args.scale == "paper" else " (the paper's setting: --scale paper, a GPU job)"))
    summary = run_mode(args, out, data, device, dtype) if args.mode == "run" else landscape_mode(args, out, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
