"""REPORT.md from the runs present in an output folder: the claims table (each claim of the paper, what we
measured, the verdict of its rule in reproduction/claims.py) and each figure beside the authors' saved one.
"""
import json
import os
import shlex
import shutil
import subprocess
import time
from importlib import metadata
from pathlib import Path

from . import claims, figures
from .claims import NOT_RUN, REPRODUCED, evaluate
from .figures import PAPER_FIGURES, REPO, SAME, SCALE_NOTES
from .runner import finished, fmt_time, implemented, read_json, too_long, write_json


class Results:
    """summary.json (and metrics.json) of the runs present in an output folder, by "fig/run"."""

    def __init__(self, out):
        self.out, self.loaded = Path(out), {}  # one report's life: each file is read once

    def _load(self, name, file):
        if (name, file) not in self.loaded:
            d = self.out / name  # name: "fig/run"
            self.loaded[name, file] = read_json(d / file) if finished(d) else None
        return self.loaded[name, file]

    def summary(self, name):
        return self._load(name, "summary.json")

    def metrics(self, name):
        return self._load(name, "metrics.json")


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


def run_time(seconds, trained):
    """A run's time: its invocation's wall time, or, where the script counted more training (summary.json's
    wall_seconds, summed over saved points for a grid), that count: the run resumed from points saved by an earlier,
    stopped invocation or by shards."""
    if trained and seconds is not None and trained > 1.5 * seconds + 60:
        return f"{fmt_time(trained)} of training counted by the script over its points; the last invocation {fmt_time(seconds)}"
    return fmt_time(seconds)


def write_report(out, scale, session=None):
    """REPORT.md in `out` from whatever runs are there; links are relative to it."""
    out = Path(out).resolve()
    results = Results(out)
    records = {}
    for fig in figures.FIGURES:
        for run in fig.runs:
            records[(fig.key, run.name)] = read_json(out / fig.key / run.name / "reproduce.json")
    configs = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/config.json"))]
    config = configs[0] if configs else {}
    made_at = sorted({(c.get("git_commit") or "?")[:7] for c in configs})
    trained = {k: (results.summary(f"{k[0]}/{k[1]}") or {}).get("wall_seconds") for k in records}
    compute = sum(max(r.get("seconds", 0), trained[k] or 0) for k, r in records.items() if r)
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
              "Each verdict is computed from our numbers by the rule named in the last column (reproduction/claims.py: its "
              "docstring quotes the paper and says where each threshold comes from; tests/test_claims.py checks that "
              "the rule passes the authors' own saved results and rejects a negative control): reproduced / partly / "
              "not reproduced / not run. A verdict other than reproduced says why.", "",
              "| figure | the paper | measured here | verdict | why | rule |", "|---|---|---|---|---|---|"]
    counts = {}
    for c in claims.CLAIMS:
        text, verdict = evaluate(c, results, scale)
        if verdict == NOT_RUN and scale == "paper" and any(too_long(r, scale, 1) for r in figures.BY_KEY[c.figs].runs):
            est = max(r.est.get(scale) or 0 for r in figures.BY_KEY[c.figs].runs)
            verdict, why = f"not run: GPU or cluster job (est. {fmt_time(est)} on one of 2 CPU cores)", ""
        else:
            why = "" if verdict == REPRODUCED else c.why.get(scale, "")
        counts[verdict.split(" (")[0]] = counts.get(verdict.split(" (")[0], 0) + 1
        lines.append(f"| {figures.BY_KEY[c.figs].label} | {c.paper} | {text} | **{verdict}** | {why} | "
                     f"`{c.rule.__qualname__.split('.')[0]}` |")
    lines += ["", "In all: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
              "### Rules changed", "", "Each rule was fixed from the paper and the authors' code and figures before it "
              "was applied to our runs.", ""]
    lines += [f"- **{name}**: was: {old} Now: {new} Why: {why}" for name, old, new, why in claims.RULES_CHANGED]
    lines.append("")

    lines += ["## Figures", "", "Ours on the left; on the right the figures the authors' notebooks saved "
              "(docs/paper_figures/README.md), where they saved one.", ""]
    for fig in figures.FIGURES:
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
            status = {"done": run_time(rec.get("seconds"), trained[(fig.key, run.name)]), "failed": "**failed** (see reproduce.log)",
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
    for fig in figures.FIGURES:
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
