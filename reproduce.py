"""Every paper figure from one command, and REPORT.md: each figure beside the authors', each claim of the
paper beside what we measured, with a verdict computed by a rule written next to the claim.

    python reproduce.py                           # quick scale: every figure on 2 CPU cores in about an hour
    python reproduce.py --only fig3d,fig7b        # some figures (and what they need: fig6c needs fig6ab)
    python reproduce.py --scale paper --device cuda   # the paper's grids and step counts (a GPU, or a cluster)
    python reproduce.py --list                    # figures, commands, expected times per scale
    python reproduce.py --dry-run                 # the commands that would run
    python reproduce.py --report-only             # rewrite REPORT.md from the runs present
    python reproduce.py --publish docs/reproduce-quick   # copy REPORT.md + figures + summaries (small) there
    python reproduce.py --scale paper --slurm --slurm-args "-p gpu --gres=gpu:1"   # grids as job arrays

Each figure's runs are the experiment scripts themselves, run as subprocesses (each stays standalone), with
`--out <out>/<figure>/<run>`; stdout and stderr go to `reproduce.log` beside the run's own files. A run is
done when its folder holds summary.json and reproduce.json records the same command (--threads aside):
done runs are skipped, a run whose command changed is deleted and rerun, and a killed run is started
again in its own folder (grid modes then keep the points they had saved). A failing run is reported and
the others go on; the exit code is 1 if any failed. Runs go `--jobs` at a time (CPU: one per core, one
thread each; CUDA: one), longest first.

The registry below is the one list of figures -> commands. Each run has the README's command (`args`,
the script's defaults for the figure) and what each scale appends to it (argparse: the last flag wins).
tests/test_reproduce.py checks that the README's figure table and this registry agree.

The claims table: every CLAIMS entry names the paper's statement, reads our numbers from the runs'
summary.json (fig12 also its metrics.json curve), and turns them into a verdict by the rule written in it:
reproduced / partly / not reproduced / not run. The rules do not depend on the scale; claims marked
`paper_only` are about settings the quick scale changes (p = 31 instead of 113), so at the quick scale
they are shown as "not decided (--scale paper)" with the measured value beside.
"""
import argparse
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent
PAPER_FIGURES = REPO / "docs" / "paper_figures"  # the authors' saved figures (see its README.md)
SCALES = ("quick", "paper")


# ----------------------------------------------------------------------------------------------
# registry: figure -> runs
# ----------------------------------------------------------------------------------------------
@dataclass
class Run:
    name: str                 # folder under <out>/<figure>/
    script: str
    args: list                # the README's command for this figure (the script's defaults)
    quick: list = field(default_factory=list)   # appended at --scale quick
    paper: list = field(default_factory=list)   # appended at --scale paper
    est: dict = field(default_factory=dict)     # expected seconds per scale (1 CPU thread / one H200 guess)
    needs: str = None         # "fig/run" whose folder is passed as --landscape-from

    def command(self, scale):
        return [self.script, *self.args, *(self.quick if scale == "quick" else self.paper)]


@dataclass
class Figure:
    key: str
    label: str                # as in the paper
    title: str
    runs: list
    authors: list = field(default_factory=list)  # file names in docs/paper_figures/


TS, MNIST, IMDB, QM9 = "toy_teacher_student.py", "mnist_grok.py", "imdb_grok.py", "qm9_grok.py"
MODADD, ADD = "modadd_transformer.py", "addition_landscape.py"
# est: seconds on 2 CPU cores, one thread per run (two runs at a time). Quick: measured by `python reproduce.py`
# (2026-12-03, 60.0 min in all). Paper: the same where the command is the same; else extrapolated from the
# quick run by steps x grid points, or README's estimates (fig9 ~4.5 h, fig10a ~8 h); None: unknown (GPU jobs).
FIGURES = [
    Figure("fig2a", "Fig. 2a", "Teacher-student: reduced training loss L, test loss U",
           [Run("landscape", TS, ["--mode", "landscape"], est={"quick": 34, "paper": 34})],
           ["teacher-student__landscape__teacher-student-landscape_c3_0.png"]),
    Figure("fig2b", "Fig. 2b", "Teacher-student: large init groks with small wd, small init never does",
           [Run("grid", TS, ["--mode", "grid"], est={"quick": 204, "paper": 204}),
            Run("run", TS, ["--alpha", "2", "--wd", "0.05"], est={"quick": 75, "paper": 75})],
           ["teacher-student__grokking__regression_grokking_c3_0.png"]),
    Figure("fig2c", "Fig. 2c", "Teacher-student: steps to generalize ~ 1/wd, steps to fit independent of wd",
           [Run("wd-sweep", TS, ["--mode", "wd-sweep"], est={"quick": 269, "paper": 269})]),
    Figure("fig3abc", "Fig. 3a-c", "MNIST reduced landscape over (alpha, N)",
           [Run("landscape", MNIST, ["--mode", "landscape"], paper=["--paper-grid"],
                est={"quick": 256, "paper": None})],
           [f"mnist__landscape__plot-mnist-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig3d", "Fig. 3d", "MNIST grokking: alpha 9, wd 0.3, 1,000 images",
           [Run("run", MNIST, ["--alpha", "9", "--wd", "0.3"], est={"quick": 323, "paper": 323})],
           ["mnist__grokking__mnist-grokking_c10_0.png"]),
    Figure("fig3e", "Fig. 3e", "MNIST: time to generalize vs training-set size",
           [Run("n-sweep", MNIST, ["--mode", "n-sweep"], est={"quick": 113, "paper": 113})]),
    Figure("fig4", "Fig. 4", "IMDb LSTM: reduced landscape and (weak) grokking at alpha 6",
           [Run("run", IMDB, [], quick=["--preset", "cpu", "--seq-len", "120"], paper=["--preset", "paper"],
                est={"quick": 883, "paper": None}),
            Run("landscape", IMDB, ["--mode", "landscape"], quick=["--preset", "cpu", "--sizes", "100,300,1000"],
                paper=["--paper-grid", "--preset", "paper"], est={"quick": 361, "paper": None})],
           ["imdb__grokking__plot-imdb-grokking_c1_0.png"]
           + [f"imdb__landscape__plot-imdb-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig5", "Fig. 5", "QM9 graph network: reduced landscape and grokking at alpha 3 without wd",
           [Run("run", QM9, [], quick=["--steps", "30000"], est={"quick": 95, "paper": 320}),
            Run("control", QM9, ["--alpha", "1"], quick=["--steps", "30000"], est={"quick": 102, "paper": 340}),
            Run("landscape", QM9, ["--mode", "landscape"], paper=["--paper-grid"], est={"quick": 334, "paper": None})],
           ["qm9__grokking__qm9-grokking_c2_0.png"]
           + [f"qm9__landscape__plot-qm9-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig6ab", "Fig. 6a,b", "Toy addition: training loss regions I/II and the test loss over (w, m)",
           [Run("landscape", ADD, ["--mode", "landscape"], quick=["--grid-points", "11"],
                est={"quick": 266, "paper": 970})],
           ["mod-addition__landscape__plot-addition-landscape_c1_0.png",
            "mod-addition__landscape__plot-addition-landscape_c2_1.png"]),
    Figure("fig6c", "Fig. 6c", "Toy addition: a reduced trajectory and the losses along it",
           [Run("trajectory", ADD, ["--mode", "trajectory", "--landscape-from", "DIR"], needs="fig6ab/landscape",
                est={"quick": 3, "paper": 3})],
           ["mod-addition__landscape__plot-addition-landscape_c3_2.png"]),
    Figure("fig6d", "Fig. 6d", "Toy addition: gradients at the I/II boundary",
           [Run("gradient", ADD, ["--mode", "gradient", "--landscape-from", "DIR"], needs="fig6e/n-sweep",
                est={"quick": 3, "paper": 3})],
           ["mod-addition__landscape__plot-addition-data-dependence_c1_0.png"]),
    Figure("fig6e", "Fig. 6e", "Toy addition: the I/II boundary vs training-set size",
           [Run("n-sweep", ADD, ["--mode", "n-sweep"], quick=["--grid-points", "9", "--steps", "4000",
                                                              "--lr-decay-every", "1333"],
                est={"quick": 444, "paper": 3600})],
           ["mod-addition__landscape__plot-addition-data-dependence_c3_1.png"]),
    Figure("table1", "Table 1", "Toy addition, full trajectory (last row): representation and decoder trained",
           [Run("run", ADD, [], est={"quick": 17, "paper": 17})]),
    Figure("fig7a", "Fig. 7a", "Modular addition transformer: grokking, the weight norm rises then falls",
           [Run("run", MODADD, [], est={"quick": 1274, "paper": 1274})],
           ["mod-addition__grokking__modular-addition-grokking_c14_0.png"]),
    Figure("fig7b", "Fig. 7b", "Modular addition at fixed norm alpha 0.8: no grokking",
           [Run("run", MODADD, ["--constrain", "--alpha", "0.8", "--steps", "3000"], est={"quick": 209, "paper": 209})],
           ["mod-addition__grokking__modular-addition-grokking_c22_1.png",
            "mod-addition__grokking__modular-addition-grokking_c23_2.png"]),
    Figure("fig8", "Fig. 8", "MNIST landscape over representation messiness m and alpha (N = 60,000)",
           [Run("repr", MNIST, ["--mode", "repr"], paper=["--paper-grid"], est={"quick": 190, "paper": None})],
           [f"mnist-repr__mnist-representation-landscape_c{c}_{i}.png" for i, c in enumerate((3, 4, 6))]),
    Figure("fig9", "Fig. 9", "Modular addition reduced landscape over (alpha, training fraction)",
           [Run("landscape", MODADD, ["--mode", "landscape"],
                quick=["--p", "31", "--alphas", "0.1,0.3,1,3,10", "--fracs", "0.2,0.4,0.6,0.8",
                       "--landscape-steps", "600", "--eval-points", "40"],
                est={"quick": 117, "paper": 16200})]),
    Figure("fig10a", "Fig. 10a", "Modular addition: steps to generalize vs weight decay, per seed",
           [Run("wd-sweep", MODADD, ["--mode", "wd-sweep"],
                quick=["--p", "31", "--train-frac", "0.5", "--wds", "0.5,0.8,1.25,2", "--seeds", "0,1",
                       "--acc-threshold", "0.9", "--sweep-steps", "10000"],
                est={"quick": 296, "paper": 28800})]),
    Figure("fig10b", "Fig. 10b", "MNIST: steps to generalize vs weight decay",
           [Run("wd-sweep", MNIST, ["--mode", "wd-sweep"], est={"quick": 679, "paper": 679})]),
    Figure("fig11", "Fig. 11", "MNIST reduced landscape with cross-entropy",
           [Run("landscape", MNIST, ["--mode", "landscape", "--loss", "ce"], paper=["--paper-grid"],
                est={"quick": 250, "paper": None})]),
    Figure("fig12", "Fig. 12", "MNIST grokking with cross-entropy: a plateau, then a late rise",
           [Run("run", MNIST, ["--loss", "ce", "--alpha", "100", "--n-train", "200", "--wd", "0.03"],
                est={"quick": 370, "paper": 370})]),
]
BY_KEY = {f.key: f for f in FIGURES}


def run_dir(out, fig, run):
    return Path(out) / fig.key / run.name


def full_command(out, fig, run, scale, device, threads):
    """The subprocess argv of a run (python, script, flags); --landscape-from points at the run it needs."""
    cmd = run.command(scale)
    if run.needs:
        need_fig, need_run = run.needs.split("/")
        need = next(r for r in BY_KEY[need_fig].runs if r.name == need_run)
        cmd = [str(run_dir(out, BY_KEY[need_fig], need)) if a == "DIR" else a for a in cmd]
    cmd += ["--out", str(run_dir(out, fig, run)), "--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    return [sys.executable, str(REPO / cmd[0]), *cmd[1:]]


def relative(cmd):
    """A subprocess argv without the interpreter, paths inside the repository made relative to it."""
    return [os.path.relpath(a, REPO) if a.startswith(str(REPO)) else a for a in cmd[1:]]


def settings_key(cmd):
    """What makes two runs the same: the relative command without --threads."""
    key = relative(cmd)
    if "--threads" in key:
        k = key.index("--threads")
        del key[k:k + 2]
    return key


def read_json(path):
    return json.loads(path.read_text()) if path.exists() else None


def finished(d):
    """A run folder whose run ended well: reproduce.py saw it succeed, or a SLURM job it submitted wrote summary.json."""
    rec = read_json(d / "reproduce.json") or {}
    return (d / "summary.json").exists() and rec.get("status") in ("done", "submitted")


def is_done(d, cmd):
    return finished(d) and read_json(d / "reproduce.json").get("settings") == settings_key(cmd)


def expand(only):
    """--only keys, plus the figures their runs need (fig6c needs fig6ab), in registry order."""
    keys = set(only)
    unknown = keys - set(BY_KEY)
    if unknown:
        print(f"reproduce.py: unknown figure(s) {', '.join(sorted(unknown))}; known: {', '.join(BY_KEY)}",
              file=sys.stderr)
        raise SystemExit(2)
    changed = True
    while changed:
        changed = False
        for k in list(keys):
            for r in BY_KEY[k].runs:
                if r.needs and r.needs.split("/")[0] not in keys:
                    keys.add(r.needs.split("/")[0])
                    changed = True
    return [f for f in FIGURES if f.key in keys]


def implemented(run):
    return (REPO / run.script).exists()


# ----------------------------------------------------------------------------------------------
# running
# ----------------------------------------------------------------------------------------------
def write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def prepare(d, cmd):
    """A folder made by another command is removed: the scripts would (rightly) refuse to mix its points."""
    rec = read_json(d / "reproduce.json")
    if rec and rec.get("settings") != settings_key(cmd):
        shutil.rmtree(d)
    d.mkdir(parents=True, exist_ok=True)


def execute(d, cmd):
    """Run one experiment script; returns (ok, seconds)."""
    prepare(d, cmd)
    rec, key = d / "reproduce.json", settings_key(cmd)
    write_json(rec, {"status": "running", "settings": key, "command": shlex.join(cmd),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    t0 = time.time()
    with open(d / "reproduce.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO).returncode
    seconds = time.time() - t0
    ok = rc == 0 and (d / "summary.json").exists()
    write_json(rec, {"status": "done" if ok else "failed", "returncode": rc, "settings": key,
                     "command": shlex.join(cmd), "seconds": seconds, "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    return ok, seconds


def fmt_time(s):
    if s is None:
        return "?"
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min" if s < 5400 else f"{s / 3600:.1f} h"


def run_all(todo, jobs, scale):
    """todo: [(fig, run, dir, cmd)]. Longest (expected) first, a run only after the run it needs."""
    pending = sorted(todo, key=lambda t: -(t[1].est.get(scale) or 0))
    waiting_on = {id(t): t[1].needs for t in pending}
    succeeded, failed, running = set(), [], {}
    total, done_n, t_start = len(pending), 0, time.time()
    est_left = sum(t[1].est.get(scale) or 0 for t in pending)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for t in list(pending):
                need = waiting_on[id(t)]
                if len(running) >= jobs:
                    break
                if need and need not in succeeded and any(f"{x[0].key}/{x[1].name}" == need for x in
                                                         pending + list(running.values())):
                    continue  # the run it needs is still to come
                if need and need in failed:
                    pending.remove(t)
                    failed.append(f"{t[0].key}/{t[1].name}")
                    print(f"  {t[0].key}/{t[1].name}: skipped, {need} failed", flush=True)
                    continue
                pending.remove(t)
                print(f"  start {t[0].key}/{t[1].name}: {shlex.join(t[3][1:])}", flush=True)
                running[pool.submit(execute, t[2], t[3])] = t
            if not running:  # everything left waits on something that will not come
                break
            ready, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in ready:
                fig, run, d, cmd = running.pop(fut)
                ok, seconds = fut.result()
                name = f"{fig.key}/{run.name}"
                done_n += 1
                est_left -= run.est.get(scale) or 0
                (succeeded.add if ok else failed.append)(name)
                elapsed = time.time() - t_start
                eta = est_left / jobs
                print(f"[{done_n}/{total}] {name} {'done' if ok else 'FAILED (see ' + str(d / 'reproduce.log') + ')'}"
                      f" in {fmt_time(seconds)}; elapsed {fmt_time(elapsed)}, ~{fmt_time(eta)} left (est.)", flush=True)
    return failed


def submit_all(todo, args, device):
    """--slurm: every run as SLURM jobs (slurm/submit.py): a grid as a job array over --shards tasks plus its
    merge job, a single run as one job; a run that needs another (fig6c, fig6d) waits for it (afterok)."""
    sys.path.insert(0, str(REPO / "slurm"))
    import submit
    jobs = {}  # "fig/run" -> the job id that finishes it
    for fig, run, d, cmd in todo:
        command = [run.script, *cmd[2:]]  # the script path relative to the repository, as submit.py wants it
        name, after = f"omnigrok-{fig.key}-{run.name}", jobs.get(run.needs)
        if not args.dry_run:
            prepare(d, cmd)
        try:
            if submit._flag(command, "--mode") in submit.GRID_MODES.get(run.script, ()):
                ids = submit.submit(command, args.shards, slurm_args=args.slurm_args, dry_run=args.dry_run,
                                    job_name=name, after=after)
            else:
                ids = (submit.submit_job(command, d, slurm_args=args.slurm_args, dry_run=args.dry_run, job_name=name,
                                         after=after),)
        except submit.SubmitError as e:
            print(f"reproduce.py: {fig.key}/{run.name}: {e}", file=sys.stderr)
            raise SystemExit(2)
        jobs[f"{fig.key}/{run.name}"] = ids[-1]
        if not args.dry_run:
            write_json(d / "reproduce.json", {"status": "submitted", "settings": settings_key(cmd), "jobs": list(ids),
                                              "command": shlex.join(cmd), "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"\n{len(todo)} runs submitted. Watch: squeue --me. When they are done: "
          f"python reproduce.py --scale {args.scale} --report-only{' --out ' + args.out if args.out else ''}")
    return 0


# ----------------------------------------------------------------------------------------------
# claims: the paper's statements, our numbers, a verdict by a rule written here
# ----------------------------------------------------------------------------------------------
REPRODUCED, PARTLY, NOT, NOT_RUN = "reproduced", "partly", "not reproduced", "not run"


class Results:
    """summary.json (and metrics.json) of the runs present in an output folder, by "fig/run"."""

    def __init__(self, out):
        self.out = Path(out)

    def _load(self, name, file):
        d = self.out / name  # name: "fig/run"
        return read_json(d / file) if finished(d) else None

    def summary(self, name):
        return self._load(name, "summary.json")

    def metrics(self, name):
        return self._load(name, "metrics.json")


def delay_verdict(ratio):
    """Grokking delay = (step the test threshold is reached) / (step the train threshold is reached).
    >= 10: reproduced (the paper's curves show one to three decades); >= 2: partly; else not."""
    if ratio is None:
        return NOT
    return REPRODUCED if ratio >= 10 else PARTLY if ratio >= 2 else NOT


def lu_check(alphas, train, test, *, error):
    """The LU shape of one row of a reduced landscape (values over alphas, ascending).
    U: the test minimum is at an interior alpha and the test value right of it rises to >= 1.5x the minimum.
    L: from the test minimum up to the alpha where the test value is highest right of it, the training
    value stays near zero: <= 0.05 for errors, <= 0.1x the minimal test loss for losses.
    Returns (L, U, text)."""
    pts = [(a, tr, te) for a, tr, te in zip(alphas, train, test) if tr is not None and te is not None]
    if len(pts) < 3:
        return False, False, "fewer than 3 points"
    al, tr, te = zip(*pts)
    j = min(range(len(te)), key=te.__getitem__)
    k = max(range(j, len(te)), key=te.__getitem__)
    u = 0 < j < len(te) - 1 and te[k] >= 1.5 * te[j]
    tol = 0.05 if error else 0.1 * te[j]
    ell = k > j and all(v <= tol for v in tr[j:k + 1])
    what = "error" if error else "loss"
    text = (f"test {what} min {te[j]:.3g} at alpha {al[j]:g}, rises to {te[k]:.3g} at alpha {al[k]:g}; "
            f"train {what} <= {max(tr[j:k + 1]):.2g} on [{al[j]:g}, {al[k]:g}]")
    return ell, u, text


def lu_verdict(ell, u):
    return REPRODUCED if ell and u else PARTLY if ell or u else NOT


def slope_verdict(test, train):
    """Log-log slopes of steps-to-threshold vs wd. Test slope in [-1.3, -0.7] and |train slope| <= 0.3:
    reproduced; test slope in [-1.6, -0.4] (train |slope| <= 0.5): partly; else not."""
    if test is None:
        return NOT
    if -1.3 <= test <= -0.7 and train is not None and abs(train) <= 0.3:
        return REPRODUCED
    if -1.6 <= test <= -0.4 and (train is None or abs(train) <= 0.5):
        return PARTLY
    return NOT


def _row(z, i):
    return [None if v is None or v != v else v for v in z[i]]


def fmt(x, nd=3):
    return "-" if x is None else f"{x:.{nd}g}" if isinstance(x, float) else str(x)


def claim_ts_lu(r):
    s = r.summary("fig2a/landscape")
    if not s:
        return None
    p = s["points"]
    ell, u, text = lu_check([q["alpha"] for q in p], [q["train_loss_best"] for q in p],
                            [q["test_loss_best"] for q in p], error=False)
    return text, lu_verdict(ell, u)


def claim_ts_grid(r):
    s = r.summary("fig2b/grid")
    if not s:
        return None
    m = {(x["alpha"], x["wd"]): x for x in s["members"]}
    big0, big_small, big_large = m.get((2.0, 0.0)), m.get((2.0, 0.03)), m.get((2.0, 1.0))
    small = [m.get((0.5, w)) for w in (0.0, 0.03, 1.0)]
    if None in (big0, big_small, big_large) or None in small:
        return "grid incomplete", NOT_RUN
    checks = [big0["test_acc_step"] is None,                                   # no reg: never generalizes
              (big_small["grok_ratio"] or 0) >= 10,                            # small reg: groks
              big_large["test_acc_step"] is not None and big_small["test_acc_step"] is not None
              and big_large["test_acc_step"] < big_small["test_acc_step"],     # large reg: faster
              all(x["grok_ratio"] is not None and x["grok_ratio"] <= 3 for x in small)]  # small init: fast
    text = (f"alpha 2: wd 0 test step {fmt(big0['test_acc_step'])}, wd 0.03 delay {fmt(big_small['grok_ratio'])}x, "
            f"wd 1 test step {fmt(big_large['test_acc_step'])}; alpha 0.5 delays "
            + ", ".join(fmt(x["grok_ratio"]) for x in small))
    return text, REPRODUCED if all(checks) else PARTLY if sum(checks) >= 2 else NOT


def claim_slope(name, mid_key=None):
    def rule(r):
        s = r.summary(name)
        if not s:
            return None
        test = s.get(mid_key) if mid_key else s.get("slope_test")
        return f"test slope {fmt(test)}, train slope {fmt(s.get('slope_train'))}", slope_verdict(test, s.get("slope_train"))
    return rule


def claim_modadd_slopes(r):
    s = r.summary("fig10a/wd-sweep")
    if not s:
        return None
    per = s.get("slopes_per_seed", {})
    verdicts = [slope_verdict(v["slope_test"], v["slope_train"]) for v in per.values()]
    text = "; ".join(f"seed {k}: test {fmt(v['slope_test'])}, train {fmt(v['slope_train'])}" for k, v in per.items())
    worst = NOT if NOT in verdicts or not verdicts else PARTLY if PARTLY in verdicts else REPRODUCED
    return text, worst


def claim_landscape_lu(name, *, error, row_size=None):
    """LU on the row of the smallest N (the paper: "LU holds truer for smaller data")."""
    def rule(r):
        s = r.summary(name)
        if not s:
            return None
        sizes = s["sizes"]
        i = 0 if row_size is None else min(range(len(sizes)), key=lambda k: abs(sizes[k] - row_size))
        if error:
            tr, te = _row(s["train_error_best"], i), _row(s["test_error_best"], i)
        else:
            tr, te = _row(s["train_loss_best"], i), _row(s["test_loss_best"], i)
        ell, u, text = lu_check(s["alphas"], tr, te, error=error)
        return f"N = {sizes[i]}: {text}", lu_verdict(ell, u)
    return rule


def claim_mnist_more_data(r):
    """B -> C of Fig. 3: at alpha ~ 6.3 the largest N has at most half the test error of the small-N row."""
    s = r.summary("fig3abc/landscape")
    if not s:
        return None
    sizes, alphas = s["sizes"], s["alphas"]
    j = min(range(len(alphas)), key=lambda k: abs(alphas[k] - 6.3))
    i = min(range(len(sizes)), key=lambda k: abs(sizes[k] - 200))
    small, large = s["test_error_best"][i][j], s["test_error_best"][-1][j]
    if small is None or large is None:
        return "rows missing", NOT_RUN
    text = f"alpha {alphas[j]:g}: test error {small:.3f} at N = {sizes[i]}, {large:.3f} at N = {sizes[-1]}"
    return text, REPRODUCED if large <= 0.5 * small else PARTLY if large < small else NOT


def claim_run_delay(name, control=None, acc=True):
    """Delay >= 10 (see delay_verdict), and where the paper shows a small-init control, the control's delay
    is smaller; a control with a delay >= the run's makes it partly at best."""
    def rule(r):
        s = r.summary(name)
        if not s:
            return None
        c = s.get("control") if control == "inline" else r.summary(control) if control else None
        kind = "acc" if acc else "loss"
        text = f"train {fmt(s.get(f'train_{kind}_step'))}, test {fmt(s.get(f'test_{kind}_step'))}: delay {fmt(s['grok_ratio'])}x"
        v = delay_verdict(s["grok_ratio"])
        if c is not None:
            text += f"; alpha 1 control: {fmt(c['grok_ratio'])}x"
            if v != NOT and c["grok_ratio"] is not None and c["grok_ratio"] >= s["grok_ratio"]:
                v = PARTLY
        return text, v
    return rule


def claim_mnist_n(r):
    """Fig. 3e: time to generalize grows as N shrinks: t(smallest N) >= 1.5 t(largest N) reproduced, > 1 partly."""
    s = r.summary("fig3e/n-sweep")
    if not s:
        return None
    m = sorted(s["members"], key=lambda x: x["n_train"])
    t = [(x["n_train"], x.get("test_acc_step")) for x in m]
    text = ", ".join(f"N={n}: {fmt(v)}" for n, v in t)
    if t[0][1] is None and t[-1][1] is not None:
        return text, REPRODUCED  # the smallest N never generalizes within the budget
    if t[0][1] is None or t[-1][1] is None:
        return text, NOT
    q = t[0][1] / t[-1][1]
    return text + f" (ratio {q:.2f})", REPRODUCED if q >= 1.5 else PARTLY if q > 1 else NOT


def claim_repr(r):
    """Fig. 8: no train/test mismatch (median test/train loss ratio <= 2) and weak m dependence (the test
    loss's median range over m is <= 0.5x its median range over alpha). Both: reproduced; one: partly."""
    s = r.summary("fig8/repr")
    if not s:
        return None
    tr, te = s["train_loss_best"], s["test_loss_best"]
    cells = [(a, b) for ra, rb in zip(tr, te) for a, b in zip(ra, rb) if a is not None and b is not None and a > 0]
    mismatch = statistics.median(b / a for a, b in cells)
    cols = list(zip(*te))
    over_m = statistics.median(max(c) - min(c) for c in cols)
    over_alpha = statistics.median(max(row) - min(row) for row in te)
    weak = over_m <= 0.5 * over_alpha
    text = f"median test/train loss {mismatch:.2f}; test loss range over m {over_m:.3g} vs over alpha {over_alpha:.3g}"
    ok = [mismatch <= 2, weak]
    return text, REPRODUCED if all(ok) else PARTLY if any(ok) else NOT


def claim_ce_plateau(r):
    """Fig. 12: test accuracy at step ~1e4 in [0.2, 0.5] (the plateau), final >= 0.65 with train >= 0.99:
    reproduced; a rise of >= 0.15 after the plateau: partly."""
    s, m = r.summary("fig12/run"), r.metrics("fig12/run")
    if not s or not m:
        return None
    steps, acc = m["steps"], m["test_acc"]
    i = min(range(len(steps)), key=lambda k: abs(steps[k] - 1e4))
    plateau, final = acc[i], s["final_test_acc"]
    text = f"test acc {plateau:.2f} at step {steps[i]}, final {final:.2f} (train {s['final_train_acc']:.2f})"
    if 0.2 <= plateau <= 0.5 and final >= 0.65 and s["final_train_acc"] >= 0.99:
        return text, REPRODUCED
    return text, PARTLY if final - plateau >= 0.15 else NOT


def claim_ce_broader(r):
    """Fig. 11 vs 3: CE's Goldilocks zone is broader: at the small-N row, CE's test error at the largest alpha
    is below MSE's (reproduced if also <= 0.75x; partly if only below)."""
    mse, ce = r.summary("fig3abc/landscape"), r.summary("fig11/landscape")
    if not mse or not ce:
        return None
    def at(s):
        i = min(range(len(s["sizes"])), key=lambda k: abs(s["sizes"][k] - 200))
        return s["sizes"][i], s["test_error_best"][i][-1]
    (n1, e_mse), (n2, e_ce) = at(mse), at(ce)
    text = f"test error at alpha {ce['alphas'][-1]:g}: MSE {e_mse:.3f} (N = {n1}), CE {e_ce:.3f} (N = {n2})"
    return text, REPRODUCED if e_ce <= 0.75 * e_mse else PARTLY if e_ce < e_mse else NOT


def claim_gap_shrinks(name, *, error):
    """Larger N removes grokking: at the largest alpha where the smallest N still fits its training set (the
    L: train <= 0.05 error or <= 0.1x its minimal test loss), the relative gap (test - train) / test at the
    largest N is <= 0.5x the smallest N's: reproduced; smaller: partly; else not."""
    def rule(r):
        s = r.summary(name)
        if not s:
            return None
        key = "error" if error else "loss"
        tr, te = s[f"train_{key}_best"], s[f"test_{key}_best"]
        if None in tr[0] + te[0] + tr[-1] + te[-1]:
            return "rows missing", NOT_RUN
        tol = 0.05 if error else 0.1 * min(te[0])
        fitted = [j for j, v in enumerate(tr[0]) if v <= tol]
        if not fitted:
            return f"N = {s['sizes'][0]} fits at no alpha", NOT
        j = fitted[-1]
        small, large = ((te[i][j] - tr[i][j]) / te[i][j] if te[i][j] else 0.0 for i in (0, -1))
        text = (f"(test - train) / test {key} at alpha {s['alphas'][j]:g}: {small:.3g} (N = {s['sizes'][0]}), "
                f"{large:.3g} (N = {s['sizes'][-1]})")
        return text, REPRODUCED if large <= 0.5 * small else PARTLY if large < small else NOT
    return rule


def claim_modadd_run(r):
    """Fig. 7a: delay >= 10 and the final weight norm below the initial one (it rises, then falls below)."""
    s = r.summary("fig7a/run")
    if not s:
        return None
    v = delay_verdict(s["grok_ratio"])
    below = s["w_final"] < s["w_init"]
    text = f"delay {fmt(s['grok_ratio'])}x; w {s['w_init']:.1f} -> {s['w_final']:.1f}"
    return text, v if below or v == NOT else PARTLY


def claim_degrok(r):
    """Fig. 7b: at fixed norm alpha 0.8 test follows train: delay <= 2 reproduced, <= 5 partly."""
    s = r.summary("fig7b/run")
    if not s:
        return None
    q = s["grok_ratio"]
    text = (f"train {fmt(s['train_acc_step'])}, test {fmt(s['test_acc_step'])}: ratio {fmt(q)}; "
            f"final test acc {s['final_test_acc']:.3f}")
    return text, NOT if q is None else REPRODUCED if q <= 2 else PARTLY if q <= 5 else NOT


def claim_modadd_lu(r):
    """Fig. 9: LU at the smallest training fraction >= 0.3 (accuracy -> error)."""
    s = r.summary("fig9/landscape")
    if not s:
        return None
    fracs = sorted({p["frac"] for p in s["points"]})
    f = next((x for x in fracs if x >= 0.3 - 1e-9), fracs[-1])
    pts = sorted((p for p in s["points"] if p["frac"] == f), key=lambda p: p["alpha"])
    ell, u, text = lu_check([p["alpha"] for p in pts], [1 - p["train_acc_best"] for p in pts],
                            [1 - p["test_acc_best"] for p in pts], error=True)
    return f"fraction {f:g}: {text}", lu_verdict(ell, u)


def claim_addition_regions(r):
    """Fig. 6a,b: region I (train loss >= 0.1 at small alpha) and II (<= 0.05 at large alpha), and in II the
    test loss varies along m >= 10x more than the train loss. All three: reproduced; two: partly."""
    s = r.summary("fig6ab/landscape")
    if not s:
        return None
    ok = [s["train_loss_small_alpha"] >= 0.1, s["train_loss_large_alpha"] <= 0.05]
    tr_m, te_m = s.get("region2_train_loss_m_range"), s.get("region2_test_loss_m_range")
    ok.append(tr_m is not None and te_m is not None and te_m >= 10 * tr_m)
    text = (f"train loss {s['train_loss_small_alpha']:.3g} (small alpha) vs {s['train_loss_large_alpha']:.3g} (large); "
            f"in II the range over m: train {fmt(tr_m)}, test {fmt(te_m)}")
    return text, REPRODUCED if all(ok) else PARTLY if sum(ok) == 2 else NOT


def claim_multiple_descent(r):
    """Fig. 6c: the test loss along the reduced path has >= 2 local minima (multiple descent)."""
    s = r.summary("fig6c/trajectory")
    if not s:
        return None
    n = s["test_loss_local_minima"]
    return f"{n} local minima of the test loss along the path", REPRODUCED if n >= 2 else NOT


def claim_boundary_gradient(r):
    """Fig. 6d: near the boundary the negative gradients point to larger w and smaller m: both fractions
    >= 0.8 reproduced, >= 0.5 partly."""
    s = r.summary("fig6d/gradient")
    if not s:
        return None
    a, b = s["frac_arrows_to_larger_w"], s["frac_arrows_to_smaller_m"]
    if a is None or b is None:
        return "no arrows near the boundary", NOT
    return (f"{a:.2f} of arrows to larger w, {b:.2f} to smaller m",
            REPRODUCED if min(a, b) >= 0.8 else PARTLY if min(a, b) >= 0.5 else NOT)


def claim_data_contours(r):
    """Fig. 6e: the contours of N = 45 and 55 reach m = 0 inside the window (connect to the generalizing
    solution), those of N = 25 and 35 do not. All four as stated: reproduced; three: partly."""
    s = r.summary("fig6e/n-sweep")
    if not s:
        return None
    c = s["contour_alpha_at_m_min_max"]
    connected = {int(n): v[0] is not None for n, v in c.items()}
    want = {25: False, 35: False, 45: True, 55: True}
    hits = sum(connected.get(n) == w for n, w in want.items())
    text = ", ".join(f"N={n}: {'connects' if connected.get(n) else 'does not'}" for n in sorted(connected))
    return text, REPRODUCED if hits == 4 else PARTLY if hits == 3 else NOT


def claim_full_trajectory(r):
    """Table 1, full trajectory: the test accuracy reaches the threshold after the train accuracy (delay by
    delay_verdict; the paper draws no curve for it, so this is the same rule as everywhere)."""
    s = r.summary("table1/run")
    if not s:
        return None
    return (f"train {fmt(s['train_acc_step'])}, test {fmt(s['test_acc_step'])}: delay {fmt(s['grok_ratio'])}x; "
            f"m {s['m_init']:.2f} -> {s['m_final']:.2f}", delay_verdict(s["grok_ratio"]))


def claim_small_init(r):
    """Small init does not grok: the largest delay of the small-init runs (teacher-student alpha 0.5 at every
    wd, the IMDb and QM9 alpha-1 controls, where run) is < 2: reproduced; < 10: partly; else not."""
    got = []
    grid = r.summary("fig2b/grid")
    if grid:
        got += [(f"TS alpha 0.5 wd {m['wd']:g}", m["grok_ratio"]) for m in grid["members"] if m["alpha"] == 0.5]
    imdb = r.summary("fig4/run")
    if imdb and imdb.get("control"):
        got.append(("IMDb alpha 1", imdb["control"]["grok_ratio"]))
    qm9 = r.summary("fig5/control")
    if qm9:
        got.append(("QM9 alpha 1", qm9["grok_ratio"]))
    if not got:
        return None
    text = ", ".join(f"{k}: {fmt(v)}x" for k, v in got)
    if any(v is None for _, v in got):
        return text + " (a run never reached the test threshold)", NOT
    worst = max(v for _, v in got)
    return text, REPRODUCED if worst < 2 else PARTLY if worst < 10 else NOT


@dataclass
class Claim:
    figs: str
    paper: str
    rule: object
    paper_only: bool = False


CLAIMS = [
    Claim("fig2a", "Teacher-student: reduced train loss L-shaped, test loss U-shaped (minimum near alpha 1)", claim_ts_lu),
    Claim("fig2b", "alpha 2: no wd never generalizes, small wd groks, large wd generalizes faster; alpha 0.5 always fast",
          claim_ts_grid),
    Claim("fig2c", "Teacher-student: t_test ~ wd^-1, t_train independent of wd", claim_slope("fig2c/wd-sweep")),
    Claim("fig3abc", "MNIST: reduced train error L, test error U at small N", claim_landscape_lu("fig3abc/landscape", error=True, row_size=200)),
    Claim("fig3abc", "MNIST: a larger N lowers the test error at large alpha (B -> C: de-grokking)", claim_mnist_more_data),
    Claim("fig3d", "MNIST alpha 9, wd 0.3: the training set is fitted quickly, test accuracy improves much later",
          claim_run_delay("fig3d/run")),
    Claim("fig3e", "MNIST: time to generalize grows as the training set shrinks", claim_mnist_n),
    Claim("fig10b", "MNIST: t_test ~ wd^-1 for wd in [0.1, 1]", claim_slope("fig10b/wd-sweep", "slope_test_wd_0.1_to_1")),
    Claim("fig8", "MNIST: train and test losses behave alike and depend weakly on m: no grokking", claim_repr),
    Claim("fig11", "MNIST with CE: still L and U at small N", claim_landscape_lu("fig11/landscape", error=True, row_size=200)),
    Claim("fig11", "CE has a broader Goldilocks zone than MSE (a milder U)", claim_ce_broader),
    Claim("fig12", "MNIST CE, alpha 100: test accuracy plateaus at 30-40%, then rises to ~75% (train 100%)", claim_ce_plateau),
    Claim("fig4", "IMDb: reduced train error L, test error U at small N", claim_landscape_lu("fig4/landscape", error=True)),
    Claim("fig4", "IMDb: weak grokking at alpha 6, none at alpha 1", claim_run_delay("fig4/run", control="inline")),
    Claim("fig5", "QM9: reduced train loss L, test loss U at small N", claim_landscape_lu("fig5/landscape", error=False)),
    Claim("fig5", "QM9: larger N removes the train/test mismatch", claim_gap_shrinks("fig5/landscape", error=False)),
    Claim("fig5", "QM9: grokking at alpha 3 (no wd), none at alpha 1", claim_run_delay("fig5/run", control="fig5/control", acc=False)),
    Claim("fig2b", "Small initializations do not grok (teacher-student alpha 0.5; IMDb and QM9 at alpha 1)",
          claim_small_init),
    Claim("fig7a", "Modular addition: grokking; the weight norm peaks while overfitting, ends below its start", claim_modadd_run),
    Claim("fig7b", "Fixed norm alpha 0.8 almost eliminates grokking (train and test rise together)", claim_degrok),
    Claim("fig9", "Modular addition: LU holds for alpha in [0.1, 4]", claim_modadd_lu, paper_only=True),
    Claim("fig10a", "Modular addition: t_test ~ wd^-1 per seed", claim_modadd_slopes, paper_only=True),
    Claim("fig6ab", "Toy addition: region I (high train loss, small w) and II (low, large w); test depends on m, train weakly",
          claim_addition_regions),
    Claim("fig6c", "Toy addition: the test loss along the path shows multiple descent", claim_multiple_descent),
    Claim("fig6d", "Negative gradients at the I/II boundary point to larger w and smaller m", claim_boundary_gradient),
    Claim("fig6e", "Contours of N = 45, 55 connect to the generalizing solution, N = 25, 35 do not", claim_data_contours),
    Claim("table1", "Toy addition, full trajectory: generalization after fitting", claim_full_trajectory),
]


def evaluate(claim, results, scale):
    """(measured text, verdict) of one claim on the runs present."""
    got = claim.rule(results)
    if got is None:
        return "-", NOT_RUN
    text, verdict = got
    if claim.paper_only and scale == "quick" and verdict != NOT_RUN:
        return text, f"not decided at quick scale ({verdict} here; needs --scale paper)"
    return text, verdict


# ----------------------------------------------------------------------------------------------
# REPORT.md
# ----------------------------------------------------------------------------------------------
def _version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def _git(*args):
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_report(out, scale, session=None):
    """REPORT.md in `out` from whatever runs are there; links are relative to it."""
    out = Path(out).resolve()
    results = Results(out)
    records = {}
    for fig in FIGURES:
        for run in fig.runs:
            records[(fig.key, run.name)] = read_json(out / fig.key / run.name / "reproduce.json")
    configs = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/config.json"))]
    config = configs[0] if configs else {}
    made_at = sorted({(c.get("git_commit") or "?")[:7] for c in configs})
    compute = sum(r.get("seconds", 0) for r in records.values() if r)
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain", "--untracked-files=no") else ""
    versions = ", ".join(f"{k} {v}" for k, v in [("python", config.get("python")), ("torch", config.get("torch")),
                                                ("triton", _version("triton")), ("torch_geometric", _version("torch_geometric")),
                                                ("rdkit", _version("rdkit"))] if v)
    lines = [f"# Omnigrok reproduction report ({scale} scale)", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
             f"- commit: {_git('rev-parse', '--short', 'HEAD') or '?'}{dirty} (this report); the runs were made at "
             f"{', '.join(made_at) or '-'}",
             f"- device: {config.get('device', '?')} ({config.get('device_name', '?')}, {os.cpu_count()} CPU cores here)",
             f"- versions: {versions}",
             f"- scale: `{scale}`; runs: {sum(1 for r in records.values() if r and r.get('status') == 'done')} done"
             f" of {len(records)}; compute time (sum over runs): {fmt_time(compute)}"
             + (f"; wall time of the last `reproduce.py`: {fmt_time(session['seconds'])} with {session['jobs']} jobs"
                if session else ""),
             f"- command: `python reproduce.py --scale {scale}`; regenerate this file: "
             f"`python reproduce.py --scale {scale} --report-only`", ""]

    lines += ["## Claims", "",
              "Each verdict is computed from the measured number by the rule in `reproduce.py` (the function named in "
              "the last column): reproduced / partly / not reproduced / not run.", "",
              "| figure | the paper | measured here | verdict | rule |", "|---|---|---|---|---|"]
    counts = {}
    for c in CLAIMS:
        text, verdict = evaluate(c, results, scale)
        counts[verdict.split(" (")[0]] = counts.get(verdict.split(" (")[0], 0) + 1
        lines.append(f"| {BY_KEY[c.figs].label} | {c.paper} | {text} | **{verdict}** | `{c.rule.__qualname__.split('.')[0]}` |")
    lines += ["", "In all: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", ""]

    lines += ["## Figures", "", "Ours on the left; on the right the figures the authors' notebooks saved "
              "(docs/paper_figures/README.md), where they saved one.", ""]
    for fig in FIGURES:
        lines += [f"### {fig.label}: {fig.title}", ""]
        ours = []
        for run in fig.runs:
            rec, d = records[(fig.key, run.name)], out / fig.key / run.name
            if not implemented(run):
                lines.append(f"- `{run.name}`: not implemented (`{run.script}` does not exist yet)")
                continue
            if rec is None:
                lines.append(f"- `{run.name}`: not run")
                continue
            cmd = shlex.join(["python", *rec["settings"]])  # paths relative to the repository
            status = {"done": f"{fmt_time(rec.get('seconds'))}", "failed": "**failed** (see reproduce.log)",
                      "running": "unfinished",
                      "submitted": "SLURM job " + ("done" if finished(d) else "not finished")}[rec["status"]]
            lines.append(f"- `{run.name}` ({status}): `{cmd}`")
            ours += [f"![{fig.key} {run.name} {png.stem}]({os.path.relpath(png, out)})" for png in sorted(d.glob("*.png"))]
        theirs = [f"![authors {name}]({os.path.relpath(PAPER_FIGURES / name, out)})" for name in fig.authors]
        lines += ["", "| ours | the authors' |", "|---|---|"]
        for k in range(max(len(ours), len(theirs), 1)):
            left = ours[k] if k < len(ours) else ""
            right = theirs[k] if k < len(theirs) else "(none saved)" if k == 0 else ""
            lines.append(f"| {left} | {right} |")
        lines.append("")
    (out / "REPORT.md").write_text("\n".join(lines))
    return out / "REPORT.md"


def publish(out, dest, scale):
    """Copy what REPORT.md shows (PNGs, summary.json, reproduce.json; metrics.json under 1 MB) to dest and write
    its REPORT.md there: a small, committable copy of a reproduction."""
    out, dest = Path(out).resolve(), Path(dest).resolve()
    for fig in FIGURES:
        for run in fig.runs:
            src = out / fig.key / run.name
            if not (src / "reproduce.json").exists():
                continue
            dst = dest / fig.key / run.name
            if dst.exists():
                shutil.rmtree(dst)
            dst.mkdir(parents=True)
            for p in src.iterdir():
                keep = p.suffix == ".png" or p.name in ("summary.json", "reproduce.json", "config.json") \
                    or (p.name == "metrics.json" and p.stat().st_size < 1e6)
                if keep and p.is_file():
                    shutil.copy2(p, dst / p.name)
    session = read_json(out / "reproduce.json")
    if session:
        write_json(dest / "reproduce.json", session)
    return write_report(dest, scale, session)


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="quick: every figure on 2 CPU cores in about an hour; paper: the paper's grids and steps")
    p.add_argument("--only", default="", help="comma-separated figure keys (see --list); default: all")
    p.add_argument("--list", action="store_true", help="print the figures, their commands and expected times; run nothing")
    p.add_argument("--dry-run", action="store_true", help="print the commands that would run; run nothing")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="passed to every script")
    p.add_argument("--jobs", type=int, default=0,
                   help="runs at a time (0: one per CPU core on cpu, one on cuda)")
    p.add_argument("--threads", type=int, default=0,
                   help="torch threads per run (0: cores / jobs on cpu; the scripts' default on cuda)")
    p.add_argument("--out", default=None, help="output folder (default: runs/reproduce/<scale>)")
    p.add_argument("--slurm", action="store_true",
                   help="submit the runs to SLURM instead (slurm/submit.py): grids as job arrays plus merge jobs")
    p.add_argument("--shards", type=int, default=8, help="--slurm: tasks per grid's job array")
    p.add_argument("--slurm-args", default="", help='--slurm: sbatch options for every job, e.g. "-p gpu --gres=gpu:1"')
    p.add_argument("--report-only", action="store_true", help="run nothing; rewrite REPORT.md from the runs present")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="run nothing; copy REPORT.md with its figures and summaries to DIR (a committable copy)")
    args = p.parse_args(argv)
    if args.jobs < 0 or args.threads < 0:
        p.error("--jobs and --threads must be >= 0")
    return args


def resolve_device(name):
    if name != "auto":
        return name
    try:  # without importing torch here: ask the interpreter that runs the scripts
        code = "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout.strip() or "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out) if args.out else REPO / "runs" / "reproduce" / args.scale
    figs = expand([k.strip() for k in args.only.split(",") if k.strip()]) if args.only else FIGURES

    if args.list:
        for fig in figs:
            print(f"{fig.key:8s} {fig.label}: {fig.title}")
            for run in fig.runs:
                for scale in SCALES:
                    print(f"    {scale:5s} ~{fmt_time(run.est.get(scale)):>8s}  python {shlex.join(run.command(scale))}")
        return 0
    if args.report_only or args.publish:
        if not out.is_dir():
            print(f"reproduce.py: no reproduction in {out} (run it first, or give --out)", file=sys.stderr)
            return 2
        path = (publish(out, args.publish, args.scale) if args.publish
                else write_report(out, args.scale, read_json(out / "reproduce.json")))
        print(f"wrote {path}")
        return 0

    device = "auto" if args.slurm and args.device == "auto" else resolve_device(args.device)  # a job picks its own
    jobs = args.jobs or (1 if device == "cuda" else os.cpu_count() or 1)
    threads = 0 if args.slurm else args.threads or (max(1, (os.cpu_count() or 1) // jobs) if device == "cpu" else 0)
    todo, skipped = [], []
    for fig in figs:
        for run in fig.runs:
            if not implemented(run):
                print(f"  {fig.key}/{run.name}: not implemented ({run.script} does not exist yet)")
                continue
            cmd = full_command(out, fig, run, args.scale, device, threads)
            d = run_dir(out, fig, run)
            (skipped if is_done(d, cmd) else todo).append((fig, run, d, cmd))
    if args.slurm:
        return submit_all(todo, args, device)
    if args.dry_run:
        for _, _, _, cmd in todo:
            print(shlex.join(["python", *relative(cmd)]))
        print(f"# {len(todo)} to run, {len(skipped)} already done", file=sys.stderr)
        return 0

    out.mkdir(parents=True, exist_ok=True)
    est = sum(t[1].est.get(args.scale) or 0 for t in todo)
    print(f"reproduce ({args.scale}): {len(todo)} runs to do, {len(skipped)} done already; {jobs} at a time, "
          f"device {device}{f', {threads} thread(s) each' if threads else ''}; expected ~{fmt_time(est / jobs)}; "
          f"logs: <run>/reproduce.log under {out}", flush=True)
    t0 = time.time()
    failed = run_all(todo, jobs, args.scale) if todo else []
    session = {"scale": args.scale, "jobs": jobs, "threads": threads, "device": device, "runs": len(todo),
               "failed": failed, "seconds": time.time() - t0, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    if todo:
        write_json(out / "reproduce.json", session)
    else:  # nothing ran: the report keeps the last reproduction's wall time
        session = read_json(out / "reproduce.json")
    report = write_report(out, args.scale, session)
    print(f"{len(todo) - len(failed)} runs done, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
          f"{fmt_time(time.time() - t0)}; report: {report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
