"""Organ volumes and centroids in patient RAS coordinates; synthetic vs real correlations (Table 1).

Patient RAS frame: the image's RAS+ world axes (as in the affine), with the origin moved to the
centroid of the patient's body (:func:`body_mask`: the largest connected region above -500 HU, holes
of each axial slice filled), so
positions are relative to the patient and not to the scanner or the image grid. Centroids are in
mm, volumes in mL.

Correlations are over one-to-one matched pairs (synthetic patient i was generated from the
attributes of real patient i): per class the Pearson coefficient of the volumes over all pairs (a
missing organ has volume 0), and per class and axis the Pearson coefficient of the centroid
coordinate over the pairs where both have the organ. A coefficient needs at least ``MIN_PAIRS``
pairs, else it is NaN and left out of the averages; a failure to reproduce is not left out: a
constant series against a varying one (an organ the generator never makes) counts as r = 0, and so
does the centroid of an organ found in at least ``MIN_PAIRS`` real but fewer synthetic patients. The centroid figure is the mean over classes and the three axes (the paper's 0.956 is the
mean of its R, A and S averages). ``qq`` variants correlate the sorted values of the two cohorts
(how alike the distributions are, ignoring the pairing).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from vctcore.labels import MERGED_CLASSES
from vctcore.measure.morphology import BODY_HU, largest_body
from vctcore.volume import CTVolume, LabelMap

MIN_PAIRS = 3
AXES = ("R", "A", "S")
ORGANS: dict[int, str] = {k: v for k, v in MERGED_CLASSES.items() if k}


def body_mask(ct: CTVolume, threshold_hu: float = BODY_HU) -> np.ndarray:
    """Boolean (X, Y, Z) mask of the patient: the largest connected region above ``threshold_hu`` with
    the holes of every axial slice filled (lungs and airways belong to the body):
    :func:`vctcore.measure.morphology.largest_body` of its HU."""
    return largest_body(ct.data, threshold_hu)


def world(affine: np.ndarray, ijk: np.ndarray) -> np.ndarray:
    """Voxel coordinates (..., 3) -> RAS+ world mm (..., 3)."""
    return np.asarray(ijk, float) @ affine[:3, :3].T + affine[:3, 3]


def body_origin_mm(ct: CTVolume, mask: np.ndarray | None = None) -> np.ndarray:
    """World RAS (mm) of the body centroid, the origin of the patient frame."""
    m = body_mask(ct) if mask is None else mask
    if not m.any():
        raise ValueError("no body in the CT (no voxel above -500 HU)")
    return world(ct.affine, np.array(ndimage.center_of_mass(m)))


def organ_stats(seg: LabelMap, origin_mm: np.ndarray) -> dict[str, dict[str, Any]]:
    """Per organ class: ``volume_ml`` (0 when absent) and ``centroid_mm`` [R, A, S] in the patient frame
    (None when absent)."""
    data = np.asarray(seg.data)
    counts = np.bincount(data.ravel(), minlength=max(ORGANS) + 1)
    present = [c for c in ORGANS if counts[c]]
    coms = ndimage.center_of_mass(np.ones(data.shape, np.uint8), data, present) if present else []
    centroid = {c: world(seg.affine, np.array(p)) - origin_mm for c, p in zip(present, coms)}
    return {name: {"volume_ml": float(counts[c]) * seg.voxel_volume_ml,
                   "centroid_mm": centroid[c].tolist() if c in centroid else None} for c, name in ORGANS.items()}


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r of paired finite values: NaN with fewer than MIN_PAIRS pairs or when both series are
    constant; 0 when only one is (nothing of the other's variation is reproduced)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < MIN_PAIRS or (np.ptp(x) == 0 and np.ptp(y) == 0):
        return float("nan")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])


def _qq(x: Sequence[float], y: Sequence[float]) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    x, y = np.sort(x[np.isfinite(x)]), np.sort(y[np.isfinite(y)])
    n = min(x.size, y.size)
    if n < MIN_PAIRS:
        return float("nan")
    q = (np.arange(n) + 0.5) / n
    return pearson(np.quantile(x, q), np.quantile(y, q))


def nanmean(values: Sequence[float]) -> float:
    """Mean of the finite values (NaN when none)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def anatomy_correlations(syn: Sequence[Mapping[str, Any]], real: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Volume and centroid correlations of matched ``organ_stats`` lists (same length, same order)."""
    if len(syn) != len(real):
        raise ValueError(f"{len(syn)} synthetic vs {len(real)} real patients: the lists must be matched pairs")
    vol, vol_qq, cen, cen_qq = {}, {}, {}, {}
    for name in ORGANS.values():
        vs = [s[name]["volume_ml"] for s in syn]
        vr = [r[name]["volume_ml"] for r in real]
        vol[name], vol_qq[name] = pearson(vs, vr), _qq(vs, vr)
        cs = np.array([s[name]["centroid_mm"] or [np.nan] * 3 for s in syn], float).reshape(-1, 3)
        cr = np.array([r[name]["centroid_mm"] or [np.nan] * 3 for r in real], float).reshape(-1, 3)
        cen[name] = {ax: pearson(cs[:, i], cr[:, i]) for i, ax in enumerate(AXES)}
        pairs, in_real = int((np.isfinite(cs[:, 0]) & np.isfinite(cr[:, 0])).sum()), int(np.isfinite(cr[:, 0]).sum())
        if pairs < MIN_PAIRS <= in_real:  # the organ is in the real images but (almost) never in the synthetic ones
            cen[name] = {ax: 0.0 for ax in AXES}
        cen_qq[name] = {ax: _qq(cs[:, i], cr[:, i]) for i, ax in enumerate(AXES)}
    per_axis = {ax: nanmean([c[ax] for c in cen.values()]) for ax in AXES}
    per_axis_qq = {ax: nanmean([c[ax] for c in cen_qq.values()]) for ax in AXES}
    return {
        "volume": {"mean": nanmean(list(vol.values())), "per_class": vol,
                   "qq_mean": nanmean(list(vol_qq.values())), "qq_per_class": vol_qq},
        "centroid": {"mean": nanmean(list(per_axis.values())), "per_axis": per_axis, "per_class": cen,
                     "qq_mean": nanmean(list(per_axis_qq.values())), "qq_per_axis": per_axis_qq},
        "n_pairs": len(syn),
    }
