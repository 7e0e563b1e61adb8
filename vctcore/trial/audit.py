"""The everyday trial, no real images needed: a model under test, a reference population (where it was
validated) and target populations (where it is to be deployed).

Each population (a PopulationSpec sample or a CSV of attribute rows) is synthesised (``oversample``
patients per row, conditioned on sex, age, height and weight), every synthetic patient is measured
from its image (:mod:`vctcore.trial.ground_truth`, height through the shipped extent -> height fit on
phantoms) and predicted. Per population: MAE with CI and verdict; per target: degradation against the
reference (MAE difference, CI, one-sided Welch p); over all synthetic patients: the random-forest error
attribution, SHAP and the subgroup scan.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.attributes import CONDITIONING_ATTRIBUTES
from vctcore.trial import analysis
from vctcore.trial.config import TrialConfig
from vctcore.trial.ground_truth import HeightCalibration
from vctcore.trial.images import measure_table, predict_table, with_height
from vctcore.trial.populations import population_rows
from vctcore.trial.stages import Stages
from vctcore.trial.stats import mae_difference
from vctcore.trial.store import PatientStore

REFERENCE, TARGET = "reference", "target"


def _populations(cfg: TrialConfig, generator) -> tuple[pd.DataFrame, list[str]]:
    rows, warnings = [], []
    support = generator.manifest.get("support", {})
    for k, src in enumerate((cfg.reference, *cfg.targets)):
        df, w = population_rows(src, seed=analysis.stat_seed(cfg.generator.seed, "population", src.name),
                                support=support)
        df["role"] = REFERENCE if k == 0 else TARGET
        rows.append(df)
        warnings += w
    return pd.concat(rows, ignore_index=True), warnings


def run_audit(cfg: TrialConfig, out: Path, store: PatientStore, stages: Stages) -> dict[str, Any]:
    """Run the audit design; returns ``summary``, ``predictions`` and ``tables``."""
    from vctcore.downstream import load_model
    from vctcore.generator import Generator

    st, g = cfg.statistics, cfg.generator
    with stages.stage("load"):
        model = load_model(cfg.model.path)
        generator = Generator.from_pretrained(g.checkpoint, device=store.driver_device(g.device))
        rows, warnings = _populations(cfg, generator)
    task = model.card.target
    rows["source_id"] = rows["population"].astype(str) + ":" + rows["id"].astype(str)
    oversample = g.oversample_or(1)
    requests = pd.concat([rows.assign(replica=k) for k in range(oversample)], ignore_index=True)
    with stages.stage("generate"):
        syn = store.synthetic(generator, requests[["source_id", "replica", *g.conditioning]], seed=g.seed,
                              conditioning=g.conditioning, steps=g.steps, guidance=g.guidance,
                              progress=stages.callback())
    syn["sample_type"] = "synthetic"
    with stages.stage("measure_generated"):
        syn = measure_table(syn[["source_id", "replica", "patient_id", "dir", "sample_type"]],
                            cache_dir=store.root / "measurements", segmentation=cfg.segmentation,
                            workers=cfg.workers or 2, progress=stages.callback(),
                            executor=store.executor)
    calibration = HeightCalibration.load()
    syn = with_height(syn, calibration)
    src = rows.set_index("source_id")
    for c in ("population", "role", "outside_support", "sex", "age_years"):
        syn[c] = src.loc[syn["source_id"], c].to_numpy()
    for c in CONDITIONING_ATTRIBUTES[2:]:
        syn[f"requested_{c}"] = src.loc[syn["source_id"], c].to_numpy()
    with stages.stage("predict"):
        syn["y_pred"] = predict_table(model, syn, progress=stages.callback())
    syn["task"], syn["y_true"] = task, syn[task]
    syn["abs_error"] = (syn["y_pred"] - syn["y_true"]).abs()
    bad = syn["y_true"].isna()
    if bad.any():
        warnings.append(f"{int(bad.sum())} synthetic image(s) without a measured {task} are left out of the statistics")
    preds = syn[~bad].reset_index(drop=True)
    with stages.stage("statistics"):
        pops = population_table(preds, cfg)
        tables: dict[str, Any] = {"populations": pops}
        tables.update(analysis.attribution_tables(preds, task, st, ("synthetic",)))
        tables["subgroups"] = analysis.subgroups(preds, task, st, ("synthetic",))
    warnings += tables.pop("notes", [])
    drivers = list(tables["table4"].sort_values("permutation_mean", ascending=False)["feature"].head(3)) \
        if not tables["table4"].empty else []
    degraded = pops.loc[pops["degraded"], "population"].tolist()
    summary = {"task": task, "height_calibration": calibration.to_dict(), "oversample": oversample,
               "verdicts": pops.assign(sample_type="synthetic").to_dict("records"), "degraded_populations": degraded,
               "error_drivers": {"synthetic": drivers}, "warnings": warnings}
    return {"summary": summary, "predictions": preds.rename(columns={"dir": "image_dir"}), "tables": tables,
            "model": model, "generator": generator}


def population_table(preds: pd.DataFrame, cfg: TrialConfig) -> pd.DataFrame:
    """Per population: n, n outside support, MAE with CI and verdict; for targets, the MAE difference to
    the reference with CI and one-sided p, and ``degraded``: the difference's CI lies above 0 and its p
    is below ``statistics.subgroups.alpha``."""
    st = cfg.statistics
    ref_name = cfg.reference.name
    ref = preds.loc[preds["population"] == ref_name, "abs_error"].to_numpy(float)
    rows = []
    for name in [ref_name, *(t.name for t in cfg.targets)]:
        e = preds.loc[preds["population"] == name, "abs_error"].to_numpy(float)
        row = {"population": name, "role": REFERENCE if name == ref_name else TARGET,
               "outside_support": int(preds.loc[preds["population"] == name, "outside_support"].sum()),
               **analysis.mae_row(e, st, "audit", name)}
        row.update({"difference": np.nan, "difference_low": np.nan, "difference_high": np.nan, "p_degradation": np.nan,
                    "degraded": False})
        if name != ref_name and e.size >= 2 and ref.size >= 2:
            d = mae_difference(e, ref, n_boot=st.n_boot, seed=analysis.stat_seed(st.seed, "difference", name),
                               level=st.level)
            row.update(difference=d.difference, difference_low=d.low, difference_high=d.high, p_degradation=d.p,
                       degraded=bool(d.low > 0 and d.p < st.subgroups.alpha))
        rows.append(row)
    return pd.DataFrame(rows)
