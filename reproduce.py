"""Every paper figure from one command, and REPORT.md: each figure beside the authors', each claim of the
paper beside what we measured, with a verdict computed by a rule written next to the claim.

    python reproduce.py                           # quick scale: every figure on 2 CPU cores in about an hour
    python reproduce.py --only fig3d,fig7b        # some figures (and what they need: fig6c needs fig6ab)
    python reproduce.py --only beyond/modadd      # one run of a figure (--list names them)
    python reproduce.py --scale paper --device cuda   # the paper's grids and step counts (a GPU, or a cluster)
    python reproduce.py --list                    # figures, commands, expected times per scale
    python reproduce.py --dry-run                 # the commands that would run
    python reproduce.py --report-only             # rewrite REPORT.md from the runs present
    python reproduce.py --publish docs/reproduce-quick   # copy REPORT.md + figures + summaries (small) there
    python reproduce.py --scale paper --slurm --slurm-args "-p gpu --gres=gpu:1"   # grids as job arrays

    python reproduce.py --scale paper --max-run-hours 1 --reuse runs/reproduce/quick
        # the paper scale on a CPU: runs estimated above an hour are left out (the report lists them as GPU or
        # cluster jobs), runs whose command is the same at both scales are copied from the quick output

The work is done in reproduction/: figures.py (the registry: figure -> runs -> commands per scale),
runner.py (runs them as subprocesses, or submits them to SLURM), claims.py (the paper's claims and the
rules that judge them), report.py (REPORT.md). The exit code is 1 if any run failed. Runs go `--jobs` at
a time (CPU: one per core, one thread each; CUDA: one).
"""
import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from reproduction import figures
from reproduction.figures import REPO, SCALES
from reproduction.report import publish, write_report
from reproduction.runner import (fmt_time, full_command, implemented, is_done, read_json, relative, reuse, run_all,
                                 run_dir, stop_children, submit_all, too_long, write_json)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--scale", choices=SCALES, default="quick",
                   help="quick: every figure on 2 CPU cores in about an hour; paper: the paper's grids and steps")
    p.add_argument("--only", default="", help="comma-separated figure keys, or figure/run for one run of a figure "
                                               "(e.g. beyond/modadd; see --list); default: all")
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
    figs = figures.expand(sorted({k.split("/")[0] for k in keys})) if keys else figures.FIGURES
    only_runs, whole = {k for k in keys if "/" in k}, {k for k in keys if "/" not in k}
    unknown = only_runs - {f"{f.key}/{r.name}" for f in figures.FIGURES for r in f.runs}
    if unknown:
        print(f"reproduce.py: unknown run(s) {', '.join(sorted(unknown))}; --list shows each figure's runs "
              "(figure/run: e.g. beyond/modadd).", file=sys.stderr)
        return 2
    partial = {k.split("/")[0] for k in only_runs} - whole  # figures of which only some runs are asked for

    def wanted(fig, run):
        return fig.key not in partial or f"{fig.key}/{run.name}" in only_runs

    if args.list:
        for fig in figs:
            print(f"{fig.key:8s} {fig.label}: {fig.title}")
            for run in filter(lambda r: wanted(fig, r), fig.runs):
                print(f"  {fig.key}/{run.name}")
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
    if args.device == "cuda" and not args.slurm and not args.dry_run and resolve_device("auto") != "cuda":
        print("reproduce.py: --device cuda was asked for but no GPU is visible.", file=sys.stderr)
        return 2
    jobs = args.jobs or (1 if device == "cuda" else os.cpu_count() or 1)
    threads = 0 if args.slurm else args.threads or (max(1, (os.cpu_count() or 1) // jobs) if device == "cpu" else 0)
    todo, skipped = [], []
    for fig in figs:
        for run in filter(lambda r: wanted(fig, r), fig.runs):
            if not implemented(run):
                print(f"  {fig.key}/{run.name}: not implemented ({run.script} does not exist yet)")
                continue
            if too_long(run, args.scale, args.max_run_hours):
                print(f"  {fig.key}/{run.name}: left out (est. {fmt_time(run.est.get(args.scale))} > --max-run-hours "
                      f"{args.max_run_hours:g}: a GPU or cluster job)")
                continue
            cmd = full_command(out, fig, run, args.scale, device, threads)
            d = run_dir(out, fig, run)
            done = is_done(d, cmd)
            if (not done and args.reuse and not args.dry_run and not args.slurm
                    and reuse(fig, run, cmd, out, Path(args.reuse))):  # copied: a done record with these settings
                print(f"  {fig.key}/{run.name}: copied from {args.reuse} (the same command at both scales)")
                done = True
            (skipped if done else todo).append((fig, run, d, cmd))
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
