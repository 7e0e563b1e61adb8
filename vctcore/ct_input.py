"""A CT from whatever a user has: a NIfTI file, a DICOM series folder, a zip of a series, or uploaded files.

Every reader returns a :class:`vctcore.volume.CTVolume` (float32 HU, (X, Y, Z) RAS+, affine in mm) and
raises a ValueError (:class:`vctcore.volume.NiftiError` or :class:`vctcore.dicom.DicomError`) with one
line naming the source and the problem. Zips and uploads are unpacked into a temporary folder under
flat, generated names (a member's own path is never used, so nothing lands outside that folder), which
is removed afterwards.
"""
from __future__ import annotations

import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from vctcore.dicom import DicomError, read_dicom_series
from vctcore.volume import CTVolume, LabelMap, NiftiError, read_ct, read_labels

__all__ = ["MAX_UNPACKED_BYTES", "read_ct_input", "read_ct_upload", "read_ct_zip",
           "read_labels_upload"]

#: largest total uncompressed size of a zip or an upload (bytes): a whole-body series is under 1 GB
MAX_UNPACKED_BYTES = 4 * 1024**3
ERR_NOT_ZIP = "{where}: not a readable zip archive ({reason})"
ERR_TOO_LARGE = "{where}: {size:.0f} MB uncompressed, over the {limit:.0f} MB limit of one CT series"
ERR_EMPTY_UPLOAD = "no files were uploaded"
_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_FLAT = re.compile(r"\b\d{6}(?:\.nii\.gz|\.nii|\.dcm)?\b")


def read_ct_input(path: str | os.PathLike, *, check_hu: bool = True) -> CTVolume:
    """Read a CT given as a NIfTI file, a folder holding one DICOM series, or a .zip of one series.

    ``check_hu=False`` skips only the Hounsfield plausibility check of the reader.
    """
    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path, check_hu=check_hu)
    if path.name.lower().endswith(".zip"):
        return read_ct_zip(path, check_hu=check_hu)
    return read_ct(path, check_hu=check_hu)


def read_ct_zip(path: str | os.PathLike, *, where: str | None = None, check_hu: bool = True) -> CTVolume:
    """Read the one DICOM series inside a zip archive (in any folder layout), or its one NIfTI file."""
    path = Path(path)
    where = where or str(path)
    if not path.is_file():
        raise DicomError(f"{where}: file does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            _check_size(sum(m.file_size for m in members), where)
            with tempfile.TemporaryDirectory(prefix="vct-zip-") as tmp:
                names = [m.filename for m in members]
                for i, member in enumerate(members):
                    with archive.open(member) as src, open(Path(tmp) / _flat_name(i, member.filename), "wb") as dst:
                        while chunk := src.read(1 << 20):
                            dst.write(chunk)
                return _read_unpacked(Path(tmp), names, where, check_hu)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, EOFError) as err:
        raise DicomError(ERR_NOT_ZIP.format(where=where, reason=str(err) or type(err).__name__)) from None


def read_ct_upload(files: Sequence[tuple[str, bytes]], *, check_hu: bool = True) -> CTVolume:
    """Read uploaded ``(file name, content)`` pairs: one NIfTI file, one zip of a DICOM series, or the
    files of one DICOM series (in any order, names free)."""
    if not files:
        raise DicomError(ERR_EMPTY_UPLOAD)
    names = [Path(name).name for name, _ in files]
    where = names[0] if len(files) == 1 else f"the {len(files)} uploaded files"
    _check_size(sum(len(content) for _, content in files), where)
    with tempfile.TemporaryDirectory(prefix="vct-upload-") as tmp:
        if len(files) == 1 and names[0].lower().endswith((*_NIFTI_SUFFIXES, ".zip")):
            target = Path(tmp) / names[0]
            target.write_bytes(files[0][1])
            if names[0].lower().endswith(".zip"):
                return read_ct_zip(target, where=names[0], check_hu=check_hu)
            return _with_name(lambda: read_ct(target, check_hu=check_hu), str(target), names[0])
        for i, (name, content) in enumerate(files):
            (Path(tmp) / _flat_name(i, name)).write_bytes(content)
        return _read_unpacked(Path(tmp), names, where, check_hu)


def read_labels_upload(name: str, content: bytes, *, like: CTVolume) -> LabelMap:
    """An uploaded label-map NIfTI file (``name`` ending .nii or .nii.gz) on the grid of ``like``
    (values named ``label_<v>``; :func:`vctcore.measure.measure` identifies the vocabulary)."""
    name = Path(name).name
    if not name.lower().endswith(_NIFTI_SUFFIXES):
        raise NiftiError(f"{name}: a segmentation must be a NIfTI file (.nii or .nii.gz)")
    with tempfile.TemporaryDirectory(prefix="vct-upload-") as tmp:
        target = Path(tmp) / name
        target.write_bytes(content)
        return _with_name(lambda: read_labels(target, like=like), str(target), name)


def _read_unpacked(folder: Path, names: list[str], where: str, check_hu: bool) -> CTVolume:
    """A folder of unpacked files: its one NIfTI file, else the DICOM series it holds."""
    nifti = [i for i, n in enumerate(names) if n.lower().endswith(_NIFTI_SUFFIXES)]
    if len(nifti) == 1 and len(names) == 1:
        path = folder / _flat_name(nifti[0], names[nifti[0]])
        return _with_name(lambda: read_ct(path, check_hu=check_hu), str(path), f"{where}: {names[nifti[0]]}")
    try:
        return read_dicom_series(folder, where=where, check_hu=check_hu)
    except DicomError as err:  # name the files as the user named them, not by their flat names here
        flat = {_flat_name(i, name): name for i, name in enumerate(names)}
        message = _FLAT.sub(lambda m: flat.get(m.group(0), m.group(0)), str(err))
        raise DicomError(message) from None


def _with_name(read, tmp_path: str, shown: str) -> CTVolume:
    """Run ``read``; a message naming the temporary file names ``shown`` instead."""
    try:
        return read()
    except ValueError as err:
        raise type(err)(str(err).replace(tmp_path, shown)) from None


def _flat_name(index: int, name: str) -> str:
    """A safe file name for the index-th member: its index plus its own suffix (.nii.gz kept whole)."""
    lower = name.lower()
    suffix = next((s for s in (*_NIFTI_SUFFIXES, ".dcm") if lower.endswith(s)), "")
    return f"{index:06d}{suffix}"


def _check_size(total: int, where: str) -> None:
    if total > MAX_UNPACKED_BYTES:
        raise DicomError(ERR_TOO_LARGE.format(where=where, size=total / 1024**2, limit=MAX_UNPACKED_BYTES / 1024**2))
