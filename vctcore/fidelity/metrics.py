"""Cohort figures from per-patient records: every metric with its target (issue 6), the paper's value
and a pass flag.

``pass`` is True/False for metrics with a target (a metric that could not be computed fails) and
None for those reported without one (reconstruction, realism).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vctcore.attributes import CONDITIONING_ATTRIBUTES
from vctcore.fidelity.anatomy import anatomy_correlations, nanmean
from vctcore.fidelity.ceiling import paired_ceilings
from vctcore.fidelity.conditioning import conditioning_checks, fit_line, mae
from vctcore.fidelity.realism import plane_distances
from vctcore.fidelity.recon import PAPER as RECON_PAPER
from vctcore.fidelity.sex import sex_accuracy
from vctcore.overlap import cohort_dice

#: metric -> (comparison, target); ">=" means higher is better
TARGETS: dict[str, tuple[str, float]] = {
    "joint_seg_dice": (">=", 0.80), "organ_volume_corr": (">=", 0.95), "organ_centroid_corr": (">=", 0.97),
    "bone_density_by_age_z": ("<=", 0.5), "weight_z": ("<=", 0.5), "height_z": ("<=", 0.5),
    "sex_correct": (">=", 0.99), "bfp_mae": ("<=", 2.0), "mmp_mae": ("<=", 2.0),
}
PAPER: dict[str, float] = {
    "joint_seg_dice": 0.727, "organ_volume_corr": 0.911, "organ_centroid_corr": 0.956,
    "bone_density_by_age_z": 0.608, "weight_z": 0.630, "height_z": 0.656, "sex_correct": 0.98,
    "fid": 5.97, "recon_psnr_db": RECON_PAPER["psnr_db"], "recon_ssim": RECON_PAPER["ssim"],
}
Z_METRICS = {"bone_density_by_age": "bone_density_by_age_z", "weight_by_weight": "weight_z",
             "height_by_height": "height_z"}


def judged(name: str, value: float, **extra: Any) -> dict[str, Any]:
    """{value, target, comparison, pass, paper, ...} for a metric of ``TARGETS``."""
    op, target = TARGETS[name]
    ok = math.isfinite(value) and (value >= target if op == ">=" else value <= target)
    return {"value": value, "target": target, "comparison": op, "pass": bool(ok), "paper": PAPER.get(name), **extra}


def _field(records: Sequence[dict], key: str, sub: str = "measures") -> list[float]:
    """``record[sub][key]`` per record (NaN where missing, e.g. patients without a reconstruction)."""
    return [float(r[sub][key]) if r.get(sub) and r[sub].get(key) is not None else math.nan for r in records]


def _halves(n: int) -> tuple[list[int], list[int]]:
    """Two disjoint halves of range(n): first ceil(n/2) and the rest."""
    k = (n + 1) // 2
    return list(range(k)), list(range(k, n))


def _sex_correct(real: Sequence[dict], syn: Sequence[dict]) -> dict[str, Any]:
    """Share of synthetic images whose sex is the requested one. The image classifier decides when every
    record has its call (``sex_image``); else the segmentation rule (``sex``) does. ``real_value`` is the
    same caller on the real images (its floor)."""
    requested = [str(s["requested"].get("sex")) for s in syn]
    requested_real = [str(r["requested"].get("sex")) for r in real]
    rule = {"value": sex_accuracy([s["sex"]["sex"] for s in syn], requested),
            "real_value": sex_accuracy([r["sex"]["sex"] for r in real], requested_real)}
    joint = sex_accuracy([s["sex_joint"]["sex"] for s in syn], requested)
    if all("sex_image" in rec for rec in [*real, *syn]):
        return judged("sex_correct", sex_accuracy([s["sex_image"]["sex"] for s in syn], requested), n=len(syn),
                      real_value=sex_accuracy([r["sex_image"]["sex"] for r in real], requested_real),
                      caller="image sex classifier", segmentation_rule_value=rule["value"],
                      segmentation_rule_real_value=rule["real_value"], joint_seg_value=joint,
                      note="sex called by the image sex classifier (trained on real CT only) on the synthetic image; "
                           "real_value: the same classifier on the real images (its floor); segmentation_rule_*: "
                           "the prostate/pelvis rule on the independent segmentation; joint_seg_value: that rule "
                           "on the generator's own segmentation")
    return judged("sex_correct", rule["value"], n=len(syn), real_value=rule["real_value"],
                  caller="segmentation rule", joint_seg_value=joint,
                  note="sex called from the independent segmentation of the synthetic image; real_value: the same "
                       "call on the real images (checks the caller), joint_seg_value: from the generator's own "
                       "segmentation")


def compute_metrics(real: Sequence[dict], syn: Sequence[dict], real_feats: Sequence[dict | None],
                    syn_feats: Sequence[dict | None], recon_feats: Sequence[dict | None]) -> dict[str, Any]:
    """All cohort metrics from matched record lists (``real[i]`` <-> ``syn[i]``) and slice features."""
    out: dict[str, Any] = {}
    dice = cohort_dice([s["joint_dice"] for s in syn])
    out["joint_seg_dice"] = judged("joint_seg_dice", dice["mean"], per_class=dice["per_class"],
                                   sd_per_class=dice["sd_per_class"], n_per_class=dice["n_per_class"])
    seg_real = cohort_dice([r["segmenter_dice"] for r in real])
    out["segmenter_dice_on_real"] = {"value": seg_real["mean"], "per_class": seg_real["per_class"], "pass": None,
                                     "note": "independent segmentation vs the real cohort's own labels"}
    anat = anatomy_correlations([s["organs"] for s in syn], [r["organs"] for r in real])
    ceil = paired_ceilings([r["organs"] for r in real], [r["requested"] for r in real], CONDITIONING_ATTRIBUTES)
    ceiling_note = ("paired_ceiling: cross-validated R^2 of the real cohort's values on the conditioning "
                    f"attributes ({', '.join(CONDITIONING_ATTRIBUTES)}), the paired r expected of a generator "
                    "that draws anatomy from the true conditional distribution (vctcore.fidelity.ceiling)")
    out["organ_volume_corr"] = judged("organ_volume_corr", anat["volume"]["mean"], **{
        k: anat["volume"][k] for k in ("per_class", "qq_mean", "qq_per_class")},
        paired_ceiling=ceil["volume"], paired_ceiling_per_class=ceil["volume_per_class"], note=ceiling_note)
    out["organ_centroid_corr"] = judged("organ_centroid_corr", anat["centroid"]["mean"], **{
        k: anat["centroid"][k] for k in ("per_axis", "per_class", "qq_mean", "qq_per_axis")},
        paired_ceiling=ceil["centroid"], paired_ceiling_per_axis=ceil["centroid_per_axis"], note=ceiling_note)
    out.update(_conditioning(real, syn))
    out["sex_correct"] = _sex_correct(real, syn)
    for attr in ("bfp_pct", "mmp_pct"):
        out[f"{attr[:3]}_mae"] = composition_mae(attr, real, syn)
    with_recon = [r["recon"] for r in real if "psnr_db" in r.get("recon", {})]
    out["reconstruction"] = {
        "psnr_db": nanmean([r["psnr_db"] for r in with_recon]), "ssim": nanmean([r["ssim"] for r in with_recon]),
        "seg_dice": cohort_dice([r["seg_dice"] for r in with_recon])["mean"] if with_recon else math.nan,
        "n": len(with_recon), "hu_range": [-1000, 1000], "pass": None,
        "note": "the first n real patients encoded and decoded by the generator's autoencoders",
        "paper": {"psnr_db": PAPER["recon_psnr_db"], "ssim": PAPER["recon_ssim"]},
        "skipped": next((r["recon"]["skipped"] for r in real if "skipped" in r.get("recon", {})), None)}
    out["realism"] = _realism(real_feats, syn_feats, recon_feats)
    return out


def composition_mae(attr: str, real: Sequence[dict], syn: Sequence[dict]) -> dict[str, Any]:
    """MAE (percentage points) of ``attr`` (bfp_pct or mmp_pct) measured on the synthetic images against
    the recorded value of their matched real patients, after the linear calibration measured -> recorded
    fit on the real images (see :mod:`vctcore.fidelity.conditioning`); the uncalibrated figures too."""
    asked = [float(s["requested"].get(attr, math.nan)) for s in syn]
    real_asked = [float(r["requested"].get(attr, math.nan)) for r in real]
    syn_m, real_m = _field(syn, attr), _field(real, attr)
    slope, intercept = fit_line(real_m, real_asked)

    def cal(values: Sequence[float]) -> list[float]:
        return [slope * v + intercept for v in values]

    name = f"{attr[:3]}_mae"
    return judged(name, mae(cal(syn_m), asked), unit="percentage points", n_measured=int(np.isfinite(syn_m).sum()),
                  real_floor=mae(cal(real_m), real_asked), paired_vs_real=mae(syn_m, real_m),
                  uncalibrated_value=mae(syn_m, asked), uncalibrated_real_floor=mae(real_m, real_asked),
                  calibration={"slope": slope, "intercept": intercept},
                  note="measured on the synthetic image vs the recorded value of its matched real patient, both "
                       "measurements mapped by recorded = slope * measured + intercept fit on the real images "
                       "(the merged-map measurement is biased); real_floor: the same on the real images "
                       "(in-sample); paired_vs_real: uncalibrated synthetic vs real measurement")


def _conditioning(real: Sequence[dict], syn: Sequence[dict]) -> dict[str, Any]:
    requested = {k: [r["requested"].get(k) for r in real] for k in ("age_years", "weight_kg", "height_cm")}
    slope, intercept = fit_line(_field(real, "extent_cm"), [float(v) for v in requested["height_cm"]])
    recon = [r["recon"] for r in real]
    has_recon = any("measures" in r for r in recon)

    def fields(recs: Sequence[dict]) -> dict[str, list[float]]:
        return {"bone_density_hu": _field(recs, "bone_density_hu"), "weight_kg": _field(recs, "weight_kg"),
                "height_cm": [slope * e + intercept for e in _field(recs, "extent_cm")]}

    checks = conditioning_checks(requested, fields(real), fields(syn), fields(recon) if has_recon else None)
    out = {}
    for check, metric in Z_METRICS.items():
        c = checks[check]
        out[metric] = judged(metric, c.pop("mean_abs_z"), **c)
    out["height_z"]["calibration"] = {"slope": slope, "intercept": intercept,
                                      "note": "height_cm = slope * body extent (cm) + intercept, fit on the real "
                                              "cohort's recorded heights; Z-scores do not depend on it"}
    return out


def _realism(real: Sequence[dict | None], syn: Sequence[dict | None], recon: Sequence[dict | None]) -> dict[str, Any]:
    if any(f is None for f in real) or any(f is None for f in syn) or len(real) < 2:
        return {"skipped": "needs slice features of at least two real patients (U-Net segmenter)", "pass": None}
    a, b = _halves(len(real))
    floor = plane_distances([real[i] for i in a], [real[i] for i in b])
    synthetic = plane_distances([syn[i] for i in a], [real[i] for i in b])
    res = {"synthetic": synthetic, "floor_real_vs_real": floor,
           "ratio_to_floor": synthetic["mean"] / floor["mean"] if floor["mean"] > 0 else math.nan,
           "halves": {"a": len(a), "b": len(b)}, "pass": None, "paper_fid": PAPER["fid"],
           "feature_extractor": "independent segmenter's U-Net encoder applied to single slices (global average "
                                "of every encoder level); not an Inception FID",
           "design": "synthetic patients matched to real half A vs real half B; floor: real half A vs real half B"}
    recon_a = [recon[i] for i in a if recon[i] is not None]
    if len(recon_a) >= 2:
        res["reconstructed"] = plane_distances(recon_a, [real[i] for i in b])
        res["reconstructed_n"] = len(recon_a)
    return res


def pass_flags(metrics: dict[str, Any]) -> dict[str, bool]:
    """Metric name -> pass, for the metrics that have a target."""
    return {k: bool(v["pass"]) for k, v in metrics.items() if isinstance(v, dict) and v.get("pass") is not None}
