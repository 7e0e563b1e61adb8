"""Subgroup scan (beyond the paper): slices of patients on whom the model errs more than on the rest.

Each attribute is cut into slices: categorical ones (sex, non-numeric columns, numeric columns with at
most ``n_bins`` distinct values) by value, continuous ones by quantiles (``pd.qcut``, right-closed bins,
the first one closed on the left too; tied edges merged, so fewer bins can come out). With ``pairs`` every
intersection of two attributes' slices is tested as well. Rows missing an attribute belong to none of its
slices but stay in every "rest". Errors are absolute errors in percentage points of body mass.

Test: one-sided Welch t-test that the slice's mean absolute error exceeds the rest's
(``ttest_ind(slice, rest, equal_var=False, alternative="greater")``), chosen over Mann-Whitney U because
the trial's question is about the MAE, a mean. Many slices are tested, overlapping and nested, so the
p-values are a screen: Benjamini-Hochberg (``false_discovery_control``, "bh") controls the false discovery
rate among them (exactly for independent or positively dependent tests).
"""
from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats as sps

from vctcore.attributes import ATTRIBUTES
from vctcore.trial.attribution import FEATURES
from vctcore.trial.stats import bootstrap_uniforms, check_errors, mae_ci

COLUMNS: tuple[str, ...] = ("slice", "attributes", "n", "mae", "mae_low", "mae_high", "mae_rest", "effect", "p",
                            "p_adjusted", "significant", "members")
#: separator of the ``attributes`` and ``members`` cells and of a pair's slice label
MEMBER_SEP = ";"
PAIR_SEP = " & "

MISSING_COLUMNS = "subgroup_scan: missing column(s) {missing}; table has {present}"
BAD_N_BINS = "n_bins: must be an integer >= 2, got {value!r}"
BAD_ALPHA = "alpha: must lie strictly between 0 and 1, got {value!r}"

Slice = tuple[str, tuple[str, ...], np.ndarray]  # label, attribute names, boolean mask (n,)


def _is_categorical(values: pd.Series, name: str, n_bins: int) -> bool:
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    return name == "sex" or not numeric or values.nunique(dropna=True) <= n_bins


def attribute_slices(values: pd.Series, name: str, n_bins: int) -> list[Slice]:
    """The slices of one attribute: (label, (name,), mask) with labels like "age_years in (45.3, 60.2] years"."""
    unit = ATTRIBUTES[name].unit if name in ATTRIBUTES else ""
    suffix = f" {unit}" if unit else ""
    present = values.notna().to_numpy()
    if _is_categorical(values, name, n_bins):
        return [(f"{name} = {v}", (name,), present & (values == v).to_numpy())
                for v in sorted(values.dropna().unique(), key=str)]
    x = pd.to_numeric(values).astype(float)
    codes, edges = pd.qcut(x, n_bins, labels=False, retbins=True, duplicates="drop")
    codes = codes.to_numpy(dtype=float, na_value=np.nan)
    out = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        opening = "[" if i == 0 else "("
        out.append((f"{name} in {opening}{low:.4g}, {high:.4g}]{suffix}", (name,), codes == i))
    return out


def candidate_slices(df: pd.DataFrame, attributes: Sequence[str], *, n_bins: int, pairs: bool) -> list[Slice]:
    """Every single-attribute slice, then (with ``pairs``) every intersection of two attributes' slices."""
    singles = {name: attribute_slices(df[name], name, n_bins) for name in attributes}
    out = [s for name in attributes for s in singles[name]]
    if pairs:
        for a, b in combinations(attributes, 2):
            for label_a, _, mask_a in singles[a]:
                for label_b, _, mask_b in singles[b]:
                    out.append((f"{label_a}{PAIR_SEP}{label_b}", (a, b), mask_a & mask_b))
    return out


def _check_arguments(df: pd.DataFrame, abs_error_col: str, attributes: Sequence[str] | None, n_bins: int,
                     alpha: float) -> list[str]:
    names = [f for f in FEATURES if f in df.columns] if attributes is None else list(attributes)
    missing = [c for c in [abs_error_col, *names] if c not in df.columns]
    if missing:
        raise ValueError(MISSING_COLUMNS.format(missing=missing, present=list(df.columns)))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise ValueError(BAD_N_BINS.format(value=n_bins))
    if not 0.0 < alpha < 1.0:
        raise ValueError(BAD_ALPHA.format(value=alpha))
    return names


def _adjust(p: np.ndarray, fdr: bool) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over the finite ones (NaN stays NaN); ``p`` itself without ``fdr``."""
    adjusted = p.astype(float).copy()
    finite = np.isfinite(p)
    if fdr and finite.any():
        adjusted[finite] = sps.false_discovery_control(p[finite], method="bh")
    return adjusted


def subgroup_scan(df: pd.DataFrame, abs_error_col: str = "abs_error", attributes: Sequence[str] | None = None, *,
                  n_bins: int = 3, min_size: int = 10, pairs: bool = True, n_boot: int = 500, seed: int = 0,
                  alpha: float = 0.05, fdr: bool = True, level: float = 0.95,
                  id_col: str | None = None) -> pd.DataFrame:
    """Slices of ``df`` (one row per patient) ranked by how much larger their MAE is than the rest's.

    ``attributes`` default to the ``attribution.FEATURES`` columns present. Slices with fewer than
    ``min_size`` rows, or leaving fewer than 2 rows outside, are skipped. Per slice: ``n``; ``mae`` with
    its percentile bootstrap CI ``mae_low``/``mae_high`` at ``level`` (``stats.mae_ci``; every slice is
    resampled with the same ``n_boot`` draws from ``seed``); ``mae_rest``; ``effect = mae - mae_rest``;
    ``p`` (one-sided Welch, NaN when both sides are constant); ``p_adjusted`` (BH over all tested slices when
    ``fdr``, else ``p``); ``significant = p_adjusted < alpha``; ``members``: the slice's ``id_col`` values
    (the index without one) joined by ";"; ``attributes``: the attribute names joined by ";". Sorted by
    effect, largest first (ties: smaller p first). ``abs_error_col`` must be complete (no NaN).
    """
    names = _check_arguments(df, abs_error_col, attributes, n_bins, alpha)
    errors = check_errors(df[abs_error_col], abs_error_col, minimum=2)
    ids = (df[id_col] if id_col is not None else df.index.to_series()).astype(str).to_numpy()
    uniforms = bootstrap_uniforms(seed, n_boot, len(df))
    rows = []
    for label, attrs, mask in candidate_slices(df, names, n_bins=n_bins, pairs=pairs):
        n = int(mask.sum())
        if n < min_size or len(df) - n < 2:
            continue
        inside, rest = errors[mask], errors[~mask]
        ci = mae_ci(inside, uniforms=uniforms, level=level)
        with np.errstate(invalid="ignore", divide="ignore"):
            p = float(sps.ttest_ind(inside, rest, equal_var=False, alternative="greater").pvalue)
        rows.append({"slice": label, "attributes": MEMBER_SEP.join(attrs), "n": n, "mae": ci.mean,
                     "mae_low": ci.low, "mae_high": ci.high, "mae_rest": float(rest.mean()),
                     "effect": ci.mean - float(rest.mean()), "p": p, "members": MEMBER_SEP.join(ids[mask])})
    out = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_adjusted", "significant")])
    out["p_adjusted"] = _adjust(out["p"].to_numpy(dtype=float), fdr)
    out["significant"] = (out["p_adjusted"] < alpha).astype(bool)
    out = out.sort_values(["effect", "p"], ascending=[False, True], kind="stable", na_position="last")
    return out[list(COLUMNS)].reset_index(drop=True)
