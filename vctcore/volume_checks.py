"""Validation of CT volumes and label maps, and its messages: :mod:`vctcore.volume` checks every grid,
HU range and label array it builds or reads with these, and re-exports the names its callers use.

Arrays are ``(X, Y, Z)``; affines map voxel indices to RAS+ mm; CT values are HU. Every check raises
ValueError (:class:`NiftiError` when the input is a NIfTI file) whose message names the source
(``where``) and what was found; the ``ERR_*`` / ``HU_*`` format strings are the messages tests match.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# --- error messages (format strings; tests match them) -------------------------------------------
ERR_MISSING = "{where}: file does not exist"
ERR_NOT_NIFTI = "{where}: not a NIfTI file ({found}); expected a .nii or .nii.gz image"
ERR_WRONG_SUFFIX = "{where}: the file is {actual} but its name ends with {suffix}; rename it to end with {expected}"
ERR_CORRUPT = "{where}: truncated or corrupt NIfTI file ({detail})"
ERR_BAD_SUFFIX = "{where}: a NIfTI file name must end with .nii or .nii.gz"
ERR_NDIM_LOW = "{where}: data is {ndim}D (shape {shape}); a CT volume needs three axes (X, Y, Z)"
ERR_NDIM_HIGH = (
    "{where}: data is {ndim}D (shape {shape}); expected a 3D volume (only trailing axes of length 1 are allowed)"
)
ERR_SINGLE_SLICE = "{where}: shape {shape} is a single slice, not a volume (axis {axis} has length 1)"
ERR_EMPTY = "{where}: shape {shape} has an empty axis"
ERR_NONFINITE = "{where}: {count} of {total} voxels are NaN or Inf"
ERR_PIXDIM = "{where}: voxel spacing in the header (pixdim[1:4]) is {spacing} mm; every spacing must be > 0"
ERR_AFFINE_SHAPE = "{where}: affine must be a 4x4 matrix, got shape {shape}"
ERR_AFFINE_NONFINITE = "{where}: affine has NaN or Inf entries"
ERR_AFFINE_SINGULAR = (
    "{where}: affine is singular (determinant of its 3x3 part is {det:.3g}, voxel spacing {spacing} mm); "
    "every spacing must be > 0"
)
ERR_NOT_HU = (
    "{where}: values do not look like Hounsfield units: {problem} (found min {vmin:g}, max {vmax:g}). "
    "CT in HU has air about -1000, water 0, fat about -100, bone +400..+2000. If these are raw scanner "
    "values, apply the DICOM RescaleSlope/RescaleIntercept (HU = value * slope + intercept, often slope 1 "
    "and intercept -1024) or set scl_slope/scl_inter in the NIfTI header; check_hu=False skips this check"
)
HU_CONSTANT = "every voxel has the same value"
HU_RAW = "no voxel is below 0, so air is not near -1000 (raw detector values without rescale?)"
HU_TOO_LOW = "values below {limit:g} HU"
HU_TOO_HIGH = "values above {limit:g} HU"
HU_NORMALISED = "the values span only {span:g} (normalised intensities?)"
ERR_LABEL_DTYPE = "{where}: label data must be an integer array, got dtype {dtype}"
ERR_LABEL_NOT_INTEGER = "{where}: {count} voxel(s) have non-integer label values, e.g. {examples}"
ERR_LABEL_NEGATIVE = "{where}: {count} voxel(s) have negative label values (min {vmin})"
ERR_LABEL_TOO_LARGE = "{where}: label value {vmax} does not fit in uint16 (max 65535)"
ERR_LABEL_UNKNOWN = "{where}: label value(s) {values} are not in the label names (known values: {known})"
ERR_LABEL_MISMATCH = (
    "{where}: label map does not match the CT: label shape {label_shape} vs CT shape {ct_shape}, "
    "largest affine difference {diff:.3g} mm (tolerance {tol:g} mm)"
)
ERR_UNKNOWN_NAME = "unknown structure name(s) {names}; this label map has: {known}"
ERR_WRITE = "could not write {path}: {reason}{hint}; any previous file there is unchanged and no partial file was left"
DISK_FULL_HINT = " (the disk may be full)"

#: HU plausibility limits: below HU_MIN is not CT (GE pads outside the field of view with -3024, Siemens
#: with -2048, so those pass); above HU_MAX is not CT (metal in extended-scale HU stays below ~30000)
HU_MIN = -3100.0
HU_MAX = 40000.0
#: raw detector values: nothing below 0 (no air at -1000) while the maximum is above this
RAW_MAX = 1500.0
#: int16 storage range of write_ct (HU)
CT_STORE_MIN, CT_STORE_MAX = -1024, 3071
#: tolerance (mm) of the label-vs-CT affine comparison in read_labels(like=...)
AFFINE_TOL_MM = 1e-3



class NiftiError(ValueError):
    """Bad NIfTI input; message names the file and the problem."""


# --- shared grid validation ----------------------------------------------------------------------
def _check_shape(shape: tuple[int, ...], where: str) -> None:
    """Require exactly three axes, each of length >= 2."""
    if len(shape) < 3:
        raise ValueError(ERR_NDIM_LOW.format(where=where, ndim=len(shape), shape=tuple(shape)))
    if len(shape) > 3:
        raise ValueError(ERR_NDIM_HIGH.format(where=where, ndim=len(shape), shape=tuple(shape)))
    if 0 in shape:
        raise ValueError(ERR_EMPTY.format(where=where, shape=tuple(shape)))
    if 1 in shape:
        raise ValueError(ERR_SINGLE_SLICE.format(where=where, shape=tuple(shape), axis=shape.index(1)))


def _check_affine(affine: np.ndarray, where: str) -> np.ndarray:
    """Return ``affine`` as float64 (4, 4); it must be finite with a non-singular 3x3 part."""
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise ValueError(ERR_AFFINE_SHAPE.format(where=where, shape=affine.shape))
    if not np.isfinite(affine).all():
        raise ValueError(ERR_AFFINE_NONFINITE.format(where=where))
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    det = float(np.linalg.det(affine[:3, :3]))
    if abs(det) <= 1e-9 * max(float(np.prod(spacing)), 1e-300) or not np.all(spacing > 0):
        raise ValueError(ERR_AFFINE_SINGULAR.format(where=where, det=det, spacing=_fmt_floats(spacing)))
    return affine


def _check_finite(data: np.ndarray, where: str) -> None:
    if data.dtype.kind == "f":
        finite = np.isfinite(data)
        if not finite.all():
            count = int(finite.size - np.count_nonzero(finite))
            raise ValueError(ERR_NONFINITE.format(where=where, count=count, total=data.size))


def _fmt_floats(values) -> tuple[float, ...]:
    return tuple(round(float(v), 6) for v in values)


def _to_label_dtype(data: np.ndarray, where: str) -> np.ndarray:
    """Whole-number labels (any integer or float dtype) -> uint8 (max < 256) or uint16.

    Negative values or values above 65535 raise ValueError.
    """
    if data.dtype in (np.uint8, np.uint16):
        return data
    vmin, vmax = (int(data.min()), int(data.max())) if data.size else (0, 0)
    if vmin < 0:
        count = int(np.count_nonzero(data < 0))
        raise ValueError(ERR_LABEL_NEGATIVE.format(where=where, count=count, vmin=vmin))
    if vmax > 65535:
        raise ValueError(ERR_LABEL_TOO_LARGE.format(where=where, vmax=vmax))
    return data.astype(np.uint8 if vmax < 256 else np.uint16)


def _check_label_names(data: np.ndarray, names: Mapping[int, str], where: str) -> None:
    present = np.flatnonzero(np.bincount(data.ravel()))
    unknown = [int(v) for v in present if v != 0 and int(v) not in names]
    if unknown:
        shown = ", ".join(map(str, unknown[:20])) + (f" (+{len(unknown) - 20} more)" if len(unknown) > 20 else "")
        known = f"{min(names)}..{max(names)}" if names else "none"
        raise ValueError(ERR_LABEL_UNKNOWN.format(where=where, values=shown, known=known))


# --- HU plausibility ------------------------------------------------------------------------------
def validate_hu(data: np.ndarray, *, where: str = "CT") -> None:
    """Raise ValueError (message ERR_NOT_HU) unless ``data`` looks like CT in Hounsfield units."""
    vmin, vmax = float(data.min()), float(data.max())
    problem = None
    if vmin == vmax:
        problem = HU_CONSTANT
    elif vmin < HU_MIN:
        problem = HU_TOO_LOW.format(limit=HU_MIN)
    elif vmax > HU_MAX:
        problem = HU_TOO_HIGH.format(limit=HU_MAX)
    elif vmin >= 0 and vmax > RAW_MAX:
        problem = HU_RAW
    elif vmax - vmin <= 2.0:
        problem = HU_NORMALISED.format(span=vmax - vmin)
    if problem:
        raise ValueError(ERR_NOT_HU.format(where=where, problem=problem, vmin=vmin, vmax=vmax))


def _integer_labels(data: np.ndarray, where: str) -> np.ndarray:
    """Float arrays holding whole numbers -> integers; other floats raise ValueError; then uint8/uint16."""
    if data.dtype.kind == "f":
        _check_finite(data, where)
        fractional = data != np.round(data)
        if fractional.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(data[fractional])[:5])
            count = int(np.count_nonzero(fractional))
            raise ValueError(ERR_LABEL_NOT_INTEGER.format(where=where, count=count, examples=examples))
    elif data.dtype.kind not in "uib":
        raise ValueError(ERR_LABEL_DTYPE.format(where=where, dtype=data.dtype))
    return _to_label_dtype(data, where)
