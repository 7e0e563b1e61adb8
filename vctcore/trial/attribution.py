"""Error attribution: which patient attributes predict a downstream model's error (paper Tables 3-4, SHAP).

Inputs are a feature matrix ``X`` of shape (n, k) (``feature_matrix``: one row per patient, columns in
``names`` order, sex coded F=0 / M=1) and absolute errors (n,) in percentage points of body mass.
Random forests run with ``n_jobs=1``: the trial machine's cores are shared, and the forests are small.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps
from sklearn.ensemble import RandomForestRegressor
from sklearn.inspection import permutation_importance
from sklearn.model_selection import KFold, cross_val_predict

from vctcore.trial.stats import bootstrap_rngs, check_errors, numeric_attribute

#: the paper's 8 attributes of error attribution (names of ``vctcore.attributes``)
FEATURES: tuple[str, ...] = ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "bone_density_hu",
                             "mmp_pct", "body_volume_l")

MISSING_FEATURES = "missing feature column(s) {missing}; table has {present}"
NAN_FEATURE = "{column}: {count} missing value(s) (NaN) at row(s) {rows}; drop or impute them first (complete_rows)"
BAD_X = "X: expected a finite 2-D array of shape (n, k), got shape {shape}{detail}"
LENGTH_MISMATCH = "abs_error: length {got} does not match X's {expected} rows"
NAMES_MISMATCH = "names: {got} name(s) for X's {expected} column(s)"
TOO_FEW_ROWS = "X: {n} row(s); {what} needs at least {minimum}"
INDEX_MISMATCH = "importance vectors name different features: only in a: {only_a}; only in b: {only_b}"


def complete_rows(df: pd.DataFrame, features: Sequence[str] = FEATURES) -> pd.Index:
    """Index of the rows of ``df`` with every feature present, for a caller that drops incomplete rows."""
    return df.index[df[list(features)].notna().all(axis=1).to_numpy()]


def feature_matrix(df: pd.DataFrame, features: Sequence[str] = FEATURES) -> tuple[np.ndarray, list[str]]:
    """Features of ``df`` as a float matrix (n, k) and their names; sex F/M -> 0/1.

    A missing value raises ValueError naming the column, the count and the first rows: the caller drops
    (``df.loc[complete_rows(df)]``) or imputes deliberately, never this function.
    """
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(MISSING_FEATURES.format(missing=missing, present=list(df.columns)))
    columns = []
    for name in features:
        values = numeric_attribute(df[name], name)
        bad = np.isnan(values)
        if bad.any():
            rows = ", ".join(str(i) for i in df.index[bad][:5])
            raise ValueError(NAN_FEATURE.format(column=name, count=int(bad.sum()), rows=rows))
        columns.append(values)
    return np.column_stack(columns) if columns else np.empty((len(df), 0)), list(features)


def _check_xy(X: object, abs_error: object, *, minimum: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(X, dtype=float)
    if x.ndim != 2 or not np.isfinite(x).all():
        raise ValueError(BAD_X.format(shape=x.shape, detail="" if x.ndim != 2 else " with NaN or infinite values"))
    y = check_errors(abs_error, "abs_error")
    if y.size != x.shape[0]:
        raise ValueError(LENGTH_MISMATCH.format(got=y.size, expected=x.shape[0]))
    if y.size < minimum:
        raise ValueError(TOO_FEW_ROWS.format(n=y.size, what=what, minimum=minimum))
    return x, y


def error_forest(*, n_trees: int = 100, min_leaf: int = 5, seed: int = 0) -> RandomForestRegressor:
    """The error-regression forest: ``n_trees`` trees, at least ``min_leaf`` rows per leaf, one core."""
    return RandomForestRegressor(n_estimators=n_trees, min_samples_leaf=min_leaf, random_state=seed, n_jobs=1)


def rf_error_regression(X: object, abs_error: object, *, n_trees: int = 100, min_leaf: int = 5, cv_folds: int = 5,
                        seed: int = 0) -> dict[str, object]:
    """How well the attributes predict the model's error (paper Table 3, "0.72 +- 0.59").

    Cross-validated predictions (``cross_val_predict`` over ``KFold(cv_folds, shuffle=True,
    random_state=seed)``) of a random forest; the paper gives no forest settings, ``min_leaf=5`` is ours.
    Returns ``mae`` and ``sd`` (mean and SD, ddof=1, of the absolute CV residuals, percentage points),
    ``n``, ``cv_folds``, ``cv_predictions`` (n,) and ``forest``, fitted on all rows (for SHAP).
    """
    x, y = _check_xy(X, abs_error, minimum=max(cv_folds, 2), what=f"{cv_folds}-fold cross-validation")
    folds = KFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    predictions = cross_val_predict(error_forest(n_trees=n_trees, min_leaf=min_leaf, seed=seed), x, y, cv=folds)
    residuals = np.abs(y - predictions)
    forest = error_forest(n_trees=n_trees, min_leaf=min_leaf, seed=seed).fit(x, y)
    return {"mae": float(residuals.mean()), "sd": float(residuals.std(ddof=1)), "n": int(y.size),
            "cv_folds": cv_folds, "cv_predictions": predictions, "forest": forest}


def importances(X: object, abs_error: object, names: Sequence[str], *, n_boot: int = 20, seed: int = 0,
                n_trees: int = 100, min_leaf: int = 5, n_repeats: int = 5) -> pd.DataFrame:
    """Feature importances for the model's error over ``n_boot`` bootstrap refits (paper Table 4).

    Each refit fits ``error_forest`` on a bootstrap sample of the rows (resample b drawn by
    ``bootstrap_rngs(seed, n_boot)[b]``) and records the impurity importances (``feature_importances_``,
    summing to 1, the paper's kind) and the permutation importances on the refit's out-of-bag rows
    (``permutation_importance``, ``neg_mean_absolute_error``, ``n_repeats`` shuffles: the rise in MAE in
    percentage points when the feature is shuffled). Returns one row per feature in ``names`` order:
    feature, impurity_mean, impurity_sd, permutation_mean, permutation_sd (SD across refits, ddof=1).
    """
    x, y = _check_xy(X, abs_error, minimum=4, what="importances")
    if len(names) != x.shape[1]:
        raise ValueError(NAMES_MISMATCH.format(got=len(names), expected=x.shape[1]))
    n = y.size
    impurity = np.full((n_boot, x.shape[1]), np.nan)
    permutation = np.full_like(impurity, np.nan)
    for b, rng in enumerate(bootstrap_rngs(seed, n_boot)):
        drawn = rng.integers(0, n, n)
        held_out = np.setdiff1d(np.arange(n), drawn)
        forest_seed = int(rng.integers(2**31 - 1))
        forest = error_forest(n_trees=n_trees, min_leaf=min_leaf, seed=forest_seed).fit(x[drawn], y[drawn])
        impurity[b] = forest.feature_importances_
        if held_out.size >= 2:
            result = permutation_importance(forest, x[held_out], y[held_out], scoring="neg_mean_absolute_error",
                                            n_repeats=n_repeats, random_state=forest_seed, n_jobs=1)
            permutation[b] = result.importances_mean
    ddof = 1 if n_boot > 1 else 0
    with warnings.catch_warnings():  # a feature never scored (no held-out rows) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        permutation_mean, permutation_sd = np.nanmean(permutation, axis=0), np.nanstd(permutation, axis=0, ddof=ddof)
    return pd.DataFrame({"feature": list(names), "impurity_mean": impurity.mean(axis=0),
                         "impurity_sd": impurity.std(axis=0, ddof=ddof), "permutation_mean": permutation_mean,
                         "permutation_sd": permutation_sd})


def importance_correlation(imp_a: pd.Series, imp_b: pd.Series) -> float:
    """Pearson r between two importance vectors indexed by feature (Table 4's last row); NaN if one is constant.

    The vectors are aligned on their index, which must name the same features.
    """
    only_a, only_b = sorted(set(imp_a.index) - set(imp_b.index)), sorted(set(imp_b.index) - set(imp_a.index))
    if only_a or only_b:
        raise ValueError(INDEX_MISMATCH.format(only_a=only_a, only_b=only_b))
    a = imp_a.to_numpy(dtype=float)
    b = imp_b.reindex(imp_a.index).to_numpy(dtype=float)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(sps.pearsonr(a, b).statistic)


def shap_values(forest: RandomForestRegressor, X: object, names: Sequence[str]) -> tuple[pd.DataFrame, float]:
    """SHAP values of a fitted error forest (``shap.TreeExplainer``, exact for trees) and its expected value.

    Returns a DataFrame (n, k), one row per row of ``X`` and one column per name, in percentage points of
    error, and the expected value: each row's values sum with it to the forest's prediction.
    """
    with warnings.catch_warnings():  # imported here: shap loads numba, seconds the other statistics do not need
        warnings.simplefilter("ignore", PendingDeprecationWarning)  # shap's colormap setup on import
        import shap

    x = np.asarray(X, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ValueError(NAMES_MISMATCH.format(got=len(names), expected=x.shape[1] if x.ndim == 2 else x.shape))
    explainer = shap.TreeExplainer(forest)
    values = np.asarray(explainer.shap_values(x))
    return pd.DataFrame(values, columns=list(names)), float(np.ravel(explainer.expected_value)[0])
