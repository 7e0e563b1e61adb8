"""The checks of a population spec (vctcore.population): every message, the distributions and their
parameters, per-attribute and constraint validation, empirical CSV loading. Each check raises
:class:`SpecError` with one line naming the field and what is wrong."""
from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from vctcore.attributes import (ATTRIBUTE_NAMES, ATTRIBUTES, BMI_VALID_RANGE, MAX_BFP_PLUS_MMP,
                                SEX_CATEGORIES, validate_table)
from vctcore.population_sampling import RELATIONS

UNKNOWN_TOP_KEY = "{key}: unknown top-level key; allowed: {allowed}"
BAD_MAPPING = "{field}: expected a mapping, got {value!r}"
MISSING_NAME = "name: a population spec needs a non-empty name, got {value!r}"
UNKNOWN_ATTRIBUTE = "attributes.{name}: unknown attribute; known: {known}"
DERIVED_ATTRIBUTE = ("attributes.{name}: {name!r} is derived (Siri estimate from weight and body fat) "
                     "and cannot have a distribution")
UNKNOWN_DIST = "attributes.{name}.dist: unknown distribution {dist!r}; allowed: {allowed}"
DIST_NOT_ALLOWED = "attributes.{name}.dist: {dist!r} is not available for {name!r}; allowed here: {allowed}"
MISSING_PARAM = "attributes.{name}: distribution {dist!r} needs {param!r}"
UNKNOWN_PARAM = "attributes.{name}: unknown parameter {param!r} for {dist!r}; allowed: {allowed}"
NOT_A_NUMBER = "{field}: expected a number, got {value!r}"
PER_SEX_NOT_ALLOWED = "{field}: per-sex values are not allowed here, got {value!r}"
PER_SEX_KEYS = "{field}: per-sex values need exactly the keys F and M, got {keys}"
LOW_ABOVE_HIGH = "{field}: low {low:g} is above high {high:g}"
NONPOSITIVE_SD = "{field}: sd must be > 0, got {value:g}"
NONPOSITIVE_MEAN = "{field}: a lognormal needs mean > 0, got {value:g}"
OUT_OF_PHYSIO = "{field}: {value:g} is outside the physiological range of {what} [{low:g}, {high:g}]{unit}"
BAD_PROBABILITIES = "attributes.{name}.p: probabilities must be >= 0 and sum to 1, got {p}"
UNKNOWN_CATEGORY = "attributes.{name}.p: unknown category {cat!r}; allowed: {allowed}"
BAD_SEX_VALUE = "attributes.sex.value: must be one of {allowed}, got {value!r}"
BAD_SHAPE = "attributes.{name}.shape: must be 'normal' or 'lognormal', got {value!r}"
BAD_JITTER = "attributes.{name}.jitter: expected a number >= 0 or a mapping column -> number >= 0, got {value!r}"
EMPIRICAL_NO_FILE = "attributes.{name}.path: empirical CSV {path} does not exist"
EMPIRICAL_BAD_COLUMNS = "attributes.{name}.columns: {problem}"
EMPIRICAL_MISSING_COLUMNS = "attributes.{name}.columns: CSV {path} lacks column(s) {missing}; it has {have}"
EMPIRICAL_BAD_VALUES = "attributes.{name}.path: CSV {path} has invalid attribute values: {problems}"
DUPLICATE_ATTRIBUTE = "attributes.{name}: given twice (own distribution and empirical columns of {other!r})"
UNKNOWN_CONSTRAINT = ("constraints.{key}: unknown constraint; allowed: continuous attribute names, 'bmi', "
                      "'bfp_plus_mmp_max'")
BAD_RANGE = "constraints.{key}: expected [low, high] (null for an open end), got {value!r}"
BAD_SUM_MAX = "constraints.bfp_plus_mmp_max: must be in (0, {high:g}], got {value!r}"
UNKNOWN_SPLIT_KEY = "split.{key}: unknown key; allowed: x, y, coef, intercept, keep"
UNKNOWN_SPLIT_COLUMN = "split.{axis}: unknown column {value!r}; allowed: {allowed}"
BAD_KEEP = "split.keep: must be 'above' or 'below', got {value!r}"
BAD_COEF = "split.coef: expected two numbers [a, b], not both zero, got {value!r}"
SPLIT_COLUMN_MISSING = "split: the table has no column {column!r} (columns: {have})"
MISSING_FILE = "population spec file {path} does not exist"
BAD_YAML = "population spec YAML must be a mapping at the top level, got {kind}"
BAD_YAML_SYNTAX = "population spec is not valid YAML: {error}"
BAD_N = "n: expected a positive number of rows, got {value!r}"
IMPOSSIBLE_SPEC = ("population {name!r}: only {accepted} of {drawn} draws satisfied the constraints "
                   "({needed} needed); pass counts per constraint: {detail}. Widen the constraints or move the "
                   "distributions towards them.")


class SpecError(ValueError):
    """A population spec is malformed, out of physiological range or cannot be sampled."""


DISTS: dict[str, tuple[set[str], set[str]]] = {  # dist -> (required, optional) parameters
    "fixed": ({"value"}, set()),
    "uniform": ({"low", "high"}, set()),
    "normal": ({"mean", "sd"}, {"low", "high"}),
    "truncnormal": ({"mean", "sd", "low", "high"}, set()),
    "lognormal": ({"mean", "sd"}, {"low", "high"}),
    "categorical": ({"p"}, set()),
    "empirical": ({"path"}, {"columns", "jitter"}),
    "relation": (set(), {"sd", "shift"}),
    "bmi": ({"mean", "sd"}, {"low", "high", "shape"}),
}
SAMPLING_ORDER = ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu")
SPLIT_COLUMNS = tuple(n for n, a in ATTRIBUTES.items() if not a.is_categorical) + ("bmi",)
CONSTRAINT_SUM_KEY = "bfp_plus_mmp_max"
_CONTINUOUS_DISTS = ("fixed", "uniform", "normal", "truncnormal", "lognormal", "empirical")
_NUMERIC_PARAMS = ("value", "low", "high", "mean", "sd")
_TOP_KEYS = ("name", "description", "attributes", "constraints", "split")
MIN_BATCH = 10_000
MAX_BATCH = 1_000_000
DEFAULT_MAX_ROUNDS = 20

# US adults (CDC NHANES 2015-2018 anthropometric reference data: mean height 175.4 cm men, 161.7 cm
# women; mean BMI about 29.5 kg/m2), used for every attribute a spec leaves out.
DEFAULT_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "sex": {"dist": "categorical", "p": {"F": 0.5, "M": 0.5}},
    "age_years": {"dist": "uniform", "low": 20, "high": 85},
    "height_cm": {"dist": "truncnormal", "mean": {"F": 161.7, "M": 175.4}, "sd": {"F": 7.0, "M": 7.6},
                  "low": 140, "high": 205},
    "weight_kg": {"dist": "bmi", "shape": "lognormal", "mean": 29.5, "sd": 6.5, "low": 16, "high": 45},
    "bfp_pct": {"dist": "relation"},
    "mmp_pct": {"dist": "relation"},
    "bone_density_hu": {"dist": "relation"},
}


def allowed_dists(name: str) -> tuple[str, ...]:
    """Distributions a spec may use for attribute ``name`` (empty for derived attributes)."""
    attr = ATTRIBUTES[name]
    if attr.derived:
        return ()
    if attr.is_categorical:
        return ("fixed", "categorical", "empirical")
    extra = (("relation",) if name in RELATIONS else ()) + (("bmi",) if name == "weight_kg" else ())
    return _CONTINUOUS_DISTS + extra


def _num(field_name: str, value: Any) -> float:
    if isinstance(value, bool) or value is None:
        raise SpecError(NOT_A_NUMBER.format(field=field_name, value=value))
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise SpecError(NOT_A_NUMBER.format(field=field_name, value=value)) from None
    if not math.isfinite(out):
        raise SpecError(NOT_A_NUMBER.format(field=field_name, value=value))
    return out


def _by_sex(field_name: str, value: Any, *, per_sex_ok: bool) -> dict[str, float]:
    """A numeric parameter as {"F": f, "M": m} (equal when given as one number)."""
    if isinstance(value, Mapping):
        if not per_sex_ok:
            raise SpecError(PER_SEX_NOT_ALLOWED.format(field=field_name, value=value))
        if set(value) != set(SEX_CATEGORIES):
            raise SpecError(PER_SEX_KEYS.format(field=field_name, keys=sorted(map(str, value))))
        return {s: _num(f"{field_name}[{s}]", value[s]) for s in SEX_CATEGORIES}
    v = _num(field_name, value)
    return {s: v for s in SEX_CATEGORIES}


def _physio(name: str, dist: str) -> tuple[str, float, float, str]:
    if dist == "bmi":
        return "bmi", *BMI_VALID_RANGE, " kg/m2"
    a = ATTRIBUTES[name]
    return name, a.low, a.high, f" {a.unit}" if a.unit else ""


def _check_numbers(name: str, dist: str, cfg: Mapping[str, Any]) -> None:
    vals = {k: _by_sex(f"attributes.{name}.{k}", cfg[k], per_sex_ok=name != "sex")
            for k in _NUMERIC_PARAMS if k in cfg}
    what, lo, hi, unit = _physio(name, dist)
    for s in SEX_CATEGORIES:
        p = {k: v[s] for k, v in vals.items()}
        tag = "" if all(v["F"] == v["M"] for v in vals.values()) else f"[{s}]"
        if "sd" in p and p["sd"] <= 0:
            raise SpecError(NONPOSITIVE_SD.format(field=f"attributes.{name}.sd{tag}", value=p["sd"]))
        if "low" in p and "high" in p and p["low"] > p["high"]:
            raise SpecError(LOW_ABOVE_HIGH.format(field=f"attributes.{name}{tag}", low=p["low"], high=p["high"]))
        if dist == "lognormal" and p["mean"] <= 0:
            raise SpecError(NONPOSITIVE_MEAN.format(field=f"attributes.{name}.mean{tag}", value=p["mean"]))
        for k in ("value", "low", "high", "mean"):
            if k in p and not lo <= p[k] <= hi:
                raise SpecError(OUT_OF_PHYSIO.format(field=f"attributes.{name}.{k}{tag}", value=p[k],
                                                     what=what, low=lo, high=hi, unit=unit))


def _check_categorical(name: str, cfg: Mapping[str, Any]) -> None:
    p = cfg["p"]
    if not isinstance(p, Mapping):
        raise SpecError(BAD_MAPPING.format(field=f"attributes.{name}.p", value=p))
    for cat in p:
        if cat not in SEX_CATEGORIES:
            raise SpecError(UNKNOWN_CATEGORY.format(name=name, cat=cat, allowed=list(SEX_CATEGORIES)))
    probs = [_num(f"attributes.{name}.p.{c}", v) for c, v in p.items()]
    if any(v < 0 for v in probs) or abs(sum(probs) - 1.0) > 1e-6:
        raise SpecError(BAD_PROBABILITIES.format(name=name, p=dict(p)))


def _one_line_yaml_error(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line message as one line: the problem and where (line and column, 1-based)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else " ".join(
        str(exc).split())


def _plain(value: Any) -> Any:
    """Deep copy as plain Python data (numpy scalars -> numbers, tuples -> lists) so YAML can write it."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def _resolve(path: Any, base_dir: Path | None) -> Path:
    p = Path(str(path)).expanduser()
    return p if p.is_absolute() or base_dir is None else Path(base_dir) / p


def _empirical_columns(name: str, cfg: Mapping[str, Any]) -> list[str]:
    cols = cfg.get("columns", [name])
    if isinstance(cols, str) or not all(isinstance(c, str) for c in cols):
        raise SpecError(EMPIRICAL_BAD_COLUMNS.format(name=name, problem=f"expected a list of names, got {cols!r}"))
    cols = list(cols)
    bad = [c for c in cols if c not in ATTRIBUTES or ATTRIBUTES[c].derived]
    if bad or name not in cols:
        problem = f"{bad} are not sampleable attributes" if bad else f"must include {name!r}, got {cols}"
        raise SpecError(EMPIRICAL_BAD_COLUMNS.format(name=name, problem=problem))
    return cols


def _load_empirical(name: str, cfg: Mapping[str, Any], base_dir: Path | None) -> pd.DataFrame:
    """The listed columns of the empirical CSV, rows with missing values dropped; validated."""
    path, cols = _resolve(cfg["path"], base_dir), _empirical_columns(name, cfg)
    if not path.is_file():
        raise SpecError(EMPIRICAL_NO_FILE.format(name=name, path=path))
    table = pd.read_csv(path)
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise SpecError(EMPIRICAL_MISSING_COLUMNS.format(name=name, path=path, missing=missing,
                                                         have=list(table.columns)))
    table = table[cols].dropna().reset_index(drop=True)
    problems = validate_table(table) or ([] if len(table) else ["no complete rows"])
    if problems:
        raise SpecError(EMPIRICAL_BAD_VALUES.format(name=name, path=path, problems="; ".join(problems)))
    return table


def _check_empirical(name: str, cfg: Mapping[str, Any], base_dir: Path | None) -> None:
    cols = _empirical_columns(name, cfg)
    jitter = cfg.get("jitter", 0.0)
    items = jitter.items() if isinstance(jitter, Mapping) else [(c, jitter) for c in cols]
    for col, sd in items:
        if col not in cols or isinstance(sd, bool) or not isinstance(sd, (int, float)) or sd < 0:
            raise SpecError(BAD_JITTER.format(name=name, value=jitter))
    _load_empirical(name, cfg, base_dir)


def _check_attribute(name: str, cfg: Any, base_dir: Path | None) -> None:
    if name not in ATTRIBUTES:
        raise SpecError(UNKNOWN_ATTRIBUTE.format(name=name, known=", ".join(ATTRIBUTE_NAMES)))
    if ATTRIBUTES[name].derived:
        raise SpecError(DERIVED_ATTRIBUTE.format(name=name))
    if not isinstance(cfg, Mapping):
        raise SpecError(BAD_MAPPING.format(field=f"attributes.{name}", value=cfg))
    dist = cfg.get("dist")
    if dist is None:
        raise SpecError(MISSING_PARAM.format(name=name, dist=None, param="dist"))
    if dist not in DISTS:
        raise SpecError(UNKNOWN_DIST.format(name=name, dist=dist, allowed=", ".join(DISTS)))
    if dist not in allowed_dists(name):
        raise SpecError(DIST_NOT_ALLOWED.format(name=name, dist=dist, allowed=", ".join(allowed_dists(name))))
    required, optional = DISTS[dist]
    for param in sorted(required - set(cfg)):
        raise SpecError(MISSING_PARAM.format(name=name, dist=dist, param=param))
    for param in cfg:
        if param != "dist" and param not in required | optional:
            raise SpecError(UNKNOWN_PARAM.format(name=name, param=param, dist=dist,
                                                 allowed=", ".join(sorted(required | optional))))
    if dist == "categorical":
        _check_categorical(name, cfg)
    elif dist == "empirical":
        _check_empirical(name, cfg, base_dir)
    elif name == "sex":
        if cfg["value"] not in SEX_CATEGORIES:
            raise SpecError(BAD_SEX_VALUE.format(value=cfg["value"], allowed=list(SEX_CATEGORIES)))
    else:
        if dist == "bmi" and cfg.get("shape", "normal") not in ("normal", "lognormal"):
            raise SpecError(BAD_SHAPE.format(name=name, value=cfg.get("shape")))
        _check_numbers(name, dist, cfg)
        if "shift" in cfg:
            _by_sex(f"attributes.{name}.shift", cfg["shift"], per_sex_ok=True)


def _range_of(key: str) -> tuple[float, float]:
    return BMI_VALID_RANGE if key == "bmi" else (ATTRIBUTES[key].low, ATTRIBUTES[key].high)


def _check_constraints(constraints: Mapping[str, Any]) -> None:
    for key, value in constraints.items():
        if key == CONSTRAINT_SUM_KEY:
            v = _num(f"constraints.{key}", value)
            if not 0 < v <= MAX_BFP_PLUS_MMP:
                raise SpecError(BAD_SUM_MAX.format(high=MAX_BFP_PLUS_MMP, value=value))
            continue
        if key not in SPLIT_COLUMNS:
            raise SpecError(UNKNOWN_CONSTRAINT.format(key=key))
        if isinstance(value, (str, Mapping)) or not hasattr(value, "__len__") or len(value) != 2:
            raise SpecError(BAD_RANGE.format(key=key, value=value))
        lo, hi = _range_of(key)
        bounds = [None if v is None else _num(f"constraints.{key}", v) for v in value]
        for v in bounds:
            if v is not None and not lo <= v <= hi:
                unit = " kg/m2" if key == "bmi" else f" {ATTRIBUTES[key].unit}"
                raise SpecError(OUT_OF_PHYSIO.format(field=f"constraints.{key}", value=v, what=key, low=lo,
                                                     high=hi, unit=unit))
        if None not in bounds and bounds[0] > bounds[1]:
            raise SpecError(LOW_ABOVE_HIGH.format(field=f"constraints.{key}", low=bounds[0], high=bounds[1]))
