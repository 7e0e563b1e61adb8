"""vctcore.trial.twins on hand-made predictions: drift is generated minus source, faithful twins are the
ones within the tolerance on BFP and MMP, and the gap's CI is taken over sources."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from vctcore.trial.twins import attribute_drift, faithful_twins


def _preds(gap: float) -> pd.DataFrame:
    """Six real ID sources (signed errors -1..+1.5) and two synthetic twins each: twin 0 keeps BFP and MMP
    within 1 point and errs ``gap`` (plus a small per-source wobble) more than its source; twin 1 drifts
    by 5 points of BFP."""
    rows = []
    for k in range(6):
        src_err = -1.0 + 0.5 * k
        rows.append({"population": "ID", "sample_type": "real", "patient_id": f"P{k}", "source_id": f"P{k}",
                     "y_true": 30.0, "y_pred": 30.0 + src_err, "bfp_pct": 30.0, "mmp_pct": 35.0,
                     "bone_density_hu": 180.0})
        wobble = 0.1 * (k % 3 - 1)
        rows.append({"population": "ID", "sample_type": "synthetic", "patient_id": f"S{k}a", "source_id": f"P{k}",
                     "y_true": 31.0, "y_pred": 31.0 + src_err + gap + wobble, "bfp_pct": 31.0, "mmp_pct": 34.5,
                     "bone_density_hu": 280.0})
        rows.append({"population": "ID", "sample_type": "synthetic", "patient_id": f"S{k}b", "source_id": f"P{k}",
                     "y_true": 35.0, "y_pred": 20.0, "bfp_pct": 35.0, "mmp_pct": 35.0, "bone_density_hu": 280.0})
    return pd.DataFrame(rows)


def test_drift_is_generated_minus_source() -> None:
    d = attribute_drift(_preds(0.0), attributes=("bfp_pct", "mmp_pct", "bone_density_hu"))
    d = d.set_index("attribute")
    assert set(d["sample_type"]) == {"synthetic"} and (d["n"] == 12).all()
    assert d.loc["bfp_pct", "mean"] == pytest.approx(3.0)  # +1 and +5 over six sources
    assert d.loc["bone_density_hu", "mean"] == pytest.approx(100.0) and d.loc["bone_density_hu", "sd"] == 0.0
    assert d.loc["mmp_pct", "mean"] == pytest.approx(-0.25)


def test_faithful_twins_keep_their_sources_composition_and_show_the_reading_gap() -> None:
    row = faithful_twins(_preds(-3.0), n_boot=500, seed=1).iloc[0]
    assert row["n"] == 12 and row["n_faithful"] == 6
    assert row["faithful_source_error_mean"] == pytest.approx(np.mean([-1.0 + 0.5 * k for k in range(6)]))
    assert row["gap"] == pytest.approx(-3.0)
    assert row["gap_low"] < -3.0 < row["gap_high"] < 0 and bool(row["reads_differently"])


def test_no_gap_among_faithful_twins_is_not_flagged() -> None:
    row = faithful_twins(_preds(0.0), n_boot=500, seed=1).iloc[0]
    assert abs(row["gap"]) < 1e-9 and row["gap_low"] <= 0 <= row["gap_high"]
    assert not bool(row["reads_differently"])
    # the drifting twins (BFP +5) are left out: with a tolerance of 6 points they count too and shift the gap
    wide = faithful_twins(_preds(0.0), tolerance=6.0, n_boot=200, seed=1).iloc[0]
    assert wide["n_faithful"] == 12 and wide["gap"] < -3.0


def test_a_population_without_faithful_twins_has_no_gap() -> None:
    p = _preds(0.0)
    p = p[~p["patient_id"].str.endswith("a")]
    row = faithful_twins(p, n_boot=50).iloc[0]
    assert row["n_faithful"] == 0 and np.isnan(row["gap"]) and not bool(row["reads_differently"])
