"""reproduce.py and reproduction/: the registry covers the paper and agrees with the scripts and the README;
runs resume and rerun as they should; the claim rules give the right verdict both ways; REPORT.md links resolve."""
import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import reproduce as rp
from reproduction import claims, figures, runner
from reproduction.report import publish, write_report

REPO = Path(__file__).resolve().parents[1]

# The paper's figures and table: Fig. 2a-c, 3a-e, 4, 5, 6a-e, 7a-b, 8, 9, 10a-b, 11, 12 and Table 1's row.
PAPER = {"fig2a", "fig2b", "fig2c", "fig3abc", "fig3d", "fig3e", "fig4", "fig5", "fig6ab", "fig6c", "fig6d",
         "fig6e", "fig7a", "fig7b", "fig8", "fig9", "fig10a", "fig10b", "fig11", "fig12", "table1"}


def test_registry_covers_every_figure_and_claims_name_known_figures():
    assert set(figures.BY_KEY) == PAPER | {"beyond"}  # every paper figure, and one of our own (no claim)
    assert {c.figs for c in claims.CLAIMS} <= PAPER
    assert set(figures.SCALE_NOTES) == PAPER | {"beyond"}  # every figure says where its quick scale differs
    for fig in figures.FIGURES:
        for name in fig.authors:
            assert (figures.PAPER_FIGURES / name).exists(), name


@pytest.mark.parametrize("scale", figures.SCALES)
def test_every_command_parses_with_its_script(scale, tmp_path):
    """Each run's command at each scale is accepted by the script's own argument parser (modes, flags, values)."""
    # stands in for the run a --landscape-from needs (addition_landscape reads its config and landscape at parse time)
    (tmp_path / "config.json").write_text(json.dumps({"script": "addition_landscape", "args": {"mode": "landscape"}}))
    land = {"alphas": [1.0], "ms": [0.0], **{f"{k}_loss_{r}": [[1.0]] for k in ("train", "test") for r in ("final", "best")}}
    (tmp_path / "summary.json").write_text(json.dumps({"landscape": land}))
    for fig in figures.FIGURES:
        for run in fig.runs:
            module = importlib.import_module(Path(run.script).stem)
            argv = [str(tmp_path) if a == "DIR" else a for a in run.command(scale)[1:]]
            args = module.parse_args(argv + ["--out", str(tmp_path / "x"), "--device", "cpu", "--threads", "1"])
            assert args.mode == (argv[argv.index("--mode") + 1] if "--mode" in argv else "run"), (fig.key, run.name)


def _readme_rows():
    """(script, figure cell, command) of every row of README's figure table."""
    rows, script = [], None
    text = (REPO / "README.md").read_text()
    table = text.split("## Scripts → paper figures", 1)[1].split("\n## ", 1)[0]
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[2].startswith("`python"):
            continue
        script = cells[0].strip("`") or script
        rows.append((script, cells[1], re.match(r"`([^`]*)`", cells[2]).group(1)))
    return rows


def _number(label):
    return re.match(r"(Fig\. \d+|Table \d+|Beyond the paper)", label).group(1)


def test_readme_table_and_registry_agree():
    """Every figure row of the README runs a registry command (the README's, the quick or the paper one) of that
    figure, and every registry run appears in the README table."""
    commands = {}  # command -> figure number
    for fig in figures.FIGURES:
        for run in fig.runs:
            for cmd in {shlex.join(["python", *run.command(scale)]) for scale in ("quick", "paper")} | {
                    shlex.join(["python", run.script, *run.args])}:
                commands[cmd] = _number(fig.label)
    rows = _readme_rows()
    seen = set()
    for script, label, cmd in rows:
        if not re.match(r"(Fig\.|Table|Beyond)", label):
            continue  # data, speed and benchmark rows
        assert cmd.split()[1] == script, (label, cmd)
        assert commands.get(cmd) == _number(label), f"README row {label!r}: {cmd!r} is not in reproduction/figures.py"
        seen.add(cmd)
    for fig in figures.FIGURES:
        for run in fig.runs:
            forms = {shlex.join(["python", *run.command("quick")]), shlex.join(["python", run.script, *run.args])}
            assert forms & seen, f"{fig.key}/{run.name} has no row in README's figure table"


# ---- running: a fake registry of tiny scripts --------------------------------------------------
FAKE = """import argparse, json, pathlib, sys
p = argparse.ArgumentParser()
p.add_argument("--out"); p.add_argument("--device"); p.add_argument("--threads"); p.add_argument("--x", default="0")
p.add_argument("--fail", action="store_true"); p.add_argument("--landscape-from")
a = p.parse_args()
out = pathlib.Path(a.out); out.mkdir(parents=True, exist_ok=True)
with open(pathlib.Path(__file__).with_suffix(".calls"), "a") as f:
    f.write(a.x + "\\n")
if a.fail:
    sys.exit("fake failure")
(out / "curves.png").write_bytes(b"png")
(out / "summary.json").write_text(json.dumps({"x": a.x, "slope_test": -1.0, "slope_train": 0.0}))
"""


@pytest.fixture
def fake(tmp_path, monkeypatch):
    script = tmp_path / "fake.py"
    script.write_text(FAKE)
    figs = [figures.Figure("figA", "Fig. 98", "fake A",
                           [figures.Run("run", str(script), ["--x", "1"], quick=[], est={"quick": 1})]),
            figures.Figure("figB", "Fig. 99", "fake B",
                           [figures.Run("run", str(script), ["--x", "2"], quick=[], est={"quick": 2})])]
    monkeypatch.setattr(figures, "FIGURES", figs)
    monkeypatch.setattr(figures, "BY_KEY", {f.key: f for f in figs})
    monkeypatch.setattr(claims, "CLAIMS", [claims.Claim("figA", "fake slope", claims.claim_slope("figA/run"))])
    calls = script.with_suffix(".calls")
    return figs, tmp_path / "out", lambda: calls.read_text().split() if calls.exists() else []


def test_resume_skips_done_runs_and_reruns_changed_ones(fake, capsys):
    figs, out, calls = fake
    base = ["--out", str(out), "--device", "cpu", "--jobs", "2"]
    assert rp.main(base) == 0
    assert sorted(calls()) == ["1", "2"]
    assert rp.main(base + ["--jobs", "1"]) == 0  # nothing to do (--threads/--jobs do not count as settings)
    assert sorted(calls()) == ["1", "2"]
    capsys.readouterr()
    assert rp.main(base + ["--dry-run"]) == 0
    assert capsys.readouterr().out == ""
    (out / "figA" / "run" / "stale.txt").write_text("from the old settings")
    figs[0].runs[0].quick = ["--x", "3"]  # settings changed: figA reruns from an empty folder, figB does not
    assert rp.main(base) == 0
    assert sorted(calls()) == ["1", "2", "3"]
    assert not (out / "figA" / "run" / "stale.txt").exists()
    assert json.loads((out / "figA" / "run" / "summary.json").read_text())["x"] == "3"


def test_killed_run_restarts_in_its_folder_and_a_failure_does_not_stop_the_others(fake):
    figs, out, calls = fake
    base = ["--out", str(out), "--device", "cpu", "--jobs", "1"]
    figs[0].runs[0].quick = ["--fail"]
    assert rp.main(base) == 1  # figA failed, figB still ran
    assert sorted(calls()) == ["1", "2"]
    rec = json.loads((out / "figA" / "run" / "reproduce.json").read_text())
    assert rec["status"] == "failed" and "fake failure" in (out / "figA" / "run" / "reproduce.log").read_text()
    # a killed run: same settings, status "running", its files kept and the run started again
    figs[0].runs[0].quick = []
    cmd = runner.full_command(out, figs[0], figs[0].runs[0], "quick", "cpu", 1)
    runner.write_json(out / "figA" / "run" / "reproduce.json",
                      {"status": "running", "settings": runner.settings_key(cmd)})
    (out / "figA" / "run" / "points.json").write_text("kept")
    (out / "figA" / "run" / "reproduce.log").write_text("the killed invocation's output\n")
    assert rp.main(base) == 0
    assert sorted(calls()) == ["1", "1", "2"]
    assert (out / "figA" / "run" / "points.json").read_text() == "kept"
    log = (out / "figA" / "run" / "reproduce.log").read_text()
    assert log.startswith("the killed invocation's output\n== ") and "fake.py --x 1" in log  # appended to
    # the report's time for a resumed run: what the script counted over its points when that is more
    summary = out / "figA" / "run" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "wall_seconds": 12_600}))
    write_report(out, "quick")
    report = (out / "REPORT.md").read_text()
    assert "- `run` (3.5 h of training counted by the script over its points; the last invocation " in report
    assert "compute time (sum over runs): 3.5 h" in report


def test_a_run_made_from_a_rerun_run_is_rerun(fake):
    figs, out, calls = fake
    figs[1].runs[0].args += ["--landscape-from", "DIR"]
    figs[1].runs[0].needs = "figA/run"
    base = ["--out", str(out), "--device", "cpu", "--jobs", "1"]
    assert rp.main(base) == 0 and sorted(calls()) == ["1", "2"]
    figs[0].runs[0].quick = ["--x", "3"]  # figB's own command is unchanged, but what it reads is made again
    assert rp.main(base) == 0 and sorted(calls()) == ["1", "2", "2", "3"]


def test_paper_scale_copies_same_command_runs_and_leaves_out_long_ones(fake, tmp_path):
    figs, _, calls = fake
    quick, paper = tmp_path / "q", tmp_path / "p"
    figs[0].runs[0].est["paper"] = 1
    figs[1].runs[0].est["paper"] = 7200
    assert rp.main(["--out", str(quick), "--device", "cpu"]) == 0 and sorted(calls()) == ["1", "2"]
    base = ["--scale", "paper", "--out", str(paper), "--device", "cpu", "--reuse", str(quick), "--max-run-hours", "1"]
    assert rp.main(base) == 0
    assert sorted(calls()) == ["1", "2"]  # figA copied (same command at both scales), figB left out (2 h)
    rec = json.loads((paper / "figA" / "run" / "reproduce.json").read_text())
    cmd = runner.full_command(paper, figs[0], figs[0].runs[0], "paper", "cpu", 1)
    assert rec["settings"] == runner.settings_key(cmd) and rec["reused_from"] == str(quick / "figA" / "run")
    assert runner.is_done(paper / "figA" / "run", cmd) and not (paper / "figB").exists()
    assert "a GPU or cluster job (est. 2.0 h on one of 2 CPU cores)" in (paper / "REPORT.md").read_text()
    figs[0].runs[0].paper = ["--x", "5"]  # another command at the paper scale: trained, not copied
    assert rp.main(base) == 0 and sorted(calls()) == ["1", "2", "5"]


def test_report_links_resolve_and_claims_come_from_the_runs(fake, tmp_path):
    figs, out, _ = fake
    assert rp.main(["--out", str(out), "--device", "cpu", "--only", "figA"]) == 0
    report = (out / "REPORT.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert links and all((out / link).resolve().exists() for link in links)
    assert "| Fig. 98 | fake slope | test slope -1, train slope 0 | **reproduced** |  | `claim_slope` |" in report
    assert "- `run`: not run" in report.split("### Fig. 99")[1]
    # the committable copy: the same report, links into the copy
    publish(out, tmp_path / "pub", "quick")
    pub = (tmp_path / "pub" / "REPORT.md").read_text()
    assert all((tmp_path / "pub" / link).resolve().exists() for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", pub))
    assert not (tmp_path / "pub" / "figA" / "run" / "reproduce.log").exists()


def test_dry_run_prints_runnable_commands():
    out = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--dry-run", "--device", "cpu",
                          "--only", "fig6c", "--out", "/tmp/nonexistent-reproduce"], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("python addition_landscape.py --mode landscape")  # fig6c needs fig6ab: added
    assert "--landscape-from /tmp/nonexistent-reproduce/fig6ab/landscape" in lines[1]


def test_only_one_run_of_a_figure():
    """--only figure/run runs that run alone; the figure's key alone runs them all; an unknown run is exit 2."""
    def dry(only):
        out = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--dry-run", "--device", "cpu", "--scale",
                              "paper", "--only", only, "--out", "/tmp/nonexistent-reproduce"], capture_output=True,
                             text=True, timeout=600)
        return out.returncode, out.stdout.splitlines(), out.stderr
    code, lines, _ = dry("beyond/modadd")
    assert code == 0 and len(lines) == 1 and "modadd_transformer.py --mode norm-modes" in lines[0]
    code, lines, _ = dry("beyond/modadd,beyond")
    assert code == 0 and len(lines) == 2
    code, lines, err = dry("beyond/nothing")
    assert code == 2 and not lines and err.count("\n") == 1 and "beyond/nothing" in err


def test_unknown_figure_is_one_line_exit_2():
    out = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--only", "fig99", "--dry-run"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "fig99" in out.stderr
    out = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--report-only", "--out", "/tmp/no-such-reproduction"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "no reproduction" in out.stderr


def test_slurm_dry_run_chains_a_run_to_the_grid_it_needs(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "reproduce.py"), "--slurm", "--dry-run", "--only", "fig6c",
                          "--shards", "3", "--out", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    sbatch = [line for line in out.stdout.splitlines() if line.startswith("$ sbatch")]
    assert len(sbatch) == 3  # fig6ab: array + merge; fig6c: one job after the merge
    assert "--array=0-2" in sbatch[0] and "--shard slurm" in sbatch[0] and "--merge" in sbatch[1]
    assert "--dependency=afterok:" in sbatch[2] and "--mode trajectory" in sbatch[2] and "--array" not in sbatch[2]
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_a_missing_script_is_listed_as_not_implemented(fake, capsys):
    figs, out, calls = fake
    figs[1].runs[0].script = "no_such_experiment.py"
    assert rp.main(["--out", str(out), "--device", "cpu"]) == 0
    assert "figB/run: not implemented (no_such_experiment.py does not exist yet)" in capsys.readouterr().out
    assert calls() == ["1"]
    assert "- `run`: not implemented (`no_such_experiment.py` does not exist yet)" in (out / "REPORT.md").read_text()
