"""Trial error statistics: MAE with bootstrap CIs, Z against real errors, degradation, verdicts, correlations.

Errors are absolute errors of a downstream model, ``|y - y_hat|``, in percentage points of body mass
(paper section 1.5), given as 1-D arrays of shape ``(n,)``: finite and non-negative, or ValueError.

Resampling: one ``seed`` fans out to one generator per resample (``np.random.SeedSequence(seed).spawn``,
as fairlearn fans out its ``random_state``), so resample ``b`` is the same whatever ``n_boot`` is, and
results do not depend on what else was drawn before. Each resample draws uniforms and turns them into
indices ``floor(u * n)``; a two-sample statistic draws both samples' uniforms from the resample's one
generator. scipy.stats.bootstrap draws every resample from a single generator, so it could not share
draws across calls (the subgroup scan's slices) nor extend a run's resamples: hence our own loop.
Confidence intervals are percentile intervals (``np.nanquantile`` at ``(1 -+ level) / 2``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

ACCEPTABLE = "acceptable"
INCONCLUSIVE = "inconclusive"
SIGNIFICANT = "significant degradation"
#: verdicts from best to worst; ``verdict_rank`` gives the position
VERDICTS: tuple[str, ...] = (ACCEPTABLE, INCONCLUSIVE, SIGNIFICANT)
#: ``--fail-on`` choices -> the least severe verdict that fails
FAIL_ON: dict[str, str] = {"inconclusive": INCONCLUSIVE, "significant": SIGNIFICANT}
#: sex codes shared by every model input (``vctcore.attributes``: "F"/"M")
SEX_CODES: dict[str, int] = {"F": 0, "M": 1}
#: elements a bootstrap holds in memory at once (resamples x rows), about 32 MB of float64
_CHUNK_ELEMENTS = 1 << 22

EMPTY = "{name}: empty; need at least {minimum} value(s)"
TOO_FEW = "{name}: {n} value(s); need at least {minimum}"
NOT_1D = "{name}: expected a 1-D array of shape (n,), got shape {shape}"
NOT_FINITE = "{name}: {count} NaN or infinite value(s), first at position(s) {positions}; drop or impute them first"
NEGATIVE = "{name}: {count} negative value(s), first at position(s) {positions}; pass absolute errors |y - y_hat|"
LENGTH_MISMATCH = "{name}: length {got} does not match {other} length {expected}"
BAD_WEIGHTS = "weights: must be non-negative with a positive sum (got sum {total:g})"
BAD_LEVEL = "level: must lie strictly between 0 and 1, got {level!r}"
BAD_N_BOOT = "n_boot: must be a positive integer, got {n_boot!r}"
BAD_UNIFORMS = "uniforms: need shape (n_boot, >= {n}) with values in [0, 1), got shape {shape}"
ZERO_SPREAD = "real_abs_error: all {n} values are equal, so the real MAE's standard error is 0 and Z is undefined"
BAD_THRESHOLDS = "acceptable_below ({low:g}) must not exceed significant_above ({high:g})"
UNKNOWN_VERDICT = "unknown verdict {value!r}; known: {known}"
UNKNOWN_FAIL_ON = "unknown fail_on {value!r}; choose from {known}"
BAD_CORRELATION = "r{i}: must lie in [-1, 1], got {r!r}"
BAD_SEX = "{name}: value(s) {values} are not sex codes F/M"
MISSING_COLUMNS = "{name}: missing column(s) {missing}"


def check_errors(values: object, name: str, *, minimum: int = 1, signed: bool = False) -> np.ndarray:
    """``values`` as a float array of shape (n,), n >= minimum, finite and (unless ``signed``) >= 0;
    ValueError naming ``name``."""
    a = np.asarray(values, dtype=float)
    if a.ndim != 1:
        raise ValueError(NOT_1D.format(name=name, shape=a.shape))
    if a.size == 0:
        raise ValueError(EMPTY.format(name=name, minimum=minimum))
    if a.size < minimum:
        raise ValueError(TOO_FEW.format(name=name, n=a.size, minimum=minimum))
    for bad, message in ((~np.isfinite(a), NOT_FINITE), (np.zeros_like(a, bool) if signed else a < 0, NEGATIVE)):
        if bad.any():
            positions = ", ".join(str(i) for i in np.flatnonzero(bad)[:5])
            raise ValueError(message.format(name=name, count=int(bad.sum()), positions=positions))
    return a


def _check_level(level: float, n_boot: int) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(BAD_LEVEL.format(level=level))
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(BAD_N_BOOT.format(n_boot=n_boot))


def bootstrap_rngs(seed: int, n: int) -> list[np.random.Generator]:
    """One independent generator per resample, spawned from ``seed``; the first k do not depend on ``n``."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(n)]


def bootstrap_uniforms(seed: int, n_boot: int, n: int) -> np.ndarray:
    """Uniforms in [0, 1) of shape (n_boot, n); row b is drawn by ``bootstrap_rngs(seed, n_boot)[b]``.

    Pass them as ``mae_ci(..., uniforms=)`` to resample many samples of up to n rows with the same draws.
    """
    return np.stack([rng.random(n) for rng in bootstrap_rngs(seed, n_boot)])


def resample_indices(uniforms: np.ndarray, n: int) -> np.ndarray:
    """Resampling indices of shape (n_boot, n) into a sample of n rows: ``floor(u * n)`` over ``uniforms[:, :n]``."""
    return np.minimum((uniforms[:, :n] * n).astype(np.intp), n - 1)


def _bootstrap(statistic: Callable[..., np.ndarray], samples: Sequence[np.ndarray], *, n_boot: int, seed: int,
               uniforms: np.ndarray | None = None) -> np.ndarray:
    """``statistic`` over resamples, shape (n_boot,).

    Each sample (rows along axis 0) is resampled independently; ``statistic`` gets the resampled arrays,
    each of shape (chunk, n_k, ...), and returns shape (chunk,).
    """
    sizes = [len(s) for s in samples]
    total = sum(sizes)
    if uniforms is not None:
        if uniforms.ndim != 2 or uniforms.shape[1] < total:
            raise ValueError(BAD_UNIFORMS.format(n=total, shape=uniforms.shape))
        chunks: object = [uniforms]
    else:
        rngs = bootstrap_rngs(seed, n_boot)
        step = max(1, _CHUNK_ELEMENTS // total)
        chunks = (np.stack([r.random(total) for r in rngs[i:i + step]]) for i in range(0, n_boot, step))
    out = []
    for u in chunks:
        parts, start = [], 0
        for sample, n in zip(samples, sizes):
            parts.append(sample[resample_indices(u[:, start:start + n], n)])
            start += n
        out.append(statistic(*parts))
    return np.concatenate(out)


def percentile_ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples`` (NaN resamples ignored)."""
    low, high = np.nanquantile(samples, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return float(low), float(high)


class _Result:
    """Base of the frozen result dataclasses below; ``to_dict()`` gives their fields as a plain dict."""

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)  # type: ignore[call-overload]  # the subclasses are dataclasses


@dataclass(frozen=True)
class MAEResult(_Result):
    """Mean absolute error (percentage points) with its bootstrap CI at ``level`` over ``n`` errors."""

    mean: float
    low: float
    high: float
    n: int
    level: float


def _weighted_means(resampled: np.ndarray) -> np.ndarray:
    """Weighted means of resampled (error, weight) pairs, shape (chunk, n, 2) -> (chunk,); NaN for zero weight."""
    w = resampled[..., 1]
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (resampled[..., 0] * w).sum(axis=1) / total, np.nan)


def mae_ci(abs_error: object, *, weights: object | None = None, n_boot: int = 2000, seed: int = 0,
           level: float = 0.95, uniforms: np.ndarray | None = None) -> MAEResult:
    """MAE of ``abs_error`` (n,) with a percentile bootstrap CI.

    ``weights`` (n,), non-negative with a positive sum, give the weighted MAE ``sum(w |e|) / sum(w)``
    (paper eq. 4); error-weight pairs are resampled together, and resamples whose weights sum to 0 are
    left out of the interval. ``uniforms`` from ``bootstrap_uniforms`` replace ``n_boot``/``seed``.
    """
    errors = check_errors(abs_error, "abs_error")
    _check_level(level, n_boot if uniforms is None else len(uniforms))
    n = errors.size
    if weights is None:
        boot = _bootstrap(lambda e: e.mean(axis=1), [errors], n_boot=n_boot, seed=seed, uniforms=uniforms)
        return MAEResult(float(errors.mean()), *percentile_ci(boot, level), n=n, level=level)
    w = np.asarray(weights, dtype=float)
    if w.shape != errors.shape:
        raise ValueError(LENGTH_MISMATCH.format(name="weights", got=w.shape, other="abs_error",
                                                expected=errors.shape))
    if not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(BAD_WEIGHTS.format(total=float(np.nansum(w))))
    pairs = np.column_stack([errors, w])
    boot = _bootstrap(_weighted_means, [pairs], n_boot=n_boot, seed=seed, uniforms=uniforms)
    return MAEResult(float(np.average(errors, weights=w)), *percentile_ci(boot, level), n=n, level=level)


def mean_ci(values: object, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of signed ``values`` (n,) with the percentile bootstrap CI that
    :func:`mae_ci` gives absolute errors (the same resampling and seeding)."""
    a = check_errors(values, "values", signed=True)
    _check_level(level, n_boot)
    boot = _bootstrap(lambda e: e.mean(axis=1), [a], n_boot=n_boot, seed=seed)
    return (float(a.mean()), *percentile_ci(boot, level))


@dataclass(frozen=True)
class ZResult(_Result):
    """Z of a synthetic MAE against the real one, its bootstrap CI and the two-sample z-test p-value."""

    z: float
    z_low: float
    z_high: float
    p: float
    n_synthetic: int
    n_real: int


def _z_statistic(syn: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(MAE_syn - MAE_real) / SE_real along axis -1 (resamples on axis 0); NaN where SE_real is 0."""
    se = real.std(axis=-1, ddof=1) / np.sqrt(real.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(se > 0, (syn.mean(axis=-1) - real.mean(axis=-1)) / se, np.nan)


def z_against_real(synthetic_abs_error: object, real_abs_error: object, *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> ZResult:
    """Z-score of a synthetic error distribution with respect to the real one (paper Table 1).

    ``Z = (MAE_syn - MAE_real) / SE_real`` with ``SE_real = sd(real, ddof=1) / sqrt(n_real)``: how many
    standard errors of the real MAE the synthetic MAE lies away. CI: percentile bootstrap, resampling both
    samples independently and recomputing MAE_syn, MAE_real and SE_real each time. ``p``: two-sided
    p-value of the two-sample z-test of equal means with unpooled (Welch-style) standard errors,
    ``2 * norm.sf(|m_syn - m_real| / sqrt(s_syn^2 / n_syn + s_real^2 / n_real))``. The paper does not
    define its p-value precisely (its values do not follow from its Z alone); this is our definition.
    Both samples need at least 2 errors; constant real errors (SE 0) raise ValueError.
    """
    syn = check_errors(synthetic_abs_error, "synthetic_abs_error", minimum=2)
    real = check_errors(real_abs_error, "real_abs_error", minimum=2)
    _check_level(level, n_boot)
    if real.std(ddof=1) == 0:
        raise ValueError(ZERO_SPREAD.format(n=real.size))
    z = float(_z_statistic(syn, real))
    boot = _bootstrap(_z_statistic, [syn, real], n_boot=n_boot, seed=seed)
    se_diff = np.sqrt(syn.var(ddof=1) / syn.size + real.var(ddof=1) / real.size)
    p = float(2.0 * sps.norm.sf(abs(syn.mean() - real.mean()) / se_diff))
    return ZResult(z, *percentile_ci(boot, level), p=p, n_synthetic=syn.size, n_real=real.size)


@dataclass(frozen=True)
class MAEDifference(_Result):
    """MAE of a target population minus that of a reference population, CI, and one-sided Welch p-value."""

    difference: float
    low: float
    high: float
    p: float
    mae_target: float
    mae_reference: float
    n_target: int
    n_reference: int
    level: float


def mae_difference(target_abs_error: object, reference_abs_error: object, *, n_boot: int = 2000, seed: int = 0,
                   level: float = 0.95) -> MAEDifference:
    """Degradation of a target population against a reference: ``MAE_target - MAE_reference``.

    CI: percentile bootstrap resampling both samples independently. ``p``: one-sided Welch t-test that the
    target's mean absolute error is larger (``ttest_ind(target, reference, equal_var=False,
    alternative="greater")``); NaN when both samples are constant. Each sample needs at least 2 errors.
    """
    target = check_errors(target_abs_error, "target_abs_error", minimum=2)
    reference = check_errors(reference_abs_error, "reference_abs_error", minimum=2)
    _check_level(level, n_boot)
    boot = _bootstrap(lambda t, r: t.mean(axis=1) - r.mean(axis=1), [target, reference], n_boot=n_boot, seed=seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = float(sps.ttest_ind(target, reference, equal_var=False, alternative="greater").pvalue)
    return MAEDifference(float(target.mean() - reference.mean()), *percentile_ci(boot, level), p=p,
                         mae_target=float(target.mean()), mae_reference=float(reference.mean()),
                         n_target=target.size, n_reference=reference.size, level=level)


def verdict(mae: MAEResult, *, acceptable_below: float = 2.0, significant_above: float = 3.0) -> str:
    """The trial's call on an MAE (paper 1.5: <= 2 points acceptable, > 3 points significant).

    ACCEPTABLE when the CI's upper bound is strictly below ``acceptable_below``, SIGNIFICANT when its lower
    bound is strictly above ``significant_above``, INCONCLUSIVE otherwise (the CI reaches the band between).
    """
    if not acceptable_below <= significant_above:
        raise ValueError(BAD_THRESHOLDS.format(low=acceptable_below, high=significant_above))
    if mae.high < acceptable_below:
        return ACCEPTABLE
    if mae.low > significant_above:
        return SIGNIFICANT
    return INCONCLUSIVE


def verdict_rank(value: str) -> int:
    """Position of a verdict in ``VERDICTS`` (0 = acceptable, 2 = significant degradation)."""
    if value not in VERDICTS:
        raise ValueError(UNKNOWN_VERDICT.format(value=value, known=list(VERDICTS)))
    return VERDICTS.index(value)


def fails(value: str, fail_on: str) -> bool:
    """Whether verdict ``value`` fails a ``--fail-on`` choice ("significant" or "inconclusive")."""
    if fail_on not in FAIL_ON:
        raise ValueError(UNKNOWN_FAIL_ON.format(value=fail_on, known=list(FAIL_ON)))
    return verdict_rank(value) >= verdict_rank(FAIL_ON[fail_on])


def correlation_difference(r1: float, n1: int, r2: float, n2: int) -> float:
    """Two-sided p-value that two independent Pearson correlations are equal (Fisher z-test).

    ``z = (atanh r1 - atanh r2) / sqrt(1 / (n1 - 3) + 1 / (n2 - 3))``, ``p = 2 * norm.sf(|z|)``; scipy has
    no test for two correlations, hence the formula. |r| = 1 is clipped to 1 - 1e-12; NaN when a
    correlation is NaN or a sample has fewer than 4 pairs.
    """
    if np.isnan(r1) or np.isnan(r2) or min(n1, n2) < 4:
        return float("nan")
    for i, r in ((1, r1), (2, r2)):
        if abs(r) > 1.0:
            raise ValueError(BAD_CORRELATION.format(i=i, r=r))
    z1, z2 = np.arctanh(np.clip([r1, r2], -1.0 + 1e-12, 1.0 - 1e-12))
    z = (z1 - z2) / np.sqrt(1.0 / (n1 - 3) + 1.0 / (n2 - 3))
    return float(2.0 * sps.norm.sf(abs(z)))


def numeric_attribute(values: pd.Series, name: str) -> np.ndarray:
    """An attribute column as floats (n,): "sex" F/M -> 0/1 (SEX_CODES), others ``pd.to_numeric``; NaN kept."""
    if name == "sex":
        missing = values.isna()
        unknown = values[~missing & ~values.isin(list(SEX_CODES))]
        if len(unknown):
            raise ValueError(BAD_SEX.format(name=name, values=sorted(map(str, unknown.unique()))[:5]))
        return values.map(SEX_CODES).to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(values, errors="raise").to_numpy(dtype=float, na_value=np.nan)


def _pearson(errors: np.ndarray, x: np.ndarray) -> tuple[float, float, int]:
    """(r, p, n) over pairs where both are finite; NaN r and p for fewer than 3 pairs or a constant side."""
    keep = np.isfinite(errors) & np.isfinite(x)
    e, v = errors[keep], x[keep]
    if e.size < 3 or np.ptp(e) == 0 or np.ptp(v) == 0:
        return float("nan"), float("nan"), int(e.size)
    res = sps.pearsonr(e, v)
    return float(res.statistic), float(res.pvalue), int(e.size)


def error_correlations(errors_real: object, attrs_real: pd.DataFrame, errors_syn: object, attrs_syn: pd.DataFrame,
                       columns: Sequence[str]) -> pd.DataFrame:
    """Pearson correlation of model error with each attribute, real vs synthetic (paper Table 2).

    ``errors_*`` (n,), signed or absolute model errors (percentage points), align by position with the rows
    of ``attrs_*``; sex is coded F=0 / M=1. Per column, rows where the error or
    the attribute is NaN are dropped. Returns one row per column (index = column): r_real, p_real, n_real,
    r_synthetic, p_synthetic, n_synthetic (scipy.stats.pearsonr) and p_difference
    (``correlation_difference``). A constant column or error gives NaN r and p.
    """
    out = {}
    sides = {}
    for side, errors, attrs in (("real", errors_real, attrs_real), ("synthetic", errors_syn, attrs_syn)):
        e = np.asarray(errors, dtype=float)
        if e.ndim != 1 or e.size == 0:
            raise ValueError(NOT_1D.format(name=f"errors_{side}", shape=e.shape) if e.ndim != 1
                             else EMPTY.format(name=f"errors_{side}", minimum=3))
        if e.size != len(attrs):
            raise ValueError(LENGTH_MISMATCH.format(name=f"errors_{side}", got=e.size, other=f"attrs_{side}",
                                                    expected=len(attrs)))
        missing = [c for c in columns if c not in attrs.columns]
        if missing:
            raise ValueError(MISSING_COLUMNS.format(name=f"attrs_{side}", missing=missing))
        sides[side] = (e, attrs)
    for col in columns:
        row: dict[str, float] = {}
        for side, (e, attrs) in sides.items():
            r, p, n = _pearson(e, numeric_attribute(attrs[col], col))
            row.update({f"r_{side}": r, f"p_{side}": p, f"n_{side}": n})
        row["p_difference"] = correlation_difference(row["r_real"], row["n_real"], row["r_synthetic"],
                                                     row["n_synthetic"])
        out[col] = row
    return pd.DataFrame.from_dict(out, orient="index")
