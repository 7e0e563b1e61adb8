"""PopulationSpec: a target population as plain data, and reproducible sampling of attribute tables.

A regulator writes a spec as YAML (or builds it in the app); it round-trips through a plain dict::

    name: adults
    attributes:
      sex:       {dist: categorical, p: {F: 0.5, M: 0.5}}
      age_years: {dist: uniform, low: 20, high: 85}
      height_cm: {dist: truncnormal, mean: {F: 161.7, M: 175.4}, sd: {F: 7.0, M: 7.6}, low: 140, high: 205}
      weight_kg: {dist: bmi, shape: lognormal, mean: 29.5, sd: 6.5, low: 16, high: 45}
      bfp_pct:   {dist: relation}
    constraints: {bmi: [16, 45], bfp_plus_mmp_max: 85}
    split: {x: body_volume_l, y: mmp_pct, coef: [0.1, 1.0], intercept: -40, keep: above}

Distributions (``dist``): fixed (value), uniform (low, high), normal (mean, sd, optional low/high),
truncnormal (mean, sd, low, high), lognormal (mean, sd of the variable itself, optional low/high),
categorical (p by category, sex only), empirical (path to a CSV, columns resampled jointly, optional
Gaussian jitter sd), relation (the :mod:`vctcore.anthropometry` relation of bfp_pct, mmp_pct or
bone_density_hu: mean from the sampled parents + residual noise; optional sd and shift) and bmi
(weight_kg only: sample BMI with shape normal|lognormal, weight = BMI * height^2). Numeric parameters
may be given per sex (``{F: ..., M: ...}``). Attributes a spec leaves out get ``DEFAULT_ATTRIBUTES``.
Sampling order: empirical groups, then sex, age, height, weight, body fat, muscle, bone density;
``body_volume_l`` is always derived (Siri estimate). Every draw is also held to the valid ranges of
:mod:`vctcore.attributes`, the constraints and the split, by rejection with a bounded number of rounds.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from vctcore import anthropometry as anth
from vctcore.attributes import ATTRIBUTE_NAMES, ATTRIBUTES, MAX_BFP_PLUS_MMP, bmi, check_table
from vctcore.population_sampling import sample_empirical, sample_one
from vctcore.population_checks import (  # noqa: F401 (DISTS, allowed_dists, SPLIT_COLUMNS: re-exported)
    BAD_COEF, BAD_KEEP, BAD_MAPPING, BAD_N, BAD_YAML, BAD_YAML_SYNTAX, CONSTRAINT_SUM_KEY,
    DEFAULT_ATTRIBUTES, DEFAULT_MAX_ROUNDS, DISTS, DUPLICATE_ATTRIBUTE, IMPOSSIBLE_SPEC, MAX_BATCH,
    MIN_BATCH, MISSING_FILE, MISSING_NAME, SAMPLING_ORDER, SPLIT_COLUMNS, SPLIT_COLUMN_MISSING, SpecError,
    UNKNOWN_SPLIT_COLUMN, UNKNOWN_SPLIT_KEY, UNKNOWN_TOP_KEY, _TOP_KEYS, _check_attribute,
    _check_constraints, _empirical_columns, _load_empirical, _num, _one_line_yaml_error, _plain,
    allowed_dists)


def _column(df: pd.DataFrame, name: str) -> np.ndarray:
    if name in df.columns:
        return pd.to_numeric(df[name], errors="coerce").to_numpy(dtype=float)
    if name == "bmi" and {"height_cm", "weight_kg"} <= set(df.columns):
        return np.asarray(bmi(_column(df, "height_cm"), _column(df, "weight_kg")), dtype=float)
    raise SpecError(SPLIT_COLUMN_MISSING.format(column=name, have=list(df.columns)))


@dataclass(frozen=True)
class BiasSplit:
    """Linear boundary ``a * x + b * y + c`` (the paper's ID/OOD construction, Section 4.3.1).

    ``keep="above"`` keeps rows with score > 0, ``"below"`` rows with score < 0 (rows exactly on the
    boundary are in neither). ``x``/``y`` are continuous attribute columns or "bmi".
    """

    x: str
    y: str
    coef: tuple[float, float]
    _: KW_ONLY
    intercept: float = 0.0
    keep: str = "above"

    def __post_init__(self) -> None:
        for axis in ("x", "y"):
            if getattr(self, axis) not in SPLIT_COLUMNS:
                raise SpecError(UNKNOWN_SPLIT_COLUMN.format(axis=axis, value=getattr(self, axis),
                                                            allowed=", ".join(SPLIT_COLUMNS)))
        if self.keep not in ("above", "below"):
            raise SpecError(BAD_KEEP.format(value=self.keep))
        coef = self.coef
        if isinstance(coef, (str, Mapping)) or not hasattr(coef, "__len__") or len(coef) != 2:
            raise SpecError(BAD_COEF.format(value=coef))
        a, b = (_num("split.coef", c) for c in coef)
        if a == 0 and b == 0:
            raise SpecError(BAD_COEF.format(value=coef))
        object.__setattr__(self, "coef", (a, b))
        object.__setattr__(self, "intercept", _num("split.intercept", self.intercept))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BiasSplit:
        if not isinstance(d, Mapping):
            raise SpecError(BAD_MAPPING.format(field="split", value=d))
        for key in d:
            if key not in ("x", "y", "coef", "intercept", "keep"):
                raise SpecError(UNKNOWN_SPLIT_KEY.format(key=key))
        return cls(x=d.get("x"), y=d.get("y"), coef=d.get("coef"), intercept=d.get("intercept", 0.0),
                   keep=d.get("keep", "above"))

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "coef": list(self.coef), "intercept": self.intercept, "keep": self.keep}

    def score(self, df: pd.DataFrame) -> np.ndarray:
        """Signed boundary score a*x + b*y + c per row (units of the columns)."""
        return self.coef[0] * _column(df, self.x) + self.coef[1] * _column(df, self.y) + self.intercept

    def inside(self, df: pd.DataFrame) -> np.ndarray:
        """Boolean mask of the rows on the kept side."""
        s = self.score(df)
        return s > 0 if self.keep == "above" else s < 0

    def flipped(self) -> BiasSplit:
        """The same boundary keeping the other side (ID <-> OOD)."""
        return BiasSplit(self.x, self.y, self.coef, intercept=self.intercept,
                         keep="below" if self.keep == "above" else "above")

    def describe(self) -> str:
        (a, b), c = self.coef, self.intercept
        return f"{a:g}*{self.x} + {b:g}*{self.y} + {c:g} {'>' if self.keep == 'above' else '<'} 0"


def apply_split(df: pd.DataFrame, split: BiasSplit | Mapping[str, Any]) -> np.ndarray:
    """Boolean mask of the rows of ``df`` on the kept side of ``split`` (a BiasSplit or its dict)."""
    return (split if isinstance(split, BiasSplit) else BiasSplit.from_dict(split)).inside(df)


@dataclass(frozen=True)
class PopulationSpec:
    """A target population: per-attribute distributions, hard constraints and an optional bias split.

    ``attributes`` maps attribute names to ``{"dist": ..., **params}`` dicts; attributes left out are
    filled from ``DEFAULT_ATTRIBUTES`` at construction. ``constraints`` maps a continuous attribute
    or "bmi" to ``[low, high]`` (None for an open end) and ``"bfp_plus_mmp_max"`` to a number (the
    physiological maximum ``MAX_BFP_PLUS_MMP`` always applies). ``base_dir`` resolves relative
    empirical CSV paths (the YAML file's folder when loaded from a file). Invalid specs raise SpecError.
    """

    name: str
    _: KW_ONLY
    description: str = ""
    attributes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    constraints: Mapping[str, Any] = field(default_factory=dict)
    split: BiasSplit | None = None
    base_dir: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.split, Mapping):
            object.__setattr__(self, "split", BiasSplit.from_dict(self.split))
        for key in ("attributes", "constraints"):
            if not isinstance(getattr(self, key), Mapping):
                raise SpecError(BAD_MAPPING.format(field=key, value=getattr(self, key)))
            object.__setattr__(self, key, _plain(getattr(self, key)))
        self.validate()
        covered = self._owners()
        filled = {n: self.attributes.get(n, copy.deepcopy(DEFAULT_ATTRIBUTES.get(n)))
                  for n in ATTRIBUTE_NAMES if n in self.attributes or (n in DEFAULT_ATTRIBUTES and n not in covered)}
        object.__setattr__(self, "attributes", filled)

    def _owners(self) -> dict[str, str]:
        """Attribute -> the spec entry that samples it (itself, or the empirical entry listing it)."""
        owners: dict[str, str] = {}
        for name, cfg in self.attributes.items():
            cols = _empirical_columns(name, cfg) if cfg.get("dist") == "empirical" else [name]
            for col in cols:
                if col in owners:
                    raise SpecError(DUPLICATE_ATTRIBUTE.format(name=col, other=name if col != name else owners[col]))
                owners[col] = name
        return owners

    def validate(self) -> PopulationSpec:
        """Check every field; raise SpecError naming the field, the value and what is allowed."""
        if not isinstance(self.name, str) or not self.name.strip():
            raise SpecError(MISSING_NAME.format(value=self.name))
        for name, cfg in self.attributes.items():
            _check_attribute(name, cfg, self.base_dir)
        self._owners()
        _check_constraints(self.constraints)
        if self.split is not None and not isinstance(self.split, BiasSplit):
            raise SpecError(BAD_MAPPING.format(field="split", value=self.split))
        return self

    # ---- plain-dict and YAML round trip ------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, base_dir: str | Path | None = None) -> PopulationSpec:
        """Build from a plain dict (the YAML document); unknown top-level keys are errors."""
        if not isinstance(d, Mapping):
            raise SpecError(BAD_YAML.format(kind=type(d).__name__))
        for key in d:
            if key not in _TOP_KEYS:
                raise SpecError(UNKNOWN_TOP_KEY.format(key=key, allowed=", ".join(_TOP_KEYS)))
        split = d.get("split")
        return cls(name=d.get("name"), description=d.get("description") or "",
                   attributes=d.get("attributes") or {}, constraints=d.get("constraints") or {},
                   split=None if split is None else BiasSplit.from_dict(split),
                   base_dir=None if base_dir is None else Path(base_dir))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML-ready) with every attribute's distribution spelled out."""
        out = {"name": self.name, "description": self.description,
               "attributes": copy.deepcopy(dict(self.attributes)),
               "constraints": copy.deepcopy(dict(self.constraints))}
        if self.split is not None:
            out["split"] = self.split.to_dict()
        return out

    @classmethod
    def from_yaml(cls, source: str | Path) -> PopulationSpec:
        """Load from a YAML file path (``.yaml``/``.yml``) or from YAML text."""
        base = None
        if isinstance(source, Path) or ("\n" not in source and source.strip().endswith((".yaml", ".yml"))):
            path = Path(source)
            if not path.is_file():
                raise SpecError(MISSING_FILE.format(path=path))
            source, base = path.read_text(encoding="utf-8"), path.parent
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise SpecError(BAD_YAML_SYNTAX.format(error=_one_line_yaml_error(exc))) from None
        return cls.from_dict(data, base_dir=base)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """YAML text of ``to_dict()``; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    # ---- sampling ----------------------------------------------------------------------------
    def _draw(self, rng: np.random.Generator, m: int, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {}
        for name, table in tables.items():
            cols.update(sample_empirical(rng, self.attributes[name], table, m))
        for name in SAMPLING_ORDER:
            if name not in cols:
                cols[name] = sample_one(rng, name, self.attributes[name], cols, m)
        cols["body_volume_l"] = anth.mean_body_volume_l(cols["weight_kg"], cols["bfp_pct"])
        return pd.DataFrame({k: cols[k] for k in ATTRIBUTE_NAMES})

    def constraint_masks(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Description -> boolean mask for every hard constraint (valid ranges, constraints, split)."""
        masks = {}
        for name, attr in ATTRIBUTES.items():
            if not attr.is_categorical and name in df.columns:
                masks[f"{name} in valid range [{attr.low:g}, {attr.high:g}]"] = (
                    (df[name] >= attr.low) & (df[name] <= attr.high)).to_numpy()
        total_max = float(self.constraints.get(CONSTRAINT_SUM_KEY, MAX_BFP_PLUS_MMP))
        masks[f"bfp_pct + mmp_pct <= {total_max:g}"] = (df["bfp_pct"] + df["mmp_pct"] <= total_max).to_numpy()
        for key, value in self.constraints.items():
            if key != CONSTRAINT_SUM_KEY:
                lo = -np.inf if value[0] is None else float(value[0])
                hi = np.inf if value[1] is None else float(value[1])
                x = _column(df, key)
                masks[f"{key} in [{lo:g}, {hi:g}]"] = (x >= lo) & (x <= hi)
        if self.split is not None:
            masks[f"split {self.split.describe()}"] = self.split.inside(df)
        return masks

    def sample(self, n: int, *, seed: int, max_rounds: int = DEFAULT_MAX_ROUNDS) -> pd.DataFrame:
        """Sample ``n`` patients: columns ``id`` ("P0000", ...) and every attribute; same seed, same frame.

        Rejection sampling in at most ``max_rounds`` rounds; SpecError when the constraints cannot be
        met (the message gives the accepted count and how many draws each constraint passed).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise SpecError(BAD_N.format(value=n))
        rng = np.random.default_rng(seed)
        tables = {name: _load_empirical(name, cfg, self.base_dir)
                  for name, cfg in self.attributes.items() if cfg["dist"] == "empirical"}
        kept, passed, accepted, drawn = [], {}, 0, 0
        batch = max(MIN_BATCH, math.ceil(1.25 * n))
        for _ in range(max_rounds):
            cand = self._draw(rng, batch, tables)
            masks = self.constraint_masks(cand)
            ok = np.logical_and.reduce(list(masks.values()))
            for key, mask in masks.items():
                passed[key] = passed.get(key, 0) + int(mask.sum())
            drawn, accepted = drawn + batch, accepted + int(ok.sum())
            kept.append(cand[ok])
            if accepted >= n or accepted == 0:
                break
            batch = int(min(MAX_BATCH, max(MIN_BATCH, math.ceil(1.25 * (n - accepted) * drawn / accepted))))
        if accepted < n:
            detail = "; ".join(f"{k}: {v}/{drawn}" for k, v in passed.items() if v < drawn) or "none rejected"
            raise SpecError(IMPOSSIBLE_SPEC.format(name=self.name, accepted=accepted, drawn=drawn, needed=n,
                                                   detail=detail))
        df = pd.concat(kept, ignore_index=True).iloc[:n].reset_index(drop=True)
        width = max(4, len(str(n - 1)))
        df.insert(0, "id", [f"P{i:0{width}d}" for i in range(n)])
        df.attrs.update({"population": self.to_dict(), "seed": seed})
        return check_table(df)


def support_report(df: pd.DataFrame, reference: pd.DataFrame | PopulationSpec, *,
                   quantiles: tuple[float, float] = (0.0, 1.0), n_reference: int = 2000,
                   seed: int = 0) -> pd.DataFrame:
    """Per attribute: the reference range (quantiles) and the fraction of ``df`` rows inside it.

    ``reference`` is an attribute table or a PopulationSpec (sampled with ``n_reference`` and ``seed``).
    Sex is "inside" when its category occurs in the reference.
    """
    ref = reference.sample(n_reference, seed=seed) if isinstance(reference, PopulationSpec) else reference
    rows = []
    for name, attr in ATTRIBUTES.items():
        if name not in df.columns or name not in ref.columns:
            continue
        if attr.is_categorical:
            inside = df[name].isin(set(ref[name].dropna())).to_numpy()
            lo = hi = float("nan")
        else:
            lo, hi = (float(v) for v in ref[name].quantile(list(quantiles)))
            x = pd.to_numeric(df[name], errors="coerce")
            inside = ((x >= lo) & (x <= hi)).to_numpy()
        rows.append({"attribute": name, "low": lo, "high": hi,
                     "inside_fraction": float(inside.mean()) if len(inside) else float("nan")})
    return pd.DataFrame(rows, columns=["attribute", "low", "high", "inside_fraction"])
