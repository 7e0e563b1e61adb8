"""Seeded draws of a population spec's attributes, one attribute at a time (the spec itself, its checks
and the sampling loop with constraints live in :mod:`vctcore.population`).

Every function takes a ``numpy.random.Generator`` and the number of rows ``m`` and returns arrays of
``m`` values in the attribute's unit (years, cm, kg, %, HU); per-sex parameters are mappings
``{"F": ..., "M": ...}`` read against the already drawn ``sex`` column.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from vctcore import anthropometry as anth
from vctcore.attributes import ATTRIBUTES, BMI_VALID_RANGE, MAX_BFP_PLUS_MMP, bmi

#: attributes with a published relation to the others, and the SD of its residual (their units)
RELATIONS: dict[str, float] = {"bfp_pct": anth.BFP_RESIDUAL_SD, "mmp_pct": anth.MMP_RESIDUAL_SD,
                               "bone_density_hu": anth.BONE_DENSITY_RESIDUAL_SD}


def _trunc_normal(rng: np.random.Generator, mean: Any, sd: Any, *, low: Any, high: Any, m: int) -> np.ndarray:
    """Inverse-CDF draws from N(mean, sd) truncated to [low, high]; all arguments broadcast to m.

    Intervals in the upper tail are mirrored to the lower tail, where the normal CDF keeps its precision.
    """
    mean, sd = np.broadcast_to(mean, (m,)), np.broadcast_to(sd, (m,))
    z_lo, z_hi = (np.asarray(low) - mean) / sd, (np.asarray(high) - mean) / sd
    flip = (z_lo + z_hi) > 0
    a, b = ndtr(np.where(flip, -z_hi, z_lo)), ndtr(np.where(flip, -z_lo, z_hi))
    z = ndtri(a + rng.uniform(size=m) * (b - a))
    return np.clip(mean + sd * np.where(flip, -z, z), low, high)


def _per_row(value: Any, sex: np.ndarray | None, m: int) -> np.ndarray:
    if isinstance(value, Mapping):
        return np.where(sex == "M", float(value["M"]), float(value["F"]))
    return np.full(m, float(value))


def _sample_shape(rng: np.random.Generator, shape: str, cfg: Mapping[str, Any], sex: Any, m: int,
                  *, bounds: tuple[float, float]) -> np.ndarray:
    """Normal or lognormal (mean, sd on the natural scale) truncated to cfg low/high and ``bounds``."""
    mean, sd = _per_row(cfg["mean"], sex, m), _per_row(cfg["sd"], sex, m)
    low = np.maximum(_per_row(cfg.get("low", bounds[0]), sex, m), bounds[0])
    high = np.minimum(_per_row(cfg.get("high", bounds[1]), sex, m), bounds[1])
    if shape == "normal":
        return _trunc_normal(rng, mean, sd, low=low, high=high, m=m)
    s2 = np.log1p((sd / mean) ** 2)
    mu = np.log(mean) - s2 / 2
    return np.exp(_trunc_normal(rng, mu, np.sqrt(s2), low=np.log(np.maximum(low, 1e-9)), high=np.log(high), m=m))


def _sample_relation(rng: np.random.Generator, name: str, cfg: Mapping[str, Any], cols: dict, m: int) -> np.ndarray:
    sex, age = cols["sex"], cols["age_years"]
    if name == "bfp_pct":
        mean = anth.mean_bfp_pct(sex, age, bmi(cols["height_cm"], cols["weight_kg"]))
    elif name == "mmp_pct":
        mean = anth.mean_mmp_pct(sex, age, bmi(cols["height_cm"], cols["weight_kg"]), bfp_pct=cols["bfp_pct"])
    else:
        mean = anth.mean_bone_density_hu(sex, age)
    mean = mean + _per_row(cfg.get("shift", 0.0), sex, m)
    sd = _per_row(cfg.get("sd", RELATIONS[name]), sex, m)
    attr = ATTRIBUTES[name]
    high = np.full(m, attr.high)
    if name == "mmp_pct":
        high = np.clip(MAX_BFP_PLUS_MMP - cols["bfp_pct"], attr.low, attr.high)
    return _trunc_normal(rng, mean, sd, low=attr.low, high=high, m=m)


def sample_one(rng: np.random.Generator, name: str, cfg: Mapping[str, Any], cols: dict, m: int) -> np.ndarray:
    dist, sex = cfg["dist"], cols.get("sex")
    attr = ATTRIBUTES[name]
    if name == "sex":
        if dist == "fixed":
            return np.full(m, cfg["value"], dtype=object)
        cats = list(cfg["p"])
        probs = np.array([float(cfg["p"][c]) for c in cats])
        return np.asarray(cats, dtype=object)[rng.choice(len(cats), size=m, p=probs / probs.sum())]
    if dist == "fixed":
        return _per_row(cfg["value"], sex, m)
    if dist == "uniform":
        return rng.uniform(_per_row(cfg["low"], sex, m), _per_row(cfg["high"], sex, m))
    if dist in ("normal", "truncnormal", "lognormal"):
        return _sample_shape(rng, "lognormal" if dist == "lognormal" else "normal", cfg, sex, m,
                             bounds=(attr.low, attr.high))
    if dist == "bmi":
        b = _sample_shape(rng, cfg.get("shape", "normal"), cfg, sex, m, bounds=BMI_VALID_RANGE)
        return b * (cols["height_cm"] / 100.0) ** 2
    return _sample_relation(rng, name, cfg, cols, m)


def sample_empirical(rng: np.random.Generator, cfg: Mapping[str, Any], table: pd.DataFrame, m: int) -> dict:
    rows = table.iloc[rng.integers(0, len(table), size=m)]
    jitter = cfg.get("jitter", 0.0)
    out = {}
    for col in table.columns:
        values = rows[col].to_numpy()
        sd = float(jitter.get(col, 0.0) if isinstance(jitter, Mapping) else jitter)
        if ATTRIBUTES[col].is_categorical:
            out[col] = values.astype(object)
        else:
            out[col] = values.astype(float) + (rng.normal(0.0, sd, size=m) if sd > 0 else 0.0)
    return out
