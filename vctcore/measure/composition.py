"""Body composition from HU and labels (paper Appendix B).

Density ``rho = (HU + 1000) / (HU_rho + 1000)`` in g/mL (``HU_rho`` = 0: water as the reference
material, so water is 1 g/mL and fat at -100 HU is 0.9 g/mL); voxels at or below -900 HU count as
air (-1000 HU, zero mass). Mass (kg) is the density summed over a mask times the voxel volume.
BFP and MMP are fat and skeletal-muscle mass as a percentage of body mass.

Both the phantom builder (its calibration loop) and the measurement module (:mod:`vctcore.measure`)
go through :func:`composition_from_sums`, so a phantom measured with its own labels reproduces the
numbers it was calibrated to.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from vctcore.labels import BONE_LABELS, FAT_LABELS, FINE_LABELS, MUSCLE_LABELS

AIR_CUTOFF_HU = -900.0
#: label value for bone voxels whose bone is not identified (threshold backend, merged class maps);
#: not a fine label: it only exists inside measurement label arrays
UNSPECIFIED_BONE = 255
#: label value for body voxels at -29..150 HU (above the fat range, up to 150 HU) that the threshold backend
#: cannot name: skeletal muscle, organs, bowel wall, vessels and skin together; like UNSPECIFIED_BONE not a
#: fine label, and not muscle (composition counts it in the body only)
THRESHOLD_SOFT_TISSUE = 254
N_LABEL_VALUES = 256


def density_g_ml(hu: np.ndarray, hu_rho: float = 0.0) -> np.ndarray:
    """Voxel mass density (g/mL, float32) from HU, with HU <= -900 treated as air (Appendix B, eq. B1)."""
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
    bone_kg: float = float("nan")


def _values(names: Iterable[str]) -> np.ndarray:
    return np.array([FINE_LABELS[n] for n in names], dtype=np.int64)


FAT_VALUES = _values(FAT_LABELS)
MUSCLE_VALUES = _values(MUSCLE_LABELS)
BONE_VALUES = np.append(_values(BONE_LABELS), UNSPECIFIED_BONE)


def label_sums(hu: np.ndarray, labels: np.ndarray, *, hu_rho: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per label value (0..255): summed density (g/mL x voxels, float64) and voxel count (int64)."""
    rho = density_g_ml(hu, hu_rho)
    flat = labels.ravel()
    grams = np.bincount(flat, weights=rho.ravel(), minlength=N_LABEL_VALUES)
    counts = np.bincount(flat, minlength=N_LABEL_VALUES)
    return grams, counts


def composition_from_sums(rho_sum: np.ndarray, counts: np.ndarray, voxel_volume_ml: float) -> Composition:
    """Composition from per-label density sums and voxel counts (index = label value, 0 = outside).

    The body is every labelled voxel (value > 0); fat, muscle and bone are the fine label groups
    ``FAT_LABELS``, ``MUSCLE_LABELS`` and ``BONE_LABELS`` (plus ``UNSPECIFIED_BONE``).
    """
    grams = np.asarray(rho_sum, dtype=np.float64) * voxel_volume_ml
    body = float(grams[1:].sum()) / 1000.0
    fat = float(grams[FAT_VALUES].sum()) / 1000.0
    muscle = float(grams[MUSCLE_VALUES].sum()) / 1000.0
    bone = float(grams[BONE_VALUES[BONE_VALUES < len(grams)]].sum()) / 1000.0
    volume_l = float(np.asarray(counts)[1:].sum()) * voxel_volume_ml / 1000.0
    if body <= 0:
        raise ValueError("the body has no mass: no labelled voxel is above the air cut-off (-900 HU)")
    return Composition(mass_kg=body, fat_kg=fat, muscle_kg=muscle, bfp_pct=100.0 * fat / body,
                       mmp_pct=100.0 * muscle / body, body_volume_l=volume_l, bone_kg=bone)


def composition_from_labels(hu: np.ndarray, labels: np.ndarray, voxel_volume_ml: float, *,
                            hu_rho: float = 0.0) -> Composition:
    """Composition of a body whose fine labels are known (phantom or label-map backend).

    ``hu`` and ``labels`` are (X, Y, Z) arrays; the body is every labelled voxel (label > 0).
    """
    rho_sum, counts = label_sums(hu, labels, hu_rho=hu_rho)
    return composition_from_sums(rho_sum, counts, voxel_volume_ml)
