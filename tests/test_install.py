"""``pip install .`` (not editable) gives a package that works from any directory: the wheel carries the
shipped generator, models, population specs and trial configs, and nothing reads the source tree.

The package is built as pip builds it from an sdist (so MANIFEST.in is checked too) and installed without
network into a fresh virtual environment that reuses this environment's packages (a .pth file); ``vct
generate`` and the README's Python quick start then run from an empty directory.
"""
from __future__ import annotations

import json
import os
import re
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import json, vctcore
from vctcore import assets
from vctcore.trial.config import load_config
cfg = load_config(assets.trials_dir() / "audit_example.yaml")
print(json.dumps({"package": vctcore.__file__, "source_tree": str(assets.source_tree()),
                  "roots": [str(r) for r in assets.roots()], "generator": str(assets.default_generator()),
                  "population": str(assets.default_population()), "model": str(cfg.model.path),
                  "exists": [p.exists() for p in (assets.default_generator() / "manifest.json",
                             assets.default_population(), cfg.model.path, assets.segmenter_dir(),
                             assets.package_file("measure/height_calibration.json"))]}))
"""


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_a_non_editable_install_works_from_any_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCT_")}
    sdist = _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                  "print(b.build_sdist(sys.argv[1]))", str(tmp_path / "dist")], REPO, env).stdout.split()[-1]
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    purelib = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                        tmp_path, env).stdout.strip())
    # this environment's packages (torch, MONAI, pip, setuptools) without its editable vctcore: a path in a
    # .pth file joins sys.path after the new environment's own packages, and its .pth files are not run
    (purelib / "reuse_packages.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
          "--quiet", str(tmp_path / "dist" / sdist)], tmp_path, env)

    work = tmp_path / "elsewhere"
    work.mkdir()
    got = json.loads(_run([str(py), "-c", CHECK], work, env).stdout.strip().splitlines()[-1])
    installed = purelib / "vctcore"
    assert got["package"] == str(installed / "__init__.py")
    assert got["source_tree"] == "None" and got["roots"] == [str(installed / "_shipped")]
    assert got["generator"] == str(installed / "_shipped" / "checkpoints" / "default")
    assert got["model"] == str(installed / "_shipped" / "checkpoints" / "downstream" / "bfp_reference")
    assert all(got["exists"]), got

    _run([str(venv / "bin" / "vct"), "generate", "--n", "1", "--steps", "2", "--out", "cohort", "--quiet"],
         work, env)
    prov = json.loads((work / "cohort" / "cohort.json").read_text())
    assert prov["checkpoint"] == got["generator"]
    assert (work / "cohort" / "patients" / "S0000" / "ct.nii.gz").is_file()

    code = re.search(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S).group(1)
    bfp = float(_run([str(py), "-c", code], work, env).stdout.strip().splitlines()[-1])
    assert 5 < bfp < 60
