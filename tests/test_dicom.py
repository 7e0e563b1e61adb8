"""vctcore.dicom / vctcore.ct_input: a real DICOM CT series read as the NIfTI path reads its conversion;
slices ordered by position, rescale applied per slice; zips and uploads; one-line refusals.

Reference conversion: dicom2nifti (the converter TotalSegmentator uses), an implementation independent of
ours. Third-party test files: TotalSegmentator's example CT series and pydicom's bundled CT_small.dcm
(one 128 x 128 CT slice) and MR_small.dcm (one MR slice).
"""
from __future__ import annotations

import hashlib
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from tests.dicom_fixtures import DATA, FILES, SERIES, copy_series
from vctcore.ct_input import read_ct_input, read_ct_upload, read_ct_zip
from vctcore.dicom import DicomError, is_dicom_file, read_dicom_series
from vctcore.volume import NiftiError, read_ct


def _dicom2nifti(series: Path, out: Path) -> Path:
    dicom2nifti = pytest.importorskip("dicom2nifti")
    dicom2nifti.dicom_series_to_nifti(str(series), str(out), reorient_nifti=True)
    return out


@pytest.fixture(scope="module")
def series_ct():
    return read_dicom_series(SERIES)


def test_shipped_series_is_unchanged():
    listed = dict(line.split()[::-1] for line in (DATA / "ts_example_ct_dicom.sha256").read_text().splitlines())
    assert sorted(listed) == [f.name for f in FILES] and len(FILES) == 20
    for f in FILES:
        assert hashlib.sha256(f.read_bytes()).hexdigest() == listed[f.name], f.name


def test_series_equals_its_nifti_conversion(series_ct, tmp_path):
    """Voxel for voxel and affine for affine: the DICOM reader and the NIfTI reader of dicom2nifti's output."""
    nifti = read_ct(_dicom2nifti(SERIES, tmp_path / "ct.nii.gz"))
    assert series_ct.shape == nifti.shape == (512, 512, 20)
    assert np.array_equal(series_ct.data, nifti.data)
    np.testing.assert_allclose(series_ct.affine, nifti.affine, atol=1e-4)
    assert series_ct.spacing_mm == pytest.approx((0.9765625, 0.9765625, 2.0))
    # canonical RAS+: diagonal affine with positive spacings; first slice is the most inferior (z -804.5 mm)
    assert np.all(np.diag(series_ct.affine)[:3] > 0) and series_ct.affine[2, 3] == pytest.approx(-804.5)
    # HU: air near -1000 (stored 0 + intercept -1024), soft tissue present
    assert series_ct.data.min() == -1024 and 0 < np.median(series_ct.data[series_ct.data > -500]) < 100


def test_other_orientation_equals_its_nifti_conversion(tmp_path):
    """A series stored with the patient's right on the image right (row direction -x): reoriented to RAS+
    exactly as the NIfTI path reorients dicom2nifti's conversion."""
    def mirror(i, ds):
        ds.ImageOrientationPatient = [-1, 0, 0, 0, 1, 0]

    folder = copy_series(tmp_path / "mirrored", edit=mirror)
    ours, theirs = read_dicom_series(folder), read_ct(_dicom2nifti(folder, tmp_path / "m.nii.gz"))
    assert np.array_equal(ours.data, theirs.data)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    assert np.all(np.diag(ours.affine)[:3] > 0)


def test_slices_are_ordered_by_position_not_by_name_or_number(series_ct, tmp_path):
    def scramble(i, ds):
        ds.InstanceNumber = (7 * i) % 20 + 1

    folder = copy_series(tmp_path / "shuffled", edit=scramble,
                         rename=lambda i, name: f"{(13 * i) % 20:02d}_{name[-5:]}")
    shuffled = read_dicom_series(folder)
    assert np.array_equal(shuffled.data, series_ct.data) and np.array_equal(shuffled.affine, series_ct.affine)


def test_rescale_is_applied_per_slice(series_ct, tmp_path):
    """RescaleIntercept -1000 instead of -1024 on one slice shifts that slice, and only it, by +24 HU."""
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in FILES]
    top = int(np.argmax(z))

    def shift(i, ds):
        if i == top:
            ds.RescaleIntercept = -1000

    shifted = read_dicom_series(copy_series(tmp_path / "shifted", edit=shift))
    k = shifted.shape[2] - 1  # the most superior slice is the last one in RAS+
    assert np.array_equal(shifted.data[:, :, k], series_ct.data[:, :, k] + 24)
    assert np.array_equal(shifted.data[:, :, :k], series_ct.data[:, :, :k])


def test_zip_and_upload_give_the_same_volume(series_ct, tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in FILES:
            z.write(f, f"patient/series 1/{f.name}")
        z.writestr("patient/README.txt", "not DICOM")
    (tmp_path / "series.zip").write_bytes(buf.getvalue())
    for volume in (read_ct_zip(tmp_path / "series.zip"), read_ct_input(tmp_path / "series.zip"),
                   read_ct_upload([("series.zip", buf.getvalue())]),
                   read_ct_upload([(f.name, f.read_bytes()) for f in reversed(FILES)])):
        assert np.array_equal(volume.data, series_ct.data) and np.array_equal(volume.affine, series_ct.affine)
    nifti = _dicom2nifti(SERIES, tmp_path / "ct.nii.gz")
    uploaded = read_ct_upload([("ct.nii.gz", nifti.read_bytes())])
    assert np.array_equal(uploaded.data, series_ct.data)


def test_pydicom_single_ct_slice_is_refused(tmp_path):
    folder = tmp_path / "one"
    folder.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), folder / "CT_small.dcm")
    with pytest.raises(DicomError, match=r"one.*single slice \(CT_small\.dcm\); a CT volume needs at least two"):
        read_dicom_series(folder)


def _one_line(err: pytest.ExceptionInfo, *parts: str) -> str:
    message = str(err.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


def test_refusals_name_the_folder_and_what_was_found(tmp_path):
    mr = tmp_path / "mr"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "MR_small.dcm")
    with pytest.raises(DicomError) as err:
        read_dicom_series(mr)
    _one_line(err, str(mr), "Modality is MR, not CT")

    def other_series(i, ds):
        if i >= 15:
            ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1"

    mixed = copy_series(tmp_path / "mixed", edit=other_series)
    with pytest.raises(DicomError) as err:
        read_dicom_series(mixed)
    _one_line(err, str(mixed), "mixes 2 series", "(empty) (15 files)", "1.2.826.0.1.3680043.8.498.1 (5 files)")

    gap = copy_series(tmp_path / "gap", skip=(9,))
    with pytest.raises(DicomError) as err:
        read_dicom_series(gap)
    _one_line(err, str(gap), "irregular slice spacing", "2, 4 mm")

    def same_place(i, ds):
        if i == 1:
            ds.ImagePositionPatient = pydicom.dcmread(FILES[0], stop_before_pixels=True).ImagePositionPatient

    twice = copy_series(tmp_path / "twice", edit=same_place)
    with pytest.raises(DicomError) as err:
        read_dicom_series(twice)
    _one_line(err, "lie at the same position")

    def tilted_pixels(i, ds):
        if i == 3:
            ds.PixelSpacing = [0.8, 0.8]

    grid = copy_series(tmp_path / "grid", edit=tilted_pixels)
    with pytest.raises(DicomError) as err:
        read_dicom_series(grid)
    _one_line(err, "differ in pixel spacing", "(0.8, 0.8)", "(0.9766, 0.9766)")

    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images here\n")
    with pytest.raises(DicomError) as err:
        read_dicom_series(empty)
    _one_line(err, str(empty), "no DICOM files found (1 file(s) looked at, none of them DICOM, e.g. readme.txt)")

    with pytest.raises(DicomError) as err:
        read_dicom_series(tmp_path / "absent")
    _one_line(err, "folder does not exist")


def test_refusals_of_zips_and_uploads_name_what_the_user_gave(tmp_path, monkeypatch):
    bad = tmp_path / "scan.zip"
    bad.write_bytes(b"PK but not really a zip")
    with pytest.raises(DicomError, match=r"scan\.zip: not a readable zip archive"):
        read_ct_input(bad)
    files = [(f.name, f.read_bytes()) for i, f in enumerate(FILES) if i != 9]
    with pytest.raises(DicomError) as err:
        read_ct_upload(files)
    _one_line(err, "the 19 uploaded files: irregular slice spacing")
    with pytest.raises(DicomError) as err:
        read_ct_upload([("only.dcm", FILES[0].read_bytes())])
    _one_line(err, "only.dcm: the series has a single slice (only.dcm)")
    with pytest.raises(NiftiError) as err:
        read_ct_input(FILES[0])  # one slice given as the CT: point at its folder
    _one_line(err, FILES[0].name, "looks like a DICOM file: give the folder (or a .zip) holding its whole series")
    import vctcore.ct_input as ct_input

    monkeypatch.setattr(ct_input, "MAX_UNPACKED_BYTES", 2 * 1024**2)  # the check reads the zip's directory
    big = tmp_path / "big.zip"
    with zipfile.ZipFile(big, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.dcm", bytes(3 * 1024**2))
    with pytest.raises(DicomError) as err:
        read_ct_input(big)
    _one_line(err, "big.zip: 3 MB uncompressed, over the 2 MB limit of one CT series")


def test_is_dicom_file():
    assert is_dicom_file(FILES[0]) and is_dicom_file(get_testdata_file("CT_small.dcm"))
    assert not is_dicom_file(DATA / "ts_example_ct.nii.gz") and not is_dicom_file(DATA / "absent")


def test_totalsegmentators_own_reading_of_the_series_fits_ours(series_ct):
    """TotalSegmentator segmented this DICOM folder through its own reader (dicom2nifti): its label map
    lies on our grid, and on our voxels its organs have their tissue's HU and side (liver right, spleen
    left in RAS+: +x is the patient's right)."""
    from vctcore.measure import measure
    from vctcore.volume import read_labels

    seg = read_labels(DATA / "ts_example_seg_dicom.nii.gz", like=series_ct)
    m = measure(series_ct, seg)
    assert m.vocabulary == "totalsegmentator" and m.coverage["regions"]["abdomen"]
    liver, spleen = seg.data == 5, seg.data == 1  # TotalSegmentator total: 1 spleen, 5 liver
    assert 40 < float(series_ct.data[liver].mean()) < 160 and 40 < float(series_ct.data[spleen].mean()) < 200
    x_mm = series_ct.affine[0, 0] * np.arange(series_ct.shape[0]) + series_ct.affine[0, 3]
    centroid = {name: float(x_mm[np.nonzero(mask)[0]].mean()) for name, mask in (("liver", liver), ("spleen", spleen))}
    assert centroid["liver"] > 0 > centroid["spleen"], centroid
