"""Body composition from HU and labels (paper Appendix B).

Density ``rho = (HU + 1000) / (HU_rho + 1000)`` in g/mL (``HU_rho`` = 0: water as the reference
material, so water is 1 g/mL and fat at -100 HU is 0.9 g/mL); voxels at or below -900 HU count as
air (-1000 HU, zero mass). Mass (kg) is the density summed over a mask times the voxel volume.
BFP and MMP are fat and skeletal-muscle mass as a percentage of body mass.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vctcore.labels import FAT_LABELS, FINE_LABELS, MUSCLE_LABELS

AIR_CUTOFF_HU = -900.0


def density_g_ml(hu: np.ndarray, hu_rho: float = 0.0) -> np.ndarray:
    """Voxel mass density (g/mL) from HU, with HU <= -900 treated as air (Appendix B, eq. B1)."""
    hu = np.asarray(hu, dtype=np.float32)
    adjusted = np.where(hu <= AIR_CUTOFF_HU, np.float32(-1000.0), hu)
    return (adjusted + np.float32(1000.0)) / np.float32(hu_rho + 1000.0)


@dataclass(frozen=True)
class Composition:
    """Masses in kg and fractions in % of body mass; volume in L."""

    mass_kg: float
    fat_kg: float
    muscle_kg: float
    bfp_pct: float
    mmp_pct: float
    body_volume_l: float


def _values(names: Iterable[str]) -> np.ndarray:
    return np.array([FINE_LABELS[n] for n in names], dtype=np.int64)


def composition_from_labels(hu: np.ndarray, labels: np.ndarray, voxel_volume_ml: float, *,
                            hu_rho: float = 0.0) -> Composition:
    """Composition of a body whose fine labels are known (phantom or label-map backend).

    ``hu`` and ``labels`` are (X, Y, Z) arrays; the body is every labelled voxel (label > 0).
    """
    rho = density_g_ml(hu, hu_rho)
    per_label = np.bincount(labels.ravel(), weights=rho.ravel().astype(np.float64), minlength=256)
    counts = np.bincount(labels.ravel(), minlength=256)
    grams = per_label * voxel_volume_ml
    body = float(grams[1:].sum()) / 1000.0
    fat = float(grams[_values(FAT_LABELS)].sum()) / 1000.0
    muscle = float(grams[_values(MUSCLE_LABELS)].sum()) / 1000.0
    volume_l = float(counts[1:].sum()) * voxel_volume_ml / 1000.0
    return Composition(mass_kg=body, fat_kg=fat, muscle_kg=muscle, bfp_pct=100.0 * fat / body,
                       mmp_pct=100.0 * muscle / body, body_volume_l=volume_l)
