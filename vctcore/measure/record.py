"""The measurement record of one CT: typed fields with units in their names, JSON and table output.

A whole-body field is None when the scan cannot give it; ``not_measurable[field]`` then says why.
Units: kg, % (of body mass), L, HU, cm, cm², mm.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


class MeasureError(ValueError):
    """The CT cannot be measured at all (no body, bad grid); the message names the problem."""


WHOLE_BODY_FIELDS = ("mass_kg", "fat_kg", "muscle_kg", "bone_kg", "bfp_pct", "mmp_pct", "body_volume_l", "height_cm")
#: how :meth:`Measurements.table` names a tissue group of ``scan_volume_l`` (others: their key)
SCAN_LABELS = {"soft_tissue": "soft tissue -29..150 HU"}
L3_FIELDS = ("l3_sat_area_cm2", "l3_vat_area_cm2", "l3_muscle_area_cm2", "l3_muscle_hu")


@dataclass
class Measurements:
    """Body measurements of one CT.

    Whole body (None unless the scan covers the whole body): ``mass_kg`` (Appendix-B density summed
    over the body), ``fat_kg``, ``muscle_kg`` (skeletal muscle), ``bone_kg``, ``bfp_pct`` and
    ``mmp_pct`` (fat and muscle mass as % of body mass), ``body_volume_l``, ``height_cm`` (pose-aware,
    ``vctcore.measure.height``) with ``height_segments_cm`` and ``height_calibrated``. Skeletal muscle
    (``muscle_kg``, ``mmp_pct``, ``l3_muscle_*``, ``scan_volume_l["muscle"]``) needs a segmentation
    that identifies muscle; the threshold backend reports ``soft_tissue_kg`` instead: the mass of
    every body voxel at -29..150 HU (skeletal muscle, organs, bowel wall, vessels and skin together),
    and ``scan_volume_l["soft_tissue"]`` / ``scan_mean_hu["soft_tissue"]`` for that class.

    Local (measurable on partial scans): ``bone_density_hu`` (mean trabecular HU of the L1-L3
    vertebral bodies, mean over the levels found; ``bone_density_levels_hu`` per level), tissue areas
    (cm²) and muscle mean HU on the axial slice through L3 (``l3_*``), and volumes (L) and mean HU of
    each tissue within the scanned range (``scan_volume_l``, ``scan_mean_hu``; HU at or below -900
    count as -1000).

    Provenance: ``backend``, ``vocabulary`` (how the labels were read), ``coverage``
    (:class:`vctcore.measure.coverage.Coverage` as a dict), ``warnings``, ``notes``, ``not_measurable``
    (field -> reason), grid ``shape`` (X, Y, Z voxels) and ``spacing_mm``, ``seconds`` taken.
    """

    backend: str
    vocabulary: str
    shape: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    mass_kg: float | None = None
    fat_kg: float | None = None
    muscle_kg: float | None = None
    bone_kg: float | None = None
    soft_tissue_kg: float | None = None
    bfp_pct: float | None = None
    mmp_pct: float | None = None
    body_volume_l: float | None = None
    height_cm: float | None = None
    height_segments_cm: dict[str, float] = field(default_factory=dict)
    height_calibrated: bool | None = None
    bone_density_hu: float | None = None
    bone_density_levels_hu: dict[str, float] = field(default_factory=dict)
    l3_z_mm: float | None = None
    l3_sat_area_cm2: float | None = None
    l3_vat_area_cm2: float | None = None
    l3_muscle_area_cm2: float | None = None
    l3_muscle_hu: float | None = None
    scan_volume_l: dict[str, float] = field(default_factory=dict)
    scan_mean_hu: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_measurable: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (floats rounded to 4 decimals, NaN -> None)."""
        return _clean(asdict(self))

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_row(self) -> dict[str, Any]:
        """One flat CSV row: scalars, per-level/per-tissue values as ``<field>.<key>``, lists joined."""
        d = self.to_dict()
        row: dict[str, Any] = {}
        for key, value in d.items():
            if key == "coverage":
                row["whole_body"] = value.get("whole_body")
                row["regions_covered"] = ";".join(r for r, v in value.get("regions", {}).items() if v)
                row["cut_superior"], row["cut_inferior"] = value.get("cut_superior"), value.get("cut_inferior")
                row["body_extent_cm"] = value.get("body_extent_cm")
            elif isinstance(value, dict):
                for k, v in value.items():
                    row[f"{key}.{k}"] = v
            elif isinstance(value, list):
                row[key] = " | ".join(map(str, value))
            else:
                row[key] = value
        row["not_measurable"] = json.dumps(self.not_measurable, ensure_ascii=False) if self.not_measurable else ""
        return row

    def table(self) -> str:
        """Readable multi-line summary."""
        lines = [f"backend: {self.backend} (labels: {self.vocabulary}); grid {self.shape} at "
                 f"{', '.join(f'{s:g}' for s in self.spacing_mm)} mm"]
        cov = self.coverage
        covered = ", ".join(r for r, v in cov.get("regions", {}).items() if v) or "unknown (no labels)"
        lines.append(f"coverage: {'whole body' if cov.get('whole_body') else 'partial'}; regions: {covered}; "
                     f"body extent {cov.get('body_extent_cm', 0):.1f} cm")
        rows = self.summary_rows()
        width = max(len(r[0]) for r in rows)
        for label, value, unit, why in rows:
            if value is not None:
                lines.append(f"  {label:<{width}}  {value:9.2f} {unit}")
            else:
                lines.append(f"  {label:<{width}}  {'-':>9}   ({why})")
        if self.scan_volume_l:
            vols = ", ".join(f"{SCAN_LABELS.get(k, k)} {v:.2f}" for k, v in self.scan_volume_l.items())
            lines.append(f"  within the scan (L): {vols}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def summary_rows(self) -> list[tuple[str, float | None, str, str]]:
        """The headline quantities as ``(label, value, unit, why not measured)`` rows (``why`` is "" when
        measured; a partial scan's reason is shortened to point at the coverage line)."""
        rows = [("mass", "mass_kg", "kg"), ("fat mass", "fat_kg", "kg"), ("muscle mass", "muscle_kg", "kg"),
                ("bone mass", "bone_kg", "kg"), *self._soft_tissue_row(), ("body fat", "bfp_pct", "%"),
                ("muscle mass share", "mmp_pct", "%"), ("body volume", "body_volume_l", "L"),
                ("height", "height_cm", "cm"), ("bone density (L1-L3)", "bone_density_hu", "HU"),
                ("L3 subcutaneous fat", "l3_sat_area_cm2", "cm²"), ("L3 visceral fat", "l3_vat_area_cm2", "cm²"),
                ("L3 muscle", "l3_muscle_area_cm2", "cm²"), ("L3 muscle attenuation", "l3_muscle_hu", "HU")]
        partial = self.coverage.get("reason")
        out = []
        for label, name, unit in rows:
            value = getattr(self, name)
            why = "" if value is not None else self.not_measurable.get(name, "not measured")
            out.append((label, value, unit, "partial scan, see coverage" if partial and why == partial else why))
        return out

    def _soft_tissue_row(self) -> list[tuple[str, str, str]]:
        """The soft-tissue row of :meth:`table`, where this record has that quantity (threshold backend)."""
        if self.soft_tissue_kg is None and "soft_tissue_kg" not in self.not_measurable:
            return []
        return [("soft tissue -29..150 HU", "soft_tissue_kg", "kg")]


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 4)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
