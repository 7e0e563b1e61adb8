"""How far the paired anatomy correlations can go: the share of the real cohort's organ volume and
centroid variation that the conditioning attributes explain.

A generator that draws each patient's anatomy from the true conditional distribution given the
attributes, y = f(a) + e with e independent of the real patient's own deviation, has an expected paired
Pearson coefficient with the matched real patient of Var f(a) / Var y = R^2, not 1. R^2 is estimated on
the real cohort alone by cross-validated ridge regression of each organ's volume (mL) and centroid
coordinate (mm, patient RAS) on the attributes (sex as 0/1, the others standardised), so it is a
lower bound where the relation is not linear. Scikit-learn does the regression and cross-validation.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict

from vctcore.fidelity.anatomy import AXES, ORGANS, nanmean

#: fewer real patients with the organ than this: no estimate (NaN, left out of the means)
MIN_PATIENTS = 20
FOLDS = 10


def attribute_matrix(requested: Sequence[Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    """(n_patients, len(names)) design matrix: sex as 1 for "M" else 0, other attributes as floats
    (missing: the column mean), every column standardised (a constant column stays 0)."""
    cols = []
    for name in names:
        if name == "sex":
            cols.append([1.0 if str(r.get("sex")) == "M" else 0.0 for r in requested])
        else:
            v = np.array([float(r.get(name)) if r.get(name) is not None else math.nan for r in requested])
            cols.append(np.where(np.isfinite(v), v, np.nanmean(v) if np.isfinite(v).any() else 0.0))
    x = np.array(cols, float).T.reshape(len(requested), len(names))
    sd = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def explained_share(y: Sequence[float], x: np.ndarray, seed: int = 0) -> float:
    """Cross-validated R^2 (clipped at 0) of ridge regression y ~ x over the finite y; NaN with fewer
    than ``MIN_PATIENTS`` of them or a constant y."""
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    if ok.sum() < MIN_PATIENTS or np.ptp(y[ok]) == 0:
        return math.nan
    folds = KFold(n_splits=min(FOLDS, int(ok.sum())), shuffle=True, random_state=seed)
    pred = cross_val_predict(RidgeCV(alphas=np.logspace(-2, 3, 12)), x[ok], y[ok], cv=folds)
    return max(0.0, 1.0 - float(np.mean((y[ok] - pred) ** 2) / np.var(y[ok])))


def paired_ceilings(real_organs: Sequence[Mapping[str, Any]], requested: Sequence[Mapping[str, Any]],
                    names: Sequence[str]) -> dict[str, Any]:
    """Per class (and axis) R^2 of the real organs' volumes and centroids on the attributes ``names``,
    and the means that the paired volume and centroid correlations are compared with."""
    x = attribute_matrix(requested, names)
    vol, cen = {}, {}
    for organ in ORGANS.values():
        vol[organ] = explained_share([r[organ]["volume_ml"] for r in real_organs], x)
        c = np.array([r[organ]["centroid_mm"] or [math.nan] * 3 for r in real_organs], float).reshape(-1, 3)
        cen[organ] = {ax: explained_share(c[:, i], x) for i, ax in enumerate(AXES)}
    per_axis = {ax: nanmean([c[ax] for c in cen.values()]) for ax in AXES}
    return {"attributes": list(names), "volume": nanmean(list(vol.values())), "volume_per_class": vol,
            "centroid": nanmean(list(per_axis.values())), "centroid_per_axis": per_axis, "n": len(real_organs)}
