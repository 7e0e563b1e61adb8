"""CT volumes and label maps on a voxel grid, with NIfTI read/write in canonical RAS+ and validation.

Array axes are ``(X, Y, Z)``: the voxel axes of the canonical RAS+ orientation (i -> patient Right,
j -> Anterior, k -> Superior). ``affine`` maps voxel indices to RAS+ world coordinates in mm. CT values
are Hounsfield units (HU); volumes are in mL.

Reading never trusts a file: every problem (missing, not NIfTI, truncated, NaN/Inf, 2D, 4D, zero or
negative spacing, values that are not HU, bad labels) raises :class:`NiftiError` whose message names
the file and what was found (the checks and their messages: :mod:`vctcore.volume_checks`, re-exported
here). Writing is atomic: a temporary file in the target folder, then
``os.replace``, so a failed write (disk full) never leaves a half-written file.
"""
from __future__ import annotations

import errno
import gzip
import os
import pathlib
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import nibabel as nib
import numpy as np

from vctcore.volume_checks import (  # the messages and checks, re-exported for callers and tests
    AFFINE_TOL_MM, CT_STORE_MAX, CT_STORE_MIN, DISK_FULL_HINT, ERR_AFFINE_NONFINITE, ERR_AFFINE_SHAPE,
    ERR_AFFINE_SINGULAR, ERR_BAD_SUFFIX, ERR_CORRUPT, ERR_EMPTY, ERR_LABEL_DTYPE, ERR_LABEL_MISMATCH,
    ERR_LABEL_NEGATIVE, ERR_LABEL_NOT_INTEGER, ERR_LABEL_TOO_LARGE, ERR_LABEL_UNKNOWN, ERR_MISSING, ERR_NDIM_HIGH,
    ERR_NDIM_LOW, ERR_NONFINITE, ERR_NOT_HU, ERR_NOT_NIFTI, ERR_PIXDIM, ERR_SINGLE_SLICE, ERR_UNKNOWN_NAME,
    ERR_WRITE, ERR_WRONG_SUFFIX, HU_CONSTANT, HU_MAX, HU_MIN, HU_NORMALISED, HU_RAW, HU_TOO_HIGH, HU_TOO_LOW,
    NiftiError, RAW_MAX, _check_affine, _check_finite, _check_label_names, _check_shape, _fmt_floats,
    _integer_labels, _to_label_dtype, validate_hu,
)

__all__ = [
    "CTVolume",
    "LabelMap",
    "NiftiError",
    "make_affine",
    "read_ct",
    "read_labels",
    "to_canonical",
    "validate_hu",
    "write_ct",
    "write_labels",
]

_NIFTI_SUFFIXES = (".nii.gz", ".nii")
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


class _Grid:
    """Geometry shared by CTVolume and LabelMap (needs ``data`` and ``affine``)."""

    data: np.ndarray
    affine: np.ndarray

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size (mm) along X, Y, Z: the norms of the affine's first three columns."""
        sx, sy, sz = np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(sx), float(sy), float(sz)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (X, Y, Z) in voxels."""
        x, y, z = self.data.shape
        return int(x), int(y), int(z)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in mL (mm^3 / 1000)."""
        return float(np.prod(self.spacing_mm)) / 1000.0


@dataclass(frozen=True, eq=False)
class CTVolume(_Grid):
    """A CT image in HU on an (X, Y, Z) voxel grid.

    ``data``: float32 (or int16) HU, axes (X, Y, Z); other numeric dtypes are converted to float32.
    ``affine``: (4, 4) float64, voxel index -> RAS+ world mm.
    """

    data: np.ndarray
    affine: np.ndarray

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.dtype not in (np.float32, np.int16):
            data = data.astype(np.float32)
        _check_shape(data.shape, "CTVolume")
        _check_finite(data, "CTVolume")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", _check_affine(self.affine, "CTVolume"))


@dataclass(frozen=True, eq=False)
class LabelMap(_Grid):
    """An integer label map on an (X, Y, Z) voxel grid.

    ``data``: uint8 or uint16 label values (other non-negative integer dtypes are converted), axes (X, Y, Z).
    ``affine``: (4, 4) float64, voxel index -> RAS+ world mm.
    ``names``: label value -> structure name; every non-zero value in ``data`` must be named. Several
    values may share one name (their union is that structure).
    """

    data: np.ndarray
    affine: np.ndarray
    names: dict[int, str]

    def __post_init__(self) -> None:
        where = "LabelMap"
        data = np.asarray(self.data)
        if data.dtype.kind not in "uib":
            raise ValueError(ERR_LABEL_DTYPE.format(where=where, dtype=data.dtype))
        _check_shape(data.shape, where)
        names = {int(k): str(v) for k, v in self.names.items()}
        data = _to_label_dtype(data, where)
        _check_label_names(data, names, where)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "affine", _check_affine(self.affine, where))

    def mask(self, *names: str) -> np.ndarray:
        """Boolean (X, Y, Z) mask of the union of the named structures (no names: all False).

        Unknown names raise KeyError naming them.
        """
        known = set(self.names.values())
        unknown = [n for n in names if n not in known]
        if unknown:
            raise KeyError(ERR_UNKNOWN_NAME.format(names=", ".join(unknown), known=", ".join(sorted(known))))
        wanted = [v for v, n in self.names.items() if n in names]
        lut = np.zeros(max([int(self.data.max()), *wanted]) + 1, dtype=bool)
        lut[wanted] = True
        return lut[self.data]

    def volumes_ml(self) -> dict[str, float]:
        """Volume in mL of each structure present in ``data`` (value 0 excluded), by name."""
        counts = np.bincount(self.data.ravel())
        volumes: dict[str, float] = {}
        for value in np.flatnonzero(counts):
            if value == 0:
                continue
            name = self.names[int(value)]
            volumes[name] = volumes.get(name, 0.0) + float(counts[value]) * self.voxel_volume_ml
        return volumes


def make_affine(
    spacing_mm: tuple[float, float, float], origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
) -> np.ndarray:
    """RAS+ diagonal affine (4, 4) float64: voxel (i, j, k) -> origin + (i, j, k) * spacing, in mm."""
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    if spacing.shape != (3,) or not np.all(np.isfinite(spacing)) or not np.all(spacing > 0):
        raise ValueError(f"make_affine: spacing_mm must be three positive numbers (mm), got {spacing_mm}")
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = np.asarray(origin_mm, dtype=np.float64)
    return affine


# --- reading -------------------------------------------------------------------------------------
@contextmanager
def _as_nifti_error() -> Iterator[None]:
    """Re-raise ValueErrors from the shared validators as NiftiError (same message)."""
    try:
        yield
    except NiftiError:
        raise
    except ValueError as err:
        raise NiftiError(str(err)) from None


def _sniff(path: pathlib.Path) -> nib.Nifti1Header:
    """Check that ``path`` exists and holds a (possibly gzipped) NIfTI-1/2 header, before nibabel.

    Returns the header exactly as stored: ``nib.load`` "fixes" zero or negative pixdim on the way in.
    """
    where = str(path)
    if not path.exists():
        raise NiftiError(ERR_MISSING.format(where=where))
    if path.is_dir():
        found = "a directory; read a DICOM series folder with vctcore.ct_input.read_ct_input (`vct measure DIR`)"
        raise NiftiError(ERR_NOT_NIFTI.format(where=where, found=found))
    with open(path, "rb") as f:
        head = f.read(540)
    if not head:
        raise NiftiError(ERR_CORRUPT.format(where=where, detail="the file is empty"))
    gzipped = head[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            with gzip.open(path, "rb") as g:
                head = g.read(540)
        except (OSError, EOFError, zlib.error) as err:
            raise NiftiError(ERR_CORRUPT.format(where=where, detail=f"broken gzip stream: {err}")) from None
    sizeof_hdr = {int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")}
    if not sizeof_hdr & {348, 540}:
        raise NiftiError(ERR_NOT_NIFTI.format(where=where, found=_describe(head, gzipped)))
    need = 540 if 540 in sizeof_hdr else 348
    if len(head) < need:
        detail = f"the header is cut short: {len(head)} of {need} bytes"
        raise NiftiError(ERR_CORRUPT.format(where=where, detail=detail))
    if gzipped != path.name.lower().endswith(".gz"):
        actual, expected = ("gzip-compressed", ".nii.gz") if gzipped else ("not gzip-compressed", ".nii")
        raise NiftiError(ERR_WRONG_SUFFIX.format(where=where, actual=actual, suffix=path.suffix, expected=expected))
    header_class = nib.Nifti2Header if need == 540 else nib.Nifti1Header
    return header_class(head[:need], check=False)


def _describe(head: bytes, gzipped: bool) -> str:
    """A few words on what a non-NIfTI file looks like."""
    prefix = "gzip-compressed " if gzipped else ""
    if head.startswith(b"\x89PNG"):
        return prefix + "looks like a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return prefix + "looks like a JPEG image"
    if head[128:132] == b"DICM":
        return prefix + "looks like a DICOM file: give the folder (or a .zip) holding its whole series"
    try:
        head.decode("utf-8")
        return prefix + "looks like a text file"
    except UnicodeDecodeError:
        return prefix + "unrecognised content"


def _load(path: str | os.PathLike) -> tuple[nib.Nifti1Pair, str]:
    """Open a NIfTI image lazily (still in file orientation) after checking header, shape, pixdim, affine."""
    path = pathlib.Path(path)
    where = str(path)
    raw_header = _sniff(path)
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises many types for damaged headers
        raise NiftiError(ERR_CORRUPT.format(where=where, detail=f"{type(err).__name__}: {err}")) from None
    if not isinstance(img, nib.Nifti1Pair):
        raise NiftiError(ERR_NOT_NIFTI.format(where=where, found=f"nibabel read it as {type(img).__name__}"))
    shape = tuple(int(n) for n in img.shape)
    if len(shape) > 3 and all(n == 1 for n in shape[3:]):
        img = nib.funcs.squeeze_image(img)
        shape = shape[:3]
    pixdim = np.asarray(raw_header["pixdim"][1:4], dtype=np.float64)
    with _as_nifti_error():
        _check_shape(shape, where)
        if not np.all(pixdim > 0):
            raise ValueError(ERR_PIXDIM.format(where=where, spacing=_fmt_floats(pixdim)))
        _check_affine(img.affine, where)
    return img, where


def _read_canonical(img: nib.Nifti1Pair, where: str, *, scaled_float: bool) -> tuple[np.ndarray, np.ndarray]:
    """Voxel array (C-contiguous, RAS+ axes) and its affine, like ``nib.as_closest_canonical``.

    ``scaled_float``: float32 with scl_slope/inter applied (CT); otherwise the stored values (scaled
    only when the header asks). Damaged data raises NiftiError("truncated or corrupt").
    """
    try:
        data = img.get_fdata(dtype=np.float32) if scaled_float else np.asanyarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as err:  # OSError, EOFError, zlib.error, ValueError... depending on where it is cut
        first_line = str(err).splitlines()[0] if str(err) else ""
        raise NiftiError(ERR_CORRUPT.format(where=where, detail=f"{type(err).__name__}: {first_line}")) from None
    return to_canonical(data, img.affine)


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` (3D, any voxel axis order) and its voxel -> world (RAS+ mm) ``affine`` reoriented to the
    closest canonical RAS+ axes (X, Y, Z), like ``nib.as_closest_canonical``: axes permuted and flipped,
    voxels never resampled. Returns the C-contiguous array and its float64 (4, 4) affine. The NIfTI and
    the DICOM readers both end here, so one series gives the same volume through either."""
    affine = np.asarray(affine, dtype=np.float64)
    ornt = nib.orientations.io_orientation(affine)
    affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    data = nib.orientations.apply_orientation(data, ornt)
    return np.ascontiguousarray(data), affine


def canonical_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """The (X, Y, Z) shape a NIfTI file's volume has once read in RAS+ (read_ct, read_labels), from its
    header alone; NiftiError naming the file for a damaged or non-3D header."""
    img, _ = _load(path)
    ornt = nib.orientations.io_orientation(img.affine)
    shape = [0, 0, 0]
    for n, (axis, _flip) in zip(img.shape[:3], ornt):
        shape[int(axis)] = int(n)
    return tuple(shape)  # type: ignore[return-value]


def read_ct(path: str | os.PathLike, *, check_hu: bool = True) -> CTVolume:
    """Read a CT NIfTI file as a :class:`CTVolume`: float32 HU (scl_slope/inter applied), axes RAS+.

    Raises NiftiError naming the file for every problem; ``check_hu=False`` skips only the HU check.
    """
    img, where = _load(path)
    data, affine = _read_canonical(img, where, scaled_float=True)
    with _as_nifti_error():
        _check_finite(data, where)
        if check_hu:
            validate_hu(data, where=where)
        return CTVolume(data=data, affine=affine)


def read_labels(
    path: str | os.PathLike, *, names: dict[int, str] | None = None, like: CTVolume | None = None
) -> LabelMap:
    """Read a label-map NIfTI file as a :class:`LabelMap` (uint8/uint16, axes RAS+).

    ``names``: value -> structure name (e.g. ``labels.FINE_LABEL_NAMES``); values in the file that are
    not in it raise NiftiError listing them. Without ``names`` every present value v > 0 is named
    ``"label_<v>"``. ``like``: a CT the labels must match (shape, and affine within 1e-3 mm).
    """
    img, where = _load(path)
    data, affine = _read_canonical(img, where, scaled_float=False)
    with _as_nifti_error():
        data = _integer_labels(data, where)
        if names is None:
            names = {int(v): f"label_{int(v)}" for v in np.flatnonzero(np.bincount(data.ravel())) if v}
        else:
            _check_label_names(data, names, where)
        labels = LabelMap(data=data, affine=affine, names=dict(names))
    if like is not None:
        diff = float(np.abs(labels.affine - like.affine).max())
        if labels.shape != like.shape or diff > AFFINE_TOL_MM:
            raise NiftiError(ERR_LABEL_MISMATCH.format(where=where, label_shape=labels.shape, ct_shape=like.shape,
                                                       diff=diff, tol=AFFINE_TOL_MM))
    return labels


# --- writing -------------------------------------------------------------------------------------
def write_ct(volume: CTVolume, path: str | os.PathLike) -> pathlib.Path:
    """Write ``volume`` as int16 HU (rounded, clipped to [-1024, 3071]), scl_slope=1, scl_inter=0.

    Gzip-compressed when ``path`` ends with .nii.gz. Atomic (temporary file + os.replace); parent
    folders are created. On failure raises OSError naming ``path`` (errno kept).
    """
    data = np.clip(np.rint(volume.data), CT_STORE_MIN, CT_STORE_MAX).astype(np.int16)
    img = _new_image(data, volume.affine, b"vctcore CT (HU)")
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    return _save_atomic(img, path)


def write_labels(labels: LabelMap, path: str | os.PathLike) -> pathlib.Path:
    """Write ``labels`` as uint8 (max < 256) or uint16 label values; atomic, like :func:`write_ct`."""
    dtype = np.uint8 if int(labels.data.max()) < 256 else np.uint16
    img = _new_image(labels.data.astype(dtype, copy=False), labels.affine, b"vctcore label map")
    img.header["scl_slope"], img.header["scl_inter"] = 1.0, 0.0
    return _save_atomic(img, path)


def _new_image(data: np.ndarray, affine: np.ndarray, descrip: bytes) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    img.header["descrip"] = descrip
    return img


def _save_atomic(img: nib.Nifti1Image, path: str | os.PathLike) -> pathlib.Path:
    """Save to a temporary file beside ``path``, fsync, then os.replace; clean up on any failure."""
    path = pathlib.Path(path)
    suffix = next((s for s in _NIFTI_SUFFIXES if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise NiftiError(ERR_BAD_SUFFIX.format(where=str(path)))
    tmp = path.with_name(f".{path.name[: -len(suffix)]}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # pragma: no cover - nothing more we can do
            pass
        if isinstance(err, OSError):
            hint = DISK_FULL_HINT if err.errno in _DISK_FULL_ERRNOS else ""
            message = ERR_WRITE.format(path=path, reason=err.strerror or str(err), hint=hint)
            raise (OSError(err.errno, message) if err.errno is not None else OSError(message)) from err
        raise
    return path
