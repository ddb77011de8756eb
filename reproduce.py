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

The claims table: claims.py holds every claim beside the rule that judges it (its docstring quotes the paper
and says where each threshold comes from; tests/test_claims.py checks each rule on the authors' own saved results
and on a negative control). The rules do not depend on the scale; claims marked `paper_only` are about settings
the quick scale changes (p = 31 instead of 113), so at the quick scale they are "not decided".

    python reproduce.py --scale paper --max-run-hours 1 --reuse runs/reproduce/quick
        # the paper scale on a CPU: runs estimated above an hour are left out (the report lists them as GPU or
        # cluster jobs), runs whose command is the same at both scales are copied from the quick output
"""
import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import claims
from claims import CLAIMS, NOT_RUN, REPRODUCED, evaluate

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
# quick run by steps x grid points (x 1.5 s a step for IMDb's paper preset), or README's estimates (fig9
# ~4.5 h, fig10a ~8 h). `--max-run-hours 1` skips the runs estimated above an hour (GPU or cluster jobs).
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
                est={"quick": 256, "paper": 10500})],
           [f"mnist__landscape__plot-mnist-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig3d", "Fig. 3d", "MNIST grokking, 1,000 images: the authors' run (alpha 8, wd 0.01) and the "
           "README's main job (alpha 9, wd 0.3)",
           # authors: the saved run of their mnist-grokking notebook (float64 there; float32 at the quick scale,
           # where 1e5 float64 steps would take ~2x longer). run: the README's main job, App. C's alpha with wd 0.3.
           [Run("authors", MNIST, ["--alpha", "8", "--wd", "0.01"], paper=["--dtype", "float64"],
                est={"quick": 330, "paper": 700}),
            Run("run", MNIST, ["--alpha", "9", "--wd", "0.3"], est={"quick": 323, "paper": 323})],
           ["mnist__grokking__mnist-grokking_c10_0.png"]),
    Figure("fig3e", "Fig. 3e", "MNIST: time to generalize vs training-set size",
           [Run("n-sweep", MNIST, ["--mode", "n-sweep"], est={"quick": 113, "paper": 113})]),
    Figure("fig4", "Fig. 4", "IMDb LSTM: reduced landscape and (weak) grokking at alpha 6",
           [Run("run", IMDB, [], quick=["--preset", "cpu", "--seq-len", "120"], paper=["--preset", "paper"],
                est={"quick": 883, "paper": 225000}),
            Run("landscape", IMDB, ["--mode", "landscape"], quick=["--preset", "cpu", "--sizes", "100,300,1000"],
                paper=["--paper-grid", "--preset", "paper"], est={"quick": 361, "paper": 200000})],
           ["imdb__grokking__plot-imdb-grokking_c1_0.png"]
           + [f"imdb__landscape__plot-imdb-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig5", "Fig. 5", "QM9 graph network: reduced landscape and grokking at alpha 3 without wd",
           [Run("run", QM9, [], quick=["--steps", "30000"], est={"quick": 95, "paper": 600}),
            Run("control", QM9, ["--alpha", "1"], quick=["--steps", "30000"], est={"quick": 102, "paper": 600}),
            Run("landscape", QM9, ["--mode", "landscape"], paper=["--paper-grid"], est={"quick": 334, "paper": 3000})],
           ["qm9__grokking__qm9-grokking_c2_0.png"]
           + [f"qm9__landscape__plot-qm9-landscape_c{i}_{i - 1}.png" for i in (1, 2, 3)]),
    Figure("fig6ab", "Fig. 6a,b", "Toy addition: training loss regions I/II and the test loss over (w, m)",
           # paper: the authors' notebook (21 x 21 grid, 15,000 steps, lr x0.2 every 5,000, labels (i + j) mod p);
           # quick: an 11 x 11 grid with the schedule compressed 2.5x (6,000 steps, lr x0.2 every 2,000).
           [Run("landscape", ADD, ["--mode", "landscape", "--labels", "mod"], quick=["--grid-points", "11"],
                paper=["--steps", "15000", "--lr-decay-every", "5000"], est={"quick": 266, "paper": 2500})],
           ["mod-addition__landscape__plot-addition-landscape_c1_0.png",
            "mod-addition__landscape__plot-addition-landscape_c2_1.png"]),
    Figure("fig6c", "Fig. 6c", "Toy addition: a reduced trajectory and the losses along it",
           [Run("trajectory", ADD, ["--mode", "trajectory", "--landscape-from", "DIR"], needs="fig6ab/landscape",
                est={"quick": 3, "paper": 3})],
           ["mod-addition__landscape__plot-addition-landscape_c3_2.png"]),
    Figure("fig6d", "Fig. 6d", "Toy addition: gradients at the I/II boundary",
           [Run("gradient", ADD, ["--mode", "gradient", "--landscape-from", "DIR"], needs="fig6e/n-sweep",
                est={"quick": 3, "paper": 9000})],  # paper: it waits for fig6e's grids
           ["mod-addition__landscape__plot-addition-data-dependence_c1_0.png"]),
    Figure("fig6e", "Fig. 6e", "Toy addition: the I/II boundary vs training-set size",
           # quick: 9 x 9 fine grids and the schedule compressed 3.75x (4,000 steps, lr x0.2 every 1,333)
           [Run("n-sweep", ADD, ["--mode", "n-sweep", "--labels", "mod"],
                quick=["--grid-points", "9", "--steps", "4000", "--lr-decay-every", "1333"],
                paper=["--steps", "15000", "--lr-decay-every", "5000"], est={"quick": 444, "paper": 9000})],
           ["mod-addition__landscape__plot-addition-data-dependence_c3_1.png"]),
    Figure("table1", "Table 1", "Toy addition, full trajectory (last row): representation and decoder trained",
           [Run("run", ADD, [], est={"quick": 17, "paper": 17})]),
    Figure("fig7a", "Fig. 7a", "Modular addition transformer: grokking, the weight norm rises then falls",
           [Run("run", MODADD, [], est={"quick": 1274, "paper": 1274})],
           ["mod-addition__grokking__modular-addition-grokking_c14_0.png"]),
    Figure("fig7b", "Fig. 7b", "Modular addition at fixed norm alpha 0.8: no grokking",
           # paper: the authors' constrained run (15,000 steps, float64); quick: its first 3,000 steps in float32,
           # where both curves have long reached their plateau (Fig. 7b: ~300 steps).
           [Run("run", MODADD, ["--constrain", "--alpha", "0.8"], quick=["--steps", "3000"],
                paper=["--steps", "15000", "--dtype", "float64"], est={"quick": 209, "paper": 1500})],
           ["mod-addition__grokking__modular-addition-grokking_c22_1.png",
            "mod-addition__grokking__modular-addition-grokking_c23_2.png"]),
    Figure("fig8", "Fig. 8", "MNIST landscape over representation messiness m and alpha (N = 60,000)",
           [Run("repr", MNIST, ["--mode", "repr"], paper=["--paper-grid"], est={"quick": 190, "paper": 7400})],
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
                est={"quick": 250, "paper": 10500})]),
    Figure("fig12", "Fig. 12", "MNIST grokking with cross-entropy: a plateau, then a late rise",
           [Run("run", MNIST, ["--loss", "ce", "--alpha", "100", "--n-train", "200", "--wd", "0.03"],
                est={"quick": 370, "paper": 370})]),
]
BY_KEY = {f.key: f for f in FIGURES}

# Where the quick scale differs from the paper scale, and why (REPORT.md says it under each figure).
SAME = "quick = paper: the paper's settings take minutes on a CPU."
SCALE_NOTES = {
    "fig2a": SAME, "fig2b": SAME, "fig2c": SAME, "fig3e": SAME, "fig10b": SAME, "fig12": SAME, "table1": SAME,
    "fig7a": SAME,
    "fig3abc": "quick: 9 alphas x 8 sizes x 2,000 steps; paper: the authors' 21 x 28 x 1e4 (`--paper-grid`, ~3 h on "
               "one core). The quick grid keeps the slices the claims read (N = 200, the largest N, alpha ~6.3).",
    "fig11": "as Fig. 3a-c: quick 9 x 8 x 2,000 steps; paper the authors' 21 x 28 x 1e4.",
    "fig3d": "the authors' run in float32 at the quick scale, float64 (as their notebook) at the paper scale: float64 "
             "steps take ~2x longer on a CPU; the main job is the same at both.",
    "fig4": "quick: hidden 64 and reviews cut to 120 tokens, 8,000 steps; landscape N = 100, 300, 1k with >= 200 steps "
            "per point. paper: the authors' hidden 256, 500 tokens, 75,000 steps; landscape 11 alphas x 15 sizes, "
            "5 epochs per point: ~1.5 s a step on a CPU, tens of hours, a GPU job.",
    "fig5": "quick: 3e4 of the 1e5 steps (the drop of the test loss comes by ~2e4); landscape 9 alphas x 6 sizes. "
            "paper: 1e5 steps; the authors' 21 alphas x 22 sizes.",
    "fig6ab": "quick: an 11 x 11 grid, 6,000 steps with lr x0.2 every 2,000 (the notebook's schedule compressed "
              "2.5x); paper: the notebook's 21 x 21, 15,000 steps, lr x0.2 every 5,000. Both: labels (i + j) mod p "
              "and final losses, as the notebook.",
    "fig6c": "the reduced trajectory on Fig. 6a,b's landscape of the same scale.",
    "fig6d": "on Fig. 6e's N = 45 landscape of the same scale.",
    "fig6e": "quick: 9 x 9 fine grids, 4,000 steps with lr x0.2 every 1,333; paper: the notebook's 21 x 21, 15,000 "
             "steps, lr x0.2 every 5,000 (~2.5 h on one core).",
    "fig7b": "quick: the first 3,000 of the authors' 15,000 steps, in float32 (both curves plateau by ~300 steps in "
             "their figure); paper: 15,000 steps in float64, as their notebook.",
    "fig8": "quick: 6 m x 8 alphas x 2,000 steps; paper: the authors' 21 x 20 x 1e4 (~2 h on one core).",
    "fig9": "quick: p = 31, 5 alphas x 4 fractions, 600 steps (p = 113 takes ~4.5 h); its claims are decided at the "
            "paper scale only.",
    "fig10a": "quick: p = 31, 4 wds x 2 seeds, 90% threshold, 1e4 steps (p = 113 takes ~8 h); decided at the paper "
              "scale only.",
}


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


def too_long(run, scale, max_hours):
    """A run that --max-run-hours leaves to a GPU or a cluster (no estimate counts as too long)."""
    est = run.est.get(scale)
    return bool(max_hours) and (est is None or est > max_hours * 3600)


def reuse(fig, run, cmd, out, other_out):
    """--reuse: a run whose command is the same at both scales (and reads no other run) is copied from the
    other scale's finished run, made with the same flags, instead of trained again: the scripts are
    deterministic on CPU, so the same command gives the same numbers."""
    d, src = run_dir(out, fig, run), run_dir(other_out, fig, run)
    if run.needs or run.command("quick") != run.command("paper") or not finished(src):
        return False
    rec = read_json(src / "reproduce.json")
    here, there = relative(["python", str(d), str(src)])
    if rec.get("settings") != [there if a == here else a for a in settings_key(cmd)]:
        return False  # another device, or other flags
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(src, d)
    write_json(d / "reproduce.json", {**rec, "settings": settings_key(cmd), "command": shlex.join(cmd),
                                      "reused_from": there})
    return True


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


CHILDREN = set()  # the scripts running now: stopping reproduce.py stops them too


def stop_children(signum, frame):
    """SIGTERM (kill, a job scheduler's stop): end the running scripts before exiting, so none keeps writing."""
    running = list(CHILDREN)
    for child in running:
        child.terminate()
    for child in running:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    print(f"reproduce.py: stopped by signal {signum}; {len(running)} running script(s) stopped. Run the same command "
          "again to go on: finished runs are kept.", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def execute(d, cmd):
    """Run one experiment script; returns (ok, seconds)."""
    prepare(d, cmd)
    rec, key = d / "reproduce.json", settings_key(cmd)
    write_json(rec, {"status": "running", "settings": key, "command": shlex.join(cmd),
                     "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    t0 = time.time()
    with open(d / "reproduce.log", "w") as log:
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        CHILDREN.add(child)
        try:
            rc = child.wait()
        finally:
            CHILDREN.discard(child)
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
# claims (claims.py): the paper's statements, our numbers, a verdict by a rule written beside each
# ----------------------------------------------------------------------------------------------
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
              "Each verdict is computed from our numbers by the rule named in the last column (claims.py: its "
              "docstring quotes the paper and says where each threshold comes from; tests/test_claims.py checks that "
              "the rule passes the authors' own saved results and rejects a negative control): reproduced / partly / "
              "not reproduced / not run. A verdict other than reproduced says why.", "",
              "| figure | the paper | measured here | verdict | why | rule |", "|---|---|---|---|---|---|"]
    counts = {}
    for c in CLAIMS:
        text, verdict = evaluate(c, results, scale)
        if verdict == NOT_RUN and scale == "paper" and any(too_long(r, scale, 1) for r in BY_KEY[c.figs].runs):
            est = max(r.est.get(scale) or 0 for r in BY_KEY[c.figs].runs)
            verdict, why = f"not run: GPU or cluster job (est. {fmt_time(est)} on one of 2 CPU cores)", ""
        else:
            why = "" if verdict == REPRODUCED else c.why.get(scale, "")
        counts[verdict.split(" (")[0]] = counts.get(verdict.split(" (")[0], 0) + 1
        lines.append(f"| {BY_KEY[c.figs].label} | {c.paper} | {text} | **{verdict}** | {why} | "
                     f"`{c.rule.__qualname__.split('.')[0]}` |")
    lines += ["", "In all: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
              "### Rules changed", "", "Each rule was fixed from the paper and the authors' code and figures before it "
              "was applied to our runs.", ""]
    lines += [f"- **{name}**: was: {old} Now: {new} Why: {why}" for name, old, new, why in claims.RULES_CHANGED]
    lines.append("")

    lines += ["## Figures", "", "Ours on the left; on the right the figures the authors' notebooks saved "
              "(docs/paper_figures/README.md), where they saved one.", ""]
    for fig in FIGURES:
        lines += [f"### {fig.label}: {fig.title}", "", f"Scales: {SCALE_NOTES.get(fig.key, SAME)}", ""]
        ours = []
        for run in fig.runs:
            rec, d = records[(fig.key, run.name)], out / fig.key / run.name
            if not implemented(run):
                lines.append(f"- `{run.name}`: not implemented (`{run.script}` does not exist yet)")
                continue
            if rec is None:
                lines.append(f"- `{run.name}`: not run" + (f": a GPU or cluster job (est. {fmt_time(run.est.get(scale))} "
                             f"on one of 2 CPU cores): `python {shlex.join(run.command(scale))}`"
                             if scale == "paper" and too_long(run, scale, 1) else ""))
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
    p.add_argument("--max-run-hours", type=float, default=0,
                   help="leave out the runs expected (--list) to take longer than this on one CPU core; the report "
                        "lists them as GPU or cluster jobs (0: run everything)")
    p.add_argument("--reuse", default=None, metavar="DIR",
                   help="copy each run whose command is the same at both scales from the other scale's output DIR "
                        "(e.g. runs/reproduce/quick) instead of training it again")
    p.add_argument("--report-only", action="store_true", help="run nothing; rewrite REPORT.md from the runs present")
    p.add_argument("--publish", default=None, metavar="DIR",
                   help="run nothing; copy REPORT.md with its figures and summaries to DIR (a committable copy)")
    args = p.parse_args(argv)
    if args.jobs < 0 or args.threads < 0 or not args.max_run_hours >= 0:
        p.error("--jobs, --threads and --max-run-hours must be >= 0")
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
    keys = [k.strip() for k in args.only.split(",") if k.strip()]
    if args.only and not keys:
        print(f"reproduce.py: --only {args.only!r} names no figure; --list shows them.", file=sys.stderr)
        return 2
    if out.exists() and not out.is_dir():
        print(f"reproduce.py: --out {out} is a file, not a folder.", file=sys.stderr)
        return 2
    figs = expand(keys) if keys else FIGURES

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
    if device == "cuda" and not args.slurm and not args.dry_run and resolve_device("auto") != "cuda":
        print("reproduce.py: --device cuda was asked for but no GPU is visible.", file=sys.stderr)
        return 2
    jobs = args.jobs or (1 if device == "cuda" else os.cpu_count() or 1)
    threads = 0 if args.slurm else args.threads or (max(1, (os.cpu_count() or 1) // jobs) if device == "cpu" else 0)
    todo, skipped = [], []
    for fig in figs:
        for run in fig.runs:
            if not implemented(run):
                print(f"  {fig.key}/{run.name}: not implemented ({run.script} does not exist yet)")
                continue
            if too_long(run, args.scale, args.max_run_hours):
                print(f"  {fig.key}/{run.name}: left out (est. {fmt_time(run.est.get(args.scale))} > --max-run-hours "
                      f"{args.max_run_hours:g}: a GPU or cluster job)")
                continue
            cmd = full_command(out, fig, run, args.scale, device, threads)
            d = run_dir(out, fig, run)
            if (not is_done(d, cmd) and args.reuse and not args.dry_run and not args.slurm
                    and reuse(fig, run, cmd, out, Path(args.reuse))):
                print(f"  {fig.key}/{run.name}: copied from {args.reuse} (the same command at both scales)")
            (skipped if is_done(d, cmd) else todo).append((fig, run, d, cmd))
    stale = {f"{t[0].key}/{t[1].name}" for t in todo}
    for t in list(skipped):  # a run made from a run that is made again is made again too (fig6c, fig6d)
        if t[1].needs in stale:
            skipped.remove(t)
            todo.append(t)
    if args.slurm:
        return submit_all(todo, args, device)
    if args.dry_run:
        for _, _, _, cmd in todo:
            print(shlex.join(["python", *relative(cmd)]))
        print(f"# {len(todo)} to run, {len(skipped)} already done", file=sys.stderr)
        return 0

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"reproduce.py: --out {out} cannot be made ({e.strerror}).", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, stop_children)
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
