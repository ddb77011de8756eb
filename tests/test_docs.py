"""Every file the documentation cites is in the repository: each relative link or image of every tracked Markdown
file resolves (anchors aside)."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_relative_link_resolves():
    files = subprocess.run(["git", "ls-files", "*.md"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    assert "README.md" in files
    missing = []
    for name in files:
        for target in re.findall(r"\]\(([^)\s]+)\)", (REPO / name).read_text()):
            path = target.split("#")[0]
            if path and not re.match(r"[a-z]+:", path) and not (REPO / name).parent.joinpath(path).exists():
                missing.append(f"{name}: {target}")
    assert not missing, missing
