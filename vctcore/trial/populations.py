"""The populations of an audit: attribute rows from a PopulationSpec YAML or a CSV a registry exports.

A CSV needs ``sex`` (F/M), ``age_years``, ``height_cm`` and ``weight_kg``; an ``id`` column is optional
and other columns are ignored. Missing ``bfp_pct``, ``mmp_pct`` and ``bone_density_hu`` (columns or
cells) are filled from the published relations of :mod:`vctcore.anthropometry` (Deurenberg, Janssen,
Jang), and ``body_volume_l`` from Siri's density. Out-of-range or non-numeric values raise
:class:`PopulationError` naming the rows. Rows outside the generator's training support are kept,
flagged in ``outside_support`` and listed in the warnings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from vctcore.attributes import CONDITIONING_ATTRIBUTES, AttributeRangeError, bmi, check_table
from vctcore.trial.config import PopulationSource

OPTIONAL = ("bfp_pct", "mmp_pct", "bone_density_hu")
ERR_CSV = "population {name!r}: {path}: {problem}"


class PopulationError(ValueError):
    """A population table that cannot be used (unreadable, missing columns, out-of-range values)."""


def _fill_relations(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    from vctcore.anthropometry import mean_bfp_pct, mean_body_volume_l, mean_bone_density_hu, mean_mmp_pct

    out, filled = df.copy(), []
    b = bmi(out["height_cm"].astype(float), out["weight_kg"].astype(float))
    fills = {"bfp_pct": lambda: mean_bfp_pct(out["sex"], out["age_years"], b),
             "mmp_pct": lambda: mean_mmp_pct(out["sex"], out["age_years"], b, bfp_pct=out["bfp_pct"]),
             "bone_density_hu": lambda: mean_bone_density_hu(out["sex"], out["age_years"])}
    for col, fill in fills.items():
        have = pd.to_numeric(out[col], errors="coerce") if col in out else pd.Series(np.nan, index=out.index)
        if have.isna().any():
            out[col] = np.where(have.isna(), fill(), have)
            filled.append(col)
    out["body_volume_l"] = mean_body_volume_l(out["weight_kg"].astype(float), out["bfp_pct"].astype(float))
    return out, filled


def _read_csv(src: PopulationSource) -> pd.DataFrame:
    try:
        df = pd.read_csv(src.csv)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise PopulationError(ERR_CSV.format(name=src.name, path=src.csv, problem=f"cannot read it ({err})")) from None
    missing = [c for c in CONDITIONING_ATTRIBUTES if c not in df.columns]
    if missing:
        raise PopulationError(ERR_CSV.format(name=src.name, path=src.csv,
                                             problem=f"missing column(s) {', '.join(missing)} (have: "
                                                     f"{', '.join(map(str, df.columns))})"))
    if df.empty:
        raise PopulationError(ERR_CSV.format(name=src.name, path=src.csv, problem="no rows"))
    df["id"] = df["id"].astype(str) if "id" in df.columns else [f"R{i:04d}" for i in range(len(df))]
    if df["id"].duplicated().any():
        dup = df.loc[df["id"].duplicated(), "id"].head(3).tolist()
        raise PopulationError(ERR_CSV.format(name=src.name, path=src.csv, problem=f"duplicate id(s) {dup}"))
    keep = ["id", *CONDITIONING_ATTRIBUTES] + [c for c in OPTIONAL if c in df.columns]
    df = df[keep].head(src.n) if src.n else df[keep]
    df["sex"] = df["sex"].astype(str).str.strip().str.upper()
    return df.reset_index(drop=True)


def population_rows(src: PopulationSource, *, seed: int, support: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(attribute rows of ``src`` with ``population``, ``outside_support``; warnings)."""
    from vctcore.population import PopulationSpec, SpecError

    warnings: list[str] = []
    if src.spec is not None:
        try:
            df = PopulationSpec.from_yaml(src.spec).sample(src.n, seed=seed)
        except (OSError, SpecError, ValueError) as err:
            raise PopulationError(f"population {src.name!r}: {src.spec}: {err}") from None
        df = df.reset_index(drop=True)
    else:
        df = _read_csv(src)
        present = [c for c in OPTIONAL if c in df.columns]
        try:
            # conditioning columns complete; optional columns where they have a value (empty cells are filled)
            check_table(df.drop(columns=present), required=CONDITIONING_ATTRIBUTES)
            for c in present:
                check_table(df.loc[df[c].notna(), ["id", c]])
            df, filled = _fill_relations(df)
            check_table(df)
        except AttributeRangeError as err:
            raise PopulationError(ERR_CSV.format(name=src.name, path=src.csv, problem=str(err))) from None
        if filled:
            warnings.append(f"population {src.name!r}: {', '.join(filled)} filled from published relations "
                            "(Deurenberg BFP, Janssen muscle, Jang bone density) where the CSV has none")
        for c in CONDITIONING_ATTRIBUTES[1:]:
            df[c] = df[c].astype(float)
    df["population"] = src.name
    df["outside_support"] = outside_support(df, support or {})
    n_out = int(df["outside_support"].sum())
    if n_out:
        warnings.append(f"population {src.name!r}: {n_out} of {len(df)} row(s) lie outside the generator's training "
                        f"support (e.g. {', '.join(df.loc[df['outside_support'], 'id'].astype(str).head(5))}); "
                        "their synthetic patients are extrapolations, flagged outside_support in predictions.csv")
    return df, warnings


def outside_support(df: pd.DataFrame, support: dict) -> np.ndarray:
    """Per row: True where any attribute with a support entry (manifest ``support``: categories or
    min/max) lies outside it."""
    out = np.zeros(len(df), bool)
    for name, sup in support.items():
        if name not in df:
            continue
        if "categories" in sup:
            out |= ~df[name].astype(str).isin(sup["categories"]).to_numpy()
        else:
            x = pd.to_numeric(df[name], errors="coerce").to_numpy(float)
            out |= (x < sup["min"]) | (x > sup["max"])
    return out
