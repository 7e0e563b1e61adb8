"""HU-threshold body and tissue segmentation (the standard opportunistic body-composition approach).

Arrays are (X, Y, Z) in RAS+ voxel order; HU in Hounsfield units; lengths in mm.

* Body: voxels above ``body_hu`` (-500 HU) on a coarse grid (about 4 mm), opened in-plane with a
  3x3 cross so thin structures (the patient table, blankets, cables) detach, the connected components
  of at least 10 % of the largest one's volume (so both legs of a legs-only scan count, a small
  object beside the patient does not), grown back by two coarse voxels within the above-threshold
  voxels, holes filled per axial slice (lungs, bowel gas) and then in 3D. At full resolution the
  coarse mask's interior is body, and in the one-coarse-voxel band around its edge every voxel
  above the Appendix-B air cut-off (-900 HU) is body, so the partial-volume rim of the skin counts
  (as it does in a label map).
* Tissues inside the body: fat ``fat_hu`` (-190..-30 HU), lean tissue (-30..150 HU], bone from
  ``bone_hu`` (200 HU) up, the rest "soft tissue". The lean class is labelled ``lean_label``:
  skeletal muscle where a label map of organs identifies what else is there (``known``), and
  ``THRESHOLD_SOFT_TISSUE`` for the threshold backend alone, which cannot tell skeletal muscle from
  organs, bowel wall, vessels and skin (they share -29..150 HU). Fat enclosed by the muscle/bone envelope of
  its axial slice (closed with a 10 mm disc, skin excluded) is visceral, the rest subcutaneous; in
  the limbs the enclosed fat is intermuscular fat.
* With a label map of organs and bones (``known``), labelled voxels keep their label: organs are not
  counted as muscle, and when bones are labelled, dense voxels outside them (contrast, calcified
  vessels) are soft tissue rather than bone.

On TotalSegmentator's example abdominal CT the lean class is 3.9 times the skeletal muscle of
TotalSegmentator's tissue-types segmentation of the same slab (tests/test_measure_tissues.py), which is
why the threshold backend reports it as soft tissue and measures no muscle.

:func:`body_geometry` (the coarse body, its edge band and the visceral-fat region) depends on the HU alone,
so a caller that measures one CT with two backends passes it to both (``measure(..., geometry=)``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vctcore.labels import BONE_LABELS, FINE_LABELS
from vctcore.measure.composition import UNSPECIFIED_BONE
from vctcore.measure.kernels import classify
from vctcore.measure.morphology import fill_holes

COARSE_MM = 4.0
KEEP_COMPONENT_FRACTION = 0.10
#: after the opening that detaches the table, the kept body grows back this many coarse voxels
RESTORE_VOXELS = 2
ENVELOPE_CLOSING_MM = 10.0
SKIN_MM = 5.0

SAT, VAT = FINE_LABELS["subcutaneous_fat"], FINE_LABELS["visceral_fat"]
MUSCLE, SOFT = FINE_LABELS["skeletal_muscle"], FINE_LABELS["soft_tissue"]
_BONE_VALUES = np.array([FINE_LABELS[n] for n in BONE_LABELS])


@dataclass(frozen=True)
class Thresholds:
    """HU limits of the threshold backend (all in HU)."""

    body_hu: float = -500.0
    fat_hu: tuple[float, float] = (-190.0, -30.0)
    muscle_max_hu: float = 150.0
    bone_hu: float = 200.0


DEFAULT_THRESHOLDS = Thresholds()


def coarse_factors(spacing_mm: tuple[float, float, float], target_mm: float = COARSE_MM) -> tuple[int, int, int]:
    """Integer subsampling factor per axis so the coarse grid is about ``target_mm`` (at least 1)."""
    return tuple(max(1, int(round(target_mm / s))) for s in spacing_mm)  # type: ignore[return-value]


def _plane(radius_vox: tuple[float, float]) -> np.ndarray:
    """In-plane (X, Y) elliptic disc structuring element, shape (2rx+1, 2ry+1, 1)."""
    rx, ry = (max(1.0, r) for r in radius_vox)
    nx, ny = int(np.floor(rx)), int(np.floor(ry))
    x, y = np.ogrid[-nx:nx + 1, -ny:ny + 1]
    return ((x / rx) ** 2 + (y / ry) ** 2 <= 1.0)[:, :, None]


_CROSS_2D = ndimage.generate_binary_structure(2, 1)[:, :, None]


def body_mask_coarse(coarse_hu: np.ndarray, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Filled body mask on the coarse grid (bool, same shape as ``coarse_hu``); all False if no body."""
    above = coarse_hu > thresholds.body_hu
    opened = ndimage.binary_opening(above, structure=_CROSS_2D)
    lab, n = ndimage.label(opened)
    if n == 0:
        return np.zeros(coarse_hu.shape, dtype=bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    keep = sizes >= KEEP_COMPONENT_FRACTION * sizes.max()
    body = ndimage.binary_dilation(keep[lab], structure=_CROSS_2D, iterations=RESTORE_VOXELS) & above
    body = fill_holes(body, structure=_CROSS_2D)
    return fill_holes(body)


def envelope_coarse(coarse_hu: np.ndarray, body: np.ndarray, spacing_mm: tuple[float, float, float],
                    thresholds: Thresholds = DEFAULT_THRESHOLDS) -> np.ndarray:
    """Per axial slice, the region enclosed by muscle and bone (skin excluded): visceral-fat region."""
    sx, sy = spacing_mm[0], spacing_mm[1]
    inner = ndimage.binary_erosion(body, structure=_plane((SKIN_MM / sx, SKIN_MM / sy)))
    lean = (coarse_hu > thresholds.fat_hu[1]) & inner
    disc = _plane((ENVELOPE_CLOSING_MM / sx, ENVELOPE_CLOSING_MM / sy))
    pad = disc.shape[0] // 2 + 1, disc.shape[1] // 2 + 1
    padded = np.pad(lean, (pad, pad, (0, 0)))
    closed = ndimage.binary_closing(padded, structure=disc)[pad[0]:-pad[0], pad[1]:-pad[1]]
    return fill_holes(closed, structure=_CROSS_2D) & body


@dataclass(frozen=True)
class BodyGeometry:
    """The coarse masks :func:`threshold_labels` derives from the HU alone (bool, on the coarse grid of
    ``factors`` voxels per coarse voxel along X, Y, Z): the body's interior, the one-voxel band around
    its edge, and the visceral-fat region. Computing them is most of a threshold segmentation's cost,
    so a caller that segments one CT twice (with and without a label map) computes them once."""

    factors: tuple[int, int, int]
    interior: np.ndarray
    band: np.ndarray
    vat: np.ndarray
    shape: tuple[int, int, int]


def body_geometry(hu: np.ndarray, spacing_mm: tuple[float, float, float],
                  thresholds: Thresholds = DEFAULT_THRESHOLDS) -> BodyGeometry:
    """The :class:`BodyGeometry` of a CT (HU, (X, Y, Z)) with voxels of ``spacing_mm``."""
    factors = coarse_factors(spacing_mm)
    coarse_hu = np.ascontiguousarray(hu[::factors[0], ::factors[1], ::factors[2]], dtype=np.float32)
    body_c = body_mask_coarse(coarse_hu, thresholds)
    coarse_spacing = tuple(s * f for s, f in zip(spacing_mm, factors))
    vat_c = envelope_coarse(coarse_hu, body_c, coarse_spacing, thresholds)  # type: ignore[arg-type]
    interior_c = ndimage.binary_erosion(body_c)
    band_c = ndimage.binary_dilation(body_c) & ~interior_c
    return BodyGeometry(factors, interior_c, band_c, vat_c, tuple(hu.shape))  # type: ignore[arg-type]


def threshold_labels(hu: np.ndarray, spacing_mm: tuple[float, float, float], known: np.ndarray | None = None,
                     thresholds: Thresholds = DEFAULT_THRESHOLDS, geometry: BodyGeometry | None = None,
                     lean_label: int = MUSCLE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fine labels (uint8, (X, Y, Z)) from HU thresholds inside the body mask; 0 outside the body.

    Values: subcutaneous_fat, visceral_fat, ``lean_label`` (body voxels above the fat range up to
    ``muscle_max_hu``; default skeletal_muscle), soft_tissue, ``UNSPECIFIED_BONE``, and where ``known``
    (fine label values, same shape) is non-zero, its labels. Also returns the
    per-slice tables of the labels (``counts[z, v]``, ``adj[z, v]``; see :mod:`vctcore.measure.kernels`).
    ``geometry``: this CT's :func:`body_geometry` (with these ``thresholds``) when already computed.
    """
    if geometry is None:
        geometry = body_geometry(hu, spacing_mm, thresholds)
    elif geometry.shape != tuple(hu.shape) or geometry.factors != coarse_factors(spacing_mm):
        raise ValueError(f"body geometry of a {geometry.shape} grid (coarse factors {geometry.factors}) does not fit "
                         f"a {tuple(hu.shape)} CT at {tuple(spacing_mm)} mm")
    bones_known = known is not None and bool(np.isin(np.flatnonzero(np.bincount(known[::2, ::2, ::2].ravel())),
                                                     _BONE_VALUES).any())
    limits = (*thresholds.fat_hu, thresholds.muscle_max_hu, thresholds.bone_hu)
    return classify(hu, geometry.interior, geometry.band, geometry.vat, geometry.factors, known, bones_known, limits,
                    (SAT, VAT, lean_label, SOFT, UNSPECIFIED_BONE))
