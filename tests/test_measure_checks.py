"""Refusing what is not CT: an MR image, a label map given as the CT, a CT cropped inside the body, and voxel
spacings no scanner makes. One line, exit code 2, nothing written; ``--force`` measures the first kinds.

Real third-party images: TotalSegmentator's example MR (``ts_example_mr.nii.gz``, intensities -47..833)
and example CT with its segmentation (see tests/data/README.md).
"""
from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.dicom_fixtures import SERIES
from vctcore.cli import main
from vctcore.dicom import read_dicom_series
from vctcore.measure import MeasureError, measure
from vctcore.measure.checks import AIR_MIN_SHARE, SOFT_MIN_SHARE, check_ct, ct_appearance
from vctcore.phantom import build_phantom
from vctcore.volume import CTVolume, read_ct

DATA = Path(__file__).parent / "data"
MR, CT, SEG = DATA / "ts_example_mr.nii.gz", DATA / "ts_example_ct.nii.gz", DATA / "ts_example_seg.nii.gz"


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _nifti(path: Path, data: np.ndarray, spacing=(2.0, 2.0, 2.0)) -> Path:
    nib.save(nib.Nifti1Image(np.asarray(data), np.diag([*spacing, 1.0])), path)
    return path


def _body(shape=(40, 40, 30)) -> np.ndarray:
    hu = np.full(shape, -1000, np.int16)
    hu[10:30, 10:30, :] = 40
    hu[15:25, 15:25, :] = -100
    return hu


def _refusals(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    crop = read_ct(CT).data[40:80, 30:70, 20:60]  # inside the body: no air
    bone_only = np.full((40, 40, 30), -1000, np.int16)
    bone_only[10:30, 10:30, :] = 700
    return {
        "real MR": (MR, "only 0.00% of the voxels are at or below -900 HU (air; at least 1% expected)"),
        "label map given as CT": (SEG, "only 0.00% of the voxels are at or below -900 HU"),
        "CT cropped inside the body": (_nifti(tmp_path / "crop.nii.gz", crop, (3.0, 3.0, 3.0)), "at or below -900 HU"),
        "no soft tissue": (_nifti(tmp_path / "bone.nii.gz", bone_only),
                           "only 0.0% of the voxels above -500 HU lie at -30..100 HU (soft tissue"),
    }


def test_images_that_are_not_ct_exit_2_and_force_measures_them(tmp_path, capsys):
    for case, (path, message) in _refusals(tmp_path).items():
        before = sorted(tmp_path.iterdir())
        code, out, err = _run(["measure", str(path)], capsys)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, (case, err)
        assert lines[0].startswith("vct measure: error:") and str(path) in lines[0], case
        assert "does not look like CT in Hounsfield units" in lines[0] and message in lines[0], (case, lines[0])
        assert "--force" in lines[0], case
        assert sorted(tmp_path.iterdir()) == before, case
    code, out, err = _run(["measure", str(MR), "--force", "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["backend"] == "threshold"


@pytest.mark.parametrize("spacing, shown, axes", [((1000.0, 1000.0, 1000.0), "1000x1000x1000", "X, Y, Z"),
                                                   ((0.8, 0.8, 0.05), "0.8x0.8x0.05", "Z"),
                                                   ((2.0, 25.0, 2.0), "2x25x2", "Y")])
def test_implausible_spacing_exits_2_even_with_force(tmp_path, capsys, spacing, shown, axes):
    path = _nifti(tmp_path / "odd.nii.gz", _body(), spacing)
    for argv in (["measure", str(path)], ["measure", str(path), "--force"]):
        code, out, err = _run(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1, err
        assert f"voxel spacing {shown} mm is outside 0.1-20 mm along {axes}" in lines[0] and "odd.nii.gz" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd.nii.gz"]


def test_real_and_synthetic_ct_pass_with_a_margin():
    """The appearance check leaves real CT, DICOM CT and phantoms far from its limits."""
    phantom = build_phantom(dict(sex="F", age_years=45, height_cm=166, weight_kg=66, bfp_pct=33, mmp_pct=29,
                                 bone_density_hu=190), seed=5)
    for ct in (read_ct(CT), read_dicom_series(SERIES), phantom.ct):
        check_ct(ct)
        air, soft, n_body = ct_appearance(ct.data)
        assert air > 10 * AIR_MIN_SHARE and soft > 5 * SOFT_MIN_SHARE and n_body > 0, (air, soft)
    mr_air, _, _ = ct_appearance(read_ct(MR).data)
    assert mr_air == 0.0


def test_measure_api_refuses_and_force_measures():
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    crop = CTVolume(data=read_ct(CT).data[40:80, 30:70, 20:60].copy(), affine=affine)
    with pytest.raises(MeasureError, match="does not look like CT in Hounsfield units"):
        measure(crop)
    assert measure(crop, force=True).scan_volume_l["body"] > 0
    with pytest.raises(MeasureError, match="voxel spacing 30x3x3 mm"):
        measure(CTVolume(data=_body().astype(np.float32), affine=np.diag([30.0, 3.0, 3.0, 1.0])), force=True)
    air = CTVolume(data=np.random.default_rng(0).normal(-1000, 10, (20, 20, 20)).astype(np.float32), affine=affine)
    with pytest.raises(MeasureError, match="no body in the CT"):  # air only: said as such, not "not CT"
        measure(air)
