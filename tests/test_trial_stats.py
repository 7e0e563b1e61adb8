"""Trial statistics (vctcore.trial.stats) and the importance-weighted baseline (vctcore.trial.weighting),
each checked against a hand computation or the scipy / scikit-learn value."""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from vctcore.trial import stats, weighting


def _errors(seed: int, n: int, loc: float = 1.5) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(loc, 1.0, n))


# -- resampling ---------------------------------------------------------------------------------------

def test_bootstrap_rngs_are_reproducible_and_prefix_stable():
    a = [r.random(3) for r in stats.bootstrap_rngs(7, 5)]
    b = [r.random(3) for r in stats.bootstrap_rngs(7, 50)][:5]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    assert not np.allclose(a[0], a[1])


def test_resample_indices_stay_in_range_and_cover_rows():
    u = stats.bootstrap_uniforms(0, 200, 12)
    idx = stats.resample_indices(u, 5)
    assert idx.shape == (200, 5) and idx.min() == 0 and idx.max() == 4


# -- MAE ----------------------------------------------------------------------------------------------

def test_mae_ci_mean_ci_and_seeds():
    e = _errors(0, 80)
    res = stats.mae_ci(e, n_boot=300, seed=1)
    assert res.mean == pytest.approx(np.mean(e)) and res.n == 80 and res.level == 0.95
    assert res.low < res.mean < res.high
    assert stats.mae_ci(e, n_boot=300, seed=1) == res
    assert stats.mae_ci(e, n_boot=300, seed=2) != res
    assert res.to_dict() == {"mean": res.mean, "low": res.low, "high": res.high, "n": 80, "level": 0.95}


def test_mean_ci_takes_signed_values_with_mae_ci_resampling():
    e = _errors(0, 80)
    res = stats.mae_ci(e, n_boot=300, seed=1)
    assert stats.mean_ci(e, n_boot=300, seed=1) == (res.mean, res.low, res.high)  # same draws
    mean, low, high = stats.mean_ci(e - 3.0, n_boot=300, seed=1)
    assert mean == pytest.approx(res.mean - 3.0) and low == pytest.approx(res.low - 3.0)
    assert high == pytest.approx(res.high - 3.0)
    with pytest.raises(ValueError, match="negative"):
        stats.mae_ci(e - 3.0)  # absolute errors stay non-negative
    with pytest.raises(ValueError, match="NaN"):
        stats.mean_ci([1.0, np.nan])


def test_mae_ci_of_large_sample_approximates_normal_interval():
    e = _errors(3, 2000)
    res = stats.mae_ci(e, n_boot=1000, seed=0)
    se = e.std(ddof=1) / math.sqrt(e.size)
    assert res.low == pytest.approx(e.mean() - 1.96 * se, abs=0.25 * se)
    assert res.high == pytest.approx(e.mean() + 1.96 * se, abs=0.25 * se)


def test_mae_ci_agrees_with_scipy_percentile_bootstrap():
    e = _errors(4, 120)
    ours = stats.mae_ci(e, n_boot=2000, seed=0)
    ref = sps.bootstrap((e,), np.mean, n_resamples=2000, method="percentile", rng=np.random.default_rng(0))
    se = e.std(ddof=1) / math.sqrt(e.size)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=0.2 * se)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=0.2 * se)


def test_mae_ci_chunks_give_the_same_resamples(monkeypatch):
    e = _errors(5, 40)
    whole = stats.mae_ci(e, n_boot=100, seed=3)
    monkeypatch.setattr(stats, "_CHUNK_ELEMENTS", 40 * 7)  # 7 resamples per chunk
    assert stats.mae_ci(e, n_boot=100, seed=3) == whole


def test_mae_ci_shared_uniforms_equal_own_draws():
    e = _errors(6, 30)
    shared = stats.bootstrap_uniforms(9, 150, 100)
    own = stats.mae_ci(e, n_boot=150, seed=9)
    assert stats.mae_ci(e, uniforms=shared) == own


def test_weighted_mae_equals_hand_value():
    e = np.array([1.0, 2.0, 4.0])
    w = np.array([1.0, 1.0, 2.0])
    res = stats.mae_ci(e, weights=w, n_boot=200, seed=0)
    assert res.mean == pytest.approx((1 + 2 + 8) / 4)
    assert e.min() <= res.low <= res.mean <= res.high <= e.max()
    assert stats.mae_ci(e, weights=np.ones(3), n_boot=200, seed=0) == stats.mae_ci(e, n_boot=200, seed=0)


def test_weighted_mae_ignores_zero_weight_resamples():
    res = stats.mae_ci([1.0, 5.0], weights=[0.0, 1.0], n_boot=200, seed=0)
    assert res.mean == 5.0 and res.low == 5.0 and res.high == 5.0


@pytest.mark.parametrize("values, message", [
    ([], "abs_error: empty"),
    ([1.0, np.nan, 2.0], "abs_error: 1 NaN or infinite value(s), first at position(s) 1"),
    ([1.0, -0.5], "abs_error: 1 negative value(s)"),
    ([[1.0, 2.0]], "abs_error: expected a 1-D array"),
])
def test_mae_ci_rejects_bad_errors(values, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stats.mae_ci(values, n_boot=10)


@pytest.mark.parametrize("kwargs, message", [
    ({"weights": [1.0, 2.0]}, "weights: length (2,) does not match abs_error length (3,)"),
    ({"weights": [0.0, 0.0, 0.0]}, "weights: must be non-negative with a positive sum"),
    ({"weights": [1.0, -1.0, 1.0]}, "weights: must be non-negative"),
    ({"weights": [1.0, np.nan, 1.0]}, "weights: must be non-negative"),
    ({"level": 1.0}, "level: must lie strictly between 0 and 1"),
    ({"n_boot": 0}, "n_boot: must be a positive integer"),
    ({"uniforms": np.zeros((10, 2))}, "uniforms: need shape (n_boot, >= 3)"),
])
def test_mae_ci_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stats.mae_ci([1.0, 2.0, 3.0], **{"n_boot": 10, **kwargs})


# -- Z against real, degradation ------------------------------------------------------------------------

def test_z_against_real_matches_hand_computation():
    syn, real = _errors(10, 150, loc=1.7), _errors(11, 75)
    res = stats.z_against_real(syn, real, n_boot=400, seed=0)
    se_real = real.std(ddof=1) / math.sqrt(real.size)
    assert res.z == pytest.approx((syn.mean() - real.mean()) / se_real)
    z_test = (syn.mean() - real.mean()) / math.sqrt(syn.var(ddof=1) / 150 + real.var(ddof=1) / 75)
    assert res.p == pytest.approx(2 * sps.norm.sf(abs(z_test)))
    assert res.z_low < res.z < res.z_high
    assert (res.n_synthetic, res.n_real) == (150, 75)
    assert stats.z_against_real(syn, real, n_boot=400, seed=0) == res


def test_z_of_identical_samples_is_zero_with_p_one():
    e = _errors(12, 60)
    res = stats.z_against_real(e, e, n_boot=200, seed=0)
    assert res.z == 0.0 and res.p == pytest.approx(1.0) and res.z_low < 0 < res.z_high


@pytest.mark.parametrize("syn, real, message", [
    ([1.0], [1.0, 2.0], "synthetic_abs_error: 1 value(s); need at least 2"),
    ([1.0, 2.0], [], "real_abs_error: empty"),
    ([1.0, 2.0], [1.5, 1.5, 1.5], "real_abs_error: all 3 values are equal"),
])
def test_z_against_real_rejects_bad_input(syn, real, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        stats.z_against_real(syn, real, n_boot=10)


def test_mae_difference_matches_scipy_welch():
    target, reference = _errors(13, 75, loc=3.0), _errors(14, 75)
    res = stats.mae_difference(target, reference, n_boot=400, seed=0)
    assert res.difference == pytest.approx(target.mean() - reference.mean())
    assert res.p == pytest.approx(sps.ttest_ind(target, reference, equal_var=False, alternative="greater").pvalue)
    assert res.low < res.difference < res.high and res.low > 0
    assert (res.mae_target, res.n_reference) == (pytest.approx(target.mean()), 75)
    assert stats.mae_difference(reference, target, n_boot=50).p > 0.99


def test_mae_difference_rejects_nan():
    with pytest.raises(ValueError, match=re.escape("reference_abs_error: 1 NaN")):
        stats.mae_difference([1.0, 2.0], [np.nan, 1.0], n_boot=10)


# -- verdicts -------------------------------------------------------------------------------------------

def _mae(low: float, high: float) -> stats.MAEResult:
    return stats.MAEResult((low + high) / 2, low, high, n=10, level=0.95)


@pytest.mark.parametrize("low, high, expected", [
    (1.0, 1.9, stats.ACCEPTABLE), (1.0, 2.0, stats.INCONCLUSIVE), (1.5, 2.5, stats.INCONCLUSIVE),
    (2.5, 3.5, stats.INCONCLUSIVE), (3.0, 4.0, stats.INCONCLUSIVE), (3.1, 4.0, stats.SIGNIFICANT),
    (1.0, 5.0, stats.INCONCLUSIVE),
])
def test_verdict_boundaries(low, high, expected):
    assert stats.verdict(_mae(low, high)) == expected


def test_verdict_thresholds_and_ordering():
    assert stats.verdict(_mae(2.1, 2.2), acceptable_below=2.5, significant_above=2.5) == stats.ACCEPTABLE
    with pytest.raises(ValueError, match=re.escape("acceptable_below (3) must not exceed significant_above (2)")):
        stats.verdict(_mae(1, 2), acceptable_below=3.0, significant_above=2.0)
    assert [stats.verdict_rank(v) for v in stats.VERDICTS] == [0, 1, 2]
    assert stats.fails(stats.SIGNIFICANT, "significant") and not stats.fails(stats.INCONCLUSIVE, "significant")
    assert stats.fails(stats.INCONCLUSIVE, "inconclusive") and not stats.fails(stats.ACCEPTABLE, "inconclusive")
    with pytest.raises(ValueError, match="unknown fail_on"):
        stats.fails(stats.ACCEPTABLE, "never")
    with pytest.raises(ValueError, match="unknown verdict"):
        stats.verdict_rank("fine")


# -- correlations ---------------------------------------------------------------------------------------

def test_correlation_difference_hand_formula():
    r1, n1, r2, n2 = 0.482, 75, 0.2, 150
    z = (math.atanh(r1) - math.atanh(r2)) / math.sqrt(1 / 72 + 1 / 147)
    assert stats.correlation_difference(r1, n1, r2, n2) == pytest.approx(2 * sps.norm.sf(abs(z)))
    assert stats.correlation_difference(0.3, 20, 0.3, 50) == pytest.approx(1.0)
    assert math.isnan(stats.correlation_difference(0.3, 3, 0.1, 50))
    assert math.isnan(stats.correlation_difference(float("nan"), 30, 0.1, 50))
    assert stats.correlation_difference(1.0, 30, 1.0, 50) == pytest.approx(1.0)
    with pytest.raises(ValueError, match=re.escape("r2: must lie in [-1, 1]")):
        stats.correlation_difference(0.1, 30, 1.5, 50)


def _attrs(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"sex": rng.choice(["F", "M"], n), "body_volume_l": rng.normal(80, 15, n),
                         "bfp_pct": rng.uniform(10, 45, n), "flat": np.full(n, 2.0)})


def test_error_correlations_match_pearsonr_and_handle_nan_and_constants():
    real, syn = _attrs(20, 60), _attrs(21, 90)
    e_real = 0.05 * real["bfp_pct"].to_numpy() + _errors(22, 60)
    e_syn = 0.05 * syn["bfp_pct"].to_numpy() + _errors(23, 90)
    real.loc[3, "body_volume_l"] = np.nan
    table = stats.error_correlations(e_real, real, e_syn, syn, ["body_volume_l", "bfp_pct", "sex", "flat"])
    keep = real["body_volume_l"].notna().to_numpy()
    ref = sps.pearsonr(e_real[keep], real["body_volume_l"][keep])
    row = table.loc["body_volume_l"]
    assert (row.r_real, row.p_real, row.n_real) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), 59)
    assert table.loc["bfp_pct", "r_synthetic"] == pytest.approx(sps.pearsonr(e_syn, syn["bfp_pct"]).statistic)
    expected_p = stats.correlation_difference(row.r_real, 59, row.r_synthetic, 90)
    assert row.p_difference == pytest.approx(expected_p)
    sex_codes = (real["sex"] == "M").astype(float)
    assert table.loc["sex", "r_real"] == pytest.approx(sps.pearsonr(e_real, sex_codes).statistic)
    assert table.loc["flat", ["r_real", "p_real", "p_difference"]].isna().all()
    assert list(table.columns) == ["r_real", "p_real", "n_real", "r_synthetic", "p_synthetic", "n_synthetic",
                                   "p_difference"]


def test_error_correlations_reject_mismatch_and_missing_columns():
    real = _attrs(24, 10)
    with pytest.raises(ValueError, match=re.escape("errors_real: length 9 does not match attrs_real length 10")):
        stats.error_correlations(np.ones(9), real, np.ones(10), real, ["bfp_pct"])
    with pytest.raises(ValueError, match=re.escape("attrs_synthetic: missing column(s) ['age_years']")):
        stats.error_correlations(np.ones(10), real.assign(age_years=1.0), np.ones(10), real, ["age_years"])
    with pytest.raises(ValueError, match="not sex codes F/M"):
        stats.error_correlations(np.ones(10), real.assign(sex="X"), np.ones(10), real, ["sex"])


# -- importance weighting -------------------------------------------------------------------------------

def test_importance_weights_equation_6():
    p = np.array([0.0, 0.25, 0.5, 0.8, 1.0])
    w = weighting.importance_weights(p, 0.6, 0.4, clip=0.01)
    clipped = np.array([0.01, 0.25, 0.5, 0.8, 0.99])
    np.testing.assert_allclose(w, clipped / (1 - clipped) * 1.5)
    assert w[2] == pytest.approx(1.5)
    assert weighting.DEFAULT_CLIP == 0.005


@pytest.mark.parametrize("args, kwargs, message", [
    (([0.5, 1.2], 0.5, 0.5), {}, "p_ood: values must be finite and in [0, 1]; 1 are not"),
    (([0.5], 0.0, 0.5), {}, "p_id_prior: must be a finite positive proportion"),
    (([0.5], 0.5, np.nan), {}, "p_ood_prior: must be a finite positive proportion"),
    (([0.5], 0.5, 0.5), {"clip": 0.5}, "clip: must lie in (0, 0.5)"),
])
def test_importance_weights_reject_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        weighting.importance_weights(*args, **kwargs)



def test_effective_sample_size_is_kish():
    assert weighting.effective_sample_size(np.ones(7)) == pytest.approx(7.0)
    assert weighting.effective_sample_size([5.0, 0.0, 0.0]) == pytest.approx(1.0)
    w = np.array([1.0, 2.0, 3.0, 10.0])
    assert weighting.effective_sample_size(w) == pytest.approx(16.0 ** 2 / 114.0)


@pytest.mark.parametrize("w", [[], [1.0, -1.0], [0.0, 0.0], [1.0, np.nan], [[1.0, 2.0]]])
def test_effective_sample_size_rejects_bad_weights(w):
    with pytest.raises(ValueError, match="weights: need a non-empty 1-D array"):
        weighting.effective_sample_size(w)

def _population(seed: int, n: int, shift: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"sex": rng.choice(["F", "M"], n), "age_years": rng.uniform(20, 90, n),
                         "height_cm": rng.normal(170 + shift, 8, n), "weight_kg": rng.normal(75 + 3 * shift, 12, n)})


def test_ood_probability_is_the_tree_vote_fraction():
    ids, ood = _population(30, 60, 0.0), _population(31, 60, 8.0)
    model = weighting.fit_ood_classifier(ids, ood, n_trees=25, seed=4)
    x, _ = weighting.feature_matrix(ids, weighting.OOD_COLUMNS)
    manual = np.mean([tree.predict(x) == 1.0 for tree in model.forest.estimators_], axis=0)
    np.testing.assert_allclose(model.p_ood(ids), manual)
    np.testing.assert_allclose(weighting.ood_probability(ids, ood, ids, n_trees=25, seed=4), manual)
    assert model.forest.min_samples_leaf == 10 and len(model.forest.estimators_) == 25
    assert (model.n_id, model.n_ood) == (60, 60)
    assert 0.5 < model.accuracy_train <= 1.0 and model.accuracy_oob == pytest.approx(model.forest.oob_score_)
    assert model.p_ood(ood).mean() > model.p_ood(ids).mean()


def test_ood_classifier_rejects_empty_and_incomplete_tables():
    ids = _population(32, 20, 0.0)
    with pytest.raises(ValueError, match="attrs_ood: no rows"):
        weighting.fit_ood_classifier(ids, ids.iloc[:0])
    with pytest.raises(ValueError, match=re.escape("height_cm: 1 missing value(s) (NaN) at row(s) 2")):
        weighting.fit_ood_classifier(ids, ids.assign(height_cm=lambda d: d.height_cm.where(d.index != 2)))
