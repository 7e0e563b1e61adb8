"""A tiny trial with the default world's real parts, shared by the trial and report tests: 8 phantoms,
the shipped generator (3 sampler steps, for speed), a reference model trained for two epochs, run
through the CLI. The paper design runs train 2, ID 2, OOD 2, one synthetic patient per test patient."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
POPULATION = REPO / "assets" / "populations" / "adult_reference.yaml"
#: the tiny world: its phantom pool and the generator settings every tiny trial shares (so an audit
#: over the same patients finds them in the patient store)
TINY_WORLD = {"real": {"phantoms": {"population": str(POPULATION), "n": 8, "seed": 5}},
              "generator": {"steps": 3}}


def vct(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``vct ARGS`` in a subprocess, output captured."""
    return subprocess.run([sys.executable, "-m", "vctcore.cli", *args], capture_output=True, text=True, cwd=cwd)


def paper_config(tmp: Path, real: dict, generator: dict, **changes) -> Path:
    """A tiny paper-design trial config written to ``tmp/<name>.yaml``; ``changes`` override keys."""
    cfg = {"name": "tiny_paper", "design": "paper", "target": "bfp_pct", "real": real,
           "split": {"x": "body_volume_l", "y": "mmp_pct", "coef": [0.25, 1.0], "ood_fraction": 0.34},
           "sizes": {"train": 2, "id": 2, "ood": 2},
           "model": {"reference": {"epochs": 2, "seed": 0}},
           "generator": {"oversample": 1, **generator},
           "statistics": {"n_boot": 200, "importance_boot": 2},
           "cache": str(tmp / "cache"), "workers": 2, **changes}
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def population_csvs(trial_dir: Path, dest: Path) -> dict[str, Path]:
    """CSV populations as a hospital would export them (id, sex, age, height, weight and an extra column)
    with the attributes of a paper trial's ID and OOD test patients: an audit over them finds its
    synthetic patients in that trial's patient store. Returns {"adults": ID csv, "clinic": OOD csv}."""
    import json

    import pandas as pd

    cache = json.loads((trial_dir / "config.json").read_text())["config"]["cache"]
    roles = pd.read_csv(trial_dir / "tables" / "roles.csv", dtype={"patient_id": str}).set_index("patient_id")
    recorded = pd.read_csv(next(Path(cache, "phantoms").glob("*/attributes.csv")), dtype={"id": str}).set_index("id")
    out = {}
    for name, role in (("adults", "id_test"), ("clinic", "ood_test")):
        rows = recorded.loc[roles.index[roles["role"] == role], ["sex", "age_years", "height_cm", "weight_kg"]]
        out[name] = dest / f"{name}.csv"
        rows.assign(ward="x").rename_axis("id").reset_index().to_csv(out[name], index=False)
    return out


def finished_job(root: Path, kind: str, timeout: float = 120.0):
    """The newest ``kind`` job of the workspace ``root`` once it has ended (AssertionError after ``timeout`` s)."""
    import time

    from vctcore.jobs import list_jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = list_jobs(root, kind=kind)
        if jobs and not jobs[0].active:
            return jobs[0]
        time.sleep(0.3)
    raise AssertionError(f"no {kind} job ended in {timeout} s: {[j.status for j in list_jobs(root)]}")
