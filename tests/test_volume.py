"""vctcore.volume: CT / label-map types, NIfTI round trips in RAS+, validation of bad files, atomic writes."""
from __future__ import annotations

import errno
import gzip
import os
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from vctcore import volume as vol
from vctcore.labels import FINE_LABEL_NAMES, FINE_LABELS
from vctcore.volume import CTVolume, LabelMap, NiftiError, make_affine, read_ct, read_labels, write_ct, write_labels

SHAPE = (8, 9, 10)


def _body(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """A tiny CT in HU: air around a water block with a bone core and some noise (float32)."""
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[2:-2, 2:-2, 2:-2] = 40.0
    hu[3:-3, 3:-3, 3:-3] = 900.0
    return hu + rng.normal(0, 10, shape).astype(np.float32)


def _save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return path


def _patch_header(path: Path, **fields) -> Path:
    """Rewrite header fields of an uncompressed .nii in place (nibabel would 'fix' them on save)."""
    with open(path, "rb") as f:
        hdr = nib.Nifti1Header.from_fileobj(f)
    for key, value in fields.items():
        hdr[key] = value
    with open(path, "r+b") as f:
        f.write(hdr.binaryblock)
    return path


def _err(excinfo: pytest.ExceptionInfo) -> str:
    return str(excinfo.value)


# ---------------------------------------------------------------- types


def test_ctvolume_geometry():
    ct = CTVolume(_body(), make_affine((0.8, 0.8, 2.5), (-100.0, -50.0, 300.0)))
    assert ct.shape == SHAPE
    assert ct.spacing_mm == pytest.approx((0.8, 0.8, 2.5))
    assert ct.voxel_volume_ml == pytest.approx(0.8 * 0.8 * 2.5 / 1000)
    assert ct.affine.dtype == np.float64 and ct.affine[:3, 3].tolist() == [-100.0, -50.0, 300.0]


def test_ctvolume_converts_float64_and_keeps_int16():
    assert CTVolume(_body().astype(np.float64), np.eye(4)).data.dtype == np.float32
    assert CTVolume(np.zeros(SHAPE, np.int16), np.eye(4)).data.dtype == np.int16


@pytest.mark.parametrize(
    "data, affine, template",
    [
        (np.zeros((8, 9)), np.eye(4), vol.ERR_NDIM_LOW),
        (np.zeros((8, 9, 10, 2)), np.eye(4), vol.ERR_NDIM_HIGH),
        (np.zeros((8, 9, 1)), np.eye(4), vol.ERR_SINGLE_SLICE),
        (np.zeros((8, 0, 3)), np.eye(4), vol.ERR_EMPTY),
        (np.zeros(SHAPE), np.eye(3), vol.ERR_AFFINE_SHAPE),
        (np.zeros(SHAPE), np.diag([1.0, 0.0, 1.0, 1.0]), vol.ERR_AFFINE_SINGULAR),
        (np.zeros(SHAPE), np.full((4, 4), np.nan), vol.ERR_AFFINE_NONFINITE),
    ],
)
def test_ctvolume_rejects_bad_grids(data, affine, template):
    with pytest.raises(ValueError) as excinfo:
        CTVolume(data, affine)
    assert _err(excinfo).startswith("CTVolume: ")
    assert template.split("{where}")[1].split("{")[0] in _err(excinfo)


def test_ctvolume_rejects_nan_and_says_how_many():
    data = _body()
    data[0, 0, :3] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=re.escape(vol.ERR_NONFINITE.format(where="CTVolume", count=3, total=720))):
        CTVolume(data, np.eye(4))


def test_make_affine_is_ras_diagonal():
    aff = make_affine((0.5, 1.0, 2.0), (1.0, 2.0, 3.0))
    assert np.array_equal(aff, [[0.5, 0, 0, 1], [0, 1, 0, 2], [0, 0, 2, 3], [0, 0, 0, 1]])
    assert nib.aff2axcodes(aff) == ("R", "A", "S")
    with pytest.raises(ValueError, match="spacing_mm"):
        make_affine((1.0, 0.0, 1.0))


def _labels() -> LabelMap:
    data = np.zeros(SHAPE, np.uint8)
    data[1:3, 1:3, 1:3] = FINE_LABELS["liver"]  # 8 voxels
    data[4, 4, 4:7] = FINE_LABELS["femur_left"]  # 3 voxels
    data[5, 5, 5] = FINE_LABELS["femur_right"]  # 1 voxel
    return LabelMap(data, make_affine((2.0, 2.0, 2.5)), FINE_LABEL_NAMES)


def test_labelmap_mask_and_volumes():
    labels = _labels()
    assert labels.mask("liver").sum() == 8
    femurs = labels.mask("femur_left", "femur_right")
    assert femurs.dtype == bool and femurs.shape == SHAPE and femurs.sum() == 4
    assert labels.mask().sum() == 0
    assert labels.mask("brain").sum() == 0  # known but absent
    assert labels.volumes_ml() == pytest.approx({"liver": 0.08, "femur_left": 0.03, "femur_right": 0.01})


def test_labelmap_mask_unknown_name_is_keyerror_naming_it():
    with pytest.raises(KeyError, match="no_such_organ"):
        _labels().mask("liver", "no_such_organ")


def test_labelmap_values_sharing_a_name_are_one_structure():
    data = np.array([0, 1, 2, 2, 3, 3], np.uint8).reshape(1, 2, 3).repeat(2, axis=0)
    labels = LabelMap(data, np.eye(4), {1: "bone", 2: "bone", 3: "liver"})
    assert labels.mask("bone").sum() == 6
    assert labels.volumes_ml() == pytest.approx({"bone": 0.006, "liver": 0.004})


def test_labelmap_validation():
    with pytest.raises(ValueError, match=re.escape(vol.ERR_LABEL_DTYPE.format(where="LabelMap", dtype="float32"))):
        LabelMap(np.zeros(SHAPE, np.float32), np.eye(4), {})
    bad = np.zeros(SHAPE, np.int16)
    bad[0, 0, 0] = -1
    with pytest.raises(ValueError, match=re.escape(vol.ERR_LABEL_NEGATIVE.format(where="LabelMap", count=1, vmin=-1))):
        LabelMap(bad, np.eye(4), {})
    with pytest.raises(ValueError, match=r"label value\(s\) 7 are not in the label names"):
        LabelMap(np.full(SHAPE, 7, np.uint8), np.eye(4), {1: "x"})
    assert LabelMap(np.full(SHAPE, 300, np.int32), np.eye(4), {300: "x"}).data.dtype == np.uint16


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_ct_round_trip(tmp_path, suffix):
    ct = CTVolume(_body(), make_affine((0.7, 0.9, 2.0), (-12.0, 30.5, 100.0)))
    path = write_ct(ct, tmp_path / "sub" / "dir" / f"ct{suffix}")  # parent folders are created
    assert path == tmp_path / "sub" / "dir" / f"ct{suffix}" and path.exists()
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == (suffix == ".nii.gz")
    on_disk = nib.load(path)
    assert on_disk.get_data_dtype() == np.int16
    assert (on_disk.dataobj.slope, on_disk.dataobj.inter) == (1.0, 0.0)
    assert on_disk.header["sform_code"] > 0 and on_disk.header.get_xyzt_units()[0] == "mm"
    back = read_ct(path)
    assert back.data.dtype == np.float32 and back.shape == ct.shape
    np.testing.assert_array_equal(back.data, np.rint(ct.data).clip(-1024, 3071))
    np.testing.assert_allclose(back.affine, ct.affine, atol=1e-5)
    assert back.spacing_mm == pytest.approx(ct.spacing_mm)


def test_write_ct_rounds_and_clips_to_int16_range(tmp_path):
    data = _body()
    data[0, 0, 0], data[0, 0, 1], data[0, 0, 2] = -3024.0, 5000.0, 10.6
    back = read_ct(write_ct(CTVolume(data, np.eye(4)), tmp_path / "ct.nii.gz"))
    assert back.data[0, 0, :3].tolist() == [-1024.0, 3071.0, 11.0]


def test_read_ct_applies_scl_slope_and_inter(tmp_path):
    raw = np.rint(_body() + 1024).clip(0, 4095).astype(np.uint16)  # scanner values, HU = raw - 1024
    img = nib.Nifti1Image(raw, np.eye(4))
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, tmp_path / "scaled.nii.gz")
    back = read_ct(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(back.data, raw.astype(np.float32) - 1024)


@pytest.mark.parametrize("max_label, dtype", [(200, np.uint8), (300, np.uint16)])
def test_labels_round_trip(tmp_path, max_label, dtype):
    data = np.zeros(SHAPE, np.uint16)
    data[2:5, 2:5, 2:5] = 1
    data[6, 6, 6] = max_label
    labels = LabelMap(data, make_affine((1.5, 1.5, 3.0), (5.0, 6.0, 7.0)), {1: "liver", max_label: "spleen"})
    path = write_labels(labels, tmp_path / "labels.nii.gz")
    assert nib.load(path).get_data_dtype() == dtype
    back = read_labels(path, names=labels.names)
    assert back.data.dtype == dtype and back.names == labels.names
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, labels.affine, atol=1e-5)
    assert back.volumes_ml() == pytest.approx(labels.volumes_ml())


def test_read_labels_default_names_and_like(tmp_path):
    ct = CTVolume(_body(), make_affine((1.0, 1.0, 2.0)))
    write_labels(_labels_on(ct.affine), tmp_path / "seg.nii")
    labels = read_labels(tmp_path / "seg.nii", like=ct)
    assert labels.names == {FINE_LABELS["liver"]: f"label_{FINE_LABELS['liver']}"}


def _labels_on(affine: np.ndarray, shape: tuple[int, int, int] = SHAPE) -> LabelMap:
    data = np.zeros(shape, np.uint8)
    data[1:3, 1:3, 1:3] = FINE_LABELS["liver"]
    return LabelMap(data, affine, FINE_LABEL_NAMES)


def test_read_labels_accepts_float_storage_of_whole_numbers(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[1, 1, 1] = 3.0
    labels = read_labels(_save(tmp_path / "f.nii.gz", data), names={3: "x"})
    assert labels.data.dtype == np.uint8 and labels.mask("x").sum() == 1


# ---------------------------------------------------------------- orientation


_ORIENTED = {
    # LPS (DICOM patient axes): i -> Left, j -> Posterior, k -> Superior
    "LPS": np.array([[-1.5, 0, 0, 20.0], [0, -2.0, 0, 30.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]]),
    # permuted and flipped: i -> Superior, j -> Left, k -> Anterior
    "SLA": np.array([[0, -2.0, 0, 10.0], [0, 0, 1.5, -5.0], [2.5, 0, 0, 0.0], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("orientation", list(_ORIENTED))
def test_non_ras_input_comes_back_in_ras(tmp_path, orientation):
    affine = _ORIENTED[orientation]
    data = _body()
    marker = (1, 2, 7)
    data[marker] = 2500.0
    path = _save(tmp_path / "oriented.nii.gz", data, affine)
    assert "".join(nib.aff2axcodes(affine)) == orientation

    ct = read_ct(path)
    assert nib.aff2axcodes(ct.affine) == ("R", "A", "S")
    assert np.all(np.diag(ct.affine)[:3] > 0)
    (found,) = np.argwhere(ct.data == 2500.0)
    np.testing.assert_allclose(ct.affine @ [*found, 1], affine @ [*marker, 1])  # same place in the patient
    assert sorted(ct.spacing_mm) == [1.5, 2.0, 2.5]
    assert vol.canonical_shape(path) == ct.data.shape  # from the header alone
    canonical = nib.as_closest_canonical(nib.load(path))  # same answer as nibabel's own
    np.testing.assert_allclose(ct.affine, canonical.affine)
    np.testing.assert_array_equal(ct.data, canonical.get_fdata(dtype=np.float32))
    assert ct.data.flags.c_contiguous


# ---------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.nii.gz"
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo) == vol.ERR_MISSING.format(where=path)
    assert "does not exist" in _err(excinfo)


@pytest.mark.parametrize(
    "name, content, found",
    [
        ("notes.nii", b"patient 17, abdomen CT\n" * 40, "looks like a text file"),
        ("scan.png", b"\x89PNG\r\n\x1a\n" + bytes(600), "looks like a PNG image"),
        ("slice.dcm", bytes(128) + b"DICM" + bytes(400), "looks like a DICOM file"),
        ("text.nii.gz", gzip.compress(b"hello\n" * 100), "gzip-compressed looks like a text file"),
    ],
)
def test_not_nifti(tmp_path, name, content, found):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo).startswith(f"{path}: not a NIfTI file")
    assert found in _err(excinfo)


def test_directory_is_not_nifti(tmp_path):
    with pytest.raises(NiftiError, match="not a NIfTI file.*a directory"):
        read_ct(tmp_path)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("keep", [0, 200, 0.5])
def test_truncated_file(tmp_path, suffix, keep):
    good = write_ct(CTVolume(_body((20, 20, 20), seed=1), np.eye(4)), tmp_path / f"good{suffix}").read_bytes()
    n = int(len(good) * keep) if isinstance(keep, float) else keep
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(good[:n])
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo).startswith(vol.ERR_CORRUPT.format(where=path, detail="").split("(")[0])
    assert "truncated or corrupt" in _err(excinfo)


def test_truncated_label_file(tmp_path):
    good = write_labels(_labels(), tmp_path / "good.nii").read_bytes()
    (tmp_path / "cut.nii").write_bytes(good[: len(good) - 100])
    with pytest.raises(NiftiError, match="truncated or corrupt"):
        read_labels(tmp_path / "cut.nii")


@pytest.mark.parametrize("name, actual", [("x.nii", "gzip-compressed"), ("x.nii.gz", "not gzip-compressed")])
def test_wrong_compression_suffix(tmp_path, name, actual):
    good = write_ct(CTVolume(_body(), np.eye(4)), tmp_path / ("g.nii.gz" if actual == "gzip-compressed" else "g.nii"))
    (tmp_path / name).write_bytes(good.read_bytes())
    with pytest.raises(NiftiError, match=f"the file is {actual} but its name ends with"):
        read_ct(tmp_path / name)


def test_nan_and_inf_voxels(tmp_path):
    data = _body()
    data[0, 0, 0], data[1, 1, 1] = np.nan, np.inf
    path = _save(tmp_path / "nan.nii.gz", data)
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo) == vol.ERR_NONFINITE.format(where=path, count=2, total=data.size)


def test_2d_image(tmp_path):
    path = _save(tmp_path / "2d.nii.gz", np.zeros((16, 16), np.int16))
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo) == vol.ERR_NDIM_LOW.format(where=path, ndim=2, shape=(16, 16))


def test_single_slice(tmp_path):
    path = _save(tmp_path / "slice.nii.gz", _body((16, 16, 1)))
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo) == vol.ERR_SINGLE_SLICE.format(where=path, shape=(16, 16, 1), axis=2)
    assert "a single slice, not a volume" in _err(excinfo)


@pytest.mark.parametrize("shape", [(8, 9, 10, 3), (8, 9, 10, 1, 2)])
def test_4d_and_5d_images(tmp_path, shape):
    path = _save(tmp_path / "4d.nii.gz", np.zeros(shape, np.int16))
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo) == vol.ERR_NDIM_HIGH.format(where=path, ndim=len(shape), shape=shape)


@pytest.mark.parametrize("extra", [(1,), (1, 1)])
def test_trailing_singleton_axes_are_squeezed(tmp_path, extra):
    data = _body()
    ct = read_ct(_save(tmp_path / "4d1.nii.gz", data.reshape(*SHAPE, *extra)))
    assert ct.shape == SHAPE
    np.testing.assert_allclose(ct.data, data)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_zero_or_negative_pixdim(tmp_path, bad):
    path = _save(tmp_path / "px.nii", _body(), make_affine((1.0, 1.0, 2.0)))
    pixdim = nib.load(path).header["pixdim"].copy()
    pixdim[3] = bad
    _patch_header(path, pixdim=pixdim)
    assert nib.load(path).header.get_zooms()[2] > 0  # nibabel hides it ...
    with pytest.raises(NiftiError) as excinfo:  # ... we do not
        read_ct(path)
    assert _err(excinfo) == vol.ERR_PIXDIM.format(where=path, spacing=(1.0, 1.0, bad))


def test_singular_affine(tmp_path):
    path = _save(tmp_path / "sing.nii", _body())
    srow_z = np.zeros(4)  # the k column and the z row vanish: determinant 0
    _patch_header(path, qform_code=0, sform_code=2, srow_z=srow_z)
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    assert _err(excinfo).startswith(f"{path}: affine is singular (determinant of its 3x3 part is 0")


HU_CASES = {
    "raw detector values": (np.linspace(0, 4095, 720), vol.HU_RAW),
    "int16 wrap-around": (np.linspace(-32768, 1000, 720), vol.HU_TOO_LOW.format(limit=vol.HU_MIN)),
    "too high": (np.linspace(-1000, 65535, 720), vol.HU_TOO_HIGH.format(limit=vol.HU_MAX)),
    "constant": (np.zeros(720), vol.HU_CONSTANT),
    "normalised": (np.linspace(0, 1, 720), vol.HU_NORMALISED.format(span=1)),
}


@pytest.mark.parametrize("case", list(HU_CASES))
def test_values_that_are_not_hu(tmp_path, case):
    values, problem = HU_CASES[case]
    data = values.astype(np.float32).reshape(SHAPE)
    path = _save(tmp_path / "raw.nii.gz", data)
    with pytest.raises(NiftiError) as excinfo:
        read_ct(path)
    vmin, vmax = float(data.min()), float(data.max())
    assert _err(excinfo) == vol.ERR_NOT_HU.format(where=path, problem=problem, vmin=vmin, vmax=vmax)
    for hint in ("air about -1000", "water 0", "+400..+2000", "RescaleSlope/RescaleIntercept"):
        assert hint in _err(excinfo)
    ct = read_ct(path, check_hu=False)  # skips only the HU check
    np.testing.assert_array_equal(ct.data, data)


def test_scanner_padding_values_are_hu(tmp_path):
    data = _body()
    data[0] = -3024.0  # GE pads outside the reconstruction circle with -3024 HU
    assert read_ct(_save(tmp_path / "pad.nii.gz", data)).data.min() == -3024.0


def test_check_hu_false_still_rejects_nan(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[0, 0, 0] = np.nan
    with pytest.raises(NiftiError, match="1 of 720 voxels are NaN or Inf"):
        read_ct(_save(tmp_path / "n.nii.gz", data), check_hu=False)


# ---------------------------------------------------------------- bad label maps


def test_labels_non_integer(tmp_path):
    data = np.zeros(SHAPE, np.float32)
    data[0, 0, :2] = [1.5, 2.25]
    path = _save(tmp_path / "f.nii.gz", data)
    with pytest.raises(NiftiError) as excinfo:
        read_labels(path)
    assert _err(excinfo) == vol.ERR_LABEL_NOT_INTEGER.format(where=path, count=2, examples="1.5, 2.25")


def test_labels_negative(tmp_path):
    data = np.zeros(SHAPE, np.int16)
    data[0, 0, :3] = -2
    path = _save(tmp_path / "neg.nii.gz", data)
    with pytest.raises(NiftiError) as excinfo:
        read_labels(path)
    assert _err(excinfo) == vol.ERR_LABEL_NEGATIVE.format(where=path, count=3, vmin=-2)


def test_labels_not_in_names(tmp_path):
    data = np.zeros(SHAPE, np.uint8)
    data[0, 0, :3] = [1, 200, 201]
    path = _save(tmp_path / "unk.nii.gz", data)
    with pytest.raises(NiftiError) as excinfo:
        read_labels(path, names={1: "liver", 2: "spleen"})
    assert _err(excinfo) == vol.ERR_LABEL_UNKNOWN.format(where=path, values="200, 201", known="1..2")


@pytest.mark.parametrize("mismatch", ["shape", "affine"])
def test_labels_not_like_ct(tmp_path, mismatch):
    ct = CTVolume(_body(), make_affine((1.0, 1.0, 2.0)))
    if mismatch == "shape":
        labels, shape = _labels_on(ct.affine, (8, 9, 11)), (8, 9, 11)
    else:
        labels, shape = _labels_on(make_affine((1.0, 1.0, 2.0), (0.0, 0.0, 0.5))), SHAPE
    path = write_labels(labels, tmp_path / "seg.nii.gz")
    with pytest.raises(NiftiError) as excinfo:
        read_labels(path, like=ct)
    assert _err(excinfo).startswith(
        f"{path}: label map does not match the CT: label shape {shape} vs CT shape {SHAPE}"
    )


# ---------------------------------------------------------------- atomic writes


def _fail_midway(written: list[str]):
    """A stand-in for nibabel.save that writes part of the file, then runs out of disk space."""

    def save(img, filename):
        written.append(str(filename))
        with open(filename, "wb") as f:
            f.write(b"\x1f\x8b partial bytes")
        raise OSError(errno.ENOSPC, "No space left on device")

    return save


@pytest.mark.parametrize("kind", ["ct", "labels"])
def test_disk_full_leaves_no_file(tmp_path, monkeypatch, kind):
    written: list[str] = []
    monkeypatch.setattr(nib, "save", _fail_midway(written))
    target = tmp_path / "out" / "vol.nii.gz"
    with pytest.raises(OSError) as excinfo:
        if kind == "ct":
            write_ct(CTVolume(_body(), np.eye(4)), target)
        else:
            write_labels(_labels(), target)
    assert written and Path(written[0]).parent == target.parent  # the temp file sat beside the target
    assert excinfo.value.errno == errno.ENOSPC
    assert str(target) in _err(excinfo) and "the disk may be full" in _err(excinfo)
    assert not target.exists()
    assert os.listdir(target.parent) == []  # no temp file left behind


def test_failed_overwrite_keeps_the_good_file(tmp_path, monkeypatch):
    target = write_ct(CTVolume(_body(), np.eye(4)), tmp_path / "ct.nii.gz")
    before = target.read_bytes()
    monkeypatch.setattr(nib, "save", _fail_midway([]))
    with pytest.raises(OSError, match="disk may be full"):
        write_ct(CTVolume(_body(seed=5), np.eye(4)), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["ct.nii.gz"]
    assert read_ct(target).shape == SHAPE


def test_failure_after_writing_cleans_up(tmp_path, monkeypatch):
    def no_fsync(fd):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", no_fsync)
    target = tmp_path / "ct.nii"
    with pytest.raises(OSError) as excinfo:
        write_ct(CTVolume(_body(), np.eye(4)), target)
    assert excinfo.value.errno == errno.EIO and str(target) in _err(excinfo)
    assert "disk may be full" not in _err(excinfo)
    assert os.listdir(tmp_path) == []


def test_write_needs_a_nifti_name(tmp_path):
    with pytest.raises(NiftiError, match=re.escape(vol.ERR_BAD_SUFFIX.format(where=tmp_path / "ct.png"))):
        write_ct(CTVolume(_body(), np.eye(4)), tmp_path / "ct.png")


@pytest.mark.parametrize("flavour", ["nifti2", "big-endian"])
def test_other_nifti_flavours(tmp_path, flavour):
    data = _body()
    if flavour == "nifti2":
        img = nib.Nifti2Image(data, make_affine((1.0, 2.0, 3.0)))
    else:
        header = nib.Nifti1Header(endianness=">")
        img = nib.Nifti1Image(data.astype(">f4"), make_affine((1.0, 2.0, 3.0)), header=header)
    nib.save(img, tmp_path / "ct.nii")
    ct = read_ct(tmp_path / "ct.nii")
    np.testing.assert_array_equal(ct.data, data)
    assert ct.spacing_mm == (1.0, 2.0, 3.0)
