"""Generated twins against their real sources: is a synthetic/real mismatch the generator's anatomy or the
model's reading of generated images?

A paper trial makes reconstructed and synthetic images from each real test patient (``source_id``). Two
links can make their errors differ from the real ones:

* the generated patient is another body: its image-measured composition drifts from its source's
  (:func:`attribute_drift`), and the model errs differently there (its shortcut);
* the model reads a generated image differently from a real one of the same composition.

:func:`faithful_twins` separates them without a model of the error: it keeps the generated images whose
measured BFP and MMP lie within ``tolerance`` points of their source's and compares their signed error
(prediction minus image-measured truth) with their sources'. A gap that remains among faithful twins is
the model's reading of generated images; a gap that closes is the drift.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from vctcore.trial.stats import mean_ci

#: the image-measured attributes whose generated-minus-source difference is tabled
DRIFT_ATTRIBUTES = ("bfp_pct", "mmp_pct", "weight_kg", "body_volume_l", "bone_density_hu", "height_cm")
#: the composition a twin must keep to count as faithful, and by how much (percentage points)
FAITHFUL_ON = ("bfp_pct", "mmp_pct")
FAITHFUL_TOLERANCE = 2.0
GENERATED_TYPES = ("reconstructed", "synthetic")


def _paired(preds: pd.DataFrame, stype: str) -> pd.DataFrame:
    """The ``stype`` rows of ``preds`` with their real source's row beside them (columns ``src_<name>``)."""
    real = preds[preds["sample_type"] == "real"].drop_duplicates("source_id").set_index("source_id")
    gen = preds[(preds["sample_type"] == stype) & preds["source_id"].isin(real.index)]
    src = real.loc[gen["source_id"]].add_prefix("src_").reset_index(drop=True)
    return pd.concat([gen.reset_index(drop=True), src], axis=1)


def attribute_drift(preds: pd.DataFrame, attributes: Sequence[str] = DRIFT_ATTRIBUTES,
                    sample_types: Sequence[str] = GENERATED_TYPES) -> pd.DataFrame:
    """Per population, generated sample type and attribute: ``n`` pairs, ``mean`` and ``sd`` of the
    generated image's measured value minus its real source's (in the attribute's unit)."""
    rows = []
    for stype in sample_types:
        pairs = _paired(preds, stype)
        for pop, g in pairs.groupby("population", sort=True):
            for a in attributes:
                if a not in g or f"src_{a}" not in g:
                    continue
                d = (pd.to_numeric(g[a], errors="coerce") - pd.to_numeric(g[f"src_{a}"], errors="coerce")).dropna()
                rows.append({"population": pop, "sample_type": stype, "attribute": a, "n": int(d.size),
                             "mean": float(d.mean()) if d.size else np.nan,
                             "sd": float(d.std(ddof=1)) if d.size > 1 else np.nan})
    return pd.DataFrame(rows, columns=["population", "sample_type", "attribute", "n", "mean", "sd"])


def _source_means(pairs: pd.DataFrame) -> np.ndarray:
    """Per source, the mean over its twins of (twin signed error - source signed error)."""
    gap = (pairs["y_pred"] - pairs["y_true"]) - (pairs["src_y_pred"] - pairs["src_y_true"])
    return gap.groupby(pairs["source_id"].to_numpy()).mean().to_numpy(float)


def faithful_twins(preds: pd.DataFrame, *, tolerance: float = FAITHFUL_TOLERANCE, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95, sample_types: Sequence[str] = GENERATED_TYPES) -> pd.DataFrame:
    """Per population and generated sample type: ``n`` twins, ``n_faithful`` whose measured BFP and MMP lie
    within ``tolerance`` points of their source's (the ``tolerance`` column), the mean signed error (prediction minus truth) of all
    twins and of their sources, the same for the faithful twins, and ``gap`` = faithful twins' mean signed
    error minus their sources' with a bootstrap CI over sources (``gap_low``, ``gap_high``; each source's
    twins averaged first, so two twins of one source count once). ``reads_differently``: the CI excludes 0,
    i.e. the model reads generated images of the same composition differently from real ones."""
    rows = []
    for stype in sample_types:
        pairs = _paired(preds, stype)
        for pop, g in pairs.groupby("population", sort=True):
            close = np.ones(len(g), dtype=bool)
            for a in FAITHFUL_ON:
                d = pd.to_numeric(g[a], errors="coerce") - pd.to_numeric(g[f"src_{a}"], errors="coerce")
                close &= (d.abs() <= tolerance).to_numpy()
            f = g[close]
            err, src_err = g["y_pred"] - g["y_true"], g["src_y_pred"] - g["src_y_true"]
            row = {"population": pop, "sample_type": stype, "tolerance": tolerance, "n": int(len(g)),
                   "n_faithful": int(len(f)),
                   "error_mean": float(err.mean()), "source_error_mean": float(src_err.mean()),
                   "faithful_error_mean": np.nan, "faithful_source_error_mean": np.nan,
                   "gap": np.nan, "gap_low": np.nan, "gap_high": np.nan, "reads_differently": False}
            if len(f):
                per_source = _source_means(f)
                gap, low, high = mean_ci(per_source, n_boot=n_boot, seed=seed, level=level) \
                    if per_source.size > 1 else (float(per_source.mean()), np.nan, np.nan)
                row.update(faithful_error_mean=float((f["y_pred"] - f["y_true"]).mean()),
                           faithful_source_error_mean=float((f["src_y_pred"] - f["src_y_true"]).mean()),
                           gap=gap, gap_low=low, gap_high=high,
                           reads_differently=bool(np.isfinite(low) and (low > 0 or high < 0)))
            rows.append(row)
    return pd.DataFrame(rows)
