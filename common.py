"""Plumbing shared by the experiment scripts: arguments, seeding, device, alpha scaling, the norm
projection, log-spaced evaluation, run directories, grokking summaries, plots, progress bars, and a
whole training step as one CUDA graph.

Nothing experiment-specific lives here: models, data and training loops stay in their scripts.
"""
import argparse
import hashlib
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import kernels
from kernels import batched_norm, global_norm, project_to_norm_, project_to_norm_batched_  # noqa: F401

REPO = Path(__file__).resolve().parent


# ----------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------
def add_standard_args(parser, *, modes, steps, acc_threshold, steps_help="optimizer steps per training run",
                      acc_threshold_help="accuracy that counts as 'reached' in the grokking summary"):
    """The flags every script takes (docs/DESIGN.md, "The contract every script keeps")."""
    parser.add_argument("--mode", default="run", choices=modes,
                        help="which experiment to run (default: run, the headline experiment)")
    parser.add_argument("--out", default=None,
                        help="run directory (default: runs/<script>/<mode>-<time>)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (model init and batches)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="auto picks cuda when available, else cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"],
                        help="floating-point type of parameters and data")
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument("--acc-threshold", type=float, default=acc_threshold, help=acc_threshold_help)
    parser.add_argument("--eval-points", type=int, default=150,
                        help="number of log-spaced evaluation steps (the last step is always one)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0: torch's default (OMP_NUM_THREADS if set, else one per core). "
                             "On an idle 2-core machine two threads ran the MNIST and transformer steps 1.6-1.75x "
                             "faster than one; on a busy one, give 1: OpenMP threads spinning for a core made "
                             "steps 6-10x slower (measured)")


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing data): reported as one sentence, exit code 2."""


def require(ok, message):
    if not ok:
        raise UserError(message)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`prog: error: ...`, exit code 2) like every other refusal, and
    whose help shows each flag's default. `renamed` = {old flag or "--mode old": what replaces it}: an old
    command gets one line naming its replacement."""

    def __init__(self, renamed=None, **kwargs):
        super().__init__(formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)
        self.renamed = renamed or {}

    def parse_args(self, args=None, namespace=None):
        argv = sys.argv[1:] if args is None else list(args)
        words = argv + [f"{a} {b}" for a, b in zip(argv, argv[1:])] + [a.replace("=", " ", 1) for a in argv]
        for old, new in self.renamed.items():
            if old in words or any(w.startswith(old + "=") for w in argv):
                self.error(f"{old} is gone: use {new}")
        return super().parse_args(argv, namespace)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


MAX_THREADS = 1024  # torch.set_num_threads(100_000) crashes the interpreter; 1,024 ran fine on 2 cores


def check_standard_args(args):
    """What every script's flags share, checked before anything is written: every float flag is finite,
    no int flag is negative, seeds fit numpy's 0..2**32-1, and --out can be a run folder."""
    for name, v in vars(args).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(v, float):
            require(math.isfinite(v), f"{flag} must be a finite number, got {v}.")
        elif isinstance(v, int) and not isinstance(v, bool):
            require(v >= 0, f"{flag} must be >= 0, got {v}.")
            require(not name.endswith("seed") or v < 2 ** 32, f"{flag} must be in 0..2**32-1, got {v}.")
    if args.steps is not None:  # None: the script derives it later (qm9, imdb landscapes: from --epochs)
        positive(args, "steps")
    require(0 < args.acc_threshold <= 1, f"--acc-threshold must be in (0, 1], got {args.acc_threshold}.")
    positive(args, "eval_points")
    require(args.threads <= MAX_THREADS, f"--threads must be in 0..{MAX_THREADS}, got {args.threads}.")
    check_out(args.out)


def positive(args, *names):
    """Each flag named must be > 0 (one sentence naming the first that is not)."""
    for name in names:
        v = getattr(args, name)
        require(v > 0, f"--{name.replace('_', '-')} must be positive, got {v}.")


def nonnegative(args, *names):
    for name in names:
        v = getattr(args, name)
        require(v >= 0, f"--{name.replace('_', '-')} must be >= 0, got {v}.")


def check_out(out):
    """--out must be a folder, or a path where one can be made: nothing is created here."""
    if out is None:
        return
    path = Path(out)
    require(not path.exists() or path.is_dir(), f"--out {out} is a file, not a folder.")
    parent = path
    while not parent.exists():
        parent = parent.parent
    require(parent.is_dir(), f"--out {out} cannot be made: {parent} is a file, not a folder.")
    require(os.access(parent, os.W_OK | os.X_OK), f"--out {out} cannot be written: no write permission in {parent}.")


def main_guard(main):
    """Run main(); turn UserError into one line on stderr and exit code 2 (no traceback); a NaN stop or
    running out of memory into one line and exit code 1."""
    name = Path(sys.argv[0]).name
    try:
        main()
    except UserError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except NonFiniteLoss as e:
        print(f"{name}: stopped: {e}", file=sys.stderr)
        sys.exit(1)
    except (MemoryError, RuntimeError) as e:
        if not isinstance(e, MemoryError) and "can't allocate memory" not in str(e) and "out of memory" not in str(e):
            raise  # torch's CPU and CUDA allocators say so in a RuntimeError (or its subclass OutOfMemoryError)
        asked = re.search(r"allocate (\d+) bytes", str(e))
        what = f"a tensor of {int(asked[1]) / 2 ** 30:.3g} GiB" if asked else str(e).splitlines()[0][:120]
        print(f"{name}: stopped: out of memory ({what}); give smaller sizes.", file=sys.stderr)
        sys.exit(1)


def parse_floats(text, name):
    """'0.1,0.3,1' -> [0.1, 0.3, 1.0], with a clear error for junk."""
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = [math.nan]
    require(all(map(math.isfinite, values)), f"{name} must be a comma-separated list of finite numbers, got {text!r}.")
    return values


def parse_ints(text, name):
    """'40,80' -> [40, 80] (each >= 0), with a clear error for junk."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = [-1]
    require(all(v >= 0 for v in values), f"{name} must be a comma-separated list of integers >= 0, got {text!r}.")
    return values


# ----------------------------------------------------------------------------------------------
# seeding, device, dtype
# ----------------------------------------------------------------------------------------------
def seed_everything(seed):
    np.random.seed(seed)
    torch.manual_seed(seed)


def epoch_batches(n, batch, seed, device):
    """Endless index batches as DataLoader(shuffle=True) makes them: each epoch a seeded permutation of range(n)
    cut into pieces of `batch` (the last one shorter), many epochs made at once so a step costs one slice. The
    order is a function of the seed alone: a resumed run skips the batches it has taken."""
    g = torch.Generator().manual_seed(seed + 1)  # +1: not the stream that drew the data subset or split
    ahead = max(1, min(1024, 2_000_000 // n))
    while True:
        perms = torch.stack([torch.randperm(n, generator=g) for _ in range(ahead)]).to(device)
        for perm in perms:
            yield from perm.split(batch)


def setup(args):
    """Threads, seed, device and dtype from the standard flags: returns (device, dtype)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    return pick_device(args.device), pick_dtype(args.dtype)


def pick_device(name):
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    require(name != "cuda" or torch.cuda.is_available(), "--device cuda was asked for but no GPU is visible.")
    return torch.device(name)


def pick_dtype(name):
    return {"float32": torch.float32, "float64": torch.float64}[name]


# ----------------------------------------------------------------------------------------------
# weight norm: alpha scaling and the fixed-norm projection (the call into kernels/)
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def scale_by_alpha_(params, alpha):
    """Multiply EVERY parameter (weights, biases, embeddings) by alpha, as the paper and the authors'
    code do. Returns (w0, w): the global norm before and after, as floats (called once, at init)."""
    params = list(params)
    w0 = global_norm(params).item()
    torch._foreach_mul_(params, alpha)
    return w0, alpha * w0


@torch.no_grad()
def scale_by_alpha_batched_(params, alphas):
    """Ensemble form of scale_by_alpha_: member e of every stacked parameter (leading dim E) is multiplied
    by alphas[e]. Returns w = alphas * w0, one norm per member as a device tensor (no host sync): the
    sphere a fixed-norm run is held on."""
    alpha = torch.as_tensor(alphas, dtype=params[0].dtype, device=params[0].device)
    w0 = batched_norm(params)
    torch._foreach_mul_(params, [alpha.view(-1, *([1] * (p.dim() - 1))) for p in params])
    return alpha * w0


# --constrain MODE: which norm a fixed-norm run holds (kernels' modes; docs/DESIGN.md, "Norm modes")
CONSTRAIN = {"global": "global", "per-tensor": "per_tensor", "cap": "cap"}


def add_constrain_arg(parser, applies="run mode"):
    parser.add_argument("--constrain", nargs="?", const="global", default=None, choices=list(CONSTRAIN),
                        help=f"{applies}: hold the weight norm after every step. global (`--constrain` alone; the "
                             "paper): ||w|| = alpha * w0, no weight decay; per-tensor: each tensor at alpha times its "
                             "initial norm (one that starts at zero is left free), no weight decay; cap: ||w|| <= "
                             "alpha * w0, pulled back only when above, weight decay still applies")


def decays(constrain):
    """Whether weight decay acts in a run constrained so (None or False: unconstrained)."""
    return not constrain or constrain == "cap"


class TensorTargets:
    """Per-tensor targets: `held`, the indices of the tensors held (those that start non-zero: a zero-initialised
    bias would be pinned at zero for good), and `norms`, their targets [E, len(held)]. t[members] selects members."""

    def __init__(self, held, norms):
        self.held, self.norms = held, norms

    def __getitem__(self, members):
        return TensorTargets(self.held, self.norms[members])


@torch.no_grad()
def norm_targets(params, w_target, constrain):
    """The norms a constrained ensemble holds, taken right after the alpha scaling: w_target (alpha * w0, one per
    member) for global and cap; for per-tensor each member's tensors' norms now (TensorTargets; one host sync, here)."""
    if constrain != "per-tensor":
        return w_target
    norms = kernels.batched_tensor_norms(params)
    held = [i for i, nonzero in enumerate((norms > 0).any(0).tolist()) if nonzero]
    return TensorTargets(held, norms[:, held])


def project_(params, targets, constrain):
    """Back onto the constraint after an optimizer step (one fused call; no host sync)."""
    if constrain == "per-tensor":
        kernels.project_to_norm_batched_([params[i] for i in targets.held], targets.norms, mode="per_tensor")
    else:  # global: the paper's projection; cap
        kernels.project_to_norm_batched_(params, targets, mode=CONSTRAIN[constrain])


@torch.no_grad()
def decay_weights_(params, lr, wd):
    """AdamW's decoupled weight decay, p <- p * (1 - lr * wd), for an ensemble: wd is a float or a
    tensor [E] with one value per model (parameters carry the leading dimension E). Called just before
    an Adam(weight_decay=0) step it gives exactly torch.optim.AdamW's update, member by member."""
    if not torch.is_tensor(wd):
        if wd:
            torch._foreach_mul_(params, 1 - lr * wd)
        return
    factor = 1 - lr * wd
    torch._foreach_mul_(params, [factor.to(p.dtype).view(-1, *([1] * (p.dim() - 1))) for p in params])


class EnsembleAdam(torch.optim.Adam):
    """torch.optim.Adam(fused=True) for stacked ensemble parameters, such that a member's numbers do not
    depend on the ensemble it trains in: a grid's shard gives the whole grid's points bit for bit (CPU).

    On CPU the fused kernel updates a tensor's last numel % 16 elements (float32, AVX-512) in a scalar loop
    that rounds differently from its vector loop, and those elements belong to the last member. So each
    parameter here is a view of the front of a flat buffer padded to a multiple of 64 elements; step()
    copies the gradients into the buffers' gradients and steps the buffers, and every element takes the
    vector loop (the padding stays zero). The gradient copy costs: an optimizer step took 0.14 vs 0.11 ms for
    9 teacher-student MLPs, 21 vs 14 ms for 441 addition decoders (1 thread, 2026-12-03); foreach: 0.27, 84.
    Train `opt.params`: the tensors given (values, shapes, order), now views of the buffers."""
    PAD = 64

    def __init__(self, params, **kwargs):
        self.params, self._grads, flat = [], [], []
        for p in params:
            n = p.numel()
            buf = torch.zeros(-(-n // self.PAD) * self.PAD, dtype=p.dtype, device=p.device)
            buf[:n].copy_(p.detach().reshape(-1))
            buf.grad = torch.zeros_like(buf)
            self.params.append(buf[:n].view(p.shape).detach().requires_grad_())
            self._grads.append(buf.grad[:n].view(p.shape))
            flat.append(buf)
        super().__init__(flat, fused=True, **kwargs)

    def zero_grad(self, set_to_none=True):
        for p in self.params:  # the model's gradients (the buffers' are overwritten by step)
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self):
        torch._foreach_copy_(self._grads, [p.grad for p in self.params])
        super().step()


# ----------------------------------------------------------------------------------------------
# grids beyond one machine: shards, one file per grid point, merge (docs/DESIGN.md, "Scale beyond one machine")
# ----------------------------------------------------------------------------------------------
# A grid mode names its points and hands run_grid a function that trains some of them; run_grid trains the
# points its shard owns that are not saved yet, saves each as out/points/<name>.json, and - when it is the whole
# grid (no --shard, or --merge) - returns the points saved for the figure and says which are missing. Shards of
# a job array share one --out; a killed shard, run again, trains only its missing points.

def run_grid(args, out, names, settings, train):
    """The grid protocol for a mode whose points are `names` (in grid order). train(todo) trains the points named
    in todo (this shard's, not saved yet; in grid order) and yields (name, record) as each is done; each record is
    saved as out/points/<name>.json. settings: the flags a point's numbers depend on (a points folder never mixes
    two settings). Returns None for one shard of several (it draws nothing: the merge job does), else
    ({name: record} of the points saved, in grid order; [names missing])."""
    todo = shard_todo(names, out, args.shard_pair, settings)
    for name, record in train(todo) if todo else ():
        write_json(point_path(out, name), record)
    if is_piece(args.shard_pair):  # one task of an array: it reports, the merge job draws
        have = sum(point_path(out, n).is_file() for n in names)
        i, n = args.shard_pair
        print(f"shard {i}/{n}: trained {len(todo)} point(s); {have}/{len(names)} of the grid saved in "
              f"{Path(out) / 'points'}; draw the figure with the same command and --merge.", flush=True)
        return None
    return collect_points(out, names)


def add_shard_arg(parser, modes):
    """--shard i/n | slurm, and --merge (the same flag's third form: train nothing, draw)."""
    group = parser.add_mutually_exclusive_group()  # --merge --shard 0/2 would otherwise train shard 0
    group.add_argument("--shard", default="0/1",
                        help=f"{modes}: train only points i, i+n, i+2n, ... of the grid (i/n, e.g. a job-array "
                             "index; 'slurm': i and n from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT); points "
                             "already saved in <out>/points/ are skipped (a killed job resumes). A shard (n > 1) "
                             "only saves points; the whole grid (no --shard) or --merge draws the figure from the "
                             "points present and lists the missing ones. Shards share one --out")
    group.add_argument("--merge", action="store_const", const="merge", dest="shard",
                        help=f"{modes}: train nothing; draw the figure and write summary.json from the points "
                             "saved in --out by the shards (the merge job of a job array), listing any missing")


def parse_shard(text):
    """'i/n' -> (i, n) with 0 <= i < n; 'slurm' -> (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT);
    'merge' (from --merge) -> None: no points to train."""
    if text == "merge":
        return None
    if text == "slurm":
        env = {k: os.environ.get(k) for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")}
        require(all(env.values()), "--shard slurm needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT, which only "
                                   "a SLURM job array sets (sbatch --array=0-N); outside SLURM give --shard i/n.")
        text = f"{env['SLURM_ARRAY_TASK_ID']}/{env['SLURM_ARRAY_TASK_COUNT']}"
        try:
            i, n = (int(v) for v in text.split("/"))
        except ValueError:
            raise UserError(f"--shard slurm: SLURM array variables are not integers ({text!r}).") from None
        require(0 <= i < n, f"--shard slurm: task {i} of an array of {n} tasks; submit the array as "
                            f"--array=0-{n - 1} (or give --shard i/n).")
        return i, n
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes i/n (two integers) or slurm, got {text!r}.") from None
    require(0 <= i < n, f"--shard must be i/n with 0 <= i < n, got {text!r}.")
    return i, n


def is_piece(shard):
    """True for one shard of several (i/n with n > 1): it saves points only; the merge draws."""
    return shard is not None and shard[1] > 1


def _settings_json(settings):
    return json.loads(json.dumps(settings, default=_json_default))  # as it reads back from JSON


def check_points(out, settings):
    """Refuse (UserError, exit 2) an out/points/ made with other settings. Writes nothing: scripts call it
    before make_run_dir, so a refused run leaves the folder as it was. No out (a fresh run dir): nothing to check."""
    if out is None:
        return
    points = Path(out) / "points"
    saved = points / "settings.json"
    if saved.exists():
        old = json.loads(saved.read_text())
        new = _settings_json(settings)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        require(not changed, f"{points} holds points made with other settings ({', '.join(changed)} differ); "
                             "give a new --out.")


def check_grid_args(args, settings):
    """Before make_run_dir (a refused run writes nothing): a grid mode (settings: the flags its points depend
    on) must not reuse a points folder made with other settings, and --merge needs saved points; any other mode
    (settings None) takes no --shard or --merge."""
    if settings is None:
        require(args.shard == "0/1", f"--shard and --merge are for the grid modes; --mode {args.mode} has no grid.")
        return
    check_points(args.out, settings)
    if args.shard_pair is None:
        points = Path(args.out or ".") / "points"
        require(args.out and any(p.name != "settings.json" for p in points.glob("*.json")),
                f"--merge: no grid point is saved in {points} yet; run without --merge (or the shards) first.")


def shard_todo(names, out, shard, settings):
    """The grid points (by file name) that this shard owns, i.e. every n-th from i, and that have no
    out/points/<name>.json yet. `settings` (the flags that shape a point) is kept in out/points/settings.json:
    points made with other settings are never mixed in (a reused --out with changed flags is an error).
    shard None (--merge): nothing to train, and nothing is written."""
    check_points(out, settings)
    if shard is None:
        return []
    saved = Path(out) / "points" / "settings.json"
    if not saved.exists():
        write_json(saved, _settings_json(settings))
    i, n = shard
    todo = [name for k, name in enumerate(names) if k % n == i and not point_path(out, name).is_file()]
    if n > 1:
        print(f"shard {i}/{n}: {len(todo)} point(s) to train" + (f": {', '.join(todo)}" if todo else ""), flush=True)
    return todo


def point_path(out, name):
    """Where a grid point's record lives: out/points/<name>.json."""
    return Path(out) / "points" / f"{name}.json"


def collect_points(out, names):
    """The points saved in out/points/ (by any shard) and the names still missing; says which are missing.
    Returns ({name: record} in the order of names, [missing names]); none saved at all is a UserError."""
    saved = {name: json.loads(point_path(out, name).read_text()) for name in names if point_path(out, name).is_file()}
    require(saved, f"no grid point is saved in {Path(out) / 'points'} yet; run without --merge (or the shards) first.")
    missing = [n for n in names if n not in saved]
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        print(f"{len(saved)}/{len(names)} grid points in {Path(out) / 'points'}; missing: {shown}. The figure shows "
              "the points present; run the same command (or resubmit the array) to train the rest.", flush=True)
    return saved, missing


# ----------------------------------------------------------------------------------------------
# evaluation schedule
# ----------------------------------------------------------------------------------------------
def log_steps(total, n_points=150):
    """Evaluation steps: 0 (at init), then about n_points log-spaced steps up to total (always included).
    Dense at the start, where overfitting happens in a few dozen steps; sparse later, as grokking
    plots use a log-x axis."""
    pts = np.unique(np.round(np.logspace(0, math.log10(total), n_points)).astype(int))
    return [0] + [int(s) for s in pts if s < total] + [total]


# ----------------------------------------------------------------------------------------------
# run directory and JSON files
# ----------------------------------------------------------------------------------------------
UMASK = os.umask(0o022)
os.umask(UMASK)  # read (the only way is to set it), put back


def write_json(path, obj):
    """Atomic write: a temp file in the same folder, then rename (a killed run never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; results follow the umask like any other file
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"cannot write {type(x)} to JSON")


def _source(script):
    """config.json's record of the code that ran: the script and common.py by sha256, and the git commit only
    when both are tracked and unmodified at HEAD. A copied script may sit inside another project's repository
    (docs/DESIGN.md, Copying), whose HEAD says nothing about it."""
    files = [str(Path(script).resolve()), str(Path(__file__).resolve())]
    sha = [hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files]
    commit = None
    try:
        git = lambda *a: subprocess.run(["git", *a], cwd=Path(files[0]).parent, capture_output=True, text=True, timeout=5)
        if (git("ls-files", "--error-unmatch", "--", *files).returncode == 0
                and git("diff", "--quiet", "HEAD", "--", *files).returncode == 0):
            commit = git("rev-parse", "HEAD").stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {"source": {"script": Path(files[0]).name, "sha256": sha[0], "common_sha256": sha[1]}, "git_commit": commit}


RUN_FILES = ("config.json", "metrics.json", "summary.json", "checkpoint.pt")  # points/ guards itself (check_points)
WHERE = {"out", "device", "threads", "shard", "shard_pair", "checkpoint_every"}  # flags a rerun of the same command may change


def check_run_folder(out, script, args, grid):
    """An --out that holds results must hold this command's: the same script and mode (a grid then resumes
    its points) and, for a single run, the same flags apart from WHERE. Anything else is refused, so two
    runs' files never mix."""
    config = out / "config.json"
    if not config.is_file():
        found = [f for f in RUN_FILES if (out / f).exists()]
        require(not found, f"--out {out} holds {', '.join(found)} but no config.json: not a run folder; give a new --out.")
        return
    try:
        old = json.loads(config.read_text())
        was, old_args = old["script"], dict(old["args"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{config} is not a run's config.json; give a new --out.") from None
    require(was == script and old_args.get("mode") == args.mode,
            f"--out {out} holds a {was} --mode {old_args.get('mode')} run; give a new --out.")
    if not grid:
        new = _settings_json(vars(args))
        changed = sorted(k for k in set(old_args) & set(new) if k not in WHERE and old_args[k] != new[k])
        require(not changed, f"--out {out} holds a run with other flags ({', '.join('--' + k.replace('_', '-') for k in changed)}); "
                             "give a new --out.")


def make_run_dir(script, args, device, grid_settings=None):
    """Check the flags that shape a grid (check_grid_args) and the run folder (check_run_folder), then create
    the run directory and write config.json (all args, versions, device, the source). A stale
    summary.json goes first: a run that stops early never sits beside an older run's summary."""
    name = Path(script).stem
    check_grid_args(args, grid_settings)
    out = Path(args.out) if args.out else REPO / "runs" / name / f"{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_run_folder(out, name, args, grid=grid_settings is not None)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # what check_out cannot see: a read-only file system, /proc, ...
        raise UserError(f"--out {out} cannot be made: {e.strerror}.") from None
    if not is_piece(getattr(args, "shard_pair", None)):
        (out / "summary.json").unlink(missing_ok=True)
    config = {
        "script": name,
        "args": vars(args),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        **_source(script),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    write_json(out / "config.json", config)
    return out


# ----------------------------------------------------------------------------------------------
# grokking summary
# ----------------------------------------------------------------------------------------------
def first_step(steps, values, threshold, *, above=True):
    """First evaluated step where values >= threshold (above) or <= threshold (not above); else None."""
    for s, v in zip(steps, values):
        if (v >= threshold) if above else (v <= threshold):
            return int(s)
    return None


def ratio(a, b):
    """a / b for step counts (b = 0 counts as 1 step: reached at init); None when either is None."""
    if a is None or b is None:
        return None
    return a / max(b, 1)


def grok_summary(steps, m, *, acc_threshold=None, loss_threshold=None):
    """The summary.json fields of a run, from the metrics dict m (lists over evaluated steps):
    train_acc/test_acc (or train_loss/test_loss with loss_threshold), train_loss, test_loss, w."""
    s = {}
    if acc_threshold is not None:
        tr = first_step(steps, m["train_acc"], acc_threshold)
        te = first_step(steps, m["test_acc"], acc_threshold)
        s.update(acc_threshold=acc_threshold, train_acc_step=tr, test_acc_step=te, grok_ratio=ratio(te, tr),
                 final_train_acc=m["train_acc"][-1], final_test_acc=m["test_acc"][-1])
    if loss_threshold is not None:
        tr = first_step(steps, m["train_loss"], loss_threshold, above=False)
        te = first_step(steps, m["test_loss"], loss_threshold, above=False)
        s.update(loss_threshold=loss_threshold, train_loss_step=tr, test_loss_step=te, grok_ratio=ratio(te, tr))
    s.update(final_train_loss=m["train_loss"][-1], final_test_loss=m["test_loss"][-1],
             w_init=m["w"][0], w_min=min(m["w"]), w_final=m["w"][-1])
    return s


def fit_loglog_slope(x, y):
    """Least-squares slope of log y vs log x over the points where y is not None (None = censored)."""
    pts = [(math.log(a), math.log(b)) for a, b in zip(x, y) if b is not None and b > 0]
    if len(pts) < 2:
        return None
    lx, ly = np.array(pts).T
    return float(np.polyfit(lx, ly, 1)[0])


class NonFiniteLoss(Exception):
    """The loss became NaN or inf: the run stops, keeping the metrics measured so far."""


def nonfinite(values, step, hint="Lower --lr or --alpha, or use --dtype float64."):
    """A NonFiniteLoss for the first NaN/inf among the losses measured at an evaluation, else None.
    The script saves the metrics measured so far, then raises it."""
    bad = next((v for v in values if not math.isfinite(v)), None)
    if bad is None:
        return None
    return NonFiniteLoss(f"loss became {bad} at step {step}; metrics up to the previous evaluation are saved. {hint}")


def split_members(m, E):
    """Ensemble curves {key: [[value per member] per step]} -> [{key: [value per step]} per member]."""
    return [{k: [row[e] for row in v] for k, v in m.items()} for e in range(E)]


# ----------------------------------------------------------------------------------------------
# progress bar
# ----------------------------------------------------------------------------------------------
def progress(total, desc):
    """One compact tqdm line; scripts call bar.set_postfix_str(...) at evaluation steps only."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=1.0)


def postfix(train_loss, test_loss, train_acc, test_acc, w):
    """The live metrics of an evaluation (lists over ensemble members): values for one model, ranges for many."""
    if len(w) == 1:
        return (f"train {train_acc[0]:.3f} test {test_acc[0]:.3f} | loss {train_loss[0]:.2e}/{test_loss[0]:.2e} "
                f"| w {w[0]:.1f}")
    return (f"E={len(w)} train acc {min(train_acc):.2f}..{max(train_acc):.2f} "
            f"test acc {min(test_acc):.2f}..{max(test_acc):.2f}")


# ----------------------------------------------------------------------------------------------
# plots (matplotlib imported here only, with a file-only backend)
# ----------------------------------------------------------------------------------------------
def plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot
    return pyplot


def savefig(fig, path):
    path = Path(path)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=130, bbox_inches="tight")
    os.replace(tmp, path)
    plt().close(fig)


def plot_curves(ax, steps, m, *, title="", acc=True, w=True, loss_log=True):
    """Accuracy (or loss) vs step on log-x, weight norm on a twin axis: the paper's grokking plot.
    With acc=False the axis shows train/test loss instead of accuracy."""
    x = np.maximum(np.asarray(steps), 1)  # step 0 (init) drawn at 1 on the log axis
    if acc:
        ax.plot(x, m["train_acc"], color="tab:blue", label="train acc")
        ax.plot(x, m["test_acc"], color="tab:red", label="test acc")
        ax.set_ylabel("accuracy")
        ax.set_ylim(-0.02, 1.02)
    else:
        ax.plot(x, m["train_loss"], color="tab:blue", label="train loss")
        ax.plot(x, m["test_loss"], color="tab:red", label="test loss")
        ax.set_ylabel("loss")
        if loss_log:
            ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("optimization steps")
    ax.set_title(title)
    lines, labels = ax.get_legend_handles_labels()
    if w:
        ax2 = ax.twinx()
        ax2.plot(x, m["w"], color="tab:green", ls="--", label="weight norm")
        ax2.set_ylabel("weight norm w")
        l2, lb2 = ax2.get_legend_handles_labels()
        lines, labels = lines + l2, labels + lb2
    ax.legend(lines, labels, loc="best", fontsize=8)


def _cell_edges(v, log):
    """Edges of the cells centred on the grid values v: midpoints in log space on a log axis (linear
    midpoints would put the first edge of a log-spaced grid at or below zero)."""
    v = np.log10(np.asarray(v, dtype=float)) if log else np.asarray(v, dtype=float)
    if len(v) == 1:
        e = np.array([v[0] - 0.5, v[0] + 0.5])
    else:
        mid = (v[1:] + v[:-1]) / 2
        e = np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])
    return 10 ** e if log else e


def plot_heatmap(ax, x, y, z, *, title="", xlabel="", ylabel="", logx=False, logy=False, levels=None,
                 cmap="viridis", log_color=False, colorbar_label="", norm=None):
    """z[i, j] at (x[j], y[i]) as a colour map, with contour lines at `levels`; norm: a matplotlib colour norm
    (log_color: a log one)."""
    from matplotlib.colors import LogNorm
    z = np.asarray(z, dtype=float)
    if log_color:
        pos = z[np.isfinite(z) & (z > 0)]
        norm = LogNorm(vmin=pos.min(), vmax=pos.max()) if pos.size else None
    im = ax.pcolormesh(_cell_edges(x, logx), _cell_edges(y, logy), z, shading="flat", cmap=cmap, norm=norm)
    X, Y = np.meshgrid(x, y)
    if levels is not None and np.isfinite(z).sum() > 3 and len(x) > 1 and len(y) > 1:
        cs = ax.contour(X, Y, z, levels=levels, colors="w", linewidths=1)
        ax.clabel(cs, fontsize=7, fmt="%g")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.figure.colorbar(im, ax=ax, label=colorbar_label)
    return im


def grid_z(saved, names, alphas, fields):
    """Landscape rows saved as {name: {"points": [{"alpha": a, field: value, ...}, ...]}} -> {field: z[row, alpha]}
    (rows in the order of names, NaN where a row is missing or a value is None)."""
    z = {f: np.full((len(names), len(alphas)), np.nan) for f in fields}
    for r, name in enumerate(names):
        for p in saved.get(name, {"points": []})["points"]:
            j = int(np.argmin([abs(a - p["alpha"]) for a in alphas]))
            for f in fields:
                z[f][r, j] = np.nan if p[f] is None else p[f]
    return z


def nearest(values, x):
    """The value in `values` closest to x on a log scale (a slice of a log-spaced grid)."""
    return values[int(np.argmin([abs(math.log(v / x)) for v in values]))]


def plot_lu_landscape(path, alphas, sizes, train, test, *, what, levels, slices, title, log_color=False,
                      marks=None, size_label="training data size N"):
    """The paper's reduced landscape (Fig. 3a-c, 4, 5): reduced train and test `what` (error or loss) over alpha x N
    as heat maps with dashed contours at `levels`, small N on top, and the slices N in `slices` as curves: L-shaped
    training, U-shaped test. marks: {label: (alpha, N)} points joined by arrows in order (the paper's A -> B -> C)."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(16, 4.3), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})
    for ax, split, z in zip(axes[:2], ("train", "test"), (train, test)):
        plot_heatmap(ax, alphas, sizes, z, logx=True, logy=True, cmap="Reds", log_color=log_color,
                     title=f"reduced {split} {what}", xlabel="relative weight norm alpha = w/w0", ylabel=size_label)
        zz = np.log10(z) if log_color else z  # contours of a loss spanning decades: in log space
        if np.isfinite(zz).sum() > 3 and len(alphas) > 1 and len(sizes) > 1 and np.nanmin(zz) < max(levels):
            cs = ax.contour(*np.meshgrid(alphas, sizes), np.ma.masked_invalid(zz), colors="gold", linestyles="--",
                            linewidths=1.2, levels=np.log10(levels) if log_color else levels)
            ax.clabel(cs, fontsize=7, fmt=(lambda v: f"{10 ** v:g}") if log_color else "%g")
        ax.invert_yaxis()  # the paper: small N on top
        for name, (a, n) in (marks or {}).items():
            ax.plot(a, n, "ko")
            ax.annotate(name, (a, n), textcoords="offset points", xytext=(-12, 6), fontsize=12)
        for a, b in zip(list((marks or {}).values()), list((marks or {}).values())[1:]):
            ax.annotate("", b, a, arrowprops={"arrowstyle": "->"})
    ax = axes[2]
    for n, ls in zip(slices, ("-", "--")):
        r = sizes.index(n)
        ax.plot(alphas, test[r], ls, color="tab:orange", label=f"test, N={n}")
        ax.plot(alphas, train[r], ls, color="tab:blue", label=f"train, N={n}")
    ax.set_xscale("log")
    if log_color and np.nanmax(np.concatenate([train[sizes.index(n)] for n in slices]), initial=0) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("relative weight norm alpha = w/w0")
    ax.set_ylabel(f"{what} (best during fixed-norm training)")
    ax.set_title("LU for small data, UU for large")
    ax.legend(fontsize=8)
    fig.suptitle(title)
    savefig(fig, path)


def plot_steps_to(ax, x, members, budget, *, key="acc", threshold=None, xlabel="weight decay", slope=None, guide=False):
    """Steps to reach the threshold on train and test (members' {split}_{key}_step, None = not reached) against x,
    log-log; a member that never reaches it is drawn as an open triangle at the step budget (censored, not fitted).
    guide: a 1/x line through the reached test points."""
    for split, color in (("train", "tab:blue"), ("test", "tab:red")):
        s = [m[f"{split}_{key}_step"] for m in members]
        reached = [(a, b) for a, b in zip(x, s) if b is not None]
        censored = [a for a, b in zip(x, s) if b is None]
        if reached:
            ax.plot(*zip(*reached), "o-", color=color, label=split)
        if censored:
            ax.plot(censored, [budget] * len(censored), "^", mfc="none", color=color, label=f"{split}: not reached by {budget}")
    tests = [(a, m[f"test_{key}_step"]) for a, m in zip(x, members) if m[f"test_{key}_step"]]
    if guide and tests:  # through the geometric mean of the reached test points
        c = np.exp(np.mean([np.log(s * a) for a, s in tests]))
        ax.plot(x, c / np.asarray(x, dtype=float), "k:", label=f"~ 1/{xlabel}")
    if slope is not None:
        ax.plot([], [], " ", label=f"fitted slope (test): {slope:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(f"steps to {threshold:.0%} accuracy" if key == "acc" else f"steps to loss {threshold:g}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


# The norm-mode comparison (beyond the paper): the unconstrained run with weight decay against each --constrain mode,
# over seeds. Records: {"condition", "seed", "steps", curves ...}; the conditions' names: "wd" and CONSTRAIN's.
def run_norm_modes(args, out, settings, train_condition, title):
    """Beyond the paper: the grokking run (condition "wd": --alpha with --wd) against each --constrain mode at
    --norm-alpha (global and per-tensor without weight decay, cap with --wd), over --seeds. A point is one
    (condition, seed) run; the seeds of a condition that a shard owns train as one ensemble:
    train_condition(alpha, constrain, seeds, desc, ckpt) -> (one metric dict with "steps" per seed, error or None),
    member s being the run mode with --seed s; ckpt (a Checkpoint per ensemble) lets a killed ensemble resume.
    Writes metrics.json, summary.json, norm_modes.png; a line per condition."""
    conditions = {"wd": (args.alpha, None), **{c: (args.norm_alpha, c) for c in CONSTRAIN}}

    def train(todo):
        for c, (alpha, constrain) in conditions.items():
            if seeds := [s for s in args.seed_list if f"{c}_seed_{s}" in todo]:
                t0, ckpt = time.time(), Checkpoint(out, args.checkpoint_every, f"checkpoint_{c}_seeds_"
                                                   + "_".join(map(str, seeds)))
                ms, err = train_condition(alpha, constrain, seeds, f"{c} (seeds {','.join(map(str, seeds))})", ckpt)
                records = [{"condition": c, "seed": s, **m, "seconds": (time.time() - t0) / len(seeds)}  # shared
                           for s, m in zip(seeds, ms)]
                if err:
                    write_json(out / "metrics.json", {"members": records})
                    raise err
                yield from ((f"{c}_seed_{r['seed']}", r) for r in records)
                ckpt.done()

    got = run_grid(args, out, [f"{c}_seed_{s}" for c in conditions for s in args.seed_list], settings, train)
    if got is None:  # one shard of several: points saved, the merge draws
        return None
    recs, missing = list(got[0].values()), got[1]
    write_json(out / "metrics.json", {"steps": max((r["steps"] for r in recs), key=len, default=[]), "members": [
        {k: v for k, v in r.items() if k not in ("steps", "seconds")} for r in recs]})
    summary = {**norm_modes_summary(recs, args.acc_threshold), "missing": missing, "alpha": args.alpha,
               "norm_alpha": args.norm_alpha, "wd": args.wd, "wall_seconds": sum(r["seconds"] for r in recs)}
    write_json(out / "summary.json", summary)
    plot_norm_modes(out / "norm_modes.png", recs, summary, title)

    def fmt(v, f):  # mean +- std over the seeds that got there
        return "-" if v["mean"] is None else f"{v['mean']:{f}}" + ("" if v["std"] is None else f" +- {v['std']:{f}}")
    for c, v in summary["conditions"].items():
        print(f"{c:>10}: steps to {args.acc_threshold:.0%} train {fmt(v['train_acc_step'], '.0f')}, test "
              f"{fmt(v['test_acc_step'], '.0f')} ({v['test_acc_step']['reached']}/{v['seeds']} seeds), ratio "
              f"{fmt(v['grok_ratio'], '.2f')}; final test acc {fmt(v['final_test_acc'], '.4f')}")
    return summary


def norm_modes_summary(records, acc_threshold):
    """Per member its grokking summary; per condition the mean, sample std (ddof 1), min and max over the seeds
    that reached the threshold, and how many did, of steps to fit, steps to generalize, their ratio, and the
    final test accuracy."""
    members = [{"condition": r["condition"], "seed": r["seed"], **grok_summary(r["steps"], r, acc_threshold=acc_threshold)}
               for r in records]
    conditions = {}
    for c in dict.fromkeys(m["condition"] for m in members):
        ms = [m for m in members if m["condition"] == c]
        conditions[c] = {"seeds": len(ms)}
        for key in ("train_acc_step", "test_acc_step", "grok_ratio", "final_test_acc"):
            v = [m[key] for m in ms if m[key] is not None]
            conditions[c][key] = {"mean": float(np.mean(v)) if v else None, "std": float(np.std(v, ddof=1)) if len(v) > 1 else None,
                                  "min": min(v, default=None), "max": max(v, default=None), "reached": len(v)}
    return {"acc_threshold": acc_threshold, "members": members, "conditions": conditions}


def plot_norm_modes(path, records, summary, title):
    """Left: test (solid) and train (dashed) accuracy per condition, mean over seeds with the min-max band. Right:
    each seed's steps to fit (o) and to generalize (x) per condition; a member that never got there is not drawn."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 2, figsize=(12, 4.3), layout="constrained")
    conds = list(summary["conditions"])
    for i, c in enumerate(conds):
        rs = [r for r in records if r["condition"] == c]
        x = np.maximum(np.asarray(rs[0]["steps"]), 1)
        for split, ls in (("test", "-"), ("train", "--")):
            a = np.array([r[f"{split}_acc"] for r in rs], dtype=float)
            axes[0].plot(x, a.mean(0), ls, color=f"C{i}", label=f"{c} ({split})" if split == "test" else None)
            if split == "test" and len(rs) > 1:
                axes[0].fill_between(x, a.min(0), a.max(0), color=f"C{i}", alpha=0.2)
        for m in (m for m in summary["members"] if m["condition"] == c):
            for key, marker in (("train_acc_step", "o"), ("test_acc_step", "x")):
                if m[key] is not None:
                    axes[1].plot(i, max(m[key], 1), marker, color=f"C{i}")
    axes[0].set_xscale("log")
    axes[0].set_xlabel("optimization steps")
    axes[0].set_ylabel("accuracy (mean over seeds; band: min-max)")
    axes[0].legend(fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_xticks(range(len(conds)), conds)
    axes[1].set_ylabel(f"steps to {summary['acc_threshold']:.0%} accuracy: train (o), test (x)")
    fig.suptitle(title)
    savefig(fig, path)


# ----------------------------------------------------------------------------------------------
# checkpoints: a long single run survives a kill
# ----------------------------------------------------------------------------------------------
def save_atomic(obj, path):
    """torch.save through a .tmp file and a rename: a run killed mid-save leaves the previous file (or none),
    never half of one."""
    tmp = Path(path).with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Checkpoint:
    """A single run saves everything its training loop reads (parameters, optimizer state, RNG states, batch
    order, metrics so far) to out/<name>.pt at an evaluation, at most every `every` seconds (0: at every
    evaluation), and the same command run again resumes from it: its metrics.json equals an uninterrupted run's,
    bit for bit. The file goes when the run ends. (norm-modes: one per ensemble of a condition, as it trains.)

        ckpt = common.Checkpoint(out, args.checkpoint_every)
        state = ckpt.resume(params, opt)   # None: start at step 0; else the dict saved, RNG states, params, opt restored
        ... after the evaluation at `step`:  ckpt.save(lambda: {"step": step, "evaluated": ..., "params": ..., "opt": ...})
        (a resumed loop starts at state["step"] and skips that evaluation: it is in state["evaluated"])
        ckpt.done()
    """

    def __init__(self, out, every, name="checkpoint"):
        self.path, self.every, self.last = Path(out) / f"{name}.pt", every, time.monotonic()

    def load(self):
        if not self.path.is_file():
            return None
        state = torch.load(self.path, weights_only=False)
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        if "cuda" in state["rng"]:
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        print(f"resuming from {self.path} at step {state['step']}", flush=True)
        return state

    def resume(self, params, opt):
        """load(), and the parameters (state["params"]) and optimizer state (state["opt"]) put back; the state or None."""
        state = self.load()
        if state:
            with torch.no_grad():
                torch._foreach_copy_(params, state["params"])
            opt.load_state_dict(state["opt"])
        return state

    def save(self, state):
        """state: a function returning the dict to save (built only when a checkpoint is due)."""
        if time.monotonic() - self.last < self.every:
            return
        state = state()
        state["rng"] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                        **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {})}
        save_atomic(state, self.path)
        self.last = time.monotonic()

    def done(self):
        self.path.unlink(missing_ok=True)


def add_checkpoint_arg(parser):
    parser.add_argument("--checkpoint-every", type=float, default=300,
                        help="run mode (and each ensemble of norm-modes): save the run's state to <out>/checkpoint.pt "
                             "every this many seconds (at an evaluation; 0: every evaluation); the same command with "
                             "the same --out resumes it")


# ----------------------------------------------------------------------------------------------
# CUDA graphs: a whole training step as one replay
# ----------------------------------------------------------------------------------------------
def graph_step(step, device, warmup=3):
    """step() runs one training step that reads and writes only tensors living across calls: the
    parameters, their gradients, optimizer state (capturable=True), batch indices and counters on the
    device. On CPU this returns step itself: the CPU path stays as it is. On CUDA it returns a callable
    that runs one step per call: the first `warmup` calls eagerly on a side stream (they allocate the
    gradients, the optimizer state and the norm kernel's table, which capture forbids), the next one
    captures a step into a CUDA graph, and every call from then on replays it: one launch per step
    instead of ~100 (a paper-sized model's step is launch-bound), and no host sync. Every call is one
    real step, so a graphed run takes exactly the steps of an eager one."""
    if torch.device(device).type != "cuda":
        return step
    return _GraphedStep(step, warmup)


class _GraphedStep:
    def __init__(self, step, warmup):
        self.step, self.warmup, self.calls, self.graph = step, warmup, 0, None

    def __call__(self):
        if self.calls < self.warmup:  # side stream: what torch.cuda.graph's docs ask of warm-up
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            if self.graph is None:
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph):
                    self.step()  # recorded, not run: the replay below runs it
            self.graph.replay()
        self.calls += 1
