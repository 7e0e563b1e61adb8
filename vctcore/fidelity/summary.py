"""Tables of a saved fidelity report for display (the app's fidelity page, reports) and its headline
figures as model-card metrics (:func:`fidelity_card_metrics`, for ``vctcore.train.model_card``): no new numbers.

Saved evaluations are found under ``<workspace>/evaluations/<name>/fidelity.json`` (and any
``fidelity.json`` up to three folders below the workspace), plus the one shipped with the default
generator in ``checkpoints/default/fidelity/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from vctcore.fidelity.suite import REPORT

LABELS = {
    "joint_seg_dice": "Joint-segmentation Dice (synthetic)",
    "organ_volume_corr": "Organ volume correlation",
    "organ_centroid_corr": "Organ centroid correlation",
    "bone_density_by_age_z": "Bone density by age bin, mean |Z|",
    "weight_z": "Weight by weight bin, mean |Z|",
    "height_z": "Height by height bin, mean |Z|",
    "sex_correct": "Sex correct",
    "bfp_mae": "Body fat % MAE (points)",
    "mmp_mae": "Muscle % MAE (points)",
}


def find_reports(root: str | Path) -> list[Path]:
    """Directories holding a ``fidelity.json`` under ``root`` (at most three levels down), newest first."""
    root = Path(root)
    found = {p.parent for depth in range(1, 4) for p in root.glob("/".join(["*"] * depth) + f"/{REPORT}")}
    return sorted(found, key=lambda d: (d / REPORT).stat().st_mtime, reverse=True)


def shipped_reports() -> list[Path]:
    """The evaluations shipped with the default generator (``fidelity/`` of ``$VCT_GENERATOR``, else of the
    shipped ``checkpoints/default``, and ``fidelity/bins_only/``: the same generator sampled without
    composition steering), those that exist."""
    from vctcore.assets import default_generator

    root = default_generator()
    return [d for d in (root / "fidelity", root / "fidelity" / "bins_only") if (d / REPORT).exists()]


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def summary_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per targeted metric: metric, value, target (e.g. ">= 0.80"), pass, paper."""
    rows = []
    for key, label in LABELS.items():
        m = report.get("metrics", {}).get(key)
        if not m:
            continue
        rows.append({"metric": label, "value": _num(m.get("value")),
                     "target": f"{m.get('comparison', '')} {m.get('target', '')}".strip(),
                     "pass": "pass" if m.get("pass") else "FAIL", "paper": _num(m.get("paper"))})
    return rows


def compare_rows(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per targeted metric in both reports: metric, before, after, change (after - before) and
    better ("yes"/"no"/"same" by the target's direction: ">=" higher is better, "<=" lower)."""
    rows = []
    for key, label in LABELS.items():
        a, b = before.get("metrics", {}).get(key) or {}, after.get("metrics", {}).get(key) or {}
        va, vb = _num(a.get("value")), _num(b.get("value"))
        if va is None or vb is None:
            continue
        sign = -1.0 if (b.get("comparison") or a.get("comparison")) == "<=" else 1.0
        gain = sign * (vb - va)
        rows.append({"metric": label, "before": va, "after": vb, "change": vb - va,
                     "better": "same" if abs(gain) < 1e-9 else ("yes" if gain > 0 else "no")})
    return rows


def context_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Figures reported without a target: segmenter quality, reconstruction, realism, floors."""
    m = report.get("metrics", {})
    rec, real = m.get("reconstruction", {}), m.get("realism", {})
    rows = [
        ("Independent segmenter Dice on real images", m.get("segmenter_dice_on_real", {}).get("value"), None),
        ("Reconstruction PSNR (dB, HU -1000..1000)", rec.get("psnr_db"), (rec.get("paper") or {}).get("psnr_db")),
        ("Reconstruction SSIM", rec.get("ssim"), (rec.get("paper") or {}).get("ssim")),
        ("Realism distance, synthetic vs real", (real.get("synthetic") or {}).get("mean"), None),
        ("Realism distance floor, real vs real", (real.get("floor_real_vs_real") or {}).get("mean"), None),
        ("Realism distance, reconstructed vs real", (real.get("reconstructed") or {}).get("mean"), None),
        ("Sex correct on real images (caller check)", m.get("sex_correct", {}).get("real_value"), None),
        ("Paired organ volume r ceiling (attributes' R^2 on real)",
         m.get("organ_volume_corr", {}).get("paired_ceiling"), None),
        ("Paired organ centroid r ceiling (attributes' R^2 on real)",
         m.get("organ_centroid_corr", {}).get("paired_ceiling"), None),
        ("BFP MAE on real images (measurement floor, calibrated)", m.get("bfp_mae", {}).get("real_floor"), None),
        ("MMP MAE on real images (measurement floor, calibrated)", m.get("mmp_mae", {}).get("real_floor"), None),
        ("BFP MAE before the measurement's calibration", m.get("bfp_mae", {}).get("uncalibrated_value"), None),
        ("MMP MAE before the measurement's calibration", m.get("mmp_mae", {}).get("uncalibrated_value"), None),
    ]
    return [{"figure": name, "value": _num(v), "paper": _num(p)} for name, v, p in rows]


def per_class_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Per organ class: joint Dice, segmenter Dice on real, volume r, centroid r per axis (Table 1 layout)."""
    m = report.get("metrics", {})
    dice = m.get("joint_seg_dice", {}).get("per_class", {})
    seg = m.get("segmenter_dice_on_real", {}).get("per_class", {})
    vol = m.get("organ_volume_corr", {}).get("per_class", {})
    cen = m.get("organ_centroid_corr", {}).get("per_class", {})
    rows = []
    for name in dice:
        c = cen.get(name) or {}
        rows.append({"class": name, "dice": _num(dice.get(name)), "segmenter_dice_real": _num(seg.get(name)),
                     "volume_r": _num(vol.get(name)), "centroid_r_R": _num(c.get("R")),
                     "centroid_r_A": _num(c.get("A")), "centroid_r_S": _num(c.get("S"))})
    return rows


def run_line(report: dict[str, Any]) -> str:
    """How the synthetic cohort was sampled and where the evaluation ran, in one sentence, e.g. "Sampled with
    dpm++, 15 steps, guidance 2 at noise levels sigma in (4, 100]; evaluated on AMD EPYC (2 threads) in 28.1
    minutes."."""
    g, t = report.get("generation") or {}, report.get("timing") or {}
    parts = [f"Sampled with {g.get('sampler', 'ddim')}"]
    if g.get("steps") is not None:
        parts.append(f"{g['steps']} steps")
    if _num(g.get("guidance_scale")) is not None:
        interval = g.get("guidance_interval")
        where = (f" at noise levels sigma in ({interval[0]:g}, {interval[1]:g}]" if interval
                 else " at every step")
        parts.append(f"guidance {float(g['guidance_scale']):g}{where}")
    if g.get("composition"):
        parts.append("steered toward each real row's body fat, muscle and weight")
    line = ", ".join(parts)
    ran = report.get("device_name") or report.get("device")
    if ran:
        line += f"; evaluated on {ran}"
    if _num(t.get("seconds")) is not None:
        line += f"{'' if ran else '; evaluated'} in {float(t['seconds']) / 60:.1f} minutes"
    return line + "."


def provenance(report: dict[str, Any]) -> dict[str, Any]:
    """What made the report: checkpoint, segmenter, cohorts, seeds, timing, versions, machine (the keys a
    report has; versions under whichever name it recorded them, :func:`vctcore.provenance.read_versions`)."""
    from vctcore.provenance import read_versions

    keys = ("created_utc", "n", "seed", "device", "device_name", "checkpoint", "generation", "real_cohort", "segmenter",
            "timing", "machine")
    out = {k: report.get(k) for k in keys if k in report}
    versions = read_versions(report)
    return {**out, "versions": versions} if versions else out


def fidelity_card_metrics(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Headline figures of a ``vct evaluate-generator`` report as model-card metrics (value, target,
    definition with n, the paper's value and the report's creation time)."""
    metrics: dict[str, dict[str, Any]] = {}
    n, when = report.get("n"), report.get("created_utc")
    for key, label in LABELS.items():
        m = report.get("metrics", {}).get(key)
        if not m:
            continue
        paper = f"; paper {m['paper']:.3g}" if isinstance(m.get("paper"), (int, float)) else ""
        label = f"{label} ({m['caller']})" if m.get("caller") else label  # which checker decided
        metrics[f"fidelity.{key}"] = {
            "value": m.get("value"), "target": f"{m.get('comparison', '')} {m.get('target', '')}".strip(),
            "pass": m.get("pass"), "definition": f"{label}; n={n} matched pairs{paper} (vct evaluate-generator, {when})"}
    recon_n = (report.get("metrics", {}).get("reconstruction") or {}).get("n", n)
    for row in context_rows(report):
        if row["value"] is not None:
            key = "fidelity." + "".join(c if c.isalnum() else "_" for c in row["figure"].lower()).strip("_")
            k = recon_n if "econstruct" in row["figure"] else n  # reconstructions: the first --recon-n patients
            metrics[key] = {"value": row["value"], "target": "", "definition": f"{row['figure']}; n={k} ({when})"}
    return metrics
