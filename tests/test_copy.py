"""DESIGN.md: a script with common.py and kernels/ beside it runs in an empty folder of another project."""
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

# script -> the smallest command line that trains a few steps without data files
TINY = {
    "toy_teacher_student.py": ["--steps", "5", "--eval-points", "3"],
}


@pytest.mark.parametrize("script", sorted(TINY))
def test_script_runs_when_copied_into_an_empty_folder(tmp_path, script):
    shutil.copy(REPO / script, tmp_path)
    shutil.copy(REPO / "common.py", tmp_path)
    shutil.copytree(REPO / "kernels", tmp_path / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    r = subprocess.run([sys.executable, script, *TINY[script]], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    runs = list((tmp_path / "runs" / script.removesuffix(".py")).iterdir())
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()
