"""A trial's tables from its predictions: the paper's Tables 1-4, SHAP values and the subgroup scan.

Everything here reads the predictions table (one row per evaluated image, see
:mod:`vctcore.trial.result`) and the statistics settings; it makes no images and runs no model. Each
statistic gets its own seed derived from ``statistics.seed`` and the statistic's name, so adding a
population does not change another's confidence intervals.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import pandas as pd

from vctcore.trial.attribution import (FEATURES, complete_rows, feature_matrix, importance_correlation, importances,
                                       rf_error_regression, shap_values)
from vctcore.trial.config import StatisticsSettings
from vctcore.trial.stats import error_correlations, mae_ci, verdict, z_against_real
from vctcore.trial.subgroups import subgroup_scan

ATTRIBUTION_TYPES = ("real", "reconstructed", "synthetic")


def stat_seed(base: int, *labels: object) -> int:
    """A 32-bit seed for one statistic, from the trial's statistics seed and the statistic's labels."""
    return int(hashlib.sha256(":".join(map(str, (base, *labels))).encode()).hexdigest()[:8], 16)


def _errors(preds: pd.DataFrame, **where: str) -> np.ndarray:
    m = np.ones(len(preds), bool)
    for col, value in where.items():
        m &= (preds[col] == value).to_numpy()
    return preds.loc[m, "abs_error"].to_numpy(float)


def mae_row(errors: np.ndarray, st: StatisticsSettings, *labels: object, weights: np.ndarray | None = None) -> dict:
    """n, MAE, CI and verdict of one set of absolute errors (empty: n = 0 and NaNs)."""
    if errors.size == 0:
        return {"n": 0, "mae": np.nan, "mae_low": np.nan, "mae_high": np.nan, "verdict": ""}
    r = mae_ci(errors, weights=weights, n_boot=st.n_boot, seed=stat_seed(st.seed, "mae", *labels), level=st.level)
    return {"n": r.n, "mae": r.mean, "mae_low": r.low, "mae_high": r.high,
            "verdict": verdict(r, acceptable_below=st.acceptable_below, significant_above=st.significant_above)}


def z_row(errors: np.ndarray, real: np.ndarray, st: StatisticsSettings, *labels: object) -> dict:
    if errors.size < 2 or real.size < 2 or np.std(real) == 0:
        return {"z": np.nan, "z_low": np.nan, "z_high": np.nan, "p": np.nan}
    z = z_against_real(errors, real, n_boot=st.n_boot, seed=stat_seed(st.seed, "z", *labels), level=st.level)
    return {"z": z.z, "z_low": z.z_low, "z_high": z.z_high, "p": z.p}


def table1(preds: pd.DataFrame, task: str, st: StatisticsSettings, *, weighted: dict | None = None) -> pd.DataFrame:
    """Paper Table 1: per population (ID, OOD) and sample type, n, MAE with CI, Z and p against the real
    errors of the same population, verdict. ``weighted``: the importance-weighted real-ID row (its
    ``abs_error`` and ``weights`` arrays), listed under the OOD population as in the paper."""
    rows = []
    for pop in ("ID", "OOD"):
        real = _errors(preds, population=pop, sample_type="real")
        for stype in ("real", "reconstructed", "synthetic", "synthetic_rebiased"):
            e = _errors(preds, population=pop, sample_type=stype)
            row = {"task": task, "population": pop, "attr_dist": pop, "sample_type": stype,
                   **mae_row(e, st, task, pop, stype)}
            row.update({"z": np.nan, "z_low": np.nan, "z_high": np.nan, "p": np.nan} if stype == "real"
                       else z_row(e, real, st, task, pop, stype))
            rows.append(row)
            if pop == "OOD" and stype == "real" and weighted is not None:
                rows.append({"task": task, "population": "OOD", "attr_dist": "ID", "sample_type": "real_weighted",
                             **mae_row(weighted["abs_error"], st, task, "weighted", weights=weighted["weights"]),
                             "z": np.nan, "z_low": np.nan, "z_high": np.nan, "p": np.nan})
    return pd.DataFrame(rows)


def table2(preds: pd.DataFrame, task: str, columns: Sequence[str]) -> pd.DataFrame:
    """Paper Table 2: Pearson r of the absolute error with each bias attribute over the ID + OOD test
    images, real against synthetic and real against reconstructed, with the p-value of each difference."""
    real = preds[preds["sample_type"] == "real"]
    out = []
    for other in ("synthetic", "reconstructed"):
        o = preds[preds["sample_type"] == other]
        if len(real) < 4 or len(o) < 4:
            continue
        t = error_correlations(real["abs_error"], real, o["abs_error"], o, list(columns))
        t = t.rename(columns=lambda c: c.replace("synthetic", "other")).reset_index(names="attribute")
        t.insert(0, "compared_with", other)
        t.insert(0, "task", task)
        out.append(t)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def attribution_tables(preds: pd.DataFrame, task: str, st: StatisticsSettings,
                       sample_types: Sequence[str] = ATTRIBUTION_TYPES) -> dict[str, pd.DataFrame]:
    """Paper Tables 3 and 4 and SHAP values: per sample type, a random forest regresses the absolute
    error on the 8 attributes (cross-validated MAE, impurity and permutation importances over
    bootstrap refits, SHAP of the forest fitted on all rows); importances correlated with the real ones."""
    t3, t4, shap_frames, notes = [], [], [], []
    for stype in sample_types:
        g = preds[preds["sample_type"] == stype]
        g = g.loc[complete_rows(g, FEATURES)] if len(g) else g
        if len(g) < 10:
            if stype in preds["sample_type"].values:
                notes.append(f"{task} {stype}: {len(g)} image(s) with all 8 attributes measured; attribution skipped")
            continue
        x, names = feature_matrix(g, FEATURES)
        y = g["abs_error"].to_numpy(float)
        reg = rf_error_regression(x, y, n_trees=st.n_trees, min_leaf=5, seed=stat_seed(st.seed, "rf", task, stype))
        t3.append({"task": task, "sample_type": stype, "n": reg["n"], "mae": reg["mae"], "sd": reg["sd"],
                   "mean_abs_error": float(y.mean())})
        imp = importances(x, y, names, n_boot=st.importance_boot, seed=stat_seed(st.seed, "imp", task, stype),
                          n_trees=st.n_trees)
        imp.insert(0, "sample_type", stype)
        imp.insert(0, "task", task)
        t4.append(imp)
        sv, expected = shap_values(reg["forest"], x, names)
        sv.insert(0, "expected_value", expected)
        sv.insert(0, "abs_error", y)
        sv.insert(0, "patient_id", g["patient_id"].to_numpy())
        sv.insert(0, "sample_type", stype)
        sv.insert(0, "task", task)
        shap_frames.append(sv)
    out = {"table3": pd.DataFrame(t3), "table4": pd.concat(t4, ignore_index=True) if t4 else pd.DataFrame(),
           "shap": pd.concat(shap_frames, ignore_index=True) if shap_frames else pd.DataFrame()}
    out["importance_correlation"] = importance_correlations(out["table4"])
    out["notes"] = notes
    return out


def importance_correlations(t4: pd.DataFrame) -> pd.DataFrame:
    """Per task and sample type, Pearson r of its importances (impurity and permutation) with the real ones."""
    rows = []
    if t4.empty:
        return pd.DataFrame(rows)
    for task, g in t4.groupby("task", sort=False):
        real = g[g["sample_type"] == "real"].set_index("feature")
        if real.empty:
            continue
        for stype, h in g.groupby("sample_type", sort=False):
            if stype == "real":
                continue
            h = h.set_index("feature")
            rows.append({"task": task, "sample_type": stype,
                         "r_impurity": importance_correlation(real["impurity_mean"], h["impurity_mean"]),
                         "r_permutation": importance_correlation(real["permutation_mean"], h["permutation_mean"])})
    return pd.DataFrame(rows)


def subgroups(preds: pd.DataFrame, task: str, st: StatisticsSettings, sample_types: Sequence[str]) -> pd.DataFrame:
    """The subgroup scan (single attributes and pairs of binned attributes, BH-controlled) per sample type."""
    sg = st.subgroups
    out = []
    for stype in sample_types:
        g = preds[preds["sample_type"] == stype].reset_index(drop=True)
        attrs = [c for c in FEATURES if c in g.columns and g[c].notna().all()]
        if len(g) < 2 * sg.min_size or not attrs:
            continue
        t = subgroup_scan(g, "abs_error", attrs, n_bins=sg.n_bins, min_size=sg.min_size, pairs=sg.pairs,
                          n_boot=min(st.n_boot, 1000), seed=stat_seed(st.seed, "subgroups", task, stype),
                          alpha=sg.alpha, fdr=sg.fdr, level=st.level, id_col="patient_id")
        t.insert(0, "sample_type", stype)
        t.insert(0, "task", task)
        out.append(t)
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame()


def verdict_records(t1: pd.DataFrame) -> list[dict]:
    """Table 1's rows as the trial.json verdict list."""
    keep = ["task", "population", "attr_dist", "sample_type", "n", "mae", "mae_low", "mae_high", "verdict"]
    return t1[[c for c in keep if c in t1.columns]].to_dict("records")
