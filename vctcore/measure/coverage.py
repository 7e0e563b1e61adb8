"""Which body regions a CT covers, and whether whole-body quantities can be measured from it.

Two sources, combined:

* Labels: a region is covered (at least in part: a pelvis scan showing the femoral heads covers
  "legs") when any of its marker structures is labelled (``REGION_MARKERS``); it is absent when the
  segmentation could label such a structure but none is there; unknown (None) when the
  segmentation cannot identify that region at all (threshold backend).
* Geometry (always): the body is cut at an end of the scan when its cross-section on the first or
  last axial slice is at least ``CUT_MIN_CM2`` and at least ``CUT_RATIO`` of the largest
  cross-section within ``CUT_LOOKBACK_MM`` inwards: a body that ends inside the scan tapers (crown,
  toes), a cut one does not.

Whole-body quantities (mass, BFP, MMP, body volume, height) need a body that is cut at neither end,
spans at least ``MIN_WHOLE_BODY_CM``, and (where labels can tell) includes the head and the legs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from vctcore.labels import FINE_LABELS

REGIONS = ("head_neck", "thorax", "abdomen", "pelvis", "legs", "feet")
REGION_MARKERS: dict[str, tuple[str, ...]] = {
    "head_neck": ("brain", "skull", *(f"vertebrae_C{i}" for i in range(1, 8))),
    "thorax": ("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
               "lung_lower_lobe_right", "heart", "trachea", "sternum", *(f"vertebrae_T{i}" for i in range(1, 13))),
    "abdomen": ("liver", "spleen", "kidney_left", "kidney_right", "stomach", *(f"vertebrae_L{i}" for i in range(1, 6))),
    "pelvis": ("hip_left", "hip_right", "sacrum", "urinary_bladder", "prostate"),
    "legs": ("femur_left", "femur_right", "patella_left", "patella_right", "tibia_left", "tibia_right",
             "fibula_left", "fibula_right"),
    "feet": ("foot_bones_left", "foot_bones_right"),
}
#: regions that must be present (where labels can tell) for whole-body quantities
REQUIRED_FOR_WHOLE_BODY = ("head_neck", "legs")
CUT_MIN_CM2 = 10.0
CUT_RATIO = 0.5
CUT_LOOKBACK_MM = 30.0
MIN_WHOLE_BODY_CM = 100.0


@dataclass
class Coverage:
    """Regions covered (True/False/None = unknown), cut ends, and the scanned body extent (cm)."""

    regions: dict[str, bool | None]
    cut_superior: bool
    cut_inferior: bool
    edge_area_cm2: tuple[float, float]  # (inferior-most slice, superior-most slice)
    body_extent_cm: float
    method: str  # "labels+geometry" or "geometry"
    whole_body: bool = False
    reason: str | None = None
    details: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def covered(self) -> list[str]:
        return [r for r, v in self.regions.items() if v]


def _is_cut(area: np.ndarray, end: int, slice_mm: float) -> bool:
    n = max(1, int(round(CUT_LOOKBACK_MM / slice_mm)))
    window = area[:n + 1] if end == 0 else area[-(n + 1):]
    edge = area[end]
    return bool(edge >= CUT_MIN_CM2 and edge >= CUT_RATIO * window.max())


def assess_coverage(body_area_cm2: np.ndarray, slice_mm: float, present: set[str],
                    identifiable: set[str] | None) -> Coverage:
    """Coverage from the body cross-section per slice (cm^2, slice 0 inferior) and labelled names.

    ``present``: fine names labelled in the scan; ``identifiable``: fine names the segmentation
    could label at all (None: no anatomy is identified, geometry only).
    """
    occupied = np.flatnonzero(body_area_cm2 > 0)
    extent_cm = float((occupied[-1] - occupied[0] + 1) * slice_mm / 10.0) if occupied.size else 0.0
    cut_inf = _is_cut(body_area_cm2, 0, slice_mm)
    cut_sup = _is_cut(body_area_cm2, -1, slice_mm)
    regions: dict[str, bool | None] = {}
    for region, markers in REGION_MARKERS.items():
        if identifiable is None or not set(markers) & identifiable:
            regions[region] = None
        else:
            regions[region] = bool(set(markers) & present)
    cov = Coverage(regions, cut_sup, cut_inf, (float(body_area_cm2[0]), float(body_area_cm2[-1])), extent_cm,
                   "geometry" if identifiable is None else "labels+geometry")
    problems = []
    if cut_sup or cut_inf:
        ends = " and ".join(e for e, c in (("superior (head) end", cut_sup), ("inferior (feet) end", cut_inf)) if c)
        problems.append(f"the body is cut at the scan's {ends} (cross-section {cov.edge_area_cm2[1]:.0f} cm² at the "
                        f"top slice, {cov.edge_area_cm2[0]:.0f} cm² at the bottom slice)")
    missing = [r for r in REQUIRED_FOR_WHOLE_BODY if regions[r] is False]
    if missing:
        problems.append(f"the segmentation shows no {' or '.join(missing)}")
    if extent_cm < MIN_WHOLE_BODY_CM:
        problems.append(f"the body spans only {extent_cm:.0f} cm of the scan (a whole adult body spans at least "
                        f"{MIN_WHOLE_BODY_CM:.0f} cm)")
    if problems:
        covered = cov.covered()
        what = f" (covered: {', '.join(covered)})" if covered else ""
        cov.reason = "partial scan: " + "; ".join(problems) + what
    else:
        cov.whole_body = True
    return cov


def region_values() -> dict[str, list[int]]:
    """Fine label values of each region's markers."""
    return {r: [FINE_LABELS[n] for n in m] for r, m in REGION_MARKERS.items()}
