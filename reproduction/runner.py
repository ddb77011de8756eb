"""Running the registry's runs: each is an experiment script run as a subprocess (each stays standalone), with
`--out <out>/<figure>/<run>`; stdout and stderr go to `reproduce.log` beside the run's own files. A run is
done when its folder holds summary.json and reproduce.json records the same command (--threads aside):
done runs are skipped, a run whose command changed is deleted and rerun, and a killed run is started
again in its own folder (grid modes then keep the points they had saved). A failing run is reported and
the others go on. Runs go `--jobs` at a time, longest first; with --slurm they are submitted as SLURM jobs.
"""
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from . import figures
from .figures import REPO


def run_dir(out, fig, run):
    return Path(out) / fig.key / run.name


def full_command(out, fig, run, scale, device, threads):
    """The subprocess argv of a run (python, script, flags); --landscape-from points at the run it needs."""
    cmd = run.command(scale)
    if run.needs:
        need_fig, need_run = run.needs.split("/")
        need = next(r for r in figures.BY_KEY[need_fig].runs if r.name == need_run)
        cmd = [str(run_dir(out, figures.BY_KEY[need_fig], need)) if a == "DIR" else a for a in cmd]
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
    with open(d / "reproduce.log", "a") as log:  # a resumed run keeps the log of the invocations before
        print(f"== {time.strftime('%Y-%m-%d %H:%M:%S')}: {shlex.join(cmd)}", file=log, flush=True)
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
    succeeded, failed, running = set(), [], {}
    total, done_n, t_start = len(pending), 0, time.time()
    est_left = sum(t[1].est.get(scale) or 0 for t in pending)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or running:
            for t in list(pending):
                need = t[1].needs
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
            if figures.is_grid(run):
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
