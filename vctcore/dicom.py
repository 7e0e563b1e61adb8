"""One DICOM CT series (a folder of single-frame slices) -> :class:`vctcore.volume.CTVolume` in HU, RAS+.

Read with pydicom (its pixel decoders handle compressed transfer syntaxes such as JPEG 2000 through
Pillow or GDCM); nothing here parses DICOM bytes itself. Steps:

1. every file under the folder (recursively) is opened header-only; files that are not DICOM, and DICOM
   files without an image (DICOMDIR, structured reports), are skipped;
2. the images must belong to one series (one ``SeriesInstanceUID``) of ``Modality`` CT, share one
   orientation (``ImageOrientationPatient``), pixel spacing and matrix, and be single-frame;
3. slices are ordered by their position along the slice normal (the cross product of the row and column
   direction cosines, dotted with ``ImagePositionPatient``), and the steps between neighbours must agree
   within ``max(SPACING_TOL_MM, SPACING_TOL_REL x median)``;
4. each slice's stored values go through the Modality LUT (``RescaleSlope`` / ``RescaleIntercept``) with
   ``pydicom.pixels.apply_rescale``: HU as float32;
5. the voxel -> patient (LPS, mm) affine is built from the first slice's position, the direction cosines
   and spacings, and the mean step between slices (a gantry tilt stays a sheared affine, never resampled),
   turned to RAS+ and reoriented by :func:`vctcore.volume.to_canonical`, the same function the NIfTI
   reader ends with, so a series and its NIfTI conversion give the same volume.

Array axes of the result are (X, Y, Z) in RAS+; spacing in mm. Every problem raises :class:`DicomError`
(a ValueError) naming the folder and what was found.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vctcore.volume import CTVolume, to_canonical, validate_hu

__all__ = ["DicomError", "is_dicom_file", "read_dicom_series"]

ERR_MISSING = "{where}: folder does not exist"
ERR_NO_DICOM = "{where}: no DICOM files found ({count} file(s) looked at{detail})"
ERR_NO_IMAGES = "{where}: {count} DICOM file(s) but none holds an image (e.g. {example})"
ERR_MIXED_SERIES = ("{where}: the folder mixes {count} series (SeriesInstanceUIDs {uids}); give a folder (or zip) "
                    "that holds one series")
ERR_NOT_CT = "{where}: Modality is {found}, not CT; only a CT series can be measured in Hounsfield units"
ERR_ONE_SLICE = "{where}: the series has a single slice ({file}); a CT volume needs at least two"
ERR_MULTIFRAME = ("{where}: {file} is a multi-frame (enhanced) image with {frames} frames; only series of "
                  "single-frame slices are read (convert it with dcm2niix)")
ERR_MISSING_TAG = "{where}: {file} lacks {tag}, which places the slice in the patient"
ERR_GRID = "{where}: the slices differ in {what} ({values}); a series must share one grid"
ERR_DUPLICATE = ("{where}: {file_a} and {file_b} lie at the same position ({position:.3f} mm along the slice "
                 "normal); a series holds each slice once")
ERR_IRREGULAR = ("{where}: irregular slice spacing: the steps between neighbouring slices are {spacings} mm "
                 "(along the slice normal); a volume needs one spacing (missing or extra slices?)")
ERR_PIXELS = "{where}: cannot decode the pixel data of {file} ({reason})"

#: tolerance on the steps between slices: absolute (mm) and relative to the median step
SPACING_TOL_MM, SPACING_TOL_REL = 0.01, 0.01
#: tolerance on direction cosines and pixel spacing agreeing between slices
GRID_TOL = 1e-4
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class DicomError(ValueError):
    """A DICOM series that cannot be read as one CT volume; the message names the folder and the problem."""


@dataclass(frozen=True)
class _Slice:
    """One image file's header facts (LPS mm, direction cosines)."""

    path: Path
    series: str
    modality: str
    rows: int
    columns: int
    frames: int
    orientation: np.ndarray  # (6,): row direction cosines, then column direction cosines (LPS)
    spacing: np.ndarray  # (2,): PixelSpacing = (between rows, between columns) in mm
    position: np.ndarray  # (3,): ImagePositionPatient of the first pixel, LPS mm


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a file with the DICOM preamble ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def read_dicom_series(folder: str | os.PathLike, *, where: str | None = None, check_hu: bool = True) -> CTVolume:
    """Read the one CT series under ``folder`` (searched recursively) as a :class:`CTVolume`.

    Returns float32 HU (Modality LUT applied) on (X, Y, Z) RAS+ axes with its voxel -> RAS+ mm affine.
    ``where`` names the source in messages (default: the folder); ``check_hu=False`` skips only the
    Hounsfield plausibility check. Raises :class:`DicomError` for every problem (see the module doc).
    """
    import pydicom  # imported here: reading NIfTI does not need it

    folder = Path(folder)
    where = where or str(folder)
    if not folder.is_dir():
        raise DicomError(ERR_MISSING.format(where=where))
    slices = _scan_headers(folder, where, pydicom)
    _check_one_ct_series(slices, where)
    slices, step = _order(slices, where)
    hu = np.stack([_pixels(s, where, pydicom).T for s in slices], axis=2)
    affine = _lps_affine(slices[0], step)
    data, affine = to_canonical(hu, _LPS_TO_RAS @ affine)
    try:
        if check_hu:
            validate_hu(data, where=where)
        return CTVolume(data=data, affine=affine)
    except ValueError as err:
        raise DicomError(str(err).replace("CTVolume", where)) from None


def _files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, in a stable order."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        found += [Path(root) / n for n in sorted(names)]
    return found


def _scan_headers(folder: Path, where: str, pydicom) -> list[_Slice]:
    """Header facts of every image file; DicomError when there is none."""
    files = _files(folder)
    slices, non_image = [], []
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError):  # not DICOM: skipped
            continue
        if "Rows" not in ds or "Columns" not in ds:
            non_image.append(path)
            continue
        slices.append(_header(ds, path, where))
    if not slices and non_image:
        raise DicomError(ERR_NO_IMAGES.format(where=where, count=len(non_image), example=non_image[0].name))
    if not slices:
        detail = f", none of them DICOM, e.g. {files[0].name}" if files else ""
        raise DicomError(ERR_NO_DICOM.format(where=where, count=len(files), detail=detail))
    return slices


def _header(ds, path: Path, where: str) -> _Slice:
    def need(tag: str):
        value = ds.get(tag)
        if value is None or (hasattr(value, "__len__") and len(value) == 0):
            raise DicomError(ERR_MISSING_TAG.format(where=where, file=path.name, tag=tag))
        return value

    facts = (path, str(ds.get("SeriesInstanceUID", "")), str(ds.get("Modality", "") or "none given"), int(ds.Rows),
             int(ds.Columns), int(ds.get("NumberOfFrames", 1) or 1))
    if facts[2] != "CT" or facts[5] > 1:  # refused without their geometry
        return _Slice(*facts, np.full(6, np.nan), np.full(2, np.nan), np.full(3, np.nan))
    return _Slice(*facts, *(np.asarray(need(tag), dtype=np.float64)
                            for tag in ("ImageOrientationPatient", "PixelSpacing", "ImagePositionPatient")))


def _check_one_ct_series(slices: Sequence[_Slice], where: str) -> None:
    """One series, CT, single-frame slices on one grid, at least two of them."""
    series = Counter(s.series for s in slices)
    if len(series) > 1:
        uids = _shown([f"{uid or '(empty)'} ({n} files)" for uid, n in series.most_common()])
        raise DicomError(ERR_MIXED_SERIES.format(where=where, count=len(series), uids=uids))
    modalities = sorted({s.modality for s in slices})
    if modalities != ["CT"]:
        raise DicomError(ERR_NOT_CT.format(where=where, found=", ".join(m for m in modalities if m != "CT")))
    multi = next((s for s in slices if s.frames > 1), None)
    if multi is not None:
        raise DicomError(ERR_MULTIFRAME.format(where=where, file=multi.path.name, frames=multi.frames))
    if len(slices) == 1:
        raise DicomError(ERR_ONE_SLICE.format(where=where, file=slices[0].path.name))
    matrices = sorted({(s.rows, s.columns) for s in slices})
    if len(matrices) > 1:
        raise DicomError(ERR_GRID.format(where=where, what="matrix (Rows, Columns)", values=_shown(matrices)))
    for what, values in (("orientation (ImageOrientationPatient)", np.stack([s.orientation for s in slices])),
                         ("pixel spacing (PixelSpacing, mm)", np.stack([s.spacing for s in slices]))):
        if np.any(np.abs(values - values[0]) > GRID_TOL):
            found = sorted({tuple(round(float(v), 4) for v in row) for row in values})
            raise DicomError(ERR_GRID.format(where=where, what=what, values=_shown(found)))


def _shown(values: Sequence) -> str:
    """The first three values, then how many more."""
    text = ", ".join(str(v) for v in values[:3])
    return text + (f" and {len(values) - 3} more" if len(values) > 3 else "")


def _order(slices: Sequence[_Slice], where: str) -> tuple[list[_Slice], np.ndarray]:
    """Slices sorted along the slice normal, and the mean step between neighbours (LPS mm vector)."""
    row, col = slices[0].orientation[:3], slices[0].orientation[3:]
    normal = np.cross(row, col)
    pos = np.array([float(s.position @ normal) for s in slices])
    order = np.argsort(pos, kind="stable")
    ordered = [slices[i] for i in order]
    gaps = np.diff(pos[order])
    if np.any(gaps <= SPACING_TOL_MM):
        k = int(np.argmax(gaps <= SPACING_TOL_MM))
        raise DicomError(ERR_DUPLICATE.format(where=where, file_a=ordered[k].path.name,
                                              file_b=ordered[k + 1].path.name, position=pos[order][k]))
    median = float(np.median(gaps))
    if np.any(np.abs(gaps - median) > max(SPACING_TOL_MM, SPACING_TOL_REL * median)):
        found = [f"{g:g}" for g in sorted({round(float(g), 3) for g in gaps})]
        raise DicomError(ERR_IRREGULAR.format(where=where, spacings=_shown(found)))
    step = (ordered[-1].position - ordered[0].position) / (len(ordered) - 1)
    return ordered, step


def _pixels(s: _Slice, where: str, pydicom) -> np.ndarray:
    """One slice's HU, (Rows, Columns) float32: stored values through the Modality LUT (rescale)."""
    from pydicom.pixels import apply_rescale

    try:
        ds = pydicom.dcmread(s.path)
        stored = ds.pixel_array
    except Exception as err:  # decoders raise many types (missing plugin, damaged stream)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DicomError(ERR_PIXELS.format(where=where, file=s.path.name, reason=reason)) from None
    if stored.shape != (s.rows, s.columns):
        reason = f"pixel array shape {stored.shape}, header says {(s.rows, s.columns)}"
        raise DicomError(ERR_PIXELS.format(where=where, file=s.path.name, reason=reason))
    return np.asarray(apply_rescale(stored, ds), dtype=np.float32)


def _lps_affine(first: _Slice, step: np.ndarray) -> np.ndarray:
    """Voxel (column c, row r, slice k) -> LPS mm: IPP + c * dc * row_dir + r * dr * col_dir + k * step."""
    affine = np.eye(4)
    affine[:3, 0] = first.orientation[:3] * first.spacing[1]
    affine[:3, 1] = first.orientation[3:] * first.spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = first.position
    return affine
