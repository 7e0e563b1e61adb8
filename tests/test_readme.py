"""The README stays one screen, and its Python quick start runs as written (from the repository root)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_is_one_screen_and_links_what_it_moved_out():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 60
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (REPO / link).exists(), link


def test_python_quick_start_runs_as_written():
    code = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    bfp = float(proc.stdout.strip().splitlines()[-1])
    assert 5 < bfp < 60, proc.stdout
