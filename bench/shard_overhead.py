"""What sharding a grid costs: the total CPU time of a grid run as n shards plus its merge vs the unsharded run.

    python bench/shard_overhead.py                                    # the grids below, n = 3 and 9 (~40 CPU-min)
    python bench/shard_overhead.py --grids mnist-landscape --shards 2,4,8
    python bench/shard_overhead.py --grids ts-wd-sweep --extra=--steps=2000   # extra flags for every run

Every run is a subprocess with one thread (--threads 1), one after another, so that CPU time (user + sys of
the children, from getrusage) is what a cluster would bill. The shards write into one folder and the merge
draws from it, as a job array does; the merged points must equal the unsharded run's, bit for bit (checked).
Writes <out>/shard_overhead.json and .csv and prints a table.

Where the cost comes from: every shard is a process that imports torch and loads its data (a shard with
nothing to do: ~3 s CPU for MNIST here), and pays every step's fixed cost (Python, op dispatch) for its own,
smaller ensemble. For grids of ensembles with real work per step that is a few percent; for an ensemble of tiny
models (the teacher-student MLPs: a step of 9 takes ~3.5 ms, of one ~0.75 ms) the step's fixed cost is most
of it, and n shards pay it n times. The measured numbers are in README.md ("Run on a cluster").
"""
import argparse
import csv
import json
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRIDS = {  # the README's quick commands (reproduce.py --scale quick); a comment says what a grid point is
    "mnist-landscape": ["mnist_grok.py", "--mode", "landscape"],  # a row: one N, an ensemble of 9 alphas (8 rows)
    "addition-landscape": ["addition_landscape.py", "--mode", "landscape", "--grid-points", "11"],  # a row of
    # 11 alphas; the whole grid is one ensemble of 121 decoders, a shard's rows one ensemble
    "modadd-landscape": ["modadd_transformer.py", "--mode", "landscape", "--p", "31", "--alphas", "0.1,0.3,1,3,10",
                         "--fracs", "0.2,0.4,0.6,0.8", "--landscape-steps", "600", "--eval-points", "40"],  # a
    # fraction: an ensemble of 5 alphas (4 points)
    "ts-wd-sweep": ["toy_teacher_student.py", "--mode", "wd-sweep", "--steps", "20000"],  # a wd: one tiny MLP;
    # the whole sweep is one ensemble of 9 (a fifth of the README's 1e5 steps: the same cost per step)
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--grids", default=",".join(GRIDS), help=f"comma-separated, of: {', '.join(GRIDS)}")
    p.add_argument("--shards", default="3,9", help="comma-separated shard counts n (each compared to n = 1)")
    p.add_argument("--extra", default="", help="extra flags for every run, space-separated (e.g. '--steps 2000')")
    p.add_argument("--out", default="runs/bench/shard_overhead", help="where the runs and the table go")
    args = p.parse_args(argv)
    args.grid_list = [g for g in args.grids.split(",") if g]
    bad = [g for g in args.grid_list if g not in GRIDS]
    if bad or not args.grid_list:
        p.error(f"--grids: unknown {', '.join(bad) or '(none)'}; choose from {', '.join(GRIDS)}")
    try:
        args.shard_list = [int(n) for n in args.shards.split(",") if n]
    except ValueError:
        p.error(f"--shards takes comma-separated integers, got {args.shards!r}")
    if not args.shard_list or min(args.shard_list) < 2:
        p.error("--shards: every n must be >= 2")
    return args


def cpu_seconds(argv):
    """Run one command; returns (CPU seconds of it and its children, wall seconds)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    r = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - t0
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(argv)}\n{r.stderr[-2000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def points(folder):
    """{file name: record without its timing} of a run's grid points."""
    return {p.name: {k: v for k, v in json.loads(p.read_text()).items() if k != "seconds"}
            for p in sorted((folder / "points").glob("*.json")) if p.name != "settings.json"}


def main(argv=None):
    args = parse_args(argv)
    out = (REPO / args.out).resolve() if not Path(args.out).is_absolute() else Path(args.out)
    rows = []
    for grid in args.grid_list:
        base = [sys.executable, *GRIDS[grid], "--threads", "1", *args.extra.split()]
        shutil.rmtree(out / grid, ignore_errors=True)  # every run trains from nothing
        whole = out / grid / "n1"
        cpu1, wall1 = cpu_seconds(base + ["--out", str(whole)])
        rows.append({"grid": grid, "shards": 1, "cpu_seconds": round(cpu1, 1), "wall_seconds": round(wall1, 1),
                     "vs_unsharded": 1.0, "shard_cpu_seconds": [], "equal": True})
        print(f"{grid}: unsharded {cpu1:.1f} CPU-s", flush=True)
        for n in args.shard_list:
            folder = out / grid / f"n{n}"
            per = [cpu_seconds(base + ["--shard", f"{i}/{n}", "--out", str(folder)])[0] for i in range(n)]
            merge, _ = cpu_seconds(base + ["--merge", "--out", str(folder)])
            total = sum(per) + merge
            equal = points(folder) == points(whole)
            rows.append({"grid": grid, "shards": n, "cpu_seconds": round(total, 1), "wall_seconds": None,
                         "vs_unsharded": round(total / cpu1, 3), "shard_cpu_seconds": [round(c, 1) for c in per],
                         "merge_cpu_seconds": round(merge, 1), "equal": equal})
            print(f"{grid}: {n} shards {total:.1f} CPU-s ({total / cpu1 - 1:+.1%}; merge {merge:.1f} s), "
                  f"points {'equal' if equal else 'DIFFER'}", flush=True)
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.processor() or platform.machine(),
            "python": platform.python_version(), "args": vars(args), "rows": rows}
    out.mkdir(parents=True, exist_ok=True)
    (out / "shard_overhead.json").write_text(json.dumps(info, indent=1))
    with open(out / "shard_overhead.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["grid", "shards", "cpu_seconds", "vs_unsharded", "equal"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"\n{'grid':<20} {'n':>3} {'CPU-s':>8} {'vs n=1':>8}  points")
    for r in rows:
        print(f"{r['grid']:<20} {r['shards']:>3} {r['cpu_seconds']:>8.1f} {r['vs_unsharded']:>8.3f}  "
              f"{'equal' if r['equal'] else 'DIFFER'}")
    print(f"wrote {out / 'shard_overhead.json'}")
    return 0 if all(r["equal"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
