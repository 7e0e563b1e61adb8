"""Error attribution (vctcore.trial.attribution): random-forest error regression, importances, SHAP."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold, cross_val_predict

from vctcore.trial import attribution


def _patients(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "sex": rng.choice(["F", "M"], n), "age_years": rng.uniform(20, 90, n), "height_cm": rng.normal(170, 9, n),
        "weight_kg": rng.normal(78, 14, n), "bfp_pct": rng.uniform(10, 45, n),
        "bone_density_hu": rng.normal(160, 40, n), "mmp_pct": rng.uniform(20, 50, n),
        "body_volume_l": rng.normal(78, 14, n),
    })


@pytest.fixture(scope="module")
def planted() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """150 patients whose error is driven by muscle share alone: 3 points more below 30 %."""
    df = _patients(0, 150)
    y = 3.0 * (df["mmp_pct"] < 30).to_numpy() + np.abs(np.random.default_rng(1).normal(0, 0.3, 150))
    x, names = attribution.feature_matrix(df)
    return x, y, names


def test_feature_matrix_encodes_sex_and_keeps_order():
    df = _patients(2, 5)
    x, names = attribution.feature_matrix(df)
    assert names == list(attribution.FEATURES) and x.shape == (5, 8) and x.dtype == float
    np.testing.assert_array_equal(x[:, 0], (df["sex"] == "M").to_numpy(dtype=float))
    np.testing.assert_array_equal(x[:, 6], df["mmp_pct"].to_numpy())


def test_feature_matrix_names_missing_values_and_columns():
    df = _patients(3, 8)
    df.loc[[2, 5], "bone_density_hu"] = np.nan
    with pytest.raises(ValueError, match=re.escape("bone_density_hu: 2 missing value(s) (NaN) at row(s) 2, 5")):
        attribution.feature_matrix(df)
    assert list(attribution.complete_rows(df)) == [0, 1, 3, 4, 6, 7]
    with pytest.raises(ValueError, match=re.escape("missing feature column(s) ['body_volume_l']")):
        attribution.feature_matrix(df.drop(columns="body_volume_l"))


def test_rf_error_regression_equals_manual_cross_val_predict(planted):
    x, y, _ = planted
    res = attribution.rf_error_regression(x, y, n_trees=20, cv_folds=5, seed=3)
    manual = cross_val_predict(attribution.error_forest(n_trees=20, seed=3), x, y,
                               cv=KFold(5, shuffle=True, random_state=3))
    residuals = np.abs(y - manual)
    assert res["mae"] == pytest.approx(residuals.mean()) and res["sd"] == pytest.approx(residuals.std(ddof=1))
    np.testing.assert_allclose(res["cv_predictions"], manual)
    assert res["n"] == 150 and res["forest"].n_estimators == 20 and res["forest"].n_features_in_ == 8
    assert res["mae"] < 0.6  # the planted rule is learnable


@pytest.mark.parametrize("x, y, message", [
    (np.ones((6, 2)), np.ones(5), "abs_error: length 5 does not match X's 6 rows"),
    (np.ones(6), np.ones(6), "X: expected a finite 2-D array"),
    (np.full((6, 2), np.nan), np.ones(6), "with NaN or infinite values"),
    (np.ones((3, 2)), np.ones(3), "X: 3 row(s); 5-fold cross-validation needs at least 5"),
    (np.ones((6, 2)), [1, 1, 1, 1, 1, np.nan], "abs_error: 1 NaN"),
])
def test_rf_error_regression_rejects_bad_input(x, y, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        attribution.rf_error_regression(x, y, n_trees=5)


def test_importances_rank_the_driving_attribute_first(planted):
    x, y, names = planted
    table = attribution.importances(x, y, names, n_boot=4, n_trees=25, seed=0, n_repeats=2)
    assert list(table.columns) == ["feature", "impurity_mean", "impurity_sd", "permutation_mean", "permutation_sd"]
    assert list(table["feature"]) == names
    assert table.loc[table["impurity_mean"].idxmax(), "feature"] == "mmp_pct"
    assert table.loc[table["permutation_mean"].idxmax(), "feature"] == "mmp_pct"
    assert table["impurity_mean"].sum() == pytest.approx(1.0)
    assert (table["impurity_sd"] >= 0).all() and table.loc[6, "permutation_mean"] > 1.0
    again = attribution.importances(x, y, names, n_boot=4, n_trees=25, seed=0, n_repeats=2)
    pd.testing.assert_frame_equal(table, again)
    with pytest.raises(ValueError, match=re.escape("names: 2 name(s) for X's 8 column(s)")):
        attribution.importances(x, y, names[:2], n_boot=1)


def test_importance_correlation():
    a = pd.Series([0.76, 0.04, 0.06, 0.05], index=["mmp_pct", "age_years", "height_cm", "weight_kg"])
    assert attribution.importance_correlation(a, a) == pytest.approx(1.0)
    b = a.iloc[::-1] * 2  # alignment by feature, not position
    assert attribution.importance_correlation(a, b) == pytest.approx(1.0)
    assert np.isnan(attribution.importance_correlation(a, a * 0 + 0.25))
    with pytest.raises(ValueError, match=re.escape("only in a: ['weight_kg']; only in b: ['sex']")):
        attribution.importance_correlation(a, a.rename({"weight_kg": "sex"}))


def test_shap_values_add_up_to_the_forest_prediction(planted):
    x, y, names = planted
    forest = attribution.error_forest(n_trees=20, seed=0).fit(x, y)
    values, expected = attribution.shap_values(forest, x[:40], names)
    assert list(values.columns) == names and values.shape == (40, 8)
    np.testing.assert_allclose(values.sum(axis=1).to_numpy() + expected, forest.predict(x[:40]), atol=1e-6)
    assert values.abs().mean().idxmax() == "mmp_pct"
