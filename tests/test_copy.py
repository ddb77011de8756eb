"""docs/DESIGN.md, Copying: a script with common.py and kernels/ beside it runs when copied into a folder of another project,
and its records name its own source, never the commit of a repository it merely sits in.

Every script is copied (no tests/, no README) into (a) an empty folder and (b) a folder that holds a project
of its own: a git repository with its own module and commit, which does not track the copied files. There it
runs a few steps of its run mode as `python script.py` on the tiny fixture data of test_contract.py.
"""
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import pytest

import toy_teacher_student
from conftest import REPO
from test_contract import base, data  # noqa: F401 (data: the fixture of every script's tiny data)

SCRIPTS = {"toy": "toy_teacher_student.py", "mnist": "mnist_grok.py", "modadd": "modadd_transformer.py",
           "imdb": "imdb_grok.py", "qm9": "qm9_grok.py", "addition": "addition_landscape.py"}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}  # nothing but the copy on the import path
FOREIGN_MODEL = "import torch\n\nmodel = torch.nn.Linear(2, 2)\n"


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(folder, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=folder,
                          capture_output=True, text=True, timeout=60, check=True).stdout


def copy_script(script, folder):
    shutil.copy(REPO / script, folder)
    shutil.copy(REPO / "common.py", folder)
    shutil.copytree(REPO / "kernels", folder / "kernels", ignore=shutil.ignore_patterns("__pycache__"))


def run_script(folder, path, argv):
    r = subprocess.run([sys.executable, str(path), *argv], cwd=folder, env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]


def finite(x):
    """Every number in a JSON value is finite (json writes NaN and Infinity as such)."""
    if isinstance(x, dict):
        return all(finite(v) for v in x.values())
    if isinstance(x, list):
        return all(finite(v) for v in x)
    return not isinstance(x, float) or math.isfinite(x)


def check_run(run_dir, script_file):
    """The run's files exist, its metrics are finite, and config.json names this script file by its sha256."""
    for f in ("config.json", "metrics.json", "summary.json"):
        assert (run_dir / f).is_file(), f
    assert list(run_dir.glob("*.png"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] and finite(metrics), metrics
    config = json.loads((run_dir / "config.json").read_text())
    assert config["source"] == {"script": script_file.name, "sha256": sha256(script_file),
                                "common_sha256": sha256(script_file.parent / "common.py")}
    return config


@pytest.mark.parametrize("where", ["empty folder", "foreign repo"])
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_runs_when_copied(tmp_path, data, name, where):  # noqa: F811
    script = SCRIPTS[name]
    folder = tmp_path / "project"
    folder.mkdir()
    if where == "foreign repo":
        (folder / "model.py").write_text(FOREIGN_MODEL)
        git(folder, "init", "-q")
        git(folder, "add", "model.py")
        git(folder, "commit", "-q", "-m", "their project")
        head = git(folder, "rev-parse", "HEAD").strip()
    copy_script(script, folder)
    run_script(folder, script, base(name, data))
    # the default --out is runs/ beside common.py: under the folder, so the copy's common.py is the one that ran
    runs = list((folder / "runs" / script.removesuffix(".py")).iterdir())
    assert len(runs) == 1
    config = check_run(runs[0], folder / script)
    assert config["git_commit"] is None  # the copy is tracked by no repository
    if where == "foreign repo":
        assert git(folder, "rev-parse", "HEAD").strip() == head and (folder / "model.py").read_text() == FOREIGN_MODEL
        untracked = {line[3:].rstrip("/") for line in git(folder, "status", "--porcelain").splitlines()
                     if line.startswith("?? ")}
        assert {script, "common.py", "kernels", "runs"} <= untracked  # the copied files are not theirs


def test_copy_committed_to_its_own_repo_records_that_commit_until_edited(tmp_path):
    """The other side of the rule, on the copy's own common._source (loaded in this process, no run needed): the
    script and common.py tracked and unmodified at HEAD record HEAD; either one edited, null."""
    folder = tmp_path / "project"
    folder.mkdir()
    copy_script(SCRIPTS["toy"], folder)
    git(folder, "init", "-q")
    git(folder, "add", ".")
    git(folder, "commit", "-q", "-m", "the copy")
    spec = importlib.util.spec_from_file_location("copied_common", folder / "common.py")
    copied = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copied)
    script = folder / SCRIPTS["toy"]
    assert copied._source(script) == {"git_commit": git(folder, "rev-parse", "HEAD").strip(), "source": {
        "script": script.name, "sha256": sha256(script), "common_sha256": sha256(folder / "common.py")}}
    for edited in (script, folder / "common.py"):
        text = edited.read_text()
        edited.write_text(text + "# edited after the commit\n")
        assert copied._source(script)["git_commit"] is None, edited.name
        edited.write_text(text)
    assert copied._source(script)["git_commit"] is not None


def test_script_in_this_repository_names_its_source(tmp_path, data):  # noqa: F811
    """A script of this repository, run in this process: git_commit is HEAD's when the script is clean, else null
    (others may be editing it); the sha256 is always the file's own."""
    toy_teacher_student.main(base("toy", data) + ["--out", str(tmp_path / "run")])
    config = check_run(tmp_path / "run", REPO / SCRIPTS["toy"])
    commit = config["git_commit"]
    assert commit is None or re.fullmatch(r"[0-9a-f]{40}", commit), commit
