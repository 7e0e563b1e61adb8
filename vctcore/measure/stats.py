"""Per-slice, per-label statistics of a labelled CT, and the local measurements built on them.

One pass over the volume (:mod:`vctcore.measure.kernels`) gives, for every axial slice z and label
value v, the voxel count and the summed Appendix-B density (g/mL x voxels). Everything else derives
from these tables: masses, volumes, cross-sectional areas, mean HU (of the air-adjusted HU:
``1000 * rho - 1000``), and the z range of each structure. Bone density needs the HU of single
voxels and reads the CT in a small box around each vertebra. Arrays are (X, Y, Z) in RAS+; the slice axis is Z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vctcore.labels import FINE_LABELS
from vctcore.measure.composition import (
    MUSCLE_VALUES,
    Composition,
    composition_from_sums,
)
from vctcore.measure.kernels import slice_tables

#: erosion (mm) of a vertebra mask to its trabecular core (at least one voxel in-plane)
TRABECULAR_EROSION_MM = 3.0
#: share of a vertebra's anterior-posterior extent, from the front, that holds the vertebral body
BODY_AP_FRACTION = 0.30
BONE_DENSITY_LEVELS = ("L1", "L2", "L3")


@dataclass
class SliceStats:
    """``counts[z, v]`` voxels and ``rho[z, v]`` summed density of label value v in slice z."""

    counts: np.ndarray
    rho: np.ndarray
    spacing_mm: tuple[float, float, float]
    affine: np.ndarray

    @property
    def voxel_ml(self) -> float:
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def pixel_cm2(self) -> float:
        return self.spacing_mm[0] * self.spacing_mm[1] / 100.0

    def composition(self) -> Composition:
        """Appendix-B composition of everything labelled (see composition_from_sums)."""
        return composition_from_sums(self.rho.sum(axis=0), self.counts.sum(axis=0), self.voxel_ml)

    def body_area_cm2(self) -> np.ndarray:
        """Body cross-section (cm^2) per slice: labelled voxels (value > 0)."""
        return self.counts[:, 1:].sum(axis=1) * self.pixel_cm2

    def z_range(self, value: int) -> tuple[int, int] | None:
        """First and last slice holding label ``value``, or None."""
        zs = np.flatnonzero(self.counts[:, value])
        return (int(zs[0]), int(zs[-1])) if zs.size else None

    def group(self, values: np.ndarray | list[int], z: int | None = None) -> tuple[float, float]:
        """Voxel count and density sum of a label group (whole scan, or slice ``z``)."""
        c = self.counts if z is None else self.counts[z:z + 1]
        r = self.rho if z is None else self.rho[z:z + 1]
        return float(c[:, values].sum()), float(r[:, values].sum())

    def z_mm(self, z: float) -> float:
        """Superior coordinate (RAS mm) of slice index ``z`` at the volume's centre column."""
        return float(self.affine[2, 2] * z + self.affine[2, 3])


def slice_stats(hu: np.ndarray, labels: np.ndarray, spacing_mm: tuple[float, float, float],
                affine: np.ndarray) -> SliceStats:
    """Count and density tables of ``labels`` (values < 256) over ``hu`` (HU), one pass."""
    counts, adj = slice_tables(hu, labels)
    return from_tables(counts, adj, spacing_mm, affine)


def from_tables(counts: np.ndarray, adj: np.ndarray, spacing_mm: tuple[float, float, float],
                affine: np.ndarray) -> SliceStats:
    """SliceStats from kernel tables (``adj``: summed air-adjusted HU) -> density sums (g/mL x voxels)."""
    rho = (adj + 1000.0 * counts) / 1000.0
    return SliceStats(counts, rho, tuple(float(s) for s in spacing_mm), np.asarray(affine, dtype=np.float64))


def mean_hu(count: float, rho_sum: float) -> float | None:
    """Mean air-adjusted HU from a voxel count and density sum (None for no voxels)."""
    return 1000.0 * rho_sum / count - 1000.0 if count > 0 else None


# --- bone density --------------------------------------------------------------------------------
def _ellipsoid(radius_vox: np.ndarray) -> np.ndarray:
    r = np.maximum(radius_vox, 1e-6)
    n = np.floor(r).astype(int)
    x, y, z = np.ogrid[-n[0]:n[0] + 1, -n[1]:n[1] + 1, -n[2]:n[2] + 1]
    return (x / r[0]) ** 2 + (y / r[1]) ** 2 + (z / r[2]) ** 2 <= 1.0


def trabecular_core(mask: np.ndarray, spacing_mm: tuple[float, float, float], ap_axis_sign: float = 1.0) -> np.ndarray:
    """Trabecular core of one vertebra mask (bool (X, Y, Z) box).

    The vertebral body is the anterior ``BODY_AP_FRACTION`` of the vertebra's anterior-posterior
    extent (the arch, transverse and spinous processes lie behind it); it is eroded by
    ``TRABECULAR_EROSION_MM`` to drop the cortical shell (at least one voxel in-plane, and along z at
    least one slice when the vertebra spans four or more slices, to drop the endplates); the largest
    connected part remains. ``ap_axis_sign``: +1 when array axis 1 points anterior (RAS+).
    """
    ys = np.flatnonzero(mask.any(axis=(0, 2)))
    if ys.size == 0:
        return np.zeros_like(mask)
    ap = np.arange(mask.shape[1]) * ap_axis_sign
    front = ap[ys].max()
    body = mask & (ap > front - BODY_AP_FRACTION * (ys[-1] - ys[0] + 1))[None, :, None]
    radius = np.array([TRABECULAR_EROSION_MM / s for s in spacing_mm])
    radius[:2] = np.maximum(radius[:2], 1.0)
    if np.flatnonzero(mask.any(axis=(0, 1))).size >= 4:
        radius[2] = max(radius[2], 1.0)
    core = ndimage.binary_erosion(body, structure=_ellipsoid(radius))
    lab, n = ndimage.label(core)
    if n > 1:
        core = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return core


def vertebra_density(hu: np.ndarray, labels: np.ndarray, stats: SliceStats, level: str) -> tuple[float | None, str]:
    """Mean trabecular HU of vertebra ``level`` ("L1"...), or (None, reason)."""
    value = FINE_LABELS[f"vertebrae_{level}"]
    zr = stats.z_range(value)
    if zr is None:
        return None, f"vertebra {level} is not in the segmentation"
    z0, z1 = zr[0], zr[1] + 1
    slab = labels[:, :, z0:z1] == value
    xs = np.flatnonzero(slab.any(axis=(1, 2)))
    ys = np.flatnonzero(slab.any(axis=(0, 2)))
    box = (slice(xs[0], xs[-1] + 1), slice(ys[0], ys[-1] + 1))
    mask = np.pad(slab[box], 1)
    sign = float(np.sign(stats.affine[1, 1]) or 1.0)
    core = trabecular_core(mask, stats.spacing_mm, ap_axis_sign=sign)[1:-1, 1:-1, 1:-1]
    if not core.any():
        return None, f"vertebra {level} is too small at this resolution for a trabecular core"
    values = np.asarray(hu[box[0], box[1], z0:z1], dtype=np.float64)[core]
    return float(values.mean()), ""


def bone_density(hu: np.ndarray, labels: np.ndarray,
                 stats: SliceStats) -> tuple[float | None, dict[str, float], list[str]]:
    """Mean of the L1-L3 trabecular means (HU), per-level values, and notes on missing levels."""
    per_level, notes = {}, []
    for level in BONE_DENSITY_LEVELS:
        value, reason = vertebra_density(hu, labels, stats, level)
        if value is None:
            notes.append(reason)
            continue
        zr = stats.z_range(FINE_LABELS[f"vertebrae_{level}"])
        if zr and (zr[0] == 0 or zr[1] == labels.shape[2] - 1):
            notes.append(f"vertebra {level} touches the edge of the scan (partly covered)")
        per_level[level] = value
    mean = float(np.mean(list(per_level.values()))) if per_level else None
    return mean, per_level, notes


# --- L3 level ------------------------------------------------------------------------------------
@dataclass
class L3Slice:
    """Tissue cross-sections (cm^2) and muscle mean HU on the axial slice through L3's centre."""

    z_index: int
    z_mm: float
    sat_area_cm2: float
    vat_area_cm2: float
    muscle_area_cm2: float
    muscle_hu: float | None


def l3_slice(stats: SliceStats) -> L3Slice | None:
    """Tissue areas at the slice through the centre (voxel-weighted) of vertebra L3, or None."""
    counts = stats.counts[:, FINE_LABELS["vertebrae_L3"]]
    if counts.sum() == 0:
        return None
    z = int(round(float((np.arange(counts.size) * counts).sum() / counts.sum())))
    px = stats.pixel_cm2
    sat, _ = stats.group([FINE_LABELS["subcutaneous_fat"]], z)
    vat, _ = stats.group([FINE_LABELS["visceral_fat"]], z)
    mus_n, mus_rho = stats.group(MUSCLE_VALUES, z)
    return L3Slice(z, stats.z_mm(z), sat * px, vat * px, mus_n * px, mean_hu(mus_n, mus_rho))


__all__ = ["L3Slice", "SliceStats", "bone_density", "l3_slice", "mean_hu", "slice_stats",
           "trabecular_core", "vertebra_density"]
