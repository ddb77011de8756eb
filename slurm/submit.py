"""Submit a figure's grid to SLURM: one job array over its shards, then the merge job that draws the figure.

    python slurm/submit.py --list                                   # the figures it knows (grid commands)
    python slurm/submit.py fig3abc --shards 8                       # Fig. 3a-c: the MNIST landscape, 8 tasks
    python slurm/submit.py fig9 --shards 9 --slurm-args "-p gpu --gres=gpu:1 -t 2:00:00"
    python slurm/submit.py --shards 4 -- toy_teacher_student.py --mode wd-sweep --out runs/wd   # any grid command
    python slurm/submit.py fig3abc --shards 8 --dry-run             # print the sbatch commands, submit nothing

What it runs (SLURM's own commands, nothing else):
    sbatch --array=0-(n-1) slurm/omnigrok.sbatch PYTHON SCRIPT ARGS --shard slurm
    sbatch --dependency=afterok:<array id> --kill-on-invalid-dep=yes slurm/omnigrok.sbatch PYTHON SCRIPT ARGS --merge
Task i trains grid points i, i+n, i+2n, ... (its points as one ensemble) and saves each as <out>/points/<name>.json;
the merge job, once every task has succeeded, writes summary.json and the figure into <out>. Logs go to
<out>/slurm/. If a task fails (or hits its time limit), SLURM cancels the merge job; submit the same command again:
points already saved are skipped, so each task trains only what it had not finished.

`python reproduce.py --slurm` submits every figure this way (submit() for grids, submit_job() for single runs).
"""
import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = Path(__file__).resolve().parent / "omnigrok.sbatch"
sys.path.insert(0, str(REPO))
from reproduction import figures as registry  # noqa: E402 - the one list of figures, and each script's grid modes

GRID_MODES = registry.GRID_MODES


def figures():
    """{figure key: grid command} at the paper's scale, from the registry."""
    return {fig.key: shlex.join(run.command("paper")) for fig in registry.FIGURES for run in fig.runs
            if registry.is_grid(run)}


class SubmitError(Exception):
    """A mistake in the command line: one sentence, exit code 2."""


def _flag(args, name):
    """The value of --name in an argument list (either '--name V' or '--name=V'), else None."""
    for k, a in enumerate(args):
        if a == name and k + 1 < len(args):
            return args[k + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def grid_command(command):
    """Check a grid command [script, args...]; add --out when it has none. Returns (command, out dir)."""
    if not command:
        raise SubmitError("give a figure (see --list) or a grid command after --, e.g. -- mnist_grok.py --mode landscape.")
    script, args = Path(command[0]).name, list(command[1:])
    if script not in GRID_MODES:
        raise SubmitError(f"{command[0]} is not one of the scripts with grid modes ({', '.join(GRID_MODES)}).")
    if not (REPO / script).exists():
        raise SubmitError(f"{script} is not in {REPO} (yet).")
    mode = _flag(args, "--mode")
    if mode not in GRID_MODES[script]:
        raise SubmitError(f"{script} --mode {mode} is not a grid mode; give --mode {' or '.join(sorted(GRID_MODES[script]))}.")
    if any(a == "--merge" or a == "--shard" or a.startswith("--shard=") for a in args):
        raise SubmitError("leave out --shard and --merge: the array tasks get --shard slurm, the merge job --merge.")
    out = _flag(args, "--out")
    if out is None:  # every task and the merge job must share one run directory
        out = f"runs/{Path(script).stem}/{mode}-slurm-{time.strftime('%Y%m%d-%H%M%S')}"
        args += ["--out", out]
    out = Path(out) if Path(out).is_absolute() else REPO / out
    return [script] + args, out


def sbatch_options(text):
    """--slurm-args as sbatch's argv (shell quoting), with a clear error for an unbalanced quote."""
    try:
        return shlex.split(text)
    except ValueError as e:
        raise SubmitError(f"--slurm-args {text!r}: {e} (quote as in a shell).") from None


def _sbatch(argv, dry_run):
    print("$ " + shlex.join(argv), flush=True)
    if dry_run:
        return "<id>"
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    if r.returncode != 0:
        raise SubmitError(f"sbatch failed (exit {r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
    return r.stdout.strip().split(";")[0]  # --parsable: "jobid" or "jobid;cluster"


def submit(command, shards, *, slurm_args="", python=sys.executable, dry_run=False, job_name=None, after=None):
    """Submit `command` ([script, args...], a grid mode) as an array of `shards` tasks plus its merge job;
    with `after` (a job id) the array starts once that job has succeeded. Returns (array job id, merge job id)."""
    if shards < 1:
        raise SubmitError(f"--shards must be at least 1, got {shards}.")
    command, out = grid_command(command)
    extra = sbatch_options(slurm_args)
    name = job_name or f"omnigrok-{Path(command[0]).stem}-{_flag(command, '--mode')}"
    logs = out / "slurm"
    if not dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    base = ["sbatch", "--parsable", f"--chdir={REPO}"]
    run = [python, *command]
    wait = [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"] if after else []
    array = _sbatch(base + wait + [f"--array=0-{shards - 1}", f"--job-name={name}", f"--output={logs}/%A_%a.out", *extra,
                            str(TEMPLATE), *run, "--shard", "slurm"], dry_run)
    merge = _sbatch(base + [f"--dependency=afterok:{array}", "--kill-on-invalid-dep=yes", f"--job-name={name}-merge",
                            f"--output={logs}/%j-merge.out", *extra, str(TEMPLATE), *run, "--merge"], dry_run)
    print(f"\nsubmitted {shlex.join(command)}\n"
          f"  array job {array}: {shards} task(s), task i trains grid points i, i+{shards}, ... into {out}/points/\n"
          f"  merge job {merge}: runs once all tasks succeeded (afterok:{array}); writes summary.json and the figure\n"
          f"watch:  squeue -j {array},{merge}\n"
          f"        sacct -j {array},{merge} --format=JobID,JobName%30,State,Elapsed,ExitCode   (clusters with accounting)\n"
          f"logs:   {logs}/\n"
          f"if a task fails, SLURM cancels the merge job; run this same command again: saved points are skipped.",
          flush=True)
    return array, merge


def submit_job(command, out, *, slurm_args="", python=sys.executable, dry_run=False, job_name=None, after=None):
    """Submit a command that is not a grid (a single training run) as one job writing into `out`; with `after`
    (a job id) it starts once that job has succeeded. Returns the job id."""
    logs = Path(out) / "slurm"
    if not dry_run:
        logs.mkdir(parents=True, exist_ok=True)
    wait = [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"] if after else []
    job = _sbatch(["sbatch", "--parsable", f"--chdir={REPO}", *wait, f"--job-name={job_name or 'omnigrok'}",
                   f"--output={logs}/%j.out", *sbatch_options(slurm_args), str(TEMPLATE), python, *command], dry_run)
    print(f"submitted {shlex.join(command)}: job {job}" + (f" (after {after})" if after else ""), flush=True)
    return job


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    command = []
    if "--" in argv:
        k = argv.index("--")
        argv, command = argv[:k], argv[k + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="A grid command goes after --: python slurm/submit.py --shards 4 -- SCRIPT --mode MODE ...")
    p.add_argument("figure", nargs="?", help=f"a figure's grid: {', '.join(figures())} (or give a command after --)")
    p.add_argument("--shards", type=int, default=8, help="tasks in the job array (grid points are dealt round-robin)")
    p.add_argument("--slurm-args", default="", help='extra sbatch options for every job, e.g. "-p gpu --gres=gpu:1 -t 2:00:00"')
    p.add_argument("--python", default=sys.executable, help="the Python the jobs run (default: this one)")
    p.add_argument("--out", default=None, help="the run directory (default: runs/<script>/<mode>-slurm-<time>)")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch commands, submit nothing")
    p.add_argument("--list", action="store_true", help="list the figures and their grid commands")
    a = p.parse_args(argv)
    try:
        if a.list:
            for fig, cmd in figures().items():
                print(f"{fig:>7}  {cmd}")
            return None
        if a.figure and command:
            raise SubmitError("give a figure or a command after --, not both.")
        if a.figure:
            if a.figure not in figures():
                raise SubmitError(f"unknown figure {a.figure!r}; --list shows them.")
            command = shlex.split(figures()[a.figure])
        if a.out:
            if _flag(command, "--out") is not None:
                raise SubmitError("give --out once (before or after --).")
            command = command + ["--out", a.out]
        return submit(command, a.shards, slurm_args=a.slurm_args, python=a.python, dry_run=a.dry_run)
    except SubmitError as e:
        print(f"submit.py: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a log folder that cannot be made (--out a file, no permission)
        print(f"submit.py: error: {e.strerror}: {e.filename}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
