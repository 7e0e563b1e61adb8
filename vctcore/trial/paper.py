"""The seed paper's trial (section 1.5, Tables 1-4) on a real cohort: phantoms by default, any cohort of
real CT the same way.

1. the real cohort is measured image by image (:mod:`vctcore.trial.ground_truth`);
2. a linear boundary on measured attributes cuts it into training, ID test and OOD test sets
   (:mod:`vctcore.trial.split`);
3. the model under test is the reference 2.5D regressor trained on the training set (or a given model);
4. each test patient is reconstructed by the generator's autoencoders (one to one) and ``oversample``
   synthetic patients are conditioned on its recorded sex, age, height and weight;
5. every image is measured the same way and predicted; synthetic patients whose *measured* attributes
   fall on the other side of the boundary are culled (re-biasing);
6. the importance-weighted baseline re-weights the real ID errors by p(OOD | a) (equations 4-6);
7. Tables 1-4, SHAP and the subgroup scan (:mod:`vctcore.trial.analysis`);
8. generated twins against their sources (:mod:`vctcore.trial.twins`): attribute drift, and whether the
   model reads faithful twins (same measured composition) differently from real images.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.attributes import CONDITIONING_ATTRIBUTES
from vctcore.cohort import read_attributes
from vctcore.trial import analysis
from vctcore.trial.config import TrialConfig
from vctcore.trial.ground_truth import HeightCalibration
from vctcore.trial.images import measure_table, predict_table, with_height
from vctcore.trial.split import assign_roles, composition, resolve_split
from vctcore.trial.stages import Stages
from vctcore.trial.store import PatientStore, digest
from vctcore.trial.twins import attribute_drift, faithful_twins
from vctcore.trial.weighting import effective_sample_size, fit_ood_classifier, importance_weights

POPULATION = {"id_test": "ID", "ood_test": "OOD"}


class PaperTrialError(ValueError):
    """A paper trial that cannot run on this cohort (missing recorded attributes, wrong model target)."""


def real_images(cfg: TrialConfig, store: PatientStore, stages: Stages) -> tuple[Path, pd.DataFrame]:
    """(real cohort directory, its image table with recorded attributes under ``recorded_*``)."""
    with stages.stage("real_cohort"):
        if cfg.real_cohort is not None:
            real_dir = cfg.real_cohort
            if not (real_dir / "attributes.csv").is_file():
                raise PaperTrialError(f"real cohort {real_dir} has no attributes.csv")
        else:
            p = cfg.phantoms
            real_dir = store.phantom_pool(p.population, n=p.n, seed=p.seed, workers=cfg.workers or 2,
                                          progress=stages.callback())
        recorded = read_attributes(real_dir)
    missing = [c for c in CONDITIONING_ATTRIBUTES if c not in recorded or recorded[c].isna().any()]
    if missing:
        raise PaperTrialError(f"real cohort {real_dir}: attributes.csv lacks recorded {', '.join(missing)} for some "
                              "patients; the paper design conditions synthetic patients on them")
    images = pd.DataFrame({"patient_id": recorded["id"].astype(str), "source_id": recorded["id"].astype(str),
                           "sample_type": "real",
                           "dir": [str(real_dir / "patients" / str(i)) for i in recorded["id"]]})
    for c in CONDITIONING_ATTRIBUTES:
        images[f"recorded_{c}"] = recorded[c].to_numpy()
    return real_dir, images


def recorded(images: pd.DataFrame) -> pd.DataFrame:
    """The recorded conditioning attributes of an image table (``recorded_<name>`` -> ``<name>``)."""
    return pd.DataFrame({c: images[f"recorded_{c}"].to_numpy() for c in CONDITIONING_ATTRIBUTES})


def _attributes(images: pd.DataFrame, calibration: HeightCalibration) -> pd.DataFrame:
    out = with_height(images, calibration)
    out["sex"] = out["recorded_sex"].astype(str)
    out["age_years"] = out["recorded_age_years"].astype(float)
    return out


def _model(cfg: TrialConfig, out: Path, real_dir: Path, train: pd.DataFrame, stages: Stages):
    from vctcore.downstream import load_model, train_reference
    from vctcore.downstream.train import training_defaults

    with stages.stage("train_model"):
        if cfg.model.path is not None:
            model = load_model(cfg.model.path)
        else:
            model_dir = out / "model"
            fingerprint = digest({"ids": list(train["patient_id"]), "y": [round(v, 4) for v in train[cfg.target]],
                                  "epochs": cfg.model.epochs, "seed": cfg.model.seed, "cohort": str(real_dir),
                                  "defaults": training_defaults()})
            stamp = model_dir / ".trial_fingerprint"
            if not (stamp.exists() and stamp.read_text() == fingerprint):
                targets = pd.DataFrame({"id": train["patient_id"].to_numpy(), "y": train[cfg.target].to_numpy()})
                report = stages.callback()

                def progress(step: str, done: int, total: int, values: dict | None = None) -> None:
                    report(done, total, " ".join([step, *(f"{k}={v:.3g}" for k, v in (values or {}).items())]))

                kw: dict[str, Any] = {"seed": cfg.model.seed, "progress": progress}
                if cfg.model.epochs is not None:
                    kw["epochs"] = cfg.model.epochs
                if cfg.model.max_minutes is not None:
                    kw["max_minutes"] = cfg.model.max_minutes
                train_reference(real_dir, targets, target=cfg.target, out=model_dir, **kw)
                stamp.write_text(fingerprint)
            model = load_model(model_dir)
    if model.card.target != cfg.target:
        raise PaperTrialError(f"the model under test predicts {model.card.target}, the trial's target is {cfg.target}")
    return model


def _generated(cfg: TrialConfig, store: PatientStore, generator, real_dir: Path, tests: pd.DataFrame,
               stages: Stages) -> pd.DataFrame:
    """Image table of the reconstructed and synthetic patients of the test set."""
    rec_rows = recorded(tests).assign(id=tests["patient_id"].to_numpy(), source_id=tests["patient_id"].to_numpy())
    with stages.stage("reconstruct"):
        recon = store.reconstructed(generator, real_dir, rec_rows, progress=stages.callback())
    recon["sample_type"] = "reconstructed"
    g = cfg.generator
    requests = pd.concat([rec_rows.assign(replica=k) for k in range(g.oversample_or(2))], ignore_index=True)
    with stages.stage("generate"):
        syn = store.synthetic(generator, requests[["source_id", "replica", *g.conditioning]], seed=g.seed,
                              conditioning=g.conditioning, steps=g.steps, guidance=g.guidance,
                              progress=stages.callback())
    syn["sample_type"] = "synthetic"
    both = pd.concat([recon, syn[["source_id", "patient_id", "dir", "sample_type", "replica"]]], ignore_index=True)
    src = tests.set_index("patient_id")
    for c in CONDITIONING_ATTRIBUTES:
        both[f"recorded_{c}"] = src.loc[both["source_id"], f"recorded_{c}"].to_numpy()
    return both


def run_paper(cfg: TrialConfig, out: Path, store: PatientStore, stages: Stages) -> dict[str, Any]:
    """Run the paper design; returns ``summary`` (for trial.json), ``predictions`` and ``tables``."""
    from vctcore.generator import Generator

    st, target = cfg.statistics, cfg.target
    real_dir, real = real_images(cfg, store, stages)
    meas_cache = store.root / "measurements"
    with stages.stage("measure_real"):
        real = measure_table(real, cache_dir=meas_cache, segmentation=cfg.segmentation, workers=cfg.workers or 2,
                             progress=stages.callback(), executor=store.executor)
    calibration = HeightCalibration.fit(real["extent_cm"], real["recorded_height_cm"])
    real = _attributes(real, calibration)
    unmeasured = real[[target, cfg.split.x, cfg.split.y]].isna().any(axis=1)
    warnings = [f"{int(unmeasured.sum())} real patient(s) without a measured {target} or split attribute are left out"] \
        if unmeasured.any() else []
    real = real[~unmeasured].reset_index(drop=True)

    split = resolve_split(cfg.split, real.assign(id=real["patient_id"]))
    roles = assign_roles(real.assign(id=real["patient_id"]), split, cfg.sizes, seed=cfg.split.seed)
    real["role"], real["side"], real["score"] = roles["role"], roles["side"], roles["score"]
    model = _model(cfg, out, real_dir, real[real["role"] == "train"], stages)

    tests = real[real["role"].isin(POPULATION)].copy()
    tests["population"] = tests["role"].map(POPULATION)
    generator = Generator.from_pretrained(cfg.generator.checkpoint, device=store.driver_device(cfg.generator.device))
    gen = _generated(cfg, store, generator, real_dir, tests, stages)
    with stages.stage("measure_generated"):
        gen = measure_table(gen, cache_dir=meas_cache, segmentation=cfg.segmentation, workers=cfg.workers or 2,
                            progress=stages.callback(), executor=store.executor)
    gen = _attributes(gen, calibration)
    gen["population"] = tests.set_index("patient_id").loc[gen["source_id"], "population"].to_numpy()
    gen["side"] = np.where(split.in_id(gen), "ID", np.where(split.in_ood(gen), "OOD", ""))

    images = pd.concat([tests, gen], ignore_index=True)
    with stages.stage("predict"):
        images["y_pred"] = predict_table(model, images, progress=stages.callback())
    images["task"] = target
    images["y_true"] = images[target]
    images["abs_error"] = (images["y_pred"] - images["y_true"]).abs()
    unmeasured = images["y_true"].isna()
    if unmeasured.any():
        warnings.append(f"{int(unmeasured.sum())} image(s) without a measured {target} are left out of the statistics: "
                        + ", ".join(images.loc[unmeasured, "patient_id"].head(5)))
    images = images[~unmeasured].reset_index(drop=True)
    kept = (images["sample_type"] == "synthetic") & (images["side"] == images["population"])
    preds = pd.concat([images, images[kept].assign(sample_type="synthetic_rebiased")], ignore_index=True)

    with stages.stage("statistics"):
        weighted, ood_clf = _weighted_baseline(real, preds, st)
        tables = _tables(preds, cfg, weighted)
    comp = composition(real, target, cfg.split.x)
    tables["split"] = comp
    spread = _weight_spread(weighted["weights"])
    weighting = {"p_id": weighted["p_id"], "p_ood": weighted["p_ood"],
                 "classifier_accuracy_train": ood_clf.accuracy_train, "classifier_accuracy_oob": ood_clf.accuracy_oob,
                 **spread}
    summary = _summary(cfg, tables, real, split, calibration, real_dir, warnings + _weighting_warnings(spread),
                       weighting=weighting)
    tables.pop("notes", None)
    roles_out = real[["patient_id", "role", "side", "score", "sex", "age_years", "height_cm", "weight_kg", "bfp_pct",
                      "mmp_pct", "bone_density_hu", "body_volume_l"]]
    tables["roles"] = roles_out
    preds = preds.rename(columns={"dir": "image_dir"})
    return {"summary": summary, "predictions": preds.drop(columns=[c for c in preds.columns if c.startswith("recorded_")]
                                                         + ["role", "score"], errors="ignore"),
            "tables": tables, "model": model, "generator": generator}


def _weighted_baseline(real: pd.DataFrame, preds: pd.DataFrame, st) -> tuple[dict, Any]:
    """The paper's importance-weighted MAE of the real ID test errors (eq. 4-6): weights from a forest
    that tells ID from OOD test patients by their recorded sex, age, height and weight; priors are the
    shares of the measured real cohort on each side of the boundary."""
    ids, oods = recorded(real[real["role"] == "id_test"]), recorded(real[real["role"] == "ood_test"])
    clf = fit_ood_classifier(ids, oods, columns=CONDITIONING_ATTRIBUTES, n_trees=st.n_trees, min_leaf=st.min_leaf,
                             seed=analysis.stat_seed(st.seed, "ood_classifier"))
    p_id, p_ood = float((real["side"] == "ID").mean()), float((real["side"] == "OOD").mean())
    id_real = preds[(preds["sample_type"] == "real") & (preds["population"] == "ID")]
    q = recorded(real.set_index("patient_id").loc[id_real["patient_id"]])
    w = importance_weights(clf.p_ood(q), p_id, p_ood, clip=1.0 / (2 * st.n_trees))
    return {"abs_error": id_real["abs_error"].to_numpy(float), "weights": w, "p_id": p_id, "p_ood": p_ood}, clf


#: below this many effective patients (Kish) the weighted baseline gets a warning
MIN_EFFECTIVE_N = 10


def _weight_spread(weights: np.ndarray) -> dict[str, float]:
    """Kish's effective sample size of the weights and the largest weight's share of their sum."""
    w = np.asarray(weights, float)
    return {"effective_n": effective_sample_size(w), "n": int(w.size), "max_weight_share": float(w.max() / w.sum())}


def _weighting_warnings(s: dict[str, float]) -> list[str]:
    """A warning when the importance-weighted MAE rests on few patients (its CI is then unreliable);
    ``s`` is :func:`_weight_spread`'s record."""
    if s["effective_n"] >= MIN_EFFECTIVE_N:
        return []
    return [f"the importance-weighted baseline rests on {s['effective_n']:.1f} effective patients of {s['n']} "
            f"(the largest weight is {100 * s['max_weight_share']:.0f} % of the total): the few ID test patients the "
            "OOD classifier takes for OOD ones carry the estimate, so the weighted MAE and its CI are unstable"]


def _tables(preds: pd.DataFrame, cfg: TrialConfig, weighted: dict) -> dict[str, Any]:
    st, task = cfg.statistics, cfg.target
    tables: dict[str, Any] = {"table1": analysis.table1(preds, task, st, weighted=weighted)}
    bias_cols = list(dict.fromkeys([cfg.split.x, cfg.split.y, task]))
    tables["table2"] = analysis.table2(preds, task, bias_cols)
    tests = preds[preds["sample_type"].isin(analysis.ATTRIBUTION_TYPES)]
    tables.update(analysis.attribution_tables(tests, task, st))
    tables["subgroups"] = analysis.subgroups(preds, task, st, ("real", "synthetic"))
    tables["twin_drift"] = attribute_drift(preds)
    tables["faithful_twins"] = faithful_twins(preds, n_boot=st.n_boot, seed=analysis.stat_seed(st.seed, "faithful_twins"),
                                              level=st.level)
    return tables


def _twin_warnings(twins: pd.DataFrame, task: str) -> list[str]:
    """A warning per population where faithful synthetic twins' errors differ from their sources'."""
    out = []
    for r in twins[(twins["sample_type"] == "synthetic") & twins["reads_differently"].astype(bool)].itertuples():
        out.append(f"{r.population}: the model reads synthetic images differently from real ones of the same "
                   f"composition (among {r.n_faithful} synthetic twins within {r.tolerance:g} points of their "
                   f"source's BFP and MMP, the signed {task} error differs from the sources' by {r.gap:+.2f} "
                   f"[{r.gap_low:.2f}, {r.gap_high:.2f}]): the synthetic verdicts carry the generator's image "
                   "differences, not only the population's")
    return out


def _summary(cfg: TrialConfig, tables: dict, real: pd.DataFrame, split, calibration: HeightCalibration,
             real_dir: Path, warnings: list[str], *, weighting: dict[str, float]) -> dict[str, Any]:
    t1 = tables["table1"]
    by = {(r.population, r.sample_type): r for r in t1.itertuples()}
    populations = []
    for pop in ("ID", "OOD"):
        real_v = by[(pop, "real")].verdict
        entry = {"population": pop, "real": real_v}
        for stype in ("reconstructed", "synthetic", "synthetic_rebiased"):
            if (pop, stype) in by and by[(pop, stype)].n:
                entry[stype] = by[(pop, stype)].verdict
                entry[f"{stype}_matches_real"] = by[(pop, stype)].verdict == real_v
        populations.append(entry)
    corr = tables["importance_correlation"]
    top = tables["table4"]
    drivers = {}
    for stype, g in (top.groupby("sample_type") if not top.empty else []):
        drivers[stype] = list(g.sort_values("permutation_mean", ascending=False)["feature"].head(3))
    warnings = warnings + list(tables.get("notes", [])) + _twin_warnings(tables["faithful_twins"], cfg.target)
    return {
        "task": cfg.target, "split": split.to_dict(), "height_calibration": calibration.to_dict(),
        "populations": populations, "verdicts": analysis.verdict_records(t1),
        "importance_weighting": weighting,
        "importance_correlation": corr.to_dict("records"), "error_drivers": drivers,
        "faithful_twins": tables["faithful_twins"].to_dict("records"),
        "real_cohort": {"path": str(real_dir), "n": int(len(real)),
                        "attributes_sha256": _sha(real_dir / "attributes.csv")},
        "warnings": warnings,
    }


def _sha(path: Path) -> str | None:
    from vctcore.models.checkpoint import sha256_file

    return sha256_file(path) if path.exists() else None
