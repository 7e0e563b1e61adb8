"""Fidelity to conditioning (paper section 1.4, Fig. 4): measured attributes per conditioning bin.

For each check, patients are grouped by the conditioning bin (:func:`vctcore.attributes.bin_index`)
of the attribute that was asked for (a synthetic patient has the bin of the real patient it was
matched to), and the same image measurement is compared between the synthetic and real images of
a bin:

    Z_b = (mean_syn_b - mean_real_b) / sd_real_b

``sd_real_b`` is the sample standard deviation (ddof=1) of the real values in bin b. A bin counts
when it has at least ``MIN_REAL_PER_BIN`` real values with sd > 0 and at least one synthetic value;
the figure is the mean of |Z_b| over the bins that count (each bin weighs the same; paper: 0.608
age / bone density, 0.630 weight, 0.656 height). Checks: bone density (HU) by age bin, measured
weight (kg) by weight bin, height (cm, calibrated extent) by height bin.

BFP and MMP are compared with the real row's recorded value, which the synthetic patient carries as
its requested attribute: MAE in percentage points. The image measurement from a merged 16-class map is
biased against the recorded values (on eval100: BFP -2.1, MMP +8.7 points, r 0.99 and 0.98), so both
real and synthetic measurements are first mapped by a linear calibration fit on the real cohort
(:func:`fit_line`, measured -> recorded), as the height check maps the body extent; uncalibrated, a
synthetic image whose muscle differs from the real image's by the measurement's bias would score well.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from vctcore.attributes import bin_index, bin_labels

MIN_REAL_PER_BIN = 2
#: check name -> (measured field, conditioning attribute that bins it, unit)
CHECKS: dict[str, tuple[str, str, str]] = {
    "bone_density_by_age": ("bone_density_hu", "age_years", "HU"),
    "weight_by_weight": ("weight_kg", "weight_kg", "kg"),
    "height_by_height": ("height_cm", "height_cm", "cm"),
}


def fit_line(measured: Sequence[float], recorded: Sequence[float]) -> tuple[float, float]:
    """Least-squares calibration line recorded = slope * measured + intercept over the finite pairs
    (e.g. height in cm from the body extent in cm); (1, 0) when fewer than two distinct measured values
    (the measurement is then reported as it is)."""
    x, y = np.asarray(measured, float), np.asarray(recorded, float)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return 1.0, 0.0
    slope, intercept = np.polyfit(x[ok], y[ok], 1)
    return float(slope), float(intercept)


def bin_z_scores(syn: Sequence[float], real: Sequence[float], syn_bins: Sequence[int],
                 real_bins: Sequence[int], labels: Sequence[str] | None = None) -> dict[str, Any]:
    """Per-bin means, SDs and Z (see the module docstring) and ``mean_abs_z`` over the bins that count."""
    syn, real = np.asarray(syn, float), np.asarray(real, float)
    sb, rb = np.asarray(syn_bins), np.asarray(real_bins)
    rows, zs = [], []
    for b in sorted(set(sb.tolist()) | set(rb.tolist())):
        r = real[(rb == b) & np.isfinite(real)]
        s = syn[(sb == b) & np.isfinite(syn)]
        sd = float(r.std(ddof=1)) if r.size >= 2 else math.nan
        ok = r.size >= MIN_REAL_PER_BIN and sd > 0 and s.size >= 1
        z = float((s.mean() - r.mean()) / sd) if ok else math.nan
        if ok:
            zs.append(abs(z))
        rows.append({"bin": labels[b] if labels is not None else int(b), "n_real": int(r.size), "n_syn": int(s.size),
                     "mean_real": float(r.mean()) if r.size else math.nan, "sd_real": sd,
                     "mean_syn": float(s.mean()) if s.size else math.nan, "z": z})
    return {"mean_abs_z": float(np.mean(zs)) if zs else math.nan, "n_bins": len(zs), "bins": rows}


def mae(measured: Sequence[float], reference: Sequence[float]) -> float:
    """Mean absolute difference over finite pairs (NaN when none)."""
    a, b = np.asarray(measured, float), np.asarray(reference, float)
    ok = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[ok] - b[ok]).mean()) if ok.any() else math.nan


def conditioning_checks(requested: dict[str, Sequence[Any]], real: dict[str, Sequence[float]],
                        syn: dict[str, Sequence[float]], recon: dict[str, Sequence[float]] | None = None
                        ) -> dict[str, Any]:
    """Every check of ``CHECKS`` from matched lists.

    ``requested``: conditioning attributes of the real rows (age_years, weight_kg, height_cm, ...);
    ``real``/``syn``/``recon``: measured fields (bone_density_hu, weight_kg, height_cm) per patient in
    the same order. Each check also keeps the per-patient values and bin labels (for the box plots);
    reconstructions get their own Z against real.
    """
    out: dict[str, Any] = {}
    for name, (field, attr, unit) in CHECKS.items():
        labels = bin_labels(attr)
        bins = bin_index(attr, np.asarray(requested[attr], dtype=object))
        res = bin_z_scores(syn[field], real[field], bins, bins, labels)
        res.update(field=field, binned_by=attr, unit=unit, n_syn_measured=_count(syn[field]),
                   n_real_measured=_count(real[field]),
                   values={"real": _floats(real[field]), "synthetic": _floats(syn[field])},
                   bin_of_patient=[labels[b] for b in bins])
        if recon is not None:
            rz = bin_z_scores(recon[field], real[field], bins, bins, labels)
            res["recon_mean_abs_z"] = rz["mean_abs_z"]
            res["values"]["reconstructed"] = _floats(recon[field])
        out[name] = res
    return out


def _count(values: Sequence[float]) -> int:
    """Number of finite values (patients where the measurement worked)."""
    return int(np.isfinite(np.asarray(values, float)).sum())


def _floats(values: Sequence[float]) -> list[float | None]:
    return [float(v) if v is not None and math.isfinite(float(v)) else None for v in values]
