"""``vct measure`` on DICOM: a series folder (or its zip) gives the numbers of its NIfTI conversion; bad
series are refused with one line and exit code 2, nothing written; a cohort may hold DICOM patients.

Data: TotalSegmentator's example CT series (tests/data/ts_example_ct_dicom, an upper-abdomen slab of
20 slices at 2 mm) and pydicom's bundled MR_small.dcm and CT_small.dcm; NIfTI conversion by dicom2nifti.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from pydicom.data import get_testdata_file

from tests.dicom_fixtures import FILES, SERIES, copy_series
from vctcore.cli import main


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _record(argv, capsys) -> dict:
    code, out, err = _run([*argv, "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    d.pop("seconds")
    return d


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    dicom2nifti = pytest.importorskip("dicom2nifti")
    out = tmp_path_factory.mktemp("nifti") / "ct.nii.gz"
    dicom2nifti.dicom_series_to_nifti(str(SERIES), str(out), reorient_nifti=True)
    return out


def test_dicom_folder_and_zip_give_the_numbers_of_the_nifti_conversion(converted, tmp_path, capsys):
    from_nifti = _record(["measure", str(converted)], capsys)
    from_dicom = _record(["measure", str(SERIES)], capsys)
    assert from_dicom == from_nifti
    with zipfile.ZipFile(tmp_path / "series.zip", "w") as z:
        for f in FILES:
            z.write(f, f"series/{f.name}")
    assert _record(["measure", str(tmp_path / "series.zip")], capsys) == from_nifti
    # what was measured: a 4 cm upper-abdomen slab, so only scan-range volumes, no whole-body numbers
    assert from_dicom["backend"] == "threshold" and from_dicom["mass_kg"] is None
    assert from_dicom["shape"] == [512, 512, 20] and 2.5 < from_dicom["scan_volume_l"]["body"] < 5.0
    assert set(from_dicom["scan_volume_l"]) == {"body", "subcutaneous_fat", "visceral_fat", "soft_tissue", "bone"}
    code, out, _ = _run(["measure", str(SERIES)], capsys)
    assert code == 0 and "soft tissue -29..150 HU" in out and "DICOM" not in out


def _bad_series(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    def later_series(i, ds):
        if i % 2:
            ds.SeriesInstanceUID = f"1.2.826.0.1.3680043.8.498.{i}"

    mr = tmp_path / "mr_series"
    mr.mkdir()
    shutil.copy(get_testdata_file("MR_small.dcm"), mr / "MR_small.dcm")
    one = tmp_path / "one_slice"
    one.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), one / "CT_small.dcm")
    empty = tmp_path / "no_dicom"
    empty.mkdir()
    (empty / "notes.txt").write_text("the scans are elsewhere\n")
    return {
        "mixed series": (copy_series(tmp_path / "mixed", edit=later_series), "the folder mixes 11 series"),
        "irregular spacing": (copy_series(tmp_path / "gap", skip=(4, 12)),
                              "irregular slice spacing: the steps between neighbouring slices are 2, 4 mm"),
        "not CT": (mr, "Modality is MR, not CT"),
        "one slice": (one, "the series has a single slice (CT_small.dcm)"),
        "no DICOM": (empty, "no DICOM files found (1 file(s) looked at"),
    }


def test_bad_series_exit_2_with_one_line_and_write_nothing(tmp_path, capsys):
    for case, (folder, message) in _bad_series(tmp_path).items():
        before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
        code, out, err = _run(["measure", str(folder)], capsys)
        assert code == 2, case
        lines = err.strip().splitlines()
        assert len(lines) == 1 and out == "", (case, err, out)
        assert lines[0].startswith("vct measure: error:") and message in lines[0], (case, lines[0])
        assert str(folder) in lines[0], case
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before, case


def test_cohort_with_a_dicom_patient(tmp_path, converted, capsys):
    """patients/<id>/ct/ (a DICOM series folder) and ct.nii.gz measure alike; a bad series is the patient's
    error row, the others are measured."""
    root = tmp_path / "cohort"
    shutil.copytree(SERIES, root / "patients" / "dicom" / "ct")
    (root / "patients" / "nifti").mkdir(parents=True)
    shutil.copy(converted, root / "patients" / "nifti" / "ct.nii.gz")

    def mr(i, ds):
        ds.Modality = "MR"

    copy_series(root / "patients" / "mr" / "ct", edit=mr, skip=tuple(range(2, 20)))
    code, out, err = _run(["measure", "--cohort", str(root), "--quiet"], capsys)
    assert code == 1 and "measured 2 of 3 patients" in out
    assert "mr: DicomError:" in err and "Modality is MR, not CT" in err
    table = pd.read_csv(root / "measurements.csv", dtype={"id": str}, keep_default_na=False).set_index("id")
    assert list(table.index) == ["dicom", "mr", "nifti"]
    for column in ("scan_volume_l.body", "scan_volume_l.soft_tissue", "scan_volume_l.subcutaneous_fat"):
        assert table.loc["dicom", column] == table.loc["nifti", column]
    assert not table.loc["dicom", "error"] and table.loc["mr", "error"]


def test_a_series_whose_pixel_spacing_is_implausible_is_refused(tmp_path, capsys):
    def huge(i, ds):
        ds.PixelSpacing = [50.0, 50.0]

    folder = copy_series(tmp_path / "huge", edit=huge, skip=tuple(range(4, 20)))
    code, out, err = _run(["measure", str(folder), "--force"], capsys)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "voxel spacing 50x50x2 mm is outside 0.1-20 mm along X, Y" in err and str(folder) in err
