"""The patient-attribute schema: names, units, valid adult ranges and conditioning bins.

Plain data, the single source for the population sampler, the generator's conditioning, the
measurement code, the CLI and the app. Column names are exact and shared by every table:

* ``sex``: "F" or "M".
* ``age_years``: age in years.
* ``height_cm``: standing height in cm.
* ``weight_kg``: body mass in kg.
* ``bfp_pct``: body-fat percentage, adipose-tissue mass / body mass x 100.
* ``mmp_pct``: muscle-mass percentage, skeletal-muscle mass / body mass x 100.
* ``bone_density_hu``: mean trabecular attenuation of the L1-L3 vertebral bodies in Hounsfield units.
  This is the standard opportunistic-CT bone-density measure (Pickhardt et al., Ann Intern Med 2013;
  Jang et al., Radiology 2019: L1 trabecular HU at 120 kV), so it can be measured on any CT without a
  calibration phantom and compared with published normative curves. It is not a calibrated QCT BMD
  in mg/cm3.
* ``body_volume_l``: body volume in litres, derived (estimated from weight and body fat before an
  image exists, measured from the body mask afterwards).

Conditioning bins follow the paper (categorical sex/age/height/weight bins, each with an extra
"none" category at index 0 for classifier-free guidance). Continuous bins are half-open
``[low, high)``: 180 cm falls in "180-190", not "170-180"; the outer bins are open-ended.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

NONE_LABEL = "none"
SEX_CATEGORIES: tuple[str, ...] = ("F", "M")
# Upper bound on fat + skeletal muscle as a share of body mass (%): bone (~12-15 %), organs, skin
# and blood make up the rest of the body in every adult.
MAX_BFP_PLUS_MMP = 85.0
# Plausible adult BMI range (kg/m2) for constraints and the BMI-based weight distribution.
BMI_VALID_RANGE: tuple[float, float] = (10.0, 80.0)
MAX_LISTED_ROWS = 5

UNKNOWN_ATTRIBUTE = "unknown attribute {name!r}; known attributes: {known}"
NO_BINS = "attribute {name!r} has no conditioning bins; binned attributes: {binned}"
UNKNOWN_CATEGORY = "{name}: unknown category {value!r}; allowed: {allowed} (or missing for 'none')"
MISSING_COLUMNS = "missing column(s) {missing}"
NOT_NUMERIC = "{column}: row(s) {rows} have non-numeric or missing value(s) {values}"
BAD_CATEGORY_ROWS = "{column}: row(s) {rows} have value(s) {values}; allowed categories: {allowed}"
OUT_OF_RANGE = "{column}: row(s) {rows} have value(s) {values} outside the allowed range [{low:g}, {high:g}] {unit}"
SUM_TOO_HIGH = "bfp_pct + mmp_pct: row(s) {rows} have sum(s) {values} above the allowed maximum {high:g} %"


class AttributeRangeError(ValueError):
    """An attribute table has missing columns, unknown categories or out-of-range values."""


@dataclass(frozen=True)
class Attribute:
    """One patient attribute: how to name, show, check and bin it.

    ``low``/``high`` is the valid adult range in ``unit`` (None for categorical attributes);
    ``bin_edges`` are the inner edges of the conditioning bins (None when not binned).
    """

    name: str
    label: str
    unit: str
    kind: str  # "categorical" or "continuous"
    description: str
    low: float | None = None
    high: float | None = None
    categories: tuple[str, ...] = ()
    bin_edges: tuple[float, ...] | None = None
    derived: bool = False

    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    @property
    def binned(self) -> bool:
        return self.is_categorical or self.bin_edges is not None


def _edges(start: float, stop: float, step: float) -> tuple[float, ...]:
    return tuple(float(v) for v in np.arange(start, stop + step / 2, step))


ATTRIBUTES: dict[str, Attribute] = {
    a.name: a
    for a in (
        Attribute("sex", "Sex", "", "categorical", "Biological sex, F or M.", categories=SEX_CATEGORIES),
        Attribute("age_years", "Age", "years", "continuous", "Age at scan in years (adults).",
                  18.0, 100.0, bin_edges=_edges(20, 90, 10)),
        Attribute("height_cm", "Height", "cm", "continuous", "Standing height in cm.",
                  130.0, 215.0, bin_edges=_edges(140, 200, 10)),
        Attribute("weight_kg", "Weight", "kg", "continuous", "Body mass in kg.",
                  30.0, 250.0, bin_edges=_edges(40, 150, 10)),
        Attribute("bfp_pct", "Body fat", "%", "continuous",
                  "Body-fat percentage: adipose-tissue mass / body mass x 100.",
                  3.0, 70.0, bin_edges=_edges(10, 50, 5)),
        Attribute("mmp_pct", "Muscle", "%", "continuous",
                  "Muscle-mass percentage: skeletal-muscle mass / body mass x 100.",
                  10.0, 65.0, bin_edges=_edges(20, 50, 5)),
        Attribute("bone_density_hu", "Bone density", "HU", "continuous",
                  "Mean trabecular attenuation of the L1-L3 vertebral bodies (HU, 120 kV), the "
                  "opportunistic-CT bone-density measure of Pickhardt 2013 / Jang 2019.",
                  0.0, 450.0),
        # 30 kg at 3 % fat is 27 L (Siri density 1.093 g/cm3); 250 kg at 70 % fat is 263 L. The top
        # leaves room for the lung air that an image-measured body volume includes.
        Attribute("body_volume_l", "Body volume", "L", "continuous",
                  "Body volume in litres: estimated from weight and body fat (Siri) before an "
                  "image exists, measured from the body mask afterwards.",
                  25.0, 270.0, derived=True),
    )
}
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)
CONDITIONING_ATTRIBUTES: tuple[str, ...] = ("sex", "age_years", "height_cm", "weight_kg")


def get_attribute(name: str) -> Attribute:
    """The schema entry for ``name``; ValueError naming the known attributes otherwise."""
    try:
        return ATTRIBUTES[name]
    except KeyError:
        raise ValueError(UNKNOWN_ATTRIBUTE.format(name=name, known=", ".join(ATTRIBUTE_NAMES))) from None


def _binned_attribute(name: str) -> Attribute:
    attr = get_attribute(name)
    if not attr.binned:
        binned = ", ".join(n for n, a in ATTRIBUTES.items() if a.binned)
        raise ValueError(NO_BINS.format(name=name, binned=binned))
    return attr


def bin_labels(name: str) -> list[str]:
    """Labels of the conditioning bins of ``name``; index 0 is always "none"."""
    attr = _binned_attribute(name)
    if attr.is_categorical:
        return [NONE_LABEL, *attr.categories]
    e = attr.bin_edges
    inner = [f"{lo:g}-{hi:g}" for lo, hi in zip(e[:-1], e[1:])]
    return [NONE_LABEL, f"<{e[0]:g}", *inner, f"{e[-1]:g}+"]


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    return isinstance(value, float) and math.isnan(value)


def bin_index(name: str, values: object) -> np.ndarray:
    """Conditioning-bin index (int64 array, same length as ``values``); missing values give 0 = "none"."""
    attr = _binned_attribute(name)
    seq = np.atleast_1d(np.asarray(values, dtype=object))
    if attr.is_categorical:
        lookup = {c: i + 1 for i, c in enumerate(attr.categories)}
        out = np.zeros(seq.shape, dtype=np.int64)
        for i, v in enumerate(seq.ravel()):
            if _is_missing(v):
                continue
            if v not in lookup:
                raise ValueError(UNKNOWN_CATEGORY.format(name=name, value=v, allowed=list(attr.categories)))
            out.flat[i] = lookup[v]
        return out
    x = pd.to_numeric(pd.Series(seq.ravel()), errors="coerce").to_numpy(dtype=float)
    idx = np.digitize(x, np.asarray(attr.bin_edges), right=False) + 1
    idx[~np.isfinite(x)] = 0
    return idx.astype(np.int64).reshape(seq.shape)


def bmi(height_cm: object, weight_kg: object) -> np.ndarray | float:
    """Body-mass index in kg/m2 from height (cm) and weight (kg); vectorised."""
    h = np.asarray(height_cm, dtype=float) / 100.0
    out = np.asarray(weight_kg, dtype=float) / (h * h)
    return float(out) if out.ndim == 0 else out


def _fmt_rows(ids: Sequence[object]) -> str:
    shown = ", ".join(str(i) for i in ids[:MAX_LISTED_ROWS])
    return shown + (f" (and {len(ids) - MAX_LISTED_ROWS} more)" if len(ids) > MAX_LISTED_ROWS else "")


def _fmt_values(values: Iterable[object]) -> str:
    vals = list(values)
    out = [f"{v:.4g}" if isinstance(v, (float, np.floating)) else repr(v) for v in vals[:MAX_LISTED_ROWS]]
    return ", ".join(out) + (" ..." if len(vals) > MAX_LISTED_ROWS else "")


def _row_ids(df: pd.DataFrame) -> np.ndarray:
    return (df["id"] if "id" in df.columns else pd.Series(df.index, index=df.index)).to_numpy()


def _column_problems(df: pd.DataFrame, attr: Attribute, ids: np.ndarray) -> list[str]:
    col = df[attr.name]
    if attr.is_categorical:
        bad = ~col.isin(attr.categories).to_numpy()
        if bad.any():
            return [BAD_CATEGORY_ROWS.format(column=attr.name, rows=_fmt_rows(ids[bad]),
                                             values=_fmt_values(col[bad]), allowed=list(attr.categories))]
        return []
    x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    bad = ~np.isfinite(x)
    if bad.any():
        return [NOT_NUMERIC.format(column=attr.name, rows=_fmt_rows(ids[bad]), values=_fmt_values(col[bad]))]
    out = (x < attr.low) | (x > attr.high)
    if out.any():
        return [OUT_OF_RANGE.format(column=attr.name, rows=_fmt_rows(ids[out]), values=_fmt_values(x[out]),
                                    low=attr.low, high=attr.high, unit=attr.unit)]
    return []


def validate_table(df: pd.DataFrame, *, required: Iterable[str] = ()) -> list[str]:
    """Problems with an attribute table (empty list when valid).

    Every attribute column present is checked (categories, finite numbers, valid range) plus
    ``bfp_pct + mmp_pct <= MAX_BFP_PLUS_MMP``; ``required`` names columns that must exist. Rows are
    named by the ``id`` column when there is one, else by the index.
    """
    missing = [c for c in required if c not in df.columns]
    problems = [MISSING_COLUMNS.format(missing=missing)] if missing else []
    ids = _row_ids(df)
    for name, attr in ATTRIBUTES.items():
        if name in df.columns:
            problems += _column_problems(df, attr, ids)
    if {"bfp_pct", "mmp_pct"} <= set(df.columns):
        total = pd.to_numeric(df["bfp_pct"], errors="coerce") + pd.to_numeric(df["mmp_pct"], errors="coerce")
        over = (total > MAX_BFP_PLUS_MMP).to_numpy()
        if over.any():
            problems.append(SUM_TOO_HIGH.format(rows=_fmt_rows(ids[over]), values=_fmt_values(total[over]),
                                                high=MAX_BFP_PLUS_MMP))
    return problems


def check_table(df: pd.DataFrame, *, required: Iterable[str] = ()) -> pd.DataFrame:
    """Return ``df`` unchanged if valid, else raise AttributeRangeError listing every problem."""
    problems = validate_table(df, required=required)
    if problems:
        raise AttributeRangeError("; ".join(problems))
    return df
