"""Slice rendering for CT volumes: HU windows, radiological slice orientation, label overlays.

Pure numpy/scipy, no UI imports; the app pages and the PDF report both draw through here.

Conventions
-----------
* Volumes are ``(X, Y, Z)`` arrays on RAS+ voxel axes (the NIfTI / nibabel convention, affine with
  a positive diagonal): index ``i`` grows toward the patient's **R**\\ ight, ``j`` toward
  **A**\\ nterior, ``k`` toward **S**\\ uperior. CT values are Hounsfield units (HU); spacing is
  ``(sx, sy, sz)`` in mm.
* Slices are returned as ``(rows, cols)`` images laid out for display the radiological way:

  ========  ==================  =================  =========================
  plane     slices along        image top          image left
  ========  ==================  =================  =========================
  axial     Z (index k)         anterior           patient right (seen from the feet)
  coronal   Y (index j)         superior           patient right (patient facing you)
  sagittal  X (index i)         superior           anterior (seen from the patient's left)
  ========  ==================  =================  =========================

  Row 0 is the top of the image and column 0 its left, as in every image library.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from scipy import ndimage

from vctcore.labels import MERGED_CLASSES

Plane = Literal["axial", "coronal", "sagittal"]
PLANES: tuple[Plane, ...] = ("axial", "coronal", "sagittal")

#: volume axis that each plane slices through (0 = X / R-L, 1 = Y / A-P, 2 = Z / S-I)
PLANE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}

#: HU window presets: name -> (level, width) in HU
WINDOWS: dict[str, tuple[float, float]] = {
    "soft tissue": (40.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}

#: the 16 merged classes -> RGB (0..255). Okabe-Ito and Paul Tol colours first (colour-blind safe);
#: classes that touch (lung lobes, heart/aorta, bone/appendicular bones) get far-apart hues.
MERGED_COLOURS: dict[int, tuple[int, int, int]] = {
    1: (240, 228, 66),  # bone: yellow
    2: (204, 121, 167),  # spleen: reddish purple
    3: (230, 159, 0),  # kidney: orange
    4: (136, 34, 85),  # liver: wine
    5: (86, 180, 233),  # lung upper lobes: sky blue
    6: (0, 114, 178),  # lung lower lobes: blue
    7: (68, 170, 153),  # lung middle lobe: teal
    8: (136, 204, 238),  # urinary bladder: light cyan
    9: (204, 102, 119),  # prostate: rose
    10: (213, 94, 0),  # heart: vermillion
    11: (117, 112, 179),  # aorta: violet
    12: (17, 119, 51),  # gluteus muscles: green
    13: (0, 158, 115),  # autochthonous muscles: bluish green
    14: (153, 153, 51),  # iliopsoas: olive
    15: (238, 153, 170),  # brain: light rose
    16: (238, 136, 102),  # appendicular bones: salmon
}


def window(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map HU to 8-bit grey with a linear window.

    ``level - width/2`` and below -> 0, ``level + width/2`` and above -> 255, linear in between
    (rounded to nearest). ``hu`` may have any shape; the result has the same shape, dtype uint8.
    """
    if not width > 0:
        raise ValueError(f"window: width must be > 0 HU, got {width}")
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float64) - lo) * (255.0 / width)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def slice_2d(volume: np.ndarray, plane: Plane, index: int) -> np.ndarray:
    """One slice of an ``(X, Y, Z)`` RAS+ volume, oriented for radiological display.

    ``index`` is the voxel index along the plane's axis (``PLANE_AXIS``); see the module docstring
    for the layout. Returns a ``(rows, cols)`` view-free copy: axial ``(Y, X)``, coronal ``(Z, X)``,
    sagittal ``(Z, Y)``.
    """
    if volume.ndim != 3:
        raise ValueError(f"slice_2d: volume must be 3D (X, Y, Z), got shape {volume.shape}")
    if plane not in PLANE_AXIS:
        raise ValueError(f"slice_2d: plane must be one of {PLANES}, got {plane!r}")
    axis = PLANE_AXIS[plane]
    n = volume.shape[axis]
    if not 0 <= index < n:
        raise IndexError(f"slice_2d: {plane} index {index} outside 0..{n - 1}")
    plane_2d = np.take(volume, index, axis=axis)  # axial (X, Y), coronal (X, Z), sagittal (Y, Z)
    # Transpose puts the second in-plane axis on rows; flipping both puts anterior/superior on top
    # and patient right (axial, coronal) or anterior (sagittal) on the left.
    return np.ascontiguousarray(plane_2d.T[::-1, ::-1])


def _in_plane_spacing(spacing_mm: Sequence[float], plane: Plane) -> tuple[float, float]:
    """(row spacing, column spacing) in mm of a slice from ``slice_2d``."""
    sx, sy, sz = (float(s) for s in spacing_mm)
    if min(sx, sy, sz) <= 0:
        raise ValueError(f"spacing_mm must be positive, got {tuple(spacing_mm)}")
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def display_aspect(spacing_mm: Sequence[float], plane: Plane) -> float:
    """Pixel aspect ratio (height / width, in mm) of a ``slice_2d`` image.

    Use as ``imshow(..., aspect=display_aspect(...))``; e.g. 6x6x8 mm coronal -> 8/6.
    """
    rows_mm, cols_mm = _in_plane_spacing(spacing_mm, plane)
    return rows_mm / cols_mm


def resample_for_display(
    slice2d: np.ndarray,
    spacing_mm: Sequence[float],
    plane: Plane,
    *,
    pixel_mm: float | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample a ``slice_2d`` image onto square pixels of ``pixel_mm`` (default: finest in-plane spacing).

    Output shape is ``round(n_rows * row_mm / pixel_mm), round(n_cols * col_mm / pixel_mm)``.
    ``order=0`` (nearest) for label maps, 1 (linear) for HU or grey; the dtype is kept.
    """
    rows_mm, cols_mm = _in_plane_spacing(spacing_mm, plane)
    pixel_mm = float(pixel_mm) if pixel_mm is not None else min(rows_mm, cols_mm)
    if pixel_mm <= 0:
        raise ValueError(f"resample_for_display: pixel_mm must be > 0, got {pixel_mm}")
    out_shape = (
        max(1, round(slice2d.shape[0] * rows_mm / pixel_mm)),
        max(1, round(slice2d.shape[1] * cols_mm / pixel_mm)),
    )
    if out_shape == slice2d.shape:
        return slice2d.copy()
    zoom = (out_shape[0] / slice2d.shape[0], out_shape[1] / slice2d.shape[1])
    out = ndimage.zoom(slice2d, zoom, order=order, mode="nearest", grid_mode=True)
    return out.astype(slice2d.dtype, copy=False)


def overlay_rgba(
    labels2d: np.ndarray,
    colours: Mapping[int, tuple[int, int, int]] = MERGED_COLOURS,
    opacity: float = 0.5,
) -> np.ndarray:
    """RGBA overlay ``(H, W, 4)`` uint8 of a 2D label image: each listed label in its colour with
    alpha ``round(255 * opacity)``; background (0) and labels without a colour are transparent."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"overlay_rgba: opacity must be in [0, 1], got {opacity}")
    labels2d = np.asarray(labels2d)
    lut_size = max([int(labels2d.max(initial=0)) + 1, *(int(k) + 1 for k in colours)])
    lut = np.zeros((lut_size, 4), dtype=np.uint8)
    alpha = round(255 * opacity)
    for value, rgb in colours.items():
        if value != 0:
            lut[value, :3] = rgb
            lut[value, 3] = alpha
    return lut[labels2d.astype(np.intp)]


def blend(grey: np.ndarray, overlay: np.ndarray | None = None) -> np.ndarray:
    """Alpha-composite an RGBA ``overlay`` (H, W, 4) over a uint8 ``grey`` (H, W) image -> RGB (H, W, 3) uint8."""
    rgb = np.repeat(np.asarray(grey, dtype=np.uint8)[..., None], 3, axis=-1)
    if overlay is None:
        return rgb
    if overlay.shape[:2] != rgb.shape[:2] or overlay.shape[-1] != 4:
        raise ValueError(f"blend: overlay {overlay.shape} does not match grey {grey.shape} + RGBA")
    a = overlay[..., 3:4].astype(np.float32) / 255.0
    out = rgb.astype(np.float32) * (1.0 - a) + overlay[..., :3].astype(np.float32) * a
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def render_slice(
    hu: np.ndarray,
    plane: Plane,
    index: int,
    *,
    spacing_mm: Sequence[float],
    level: float,
    width: float,
    labels: np.ndarray | None = None,
    colours: Mapping[int, tuple[int, int, int]] = MERGED_COLOURS,
    opacity: float = 0.5,
    pixel_mm: float | None = None,
) -> np.ndarray:
    """Display-ready RGB ``(H, W, 3)`` uint8 of one plane: slice, square pixels, window, optional overlay.

    ``hu`` and ``labels`` are ``(X, Y, Z)`` RAS+ arrays of the same shape; ``pixel_mm`` as in
    ``resample_for_display``.
    """
    grey = window(
        resample_for_display(slice_2d(hu, plane, index).astype(np.float32), spacing_mm, plane,
                             pixel_mm=pixel_mm, order=1),
        level, width,
    )
    if labels is None or opacity == 0:
        return blend(grey)
    if labels.shape != hu.shape:
        raise ValueError(f"render_slice: labels {labels.shape} and CT {hu.shape} differ in shape")
    lab = resample_for_display(slice_2d(labels, plane, index), spacing_mm, plane, pixel_mm=pixel_mm, order=0)
    return blend(grey, overlay_rgba(lab, colours, opacity))


def default_slices(labels: np.ndarray, *, focus: int | None = 4, midline: int | None = 15) -> dict[str, int]:
    """Slice indices (per plane, into ``slice_2d``) that show a body well.

    ``labels`` is an ``(X, Y, Z)`` merged-class volume (0 = outside). Axial and coronal go through the
    centroid of the ``focus`` class (4, the liver: upper abdomen, with lungs and heart in the coronal
    view), sagittal through the centroid of the ``midline`` class (15, the brain), which asymmetric arm
    and leg poses do not pull off the midline. A missing class falls back to the middle of the labelled
    body, and an empty volume to the middle of the grid.
    """
    centre = [n // 2 for n in labels.shape]
    body = np.argwhere(labels > 0)
    if body.size:
        centre = [int(v) for v in (body.min(axis=0) + body.max(axis=0)) // 2]

    def centroid(value: int | None) -> list[int]:
        where = np.argwhere(labels == value) if value is not None else np.empty((0, 3))
        return [int(round(v)) for v in where.mean(axis=0)] if where.size else centre

    f, m = centroid(focus), centroid(midline)
    return {"axial": f[2], "coronal": f[1], "sagittal": m[0]}


def legend_entries(
    present: Sequence[int] | None = None,
    *,
    names: Mapping[int, str] = MERGED_CLASSES,
    colours: Mapping[int, tuple[int, int, int]] = MERGED_COLOURS,
) -> list[tuple[int, str, str]]:
    """``(value, readable name, '#rrggbb')`` for each coloured class (only those in ``present`` if given)."""
    keep = set(int(v) for v in present) if present is not None else None
    return [
        (v, names[v].replace("_", " "), "#{:02x}{:02x}{:02x}".format(*colours[v]))
        for v in sorted(colours)
        if v in names and (keep is None or v in keep)
    ]
