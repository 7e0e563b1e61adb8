"""bench/tissue_hu.py on a hand-made trial directory: three small CTs of known HU per sample type."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from bench_scripts import bench_main

from vctcore.volume import CTVolume, write_ct


def _ct(path: Path, fat: float, lean: float, interface_voxels: int) -> None:
    """A 10 x 10 x 10 CT: air, then 300 fat voxels at ``fat`` HU and 300 lean voxels at ``lean`` HU, of which
    ``interface_voxels`` sit at -15 HU instead."""
    hu = np.full(1000, -1000.0, np.float32)
    hu[:300] = fat
    hu[300:600] = lean
    hu[300:300 + interface_voxels] = -15.0
    path.mkdir(parents=True)
    write_ct(CTVolume(hu.reshape(10, 10, 10), np.diag([2.0, 2.0, 2.0, 1.0])), path / "ct.nii.gz")


def test_tissue_figures_per_sample_type(tmp_path: Path) -> None:
    rows = []
    for stype, fat, lean, blur in (("real", -100.0, 40.0, 0), ("reconstructed", -90.0, 30.0, 30),
                                   ("synthetic", -80.0, 20.0, 60)):
        d = tmp_path / "images" / stype
        _ct(d, fat, lean, blur)
        rows.append({"sample_type": stype, "source_id": "P0000", "patient_id": f"{stype}-0", "y_true": 30.0,
                     "y_pred": 29.0, "image_dir": str(d)})
    trial = tmp_path / "trial"
    trial.mkdir()
    pd.DataFrame(rows).to_csv(trial / "predictions.csv", index=False)
    out = bench_main("tissue_hu")([str(trial), "--n", "1"])
    m = out["mean_by_sample_type"]
    assert m["real"]["fat_mean_hu"] == pytest.approx(-100.0) and m["synthetic"]["fat_mean_hu"] == pytest.approx(-80.0)
    assert m["real"]["lean_mean_hu"] == pytest.approx(40.0)
    assert m["reconstructed"]["interface_share"] == pytest.approx(30 / 600, abs=1e-4)
    assert m["synthetic"]["fat_share"] == pytest.approx(0.5, abs=1e-4) and out["n_sources"] == 1
