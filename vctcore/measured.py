"""What a patient's image measures, beside what was asked for: requested vs measured attributes.

One measurement for every image, phantom or synthetic (the trial's, :mod:`vctcore.trial.ground_truth`):
:func:`vctcore.fidelity.measures.image_measurements` on the CT (HU) and its 16-class merged
segmentation, with ``height_cm`` the head-to-foot extent mapped by the shipped extent -> height fit
(:class:`vctcore.trial.ground_truth.HeightCalibration`). A cohort measured with ``vct measure --cohort``
(``DIR/measurements.csv``, :mod:`vctcore.measure.cohort`) is read instead of measuring again.

Attribute names and units are those of :mod:`vctcore.attributes`; values are NaN where not measurable.
No UI imports; torch is imported only when an image is measured (through vctcore.fidelity.measures).
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vctcore.attributes import ATTRIBUTES
from vctcore.volume import CTVolume, LabelMap

#: measured quantities, in table order: attribute name -> (label, unit)
MEASURED: dict[str, tuple[str, str]] = {
    "weight_kg": ("Weight", "kg"),
    "height_cm": ("Height", "cm"),
    "bfp_pct": ("Body fat", "%"),
    "mmp_pct": ("Muscle", "%"),
    "bone_density_hu": ("Bone density", "HU"),
    "body_volume_l": ("Body volume", "L"),
    "extent_cm": ("Head-to-foot extent", "cm"),
}
#: ``measurements.csv`` column (:meth:`vctcore.measure.Measurements.to_row`) -> attribute name
COHORT_COLUMNS: dict[str, str] = {"mass_kg": "weight_kg", "height_cm": "height_cm", "bfp_pct": "bfp_pct",
                                  "mmp_pct": "mmp_pct", "bone_density_hu": "bone_density_hu",
                                  "body_volume_l": "body_volume_l"}
IMAGE_METHOD = ("measured from the CT and its 16-class segmentation as the trial measures every image "
                "(weight and body volume from HU density over the body; fat and muscle by HU outside the "
                "labelled organs, so muscle includes the other lean soft tissue; lumbar trabecular HU; height "
                "from the head-to-foot extent)")
COHORT_METHOD = "the cohort's measurement table (vct measure --cohort, backend {backend})"


@dataclass(frozen=True)
class MeasuredAttributes:
    """Measured attribute values (name -> value, NaN where not measurable), how, and why not."""

    values: dict[str, float]
    method: str
    notes: tuple[str, ...] = field(default_factory=tuple)


def _number(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out if math.isfinite(out) else math.nan


def measure_attributes(ct: CTVolume, seg: LabelMap) -> MeasuredAttributes:
    """Measure one image (CT in HU, merged-class ``seg`` on its grid) the trial's way; see the module doc."""
    from vctcore.fidelity.measures import image_measurements
    from vctcore.trial.ground_truth import HeightCalibration

    out = image_measurements(ct, seg)
    values = {k: _number(out.get(k)) for k in MEASURED if k != "height_cm"}
    values["height_cm"] = float(HeightCalibration.load().apply(values["extent_cm"]))
    return MeasuredAttributes({k: values[k] for k in MEASURED}, IMAGE_METHOD, tuple(out.get("notes", ())))


def cohort_measurements(root: str | os.PathLike) -> pd.DataFrame | None:
    """The cohort's ``measurements.csv`` indexed by patient id (str), or None when it has none."""
    path = Path(root) / "measurements.csv"
    if not path.exists():
        return None
    table = pd.read_csv(path, dtype={"id": str})
    return table.set_index("id") if "id" in table else None


def from_cohort_row(row: Mapping[str, Any] | pd.Series) -> MeasuredAttributes:
    """One row of ``measurements.csv`` as :class:`MeasuredAttributes` (its columns renamed to attributes)."""
    row = dict(row)
    values = {attr: _number(row.get(col)) for col, attr in COHORT_COLUMNS.items()}
    error = row.get("error")
    notes = (str(error),) if isinstance(error, str) and error else ()
    return MeasuredAttributes(values, COHORT_METHOD.format(backend=row.get("backend", "?")), notes)


def requested_vs_measured(requested: Mapping[str, Any], measured: MeasuredAttributes) -> pd.DataFrame:
    """Table of every measured quantity: ``quantity``, ``unit``, ``requested`` (NaN where the patient has
    no such attribute), ``measured``, ``difference`` (measured - requested)."""
    rows = []
    for name, (label, unit) in MEASURED.items():
        if name not in measured.values:
            continue
        want = _number(requested.get(name)) if name in ATTRIBUTES else math.nan
        got = measured.values[name]
        rows.append({"quantity": label, "unit": unit, "requested": want, "measured": got, "difference": got - want})
    return pd.DataFrame(rows, columns=["quantity", "unit", "requested", "measured", "difference"])


def organ_volumes_ml(seg: np.ndarray, spacing_mm: tuple[float, float, float]) -> dict[str, float]:
    """Volume (mL) of every merged class in ``seg`` ((X, Y, Z) uint8), absent classes 0."""
    from vctcore.labels import MERGED_CLASSES

    counts = np.bincount(np.asarray(seg).ravel(), minlength=len(MERGED_CLASSES))
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    return {name: float(counts[v]) * voxel_ml for v, name in MERGED_CLASSES.items() if v}
