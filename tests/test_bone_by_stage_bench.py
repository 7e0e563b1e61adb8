"""bench/bone_by_stage.py end to end on one phantom and the shipped generator: it measures the lumbar core of
the real image and of each decoding stage inside the real segmentation."""
from __future__ import annotations

import math

from bench_scripts import bench_main
from vctcore.assets import shipped
from vctcore.phantom.cohort import build_cohort
from vctcore.population import PopulationSpec


def test_one_phantom_through_every_stage(tmp_path) -> None:
    spec = PopulationSpec.from_yaml(shipped("assets/populations/adult_reference.yaml"))
    build_cohort(spec, n=1, seed=3, out=tmp_path / "real")
    out = bench_main("bone_by_stage")(["--cohort", str(tmp_path / "real"), "--n", "1", "--csv", str(tmp_path / "b.csv")])
    assert out["n"] == 1
    core = out["lumbar_trabecular_hu"]
    assert set(core) == {"real", "ae_only", "ae_post", "ae_post_no_attributes"}
    assert all(math.isfinite(v) and 50.0 < v < 600.0 for v in core.values()), core
    assert core["ae_post"] != core["ae_only"]
    assert (tmp_path / "b.csv").read_text().startswith("id,age_years,real")
