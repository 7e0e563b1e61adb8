"""Is this image a CT in Hounsfield units on a plausible grid? Checks run before anything is measured.

* Grid: every voxel spacing (mm, the affine's column norms) must lie in ``SPACING_MM`` (0.1 to 20 mm):
  no CT scanner makes voxels outside it, so a header that says otherwise is wrong (a NIfTI written
  with 1000 mm voxels would give a body volume of hundreds of millions of litres). Never skipped.
* Appearance: a CT in HU has an air background near -1000 HU (the room around the patient, the
  padding outside the field of view, the lungs and bowel gas) and soft tissue near 0-60 HU. At least
  ``AIR_MIN_SHARE`` of all voxels must be at or below ``AIR_HU``, and, when there is a body (voxels
  above ``BODY_HU``), at least ``SOFT_MIN_SHARE`` of those must lie in ``SOFT_HU``. An MR image (0 to a
  few thousand, arbitrary units) has neither air at -1000 nor a body of soft tissue at 0-60. A CT
  cropped inside the body also fails (it has no air, so no body outline); ``force`` skips this check.

On the real and synthetic CT seen so far (TotalSegmentator's example CT and DICOM series, phantoms,
the default generator's images) air is 32-92 % of the voxels and soft tissue 36-57 % of the body;
TotalSegmentator's example MR has no voxel at or below -900.
"""
from __future__ import annotations

import numpy as np

from vctcore.volume import CTVolume

SPACING_MM = (0.1, 20.0)
AIR_HU = -900.0
AIR_MIN_SHARE = 0.01
BODY_HU = -500.0
SOFT_HU = (-30.0, 100.0)
SOFT_MIN_SHARE = 0.05

ERR_SPACING = ("{where}: voxel spacing {spacing} mm is outside {lo:g}-{hi:g} mm along {axes}; no CT scanner makes "
               "such voxels, so the header's spacing is wrong (NIfTI pixdim/affine, DICOM PixelSpacing or slice "
               "positions)")
ERR_NOT_CT = ("{where}: does not look like CT in Hounsfield units: {problem}. A CT in HU has an air background "
              "near -1000 HU and soft tissue near 0-60 HU; an MR or PET image, a mask, or a CT cropped inside "
              "the body has not. If it is CT in HU, --force (force=True) measures it anyway")
NO_AIR = "only {share:.2%} of the voxels are at or below {air:g} HU (air; at least {need:.0%} expected)"
NO_SOFT = ("only {share:.1%} of the voxels above {body:g} HU lie at {lo:g}..{hi:g} HU (soft tissue; at least "
           "{need:.0%} expected)")


def check_spacing(spacing_mm: tuple[float, float, float], *, where: str = "CT") -> None:
    """Raise ValueError (ERR_SPACING) unless every spacing (mm, along X, Y, Z) is within ``SPACING_MM``."""
    lo, hi = SPACING_MM
    off = [axis for axis, s in zip("XYZ", spacing_mm) if not lo <= s <= hi]
    if off:
        spacing = "x".join(f"{s:g}" for s in spacing_mm)
        raise ValueError(ERR_SPACING.format(where=where, spacing=spacing, lo=lo, hi=hi, axes=", ".join(off)))


def ct_appearance(hu: np.ndarray) -> tuple[float, float, int]:
    """(share of voxels at or below AIR_HU, share of body voxels in SOFT_HU, number of body voxels)."""
    step = max(1, int(round((hu.size / 4e6) ** (1 / 3))))  # a regular subsample of at most ~4 M voxels
    sample = np.asarray(hu[::step, ::step, ::step])
    air = float(np.count_nonzero(sample <= AIR_HU)) / sample.size
    body = sample[sample > BODY_HU]
    soft = float(np.count_nonzero((body > SOFT_HU[0]) & (body <= SOFT_HU[1]))) / body.size if body.size else 0.0
    return air, soft, int(body.size)


def check_looks_like_ct(hu: np.ndarray, *, where: str = "CT") -> None:
    """Raise ValueError (ERR_NOT_CT) unless ``hu`` (HU, any shape) has air and, where there is a body,
    soft tissue (see the module doc). An image without a body passes: measurement says so itself."""
    air, soft, n_body = ct_appearance(hu)
    problems = []
    if air < AIR_MIN_SHARE:
        problems.append(NO_AIR.format(share=air, air=AIR_HU, need=AIR_MIN_SHARE))
    if n_body and soft < SOFT_MIN_SHARE:
        problems.append(NO_SOFT.format(share=soft, body=BODY_HU, lo=SOFT_HU[0], hi=SOFT_HU[1],
                                       need=SOFT_MIN_SHARE))
    if problems:
        raise ValueError(ERR_NOT_CT.format(where=where, problem="; ".join(problems)))


def check_ct(ct: CTVolume, *, where: str = "CT", force: bool = False) -> None:
    """Both checks (the appearance check only without ``force``); ValueError naming ``where``."""
    check_spacing(ct.spacing_mm, where=where)
    if not force:
        check_looks_like_ct(ct.data, where=where)


__all__ = ["SPACING_MM", "check_ct", "check_looks_like_ct", "check_spacing", "ct_appearance"]
