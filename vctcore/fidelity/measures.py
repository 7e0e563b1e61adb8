"""Attributes measured from one image and its merged 16-class segmentation (the same way for real,
reconstructed and synthetic images, as the paper's Fig. 4 does).

* ``weight_kg``, ``body_volume_l``: :func:`vctcore.measure.measure` with the threshold backend (Appendix B
  density over the body; needs no segmentation, only a whole-body scan).
* ``bfp_pct``, ``mmp_pct``: :func:`vctcore.measure.measure` with the merged map (fat and muscle outside
  the labelled organs from HU thresholds; the map must show the body's ends, e.g. the brain).
* ``extent_cm``: head-to-foot extent of the body (largest region above -500 HU) along S. A merged map
  has no vertebrae or femurs, so the pose-aware height of ``vctcore.measure`` cannot run; the
  conditioning check maps the extent to cm of height by a linear fit on the real cohort
  (:func:`vctcore.fidelity.conditioning.fit_line`), as the paper corrects its height by a linear fit.
* ``bone_density_hu``: trabecular HU of the lumbar spine, a proxy of the L1-L3 measure. The lumbar slab
  is placed by two large muscles: from ``SLAB_LOW`` to ``SLAB_HIGH`` of the way from the top of the
  gluteus muscles (about the iliac crest, L4-L5) to the top of the iliopsoas (its origin, T12-L1); on
  the phantoms this spans L1-L3 within a slice or two. Without those muscles the kidneys' z-range
  (about T12-L3) is used. In the slab: the "bone" voxels within ``SPINE_HALF_WIDTH_MM`` of the body's
  midline (largest connected part: the spine), its vertebral bodies (the anterior 30 % of the
  spine's AP extent) eroded in-plane by 3 mm (at least one voxel) per axial slice, the mean HU of
  that core per slice, and the mean of the lower half of those slice means: a merged map does not
  separate the vertebrae, so slices through the cortical endplates (the bright ones) cannot be
  dropped by a z-erosion per vertebra as :mod:`vctcore.measure` does.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage

from vctcore.fidelity.anatomy import body_mask
from vctcore.labels import MERGED_CLASS_IDS
from vctcore.measure.stats import BODY_AP_FRACTION, TRABECULAR_EROSION_MM
from vctcore.volume import CTVolume, LabelMap

SPINE_HALF_WIDTH_MM = 30.0
SLAB_LOW, SLAB_HIGH = 0.35, 0.9
FIELDS = ("weight_kg", "bfp_pct", "mmp_pct", "body_volume_l", "extent_cm", "bone_density_hu")


def extent_cm(ct: CTVolume, mask: np.ndarray) -> float:
    """Extent (cm) of ``mask`` along the S axis (array axis 2 of a canonical RAS+ volume)."""
    zs = np.flatnonzero(mask.any(axis=(0, 1)))
    return float((zs[-1] - zs[0] + 1) * ct.spacing_mm[2] / 10.0) if zs.size else math.nan


def _top(data: np.ndarray, name: str) -> int | None:
    zs = np.flatnonzero((data == MERGED_CLASS_IDS[name]).any(axis=(0, 1)))
    return int(zs[-1]) if zs.size else None


def lumbar_slab(data: np.ndarray) -> tuple[int, int] | None:
    """Axial slice range [z0, z1) of the lumbar spine in a merged label array (X, Y, Z), or None."""
    glut, ilio = _top(data, "gluteus_muscles"), _top(data, "iliopsoas")
    if glut is not None and ilio is not None and ilio - glut >= 4:
        span = ilio - glut
        return int(round(glut + SLAB_LOW * span)), int(round(glut + SLAB_HIGH * span)) + 1
    kz = np.flatnonzero((data == MERGED_CLASS_IDS["kidney"]).any(axis=(0, 1)))
    return (int(kz[0]), int(kz[-1]) + 1) if kz.size else None


def lumbar_density_hu(ct: CTVolume, seg: LabelMap, mask: np.ndarray) -> tuple[float, str]:
    """(mean trabecular HU of the lumbar spine, "") or (NaN, why not); see the module docstring."""
    data = np.asarray(seg.data)
    slab = lumbar_slab(data)
    if slab is None:
        return math.nan, "neither gluteus and iliopsoas muscles nor kidneys in the segmentation (they locate the spine)"
    z0, z1 = slab
    slab_body = mask[:, :, z0:z1]
    xs = np.flatnonzero(slab_body.any(axis=(1, 2)))
    if xs.size == 0:
        return math.nan, "no body at the kidney level"
    xc = float(np.average(np.arange(mask.shape[0]), weights=slab_body.sum(axis=(1, 2))))
    half = SPINE_HALF_WIDTH_MM / ct.spacing_mm[0]
    lo, hi = max(0, int(math.floor(xc - half))), min(mask.shape[0], int(math.ceil(xc + half)) + 1)
    bone = data[lo:hi, :, z0:z1] == MERGED_CLASS_IDS["bone"]
    lab, n = ndimage.label(bone)
    if n == 0:
        return math.nan, "no bone near the midline at the kidney level"
    spine = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    sign = float(np.sign(ct.affine[1, 1]) or 1.0)
    ys = np.flatnonzero(spine.any(axis=(0, 2)))
    ap = np.arange(spine.shape[1]) * sign
    front = ap[ys].max()
    body = np.pad(spine & (ap > front - BODY_AP_FRACTION * (ys[-1] - ys[0] + 1))[None, :, None], 1)
    r = [max(1.0, TRABECULAR_EROSION_MM / s) for s in ct.spacing_mm[:2]]
    gx, gy = np.ogrid[-int(r[0]):int(r[0]) + 1, -int(r[1]):int(r[1]) + 1]
    disc = ((gx / r[0]) ** 2 + (gy / r[1]) ** 2 <= 1.0)[:, :, None]
    core = ndimage.binary_erosion(body, structure=disc)[1:-1, 1:-1, 1:-1]
    hu = np.asarray(ct.data[lo:hi, :, z0:z1], np.float64)
    n = core.sum(axis=(0, 1))
    means = np.array([hu[:, :, k][core[:, :, k]].mean() for k in np.flatnonzero(n)])
    if means.size == 0:
        return math.nan, "the lumbar spine is too small at this resolution for a trabecular core"
    return float(np.sort(means)[: max(1, means.size // 2)].mean()), ""


def image_measurements(ct: CTVolume, seg: LabelMap, body: np.ndarray | None = None) -> dict[str, Any]:
    """Every field of ``FIELDS`` (NaN when not measurable) plus ``notes`` (list of str); ``body``: the
    CT's :func:`body_mask` when already computed."""
    from vctcore.measure import MeasureError, measure
    from vctcore.measure.body import body_geometry

    out: dict[str, Any] = {k: math.nan for k in FIELDS}
    notes: list[str] = []
    mask = body_mask(ct) if body is None else body
    out["extent_cm"] = extent_cm(ct, mask)
    geometry = body_geometry(ct.data, ct.spacing_mm)  # shared by both backends: it depends on the HU alone
    for backend, fields in (("threshold", {"weight_kg": "mass_kg", "body_volume_l": "body_volume_l"}),
                            ("labels", {"bfp_pct": "bfp_pct", "mmp_pct": "mmp_pct"})):
        try:
            m = measure(ct, seg if backend == "labels" else None, backend=backend, seg_format="merged", height=False,
                        geometry=geometry)
        except MeasureError as err:
            notes.append(f"measure ({backend}): {err}")
            continue
        for key, attr in fields.items():
            v = getattr(m, attr)
            out[key] = math.nan if v is None else float(v)
            if attr in m.not_measurable:
                notes.append(f"{key}: {m.not_measurable[attr]}")
    out["bone_density_hu"], why = lumbar_density_hu(ct, seg, mask)
    if why:
        notes.append(f"bone_density_hu: {why}")
    out["notes"] = notes
    return out
