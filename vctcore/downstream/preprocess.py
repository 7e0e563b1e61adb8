"""From a CT to a downstream model's inputs: coronal and sagittal slices through the body's middle.

A CT is ``(X, Y, Z)`` in HU on canonical RAS+ axes (:mod:`vctcore.volume`). The body is the largest
connected component of the voxels above ``BODY_HU`` (-500 HU: skin, fat, muscle, bone; lung air and the
air around the patient are out), found on a grid of about ``BODY_GRID_MM`` so that fine CTs stay cheap.
Its centroid is the "body middle": the coronal slice is the plane ``Y = centroid_y`` and the sagittal
slice ``X = centroid_x``, and both images are cropped around the centroid, so a patient who lies off
the scanner's centre gets the same inputs (the volume's centre is never used).

Images are laid out as :func:`vctcore.render.slice_2d` shows them: coronal ``(Z, X)`` with the head at
the top and the patient's right on the left, sagittal ``(Z, Y)`` with the head at the top and anterior
on the left. Each is clipped to the HU window and mapped to [0, 1] (window low = 0, so air is 0),
resampled to square pixels of ``pixel_mm`` (antialiased bilinear; CTs on other grids give images of the
same physical scale), then cropped or padded with 0 to ``input_size`` ``(H, W)`` around the centroid.
A model input is float32 ``(1, H, W)``.

Training draws slices at random from the middle third of the body's extent along the plane's normal
(the paper: "slices are sampled randomly from the middle third of the CT image"); evaluation takes the
centroid's slice.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from vctcore.downstream.card import InputSpec, ModelCard, Preprocessing
from vctcore.render import PLANE_AXIS, slice_2d
from vctcore.volume import CTVolume

#: HU above which a voxel belongs to the body mask
BODY_HU = -500.0
#: the body mask is found on a strided grid whose voxels are at most this large (mm) where the CT allows
BODY_GRID_MM = 4.0
#: the reference models' preprocessing: soft-tissue window, 8 mm pixels, 2304 x 768 mm images (a 205 cm
#: adult head to toe, both arms beside the trunk)
DEFAULT_PREPROCESSING = Preprocessing(hu_window=(-250.0, 250.0), pixel_mm=8.0, input_size=(288, 96),
                                      slice="body_middle")

ERR_NO_BODY = "no body in the CT: no voxel above {hu:g} HU"


@dataclass(frozen=True)
class BodyFrame:
    """Where the body lies in a CT, in voxel indices (X, Y, Z): ``centroid`` (float) of the body mask, and
    its first and last voxel ``lo``/``hi`` (inclusive) along each axis."""

    centroid: tuple[float, float, float]
    lo: tuple[int, int, int]
    hi: tuple[int, int, int]

    def middle_third(self, axis: int) -> tuple[int, int]:
        """The middle third of the body's extent along ``axis`` as a half-open index range [start, stop)."""
        length = self.hi[axis] - self.lo[axis] + 1
        start = self.lo[axis] + length // 3
        stop = max(self.lo[axis] + (2 * length) // 3, start + 1)
        return start, stop


def body_frame(ct: CTVolume) -> BodyFrame:
    """The body mask's centroid and extent (voxel indices, (X, Y, Z)); ValueError when there is no body."""
    steps = [max(1, int(BODY_GRID_MM // s)) for s in ct.spacing_mm]
    coarse = np.asarray(ct.data[::steps[0], ::steps[1], ::steps[2]]) > BODY_HU
    labels, n = ndimage.label(coarse)
    if n == 0:
        raise ValueError(ERR_NO_BODY.format(hu=BODY_HU))
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    body = labels == int(counts.argmax())
    centre = ndimage.center_of_mass(body)
    lo, hi = [], []
    for axis in range(3):
        present = np.flatnonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))
        lo.append(int(present[0]) * steps[axis])
        hi.append(min(int(present[-1]) * steps[axis] + steps[axis] - 1, ct.shape[axis] - 1))
    return BodyFrame(tuple(float(c) * s for c, s in zip(centre, steps)), tuple(lo), tuple(hi))  # type: ignore[arg-type]


def slice_index(frame: BodyFrame, plane: str, random_slice: np.random.Generator | None = None) -> int:
    """The slice along ``plane``'s normal: the centroid's (rounded), or with ``random_slice`` one drawn
    uniformly from the middle third of the body's extent."""
    axis = PLANE_AXIS[plane]
    if random_slice is not None:
        start, stop = frame.middle_third(axis)
        return int(random_slice.integers(start, stop))
    return int(round(frame.centroid[axis]))


def _in_plane(ct: CTVolume, plane: str, frame: BodyFrame) -> tuple[tuple[float, float], tuple[float, float]]:
    """((row mm, column mm), (centroid row, centroid column)) of a ``slice_2d`` image of ``plane``."""
    nx, ny, nz = ct.shape
    sx, sy, sz = ct.spacing_mm
    cx, cy, cz = frame.centroid
    if plane == "coronal":
        return (sz, sx), (nz - 1 - cz, nx - 1 - cx)
    return (sz, sy), (nz - 1 - cz, ny - 1 - cy)


def plane_image(ct: CTVolume, plane: str, index: int, prep: Preprocessing, frame: BodyFrame) -> np.ndarray:
    """The ``plane`` slice at voxel ``index`` as a model input: float32 (1, H, W) in [0, 1], square pixels of
    ``prep.pixel_mm``, centred on the body centroid (see the module docstring for the layout)."""
    if plane not in ("coronal", "sagittal"):
        raise ValueError(f"plane_image: plane must be coronal or sagittal, got {plane!r}")
    lo, hi = prep.hu_window
    image = slice_2d(np.asarray(ct.data), plane, int(np.clip(index, 0, ct.shape[PLANE_AXIS[plane]] - 1)))
    image = (np.clip(image.astype(np.float32), lo, hi) - lo) / (hi - lo)
    (row_mm, col_mm), (crow, ccol) = _in_plane(ct, plane, frame)
    scale = (row_mm / prep.pixel_mm, col_mm / prep.pixel_mm)
    resampled = F.interpolate(torch.from_numpy(np.ascontiguousarray(image))[None, None], scale_factor=scale,
                              mode="bilinear", antialias=True, align_corners=False,
                              recompute_scale_factor=False)[0, 0].numpy()
    height, width = prep.input_size
    out = np.zeros((height, width), dtype=np.float32)
    # pixel centres map as out = (in + 0.5) * scale - 0.5; the window's middle lands on the centroid
    top = int(round((crow + 0.5) * scale[0] - 0.5 - (height - 1) / 2))
    left = int(round((ccol + 0.5) * scale[1] - 0.5 - (width - 1) / 2))
    src_r = slice(max(top, 0), min(top + height, resampled.shape[0]))
    src_c = slice(max(left, 0), min(left + width, resampled.shape[1]))
    if src_r.start < src_r.stop and src_c.start < src_c.stop:
        out[src_r.start - top:src_r.stop - top, src_c.start - left:src_c.stop - left] = resampled[src_r, src_c]
    return np.clip(out, 0.0, 1.0)[None]


def plane_images(ct: CTVolume, prep: Preprocessing, planes: Sequence[str] = ("coronal", "sagittal"), *,
                 random_slice: np.random.Generator | None = None,
                 frame: BodyFrame | None = None) -> dict[str, np.ndarray]:
    """One (1, H, W) image per plane in ``planes``: at the body middle, or with ``random_slice`` (a numpy
    Generator) at slices drawn from the middle third of the body (training)."""
    frame = frame if frame is not None else body_frame(ct)
    return {p: plane_image(ct, p, slice_index(frame, p, random_slice), prep, frame) for p in planes}


def model_inputs(ct: CTVolume, card: ModelCard | Sequence[InputSpec], prep: Preprocessing | None = None, *,
                 random_slice: np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """The inputs of a model for one CT, by input name: float32 (1, H, W) each, from the card's inputs and
    preprocessing (or ``inputs`` and ``prep`` given apart)."""
    if isinstance(card, ModelCard):
        specs, prep = card.inputs, card.preprocessing
    else:
        specs = tuple(card)
        if prep is None:
            raise ValueError("model_inputs: pass prep with a list of inputs")
    images = plane_images(ct, prep, sorted({s.plane for s in specs}), random_slice=random_slice)
    return {s.name: images[s.plane] for s in specs}


__all__ = ["BODY_HU", "DEFAULT_PREPROCESSING", "BodyFrame", "body_frame", "model_inputs", "plane_image",
           "plane_images", "slice_index"]
