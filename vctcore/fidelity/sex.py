"""Automatic sex check from a merged 16-class segmentation (the paper inspected 100 images by hand).

Rule, in order:

1. ``prostate_ml >= PROSTATE_MIN_ML`` -> "M" (basis "prostate"); no prostate voxel at all -> "F"
   (basis "prostate"), since the prostate is the only sex-specific class of the 16.
2. A trace of prostate (0 < volume < ``PROSTATE_MIN_ML``) is ambiguous: the pelvis decides (basis
   "pelvis"). ``pelvis_index`` = lateral (R-L) width of the "bone" class within +-``PELVIS_SLAB_MM`` of
   the bladder's centroid level, divided by the body's head-to-foot extent. Female pelves are wider
   relative to stature (on the phantom cohort about 0.215-0.23 for F vs 0.205-0.215 for M); above
   ``PELVIS_INDEX_F`` -> "F". Without a bladder the call is "M" (some prostate was found).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from vctcore.labels import MERGED_CLASS_IDS
from vctcore.volume import LabelMap

PROSTATE_MIN_ML = 3.0
PELVIS_SLAB_MM = 24.0
PELVIS_INDEX_F = 0.215


@dataclass(frozen=True)
class SexCall:
    """Called sex ("F"/"M"), the evidence (mL, ratio) and which evidence decided."""

    sex: str
    prostate_ml: float
    pelvis_index: float
    basis: str

    def to_dict(self) -> dict:
        return asdict(self)


def pelvis_index(seg: LabelMap, body_extent_mm: float) -> float:
    """Bone width at the bladder level / body extent (NaN without a bladder or bone there)."""
    data = np.asarray(seg.data)
    bladder = data == MERGED_CLASS_IDS["urinary_bladder"]
    zs = np.flatnonzero(bladder.any(axis=(0, 1)))
    if zs.size == 0 or not body_extent_mm > 0:
        return math.nan
    zc = float(np.average(zs, weights=bladder.sum(axis=(0, 1))[zs]))
    half = PELVIS_SLAB_MM / seg.spacing_mm[2]
    z0, z1 = max(0, int(round(zc - half))), min(data.shape[2], int(round(zc + half)) + 1)
    xs = np.flatnonzero((data[:, :, z0:z1] == MERGED_CLASS_IDS["bone"]).any(axis=(1, 2)))
    if xs.size == 0:
        return math.nan
    return float((xs[-1] - xs[0] + 1) * seg.spacing_mm[0] / body_extent_mm)


def call_sex(seg: LabelMap, body_extent_mm: float) -> SexCall:
    """Sex of the patient whose merged segmentation is ``seg`` (body extent in mm, for the pelvis index)."""
    prostate_ml = float((np.asarray(seg.data) == MERGED_CLASS_IDS["prostate"]).sum()) * seg.voxel_volume_ml
    pidx = pelvis_index(seg, body_extent_mm)
    if prostate_ml >= PROSTATE_MIN_ML:
        return SexCall("M", prostate_ml, pidx, "prostate")
    if prostate_ml == 0.0:
        return SexCall("F", prostate_ml, pidx, "prostate")
    if math.isfinite(pidx):
        return SexCall("F" if pidx > PELVIS_INDEX_F else "M", prostate_ml, pidx, "pelvis")
    return SexCall("M", prostate_ml, pidx, "prostate")


def sex_accuracy(called: list[str], requested: list[str]) -> float:
    """Share of patients whose called sex equals the requested one (NaN for none)."""
    pairs = [(c, r) for c, r in zip(called, requested) if r in ("F", "M")]
    return float(np.mean([c == r for c, r in pairs])) if pairs else math.nan
