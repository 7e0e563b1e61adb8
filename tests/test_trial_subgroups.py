"""Subgroup scan (vctcore.trial.subgroups): a planted slice is found, ranked first and survives BH."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vctcore.trial import subgroups
from vctcore.trial.stats import bootstrap_uniforms, mae_ci


@pytest.fixture(scope="module")
def trial() -> pd.DataFrame:
    """240 patients; women in the oldest age tercile err by 3 points more."""
    rng = np.random.default_rng(0)
    n = 240
    df = pd.DataFrame({"id": [f"p{i:03d}" for i in range(n)], "sex": rng.choice(["F", "M"], n),
                       "age_years": rng.uniform(20, 90, n), "weight_kg": rng.normal(78, 14, n)})
    old = df["age_years"] > df["age_years"].quantile(2 / 3)
    df["abs_error"] = np.abs(rng.normal(1.2, 0.6, n)) + 3.0 * ((df["sex"] == "F") & old)
    return df


@pytest.fixture(scope="module")
def scan(trial) -> pd.DataFrame:
    return subgroups.subgroup_scan(trial, attributes=["sex", "age_years", "weight_kg"], n_boot=100, seed=1,
                                   id_col="id")


def test_planted_slice_ranks_first_and_is_significant(scan, trial):
    top = scan.iloc[0]
    assert top["slice"].startswith("sex = F & age_years in (") and top["slice"].endswith("] years")
    assert top["attributes"] == "sex;age_years" and bool(top["significant"])
    members = top["members"].split(";")
    inside = trial.set_index("id").loc[members]
    assert len(members) == top["n"] and (inside["sex"] == "F").all()
    assert top["mae"] == pytest.approx(inside["abs_error"].mean())
    rest = trial.loc[~trial["id"].isin(members), "abs_error"]
    assert top["mae_rest"] == pytest.approx(rest.mean()) and top["effect"] == pytest.approx(top["mae"] - rest.mean())
    welch = sps.ttest_ind(inside["abs_error"], rest, equal_var=False, alternative="greater")
    assert top["p"] == pytest.approx(welch.pvalue)
    assert top["mae_low"] < top["mae"] < top["mae_high"]


def test_scan_table_contract(scan):
    assert tuple(scan.columns) == subgroups.COLUMNS
    assert (scan["n"] >= 10).all()
    assert scan["effect"].is_monotonic_decreasing
    np.testing.assert_allclose(scan["p_adjusted"], sps.false_discovery_control(scan["p"], method="bh"))
    assert (scan["significant"] == (scan["p_adjusted"] < 0.05)).all()
    singles = scan.loc[scan["attributes"] == "age_years", "slice"].tolist()
    assert len(singles) == 3 and any(s.startswith("age_years in [") for s in singles)


def test_scan_respects_min_size_and_fdr_switch(trial):
    big = subgroups.subgroup_scan(trial, attributes=["sex", "age_years"], n_boot=20, min_size=60)
    assert (big["n"] >= 60).all() and len(big) > 0
    raw = subgroups.subgroup_scan(trial, attributes=["sex", "age_years"], n_boot=20, fdr=False, pairs=False)
    assert (raw["p_adjusted"] == raw["p"]).all() and set(raw["attributes"]) == {"sex", "age_years"}
    assert raw["members"].str.split(";").map(len).tolist() == raw["n"].tolist()


def test_scan_ci_uses_mae_ci_with_shared_draws(trial):
    table = subgroups.subgroup_scan(trial, attributes=["sex"], n_boot=50, seed=3, pairs=False)
    women = trial.loc[trial["sex"] == "F", "abs_error"].to_numpy()
    row = table.set_index("slice").loc["sex = F"]
    expected = mae_ci(women, uniforms=bootstrap_uniforms(3, 50, len(trial)))
    assert (row["mae_low"], row["mae_high"]) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_missing_attribute_values_leave_rows_out_of_slices(trial):
    df = trial.copy()
    df.loc[:9, "weight_kg"] = np.nan
    table = subgroups.subgroup_scan(df, attributes=["weight_kg"], n_boot=10, pairs=False)
    assert table["n"].sum() == len(df) - 10


def test_low_cardinality_numeric_column_is_categorical(trial):
    df = trial.assign(site=np.arange(len(trial)) % 2)
    table = subgroups.subgroup_scan(df, attributes=["site"], n_boot=10, pairs=False)
    assert sorted(table["slice"]) == ["site = 0", "site = 1"]


@pytest.mark.parametrize("kwargs, message", [
    ({"attributes": ["shoe_size"]}, "subgroup_scan: missing column(s) ['shoe_size']"),
    ({"abs_error_col": "err"}, "subgroup_scan: missing column(s) ['err']"),
    ({"n_bins": 1}, "n_bins: must be an integer >= 2"),
    ({"alpha": 0.0}, "alpha: must lie strictly between 0 and 1"),
])
def test_scan_rejects_bad_arguments(trial, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        subgroups.subgroup_scan(trial, **{"attributes": ["sex"], **kwargs})


def test_scan_rejects_nan_errors(trial):
    df = trial.copy()
    df.loc[4, "abs_error"] = np.nan
    with pytest.raises(ValueError, match=re.escape("abs_error: 1 NaN or infinite value(s), first at position(s) 4")):
        subgroups.subgroup_scan(df, attributes=["sex"], n_boot=10)
