"""``evaluate_generator``: the whole fidelity suite, resumable, into one output directory.

    OUT/synthetic/        synthetic cohort matched to the first n real rows (vctcore.synthetic_cohort)
    OUT/cache/            per-patient records and slice features (reused by a rerun)
    OUT/fidelity.json     every figure, targets, pass flags, paper values, provenance
    OUT/patients.csv      one row per matched pair
    OUT/plots/            Plotly JSON + PNG of each figure

Synthetic patient i is generated from the attributes of real patient i (one-to-one), with the seed
``patient_seed(seed, i)``. A rerun with the same checkpoint and seed reuses the synthetic cohort and
every cached record; a different checkpoint, seed, segmenter or sex classifier starts the cache afresh.
"""
from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from vctcore.attributes import ATTRIBUTE_NAMES
from vctcore.checkers.segmenter import Segmenter, load_segmenter, load_unet
from vctcore.checkers.sex_classifier import DEFAULT_SEX_CLASSIFIER, SexClassifier, load_sex_classifier
from vctcore.cohort import _atomic_text, read_attributes, read_provenance
from vctcore.devices import describe_device
from vctcore.fidelity.metrics import compute_metrics, pass_flags
from vctcore.fidelity.patient import evaluate_real, evaluate_synthetic, load_cached, save_cached
from vctcore.jsonsafe import json_safe
from vctcore.progress import Progress, staged
from vctcore.provenance import provenance

if TYPE_CHECKING:  # imported when the suite runs: torch and the networks
    from vctcore.generator import Generator

SCHEMA = "vct-fidelity/1"
REPORT = "fidelity.json"


class EvaluationError(ValueError):
    """The evaluation cannot run as asked (mismatched synthetic cohort, empty real cohort...)."""


def _check_synthetic(out: Path, gen, seed: int, steps: int | None, guidance: float | None,
                     sampler: str | None = None, composition: bool = True) -> None:
    """EvaluationError when ``out`` holds a synthetic cohort made differently (resuming would mix them)."""
    prov = out / "cohort.json"
    if not prov.exists():
        return
    old = json.loads(prov.read_text())
    want = {"checkpoint_sha256": gen.checkpoint_sha256, "seed": seed,
            "steps": steps or gen.cfg.diffusion.sample_steps,
            "guidance_scale": gen.cfg.diffusion.guidance_scale if guidance is None else guidance,
            "sampler": sampler or gen.cfg.diffusion.sampler, "composition": composition and gen.guide is not None}
    # cohorts written before the sampler was recorded were sampled with DDIM, before steering unsteered
    missing = {"sampler": "ddim", "composition": False}
    differ = [k for k, v in want.items() if old.get(k, missing.get(k)) != v]
    if differ:
        raise EvaluationError(f"{out} holds a synthetic cohort of another checkpoint, seed, steps, guidance, sampler or "
                              "composition steering "
                              f"({', '.join(differ)} differ); choose a new --out or delete it")


def _cache_dir(out: Path, key: dict[str, Any]) -> Path:
    cache = out / "cache"
    meta = cache / "meta.json"
    if cache.exists() and (not meta.exists() or json.loads(meta.read_text()) != key):
        shutil.rmtree(cache)
    cache.mkdir(parents=True, exist_ok=True)
    _atomic_text(meta, json.dumps(key, sort_keys=True))
    return cache


def _real_cohort_provenance(real: Path, table: pd.DataFrame) -> dict[str, Any]:
    """Which real patients the report compares against: path, ids, the attribute table's sha256, and
    how the cohort was made (maker, seed, population, grid) where its ``cohort.json`` records it."""
    from vctcore.models.checkpoint import sha256_file

    out: dict[str, Any] = {"path": str(real.resolve()), "ids": [str(i) for i in table["id"]],
                           "attributes_sha256": sha256_file(real / "attributes.csv")}
    meta = read_provenance(real)
    if "error" in meta:
        out["made_by"] = {"error": meta["error"]}
    elif meta:
        population = meta.get("population")
        out["made_by"] = {"maker": meta.get("maker"), "seed": meta.get("seed"), "n": meta.get("n"),
                          "population": population.get("name") if isinstance(population, dict) else population,
                          "grid": meta.get("grid")}
    return out


def evaluate_generator(checkpoint: str | Path | None, real: str | Path, out: str | Path, *, n: int = 100,
                       seed: int = 0, device: str = "cpu", steps: int | None = None,
                       guidance_scale: float | None = None, sampler: str | None = None, segmenter: str = "auto",
                       segmenter_path: str | Path | None = None, recon_n: int | None = 40, slices_per_plane: int = 12,
                       plots: bool = True, sex_classifier: str | Path | None = DEFAULT_SEX_CLASSIFIER,
                       progress: Progress | None = None, composition: bool = True) -> dict[str, Any]:
    """Run the fidelity suite; returns the report written to ``out/fidelity.json``.

    ``recon_n``: reconstruct (encode + decode) the first ``recon_n`` real patients (None: all, 0: none);
    a reconstruction costs about as much as evaluating two images, so the default keeps n=100 within
    the 30-minute budget on 2 CPU cores. ``slices_per_plane``: slices per plane and image for the
    realism distance. ``sex_classifier``: directory of the image sex classifier that decides the sex check
    (None: the segmentation rule of :mod:`vctcore.fidelity.sex` decides). ``composition``: a generator with a
    composition guide steers each synthetic patient toward its real row's BFP, MMP and weight (False: the bins
    alone, as the paper's four-attribute sampling).

    ``progress(done, total, message)`` (:data:`vctcore.progress.Progress`) is called per patient in the stages
    "generate", "real", "synthetic" and once per figure in "plots"; each stage counts from 0 and its messages
    start with "<stage>: " (:func:`vctcore.progress.staged`).
    """
    from vctcore.generator import Generator
    from vctcore.synthetic_cohort import generate_cohort

    t0 = time.perf_counter()
    real, out = Path(real), Path(out)
    table = read_attributes(real)
    if n < 1 or table.empty:
        raise EvaluationError(f"nothing to evaluate: n={n}, {len(table)} real patients in {real}")
    table = table.iloc[:n].reset_index(drop=True)
    n = len(table)
    gen = Generator.from_pretrained(checkpoint, device=device)
    seg = load_segmenter(segmenter, segmenter_path, device=str(gen.device))
    feats_net = seg if seg.net is not None else _try_unet(segmenter_path, str(gen.device))
    sex_clf = None if sex_classifier is None else load_sex_classifier(sex_classifier)
    note = (lambda stage: staged(progress, stage)) if progress else (lambda stage: None)

    syn_dir = out / "synthetic"
    _check_synthetic(syn_dir, gen, seed, steps, guidance_scale, sampler, composition)
    request = table[[c for c in table.columns if c in ATTRIBUTE_NAMES]].copy()
    request["real_id"] = table["id"].astype(str)
    progress and progress(0, n, "generate")
    syn_table = generate_cohort(gen, request, seed=seed, out=syn_dir, steps=steps, guidance_scale=guidance_scale,
                                sampler=sampler,
                                provenance={"matched_to": str(real.resolve())}, progress=note("generate"),
                                composition=composition)

    key = {"checkpoint_sha256": gen.checkpoint_sha256, "seed": seed,
           "segmenter": seg.digests if seg.kind == "unet" else seg.kind,
           "features": None if feats_net is None else feats_net.sha256,
           "sex_classifier": None if sex_clf is None else sex_clf.sha256, "recon_n": recon_n, "slices": slices_per_plane,
           "steps": steps, "guidance_scale": guidance_scale, **({"sampler": sampler} if sampler else {}),
           "real": str(real.resolve())}
    cache = _cache_dir(out, key)

    def real_one(i: int, pid: str, requested: dict[str, Any], row: pd.Series) -> tuple:
        do_recon = recon_n is None or i < recon_n
        return evaluate_real(pid, real / "patients" / pid, requested, seg, feats_net,
                             gen if do_recon else None, slices_per_plane, sex_clf)

    def synthetic_one(i: int, sid: str, requested: dict[str, Any], row: pd.Series) -> tuple:
        rec, f = evaluate_synthetic(sid, syn_dir / "patients" / sid, requested, seg, feats_net, slices_per_plane,
                                    sex_clf)
        rec["real_id"] = str(row["real_id"])
        return rec, f, None

    real_recs, real_feats, recon_feats = _evaluate_rows(table, cache / "real", "real", real_one, progress)
    syn_recs, syn_feats, _ = _evaluate_rows(syn_table, cache / "synthetic", "synthetic", synthetic_one, progress)

    metrics = compute_metrics(real_recs, syn_recs, real_feats, syn_feats, recon_feats)
    report = _report(metrics, gen, seg, sex_clf, real, table, syn_dir, seed, real_recs, syn_recs,
                     seconds=time.perf_counter() - t0)
    _patients_table(real_recs, syn_recs).to_csv(out / "patients.csv", index=False)
    if plots:
        from vctcore.fidelity.plots import write_plots

        report["plots"] = write_plots(report, real_recs, syn_recs, out / "plots", progress=note("plots"))
    _atomic_text(out / REPORT, json.dumps(report, indent=2))
    return report


def _report(metrics: dict[str, Any], gen: Generator, seg: Segmenter, sex_clf: SexClassifier | None, real: Path,
            table: pd.DataFrame, syn_dir: Path, seed: int, real_recs: list[dict], syn_recs: list[dict], *,
            seconds: float) -> dict[str, Any]:
    """The ``fidelity.json`` report (JSON-safe): provenance, the generator, the generation settings read
    back from the synthetic cohort, the real cohort, the checkers used, ``metrics`` with their pass flags
    and the timing (``seconds`` for the whole run; mean seconds per patient evaluated)."""
    from vctcore.generator import patient_seed

    flags = pass_flags(metrics)
    gen_prov = json.loads((syn_dir / "cohort.json").read_text())
    return json_safe({
        "schema": SCHEMA, **provenance(),
        "n": len(table), "seed": seed, "device": str(gen.device), "device_name": describe_device(gen.device),
        "checkpoint": {"path": str(gen.path), "sha256": gen.checkpoint_sha256,
                       "training": gen.manifest.get("training", {}).get("n_patients")},
        "generation": {"steps": gen_prov.get("steps"), "guidance_scale": gen_prov.get("guidance_scale"),
                       "sampler": gen_prov.get("sampler", "ddim"), "guidance_interval": gen_prov.get("guidance_interval"),
                       "composition": gen_prov.get("composition", False),
                       "support_warnings": gen_prov.get("support_warnings", []),
                       "synthetic_cohort": str(syn_dir),
                       "patient_seeds": [patient_seed(seed, i) for i in range(len(table))]},
        "real_cohort": _real_cohort_provenance(real, table),
        "segmenter": {"kind": seg.kind, "path": None if seg.path is None else str(seg.path),
                      "sha256": seg.manifest.get("sha256"), "training": seg.manifest.get("training"),
                      "refiner": seg.manifest.get("refiner"), "holdout_dice": seg.manifest.get("holdout_dice")},
        "sex_classifier": None if sex_clf is None else {
            "path": str(sex_clf.path), "sha256": sex_clf.sha256, "training": sex_clf.manifest.get("training"),
            "validation": sex_clf.manifest.get("validation")},
        "metrics": metrics, "passed": flags, "all_passed": all(flags.values()),
        "timing": {"seconds": seconds,
                   "real_eval_s_per_patient": _mean_s(real_recs), "synthetic_eval_s_per_patient": _mean_s(syn_recs)},
    })


def _evaluate_rows(rows: pd.DataFrame, cache: Path, stage: str, evaluate: Callable[..., tuple],
                   progress: Progress | None) -> tuple[list, list, list]:
    """(records, features, recon features) of every row (column ``id``): from ``cache`` when there, else
    ``evaluate(i, id, requested attributes, row)`` (then cached); ``progress`` per row, under ``stage``."""
    got_all = []
    progress = staged(progress, stage) if progress else None
    progress and progress(0, len(rows), "")
    for i, row in rows.iterrows():
        pid = str(row["id"])
        got = load_cached(cache, pid)
        if got is None:
            requested = {k: json_safe(v) for k, v in row.items() if k in ATTRIBUTE_NAMES}
            got = evaluate(i, pid, requested, row)
            save_cached(cache, pid, *got)
        got_all.append(got)
        progress and progress(i + 1, len(rows), pid)
    recs, feats, recon = zip(*got_all) if got_all else ((), (), ())
    return list(recs), list(feats), list(recon)


def _try_unet(path: str | Path | None, device: str):
    try:
        return load_unet(path, device) if path else load_unet(device=device)
    except (ValueError, OSError):
        return None


def _mean_s(records: list[dict]) -> float:
    vals = [r.get("seconds", math.nan) for r in records]
    return float(sum(vals) / len(vals)) if vals else math.nan


def _patients_table(real: list[dict], syn: list[dict]) -> pd.DataFrame:
    rows = []
    for r, s in zip(real, syn):
        row = {"real_id": r["id"], "synthetic_id": s["id"], **{f"requested_{k}": v for k, v in r["requested"].items()}}
        for tag, rec in (("real", r), ("synthetic", s), ("recon", r.get("recon", {}))):
            for k, v in rec.get("measures", {}).items():
                if k != "notes":
                    row[f"{tag}_{k}"] = v
            if "sex" in rec:
                row[f"{tag}_sex_called"] = rec["sex"]["sex"]
            if "sex_image" in rec:
                row[f"{tag}_sex_image"] = rec["sex_image"]["sex"]
                row[f"{tag}_p_male"] = rec["sex_image"]["p_male"]
        row["synthetic_sex_joint"] = s["sex_joint"]["sex"]
        vals = [v for v in s["joint_dice"].values() if v is not None and math.isfinite(v)]
        row["joint_dice_mean"] = sum(vals) / len(vals) if vals else math.nan
        row["recon_psnr_db"], row["recon_ssim"] = r.get("recon", {}).get("psnr_db"), r.get("recon", {}).get("ssim")
        rows.append(row)
    return pd.DataFrame(rows)


def load_report(path: str | Path) -> dict[str, Any]:
    """A saved ``fidelity.json`` (``path``: the file or its directory); EvaluationError when unreadable."""
    p = Path(path)
    p = p / REPORT if p.is_dir() else p
    try:
        report = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise EvaluationError(f"{p}: cannot read the evaluation report ({err})") from None
    if report.get("schema") != SCHEMA:
        raise EvaluationError(f"{p}: not a vct fidelity report (schema {report.get('schema')!r})")
    return report
