"""``measure(ct, seg, backend)``: every body measurement of one CT (paper Appendix B).

Steps: HU check -> grid and CT-appearance checks (:mod:`vctcore.measure.checks`) -> segmentation backend
(fine labels) -> one pass of per-slice, per-label counts and densities -> coverage -> whole-body
composition (only for whole-body scans) -> bone density (L1-L3 trabecular HU) -> L3-level areas -> height
(pose-aware, whole-body scans with bone labels).
"""
from __future__ import annotations

import time

import numpy as np

from vctcore.labels import FINE_LABELS
from vctcore.measure.backends import BackendError, Segmentation, segment
from vctcore.measure.body import BodyGeometry
from vctcore.measure.checks import check_ct
from vctcore.measure.composition import BONE_VALUES, MUSCLE_VALUES, THRESHOLD_SOFT_TISSUE, UNSPECIFIED_BONE
from vctcore.measure.coverage import assess_coverage
from vctcore.measure.record import L3_FIELDS, WHOLE_BODY_FIELDS, MeasureError, Measurements
from vctcore.measure.stats import SliceStats, bone_density, from_tables, l3_slice, mean_hu, slice_stats
from vctcore.volume import CTVolume, LabelMap, validate_hu

ERR_EMPTY_BODY = ("no body in the CT: {detail}; the image looks like air only (body = voxels above -500 HU, "
                  "mass = voxels above -900 HU)")
NO_MUSCLE = ("skeletal muscle needs a segmentation that identifies muscle (--seg with fine, merged 16-class or "
             "TotalSegmentator labels, or --backend totalsegmentator): HU thresholds alone cannot tell muscle from "
             "organs, bowel wall, vessels and skin, which share -29..150 HU (soft_tissue_kg is that whole class)")
THRESHOLD_BONE_NOTE = "threshold backend: bone below 200 HU (low-density trabecular bone) counts as soft tissue or fat"
SCAN_GROUPS: dict[str, list[int]] = {
    "subcutaneous_fat": [FINE_LABELS["subcutaneous_fat"]],
    "visceral_fat": [FINE_LABELS["visceral_fat"]],
    "muscle": [int(v) for v in MUSCLE_VALUES],
    "bone": [int(v) for v in BONE_VALUES],
}
#: the threshold backend's groups: soft tissue at -29..150 HU in place of muscle
THRESHOLD_SCAN_GROUPS: dict[str, list[int]] = {
    **{k: v for k, v in SCAN_GROUPS.items() if k != "muscle"}, "soft_tissue": [THRESHOLD_SOFT_TISSUE]}
MUSCLE_FIELDS = ("muscle_kg", "mmp_pct")


def measure(ct: CTVolume, seg: LabelMap | None = None, backend: str = "auto", *, seg_format: str = "auto",
            height: bool = True, geometry: BodyGeometry | None = None, force: bool = False) -> Measurements:
    """Measure one CT (HU, axes (X, Y, Z) RAS+).

    ``seg``: a label map on the CT's grid (fine, merged or TotalSegmentator labels; ``seg_format``
    "auto" identifies which). ``backend``: "auto" (labels if ``seg`` else threshold), "labels",
    "threshold" or "totalsegmentator". ``height=False`` skips the height measurement. ``geometry``: the
    CT's :func:`vctcore.measure.body.body_geometry` when already computed (it depends on the HU alone,
    so two measurements of one CT with different backends can share it). ``force=True`` measures an image
    that does not look like CT in HU (:func:`vctcore.measure.checks.check_looks_like_ct`); an implausible
    voxel spacing is refused even then.
    Raises :class:`MeasureError` (a ValueError) when the CT cannot be measured (not HU, not CT-like,
    spacing outside 0.1-20 mm, no body, unusable segmentation or backend).
    """
    t0 = time.perf_counter()
    try:
        validate_hu(ct.data, where="CT")
        check_ct(ct, where="CT", force=force)
        segmentation = segment(ct, seg, backend, seg_format=seg_format, geometry=geometry)
    except (ValueError, BackendError) as err:
        raise MeasureError(str(err)) from None
    if segmentation.tables is not None:
        stats = from_tables(*segmentation.tables, ct.spacing_mm, ct.affine)
    else:
        stats = slice_stats(ct.data, segmentation.labels, ct.spacing_mm, ct.affine)
    body_voxels = int(stats.counts[:, 1:].sum())
    if body_voxels == 0:
        raise MeasureError(ERR_EMPTY_BODY.format(detail="no voxel belongs to the body"))
    if float(stats.rho[:, 1:].sum()) <= 0.0:
        raise MeasureError(ERR_EMPTY_BODY.format(detail=f"all {body_voxels} body voxels are at or below -900 HU"))
    m = Measurements(backend=segmentation.backend, vocabulary=segmentation.vocabulary, shape=ct.shape,
                     spacing_mm=ct.spacing_mm, notes=list(segmentation.notes))
    cov = assess_coverage(stats.body_area_cm2(), ct.spacing_mm[2], set(segmentation.identified),
                          None if segmentation.identifiable is None else set(segmentation.identifiable))
    m.coverage = cov.to_dict()
    threshold = segmentation.vocabulary == "threshold"
    _scan(m, stats, THRESHOLD_SCAN_GROUPS if threshold else SCAN_GROUPS)
    if cov.whole_body:
        _whole_body(m, stats, segmentation)
    else:
        m.warnings.append(f"{cov.reason}: whole-body quantities (mass, BFP, MMP, body volume, height) are not measured")
        for name in (*WHOLE_BODY_FIELDS, "soft_tissue_kg") if threshold else WHOLE_BODY_FIELDS:
            m.not_measurable[name] = cov.reason or "partial scan"
    if threshold:
        m.notes.append(THRESHOLD_BONE_NOTE)
        for name in MUSCLE_FIELDS:
            m.not_measurable[name] = NO_MUSCLE
    _bone_density(m, ct, segmentation, stats)
    _l3(m, segmentation, stats)
    if cov.whole_body:
        if height:
            _height(m, segmentation, ct.affine)
        else:
            m.not_measurable["height_cm"] = "height measurement was switched off"
    m.seconds = time.perf_counter() - t0
    return m


def _scan(m: Measurements, stats: SliceStats, groups: dict[str, list[int]]) -> None:
    """Volumes (L) and mean HU of the body and of each tissue group (name -> label values) within the scan."""
    ml = stats.voxel_ml
    n_body, rho_body = stats.group(list(range(1, stats.counts.shape[1])))
    m.scan_volume_l["body"] = n_body * ml / 1000.0
    m.scan_mean_hu["body"] = mean_hu(n_body, rho_body)
    for name, values in groups.items():
        n, rho = stats.group(values)
        m.scan_volume_l[name] = n * ml / 1000.0
        if n:
            m.scan_mean_hu[name] = mean_hu(n, rho)


def _whole_body(m: Measurements, stats: SliceStats, seg: Segmentation) -> None:
    comp = stats.composition()
    m.mass_kg, m.fat_kg, m.bone_kg = comp.mass_kg, comp.fat_kg, comp.bone_kg
    m.bfp_pct, m.body_volume_l = comp.bfp_pct, comp.body_volume_l
    if seg.vocabulary == "threshold":  # skeletal muscle is not identified: soft tissue instead, no MMP
        _, rho = stats.group([THRESHOLD_SOFT_TISSUE])
        m.soft_tissue_kg = rho * stats.voxel_ml / 1000.0
        return
    m.muscle_kg, m.mmp_pct = comp.muscle_kg, comp.mmp_pct
    if not seg.complete:
        m.warnings.append("fat and skeletal muscle outside the labelled structures come from HU thresholds: "
                          "unlabelled organs (bowel, glands, vessels) count as muscle")


def _bone_density(m: Measurements, ct: CTVolume, seg: Segmentation, stats: SliceStats) -> None:
    levels = [f"vertebrae_L{i}" for i in (1, 2, 3)]
    if seg.identifiable is None or not set(levels) & set(seg.identifiable):
        why = "the threshold backend" if seg.identifiable is None else f"a {seg.vocabulary} label map"
        m.not_measurable["bone_density_hu"] = (
            f"bone density needs the L1-L3 vertebrae labelled, and {why} does not identify vertebrae; pass a "
            "segmentation with vertebra labels (--seg) or use --backend totalsegmentator")
        return
    value, per_level, notes = bone_density(ct.data, seg.labels, stats)
    m.bone_density_hu, m.bone_density_levels_hu = value, per_level
    if value is None:
        m.not_measurable["bone_density_hu"] = "; ".join(notes)
    elif notes:
        m.warnings.append("bone density from " + ", ".join(per_level) + " only: " + "; ".join(notes))


def _l3(m: Measurements, seg: Segmentation, stats: SliceStats) -> None:
    s = l3_slice(stats)
    if s is None:
        reason = ("vertebra L3 is not in the scan" if seg.identifiable and "vertebrae_L3" in seg.identifiable
                  else "L3-level areas need vertebra labels (L3), which this segmentation does not identify")
        for name in ("l3_z_mm", *L3_FIELDS):
            m.not_measurable[name] = reason
        return
    m.l3_z_mm, m.l3_sat_area_cm2, m.l3_vat_area_cm2 = s.z_mm, s.sat_area_cm2, s.vat_area_cm2
    m.l3_muscle_area_cm2, m.l3_muscle_hu = s.muscle_area_cm2, s.muscle_hu
    if not seg.complete:
        m.notes.append("L3 subcutaneous/visceral split: fat enclosed by the muscle/bone envelope of the slice "
                       "is visceral")


def _height(m: Measurements, seg: Segmentation, affine: np.ndarray) -> None:
    if seg.identifiable is None:
        m.not_measurable["height_cm"] = ("pose-aware height needs bone labels (femur, tibia, vertebrae), which the "
                                         "threshold backend does not identify")
        return
    try:
        from vctcore.measure.height import measure_height
    except ImportError:
        m.not_measurable["height_cm"] = "height module not installed"
        return
    labels = seg.labels
    if int(labels.max()) == UNSPECIFIED_BONE:  # 255 is the largest uint8 value
        labels = np.where(labels == UNSPECIFIED_BONE, 0, labels).astype(np.uint8)
    try:
        result = measure_height(labels, affine)
    except Exception as err:  # height is one field among many: report, do not lose the rest
        m.not_measurable["height_cm"] = f"height measurement failed: {type(err).__name__}: {err}"
        m.warnings.append(m.not_measurable["height_cm"])
        return
    m.height_cm = None if result.height_cm is None else float(result.height_cm)
    m.height_segments_cm = {str(k): float(v) for k, v in (result.segments_cm or {}).items()}
    m.height_calibrated = bool(result.calibrated)
    if m.height_cm is None:
        m.not_measurable["height_cm"] = result.reason or "height could not be measured"
