"""``vct measure``: one CT (table, JSON), malformed inputs (one-line errors, exit 2), cohort mode.

Every malformed input is a real file written with nibabel into tmp_path.
"""
from __future__ import annotations

import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from vctcore.cli import main
from vctcore.phantom import build_phantom
from vctcore.volume import write_ct, write_labels

ATTRS = dict(sex="F", age_years=45, height_cm=166, weight_kg=66, bfp_pct=33, mmp_pct=29, bone_density_hu=190)


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ph")
    ph = build_phantom(ATTRS, seed=5)
    write_ct(ph.ct, d / "ct.nii.gz")
    write_labels(ph.labels, d / "labels.nii.gz")
    write_labels(ph.seg, d / "seg.nii.gz")
    return d


def _nifti(path, data, spacing=(2.0, 2.0, 2.0)):
    img = nib.Nifti1Image(np.asarray(data), np.diag([*spacing, 1.0]))
    nib.save(img, path)
    return path


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_table_and_json(phantom_files, capsys):
    code, out, err = _run(["measure", str(phantom_files / "ct.nii.gz"), "--seg", str(phantom_files / "labels.nii.gz")],
                          capsys)
    assert code == 0, err
    assert "mass" in out and "kg" in out and "whole body" in out
    code, out, _ = _run(["measure", str(phantom_files / "ct.nii.gz"), "--seg", str(phantom_files / "labels.nii.gz"),
                         "--json"], capsys)
    d = json.loads(out)
    assert d["vocabulary"] == "fine" and d["backend"] == "labels"
    assert abs(d["mass_kg"] - ATTRS["weight_kg"]) / ATTRS["weight_kg"] < 0.03
    assert abs(d["bfp_pct"] - ATTRS["bfp_pct"]) < 1.5 and abs(d["mmp_pct"] - ATTRS["mmp_pct"]) < 1.5
    code, out, _ = _run(["measure", str(phantom_files / "ct.nii.gz"), "--json"], capsys)
    assert json.loads(out)["backend"] == "threshold"
    code, out, _ = _run(["measure", str(phantom_files / "ct.nii.gz"), "--seg", str(phantom_files / "seg.nii.gz"),
                         "--json"], capsys)
    assert json.loads(out)["vocabulary"] == "merged"


def _bad_inputs(tmp_path):
    body = np.full((24, 24, 20), -1000, np.int16)
    body[6:18, 6:18, :] = 40
    text = tmp_path / "notes.nii.gz"
    text.write_text("this is not an image\n")
    nan = body.astype(np.float32)
    nan[3, 3, 3] = np.nan
    zero = _nifti(tmp_path / "zero.nii", body)
    with open(zero, "rb") as f:  # patch the stored header: nibabel would "fix" pixdim on save
        hdr = nib.Nifti1Header.from_fileobj(f)
    hdr["pixdim"][1:4] = [2.0, 0.0, 2.0]
    with open(zero, "r+b") as f:
        f.write(hdr.binaryblock)
    air = np.random.default_rng(1).normal(-1000, 8, (24, 24, 20)).astype(np.float32)
    return {
        "not NIfTI": (text, "not a NIfTI file"),
        "NaN": (_nifti(tmp_path / "nan.nii.gz", nan), "NaN or Inf"),
        "2D": (_nifti(tmp_path / "flat.nii.gz", body[:, :, 0]), "is 2D"),
        "4D": (_nifti(tmp_path / "time.nii.gz", np.stack([body, body], axis=-1)), "is 4D"),
        "zero spacing": (zero, "every spacing must be > 0"),
        "not HU": (_nifti(tmp_path / "norm.nii.gz", (body.astype(np.float32) + 1000) / 1040), "Hounsfield"),
        "all air": (_nifti(tmp_path / "air.nii.gz", air), "no body in the CT"),
        "missing": (tmp_path / "nope.nii.gz", "does not exist"),
    }


def test_malformed_inputs_exit_2_with_one_line(tmp_path, capsys):
    for case, (path, message) in _bad_inputs(tmp_path).items():
        code, out, err = _run(["measure", str(path)], capsys)
        assert code == 2, case
        lines = err.strip().splitlines()
        assert len(lines) == 1, (case, err)
        assert lines[0].startswith("vct measure: error:") and message in lines[0], (case, lines[0])
        assert str(path.name) in lines[0], case


def test_malformed_input_in_a_real_process(tmp_path):
    bad = _bad_inputs(tmp_path)["all air"][0]
    proc = subprocess.run([sys.executable, "-m", "vctcore.cli", "measure", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "no body in the CT" in proc.stderr and proc.stdout == ""


def test_argument_errors(phantom_files, tmp_path, capsys):
    ct = str(phantom_files / "ct.nii.gz")
    code, _, err = _run(["measure", ct, "--backend", "labels"], capsys)
    assert code == 2 and "--backend labels needs --seg" in err
    code, _, err = _run(["measure"], capsys)
    assert code == 2 and "give a CT file" in err
    code, _, err = _run(["measure", "--cohort", str(tmp_path / "none")], capsys)
    assert code == 2 and "does not exist" in err
    small = _nifti(tmp_path / "small_seg.nii.gz", np.zeros((4, 4, 4), np.uint8))
    code, _, err = _run(["measure", ct, "--seg", str(small)], capsys)
    assert code == 2 and "does not match the CT" in err


def test_cohort_mode(tmp_path, capsys):
    from vctcore.phantom.cohort import build_cohort
    from vctcore.population import PopulationSpec

    root = tmp_path / "cohort"
    spec = PopulationSpec.from_yaml("assets/populations/adult_reference.yaml")
    attrs = build_cohort(spec, n=2, seed=3, out=root)
    code, out, err = _run(["measure", "--cohort", str(root), "--workers", "2", "--quiet"], capsys)
    assert code == 0, err
    assert "measured 2 of 2 patients" in out
    table = pd.read_csv(root / "measurements.csv", dtype={"id": str})
    assert list(table["id"]) == list(attrs["id"])
    merged = table.merge(attrs, on="id", suffixes=("", "_requested"))
    assert ((merged["mass_kg"] - merged["weight_kg"]).abs() / merged["weight_kg"] < 0.03).all()
    assert ((merged["bfp_pct"] - merged["bfp_pct_requested"]).abs() < 1.5).all()
    assert (table["vocabulary"] == "fine").all() and table["error"].isna().all()
    provenance = json.loads((root / "measurements.json").read_text())
    assert provenance["backend"] == "auto" and provenance["patients"] == 2 and provenance["failed"] == 0
    assert {"vctcore", "numpy", "nibabel"} <= set(provenance["versions"]) and provenance["finished_utc"].endswith("Z")
    assert provenance["created_utc"].endswith("Z") and "cores" in provenance["machine"]
    # resume: nothing left to do; a different backend measures again
    code, out, _ = _run(["measure", "--cohort", str(root), "--quiet"], capsys)
    assert code == 0 and json.loads((root / "measurements.json").read_text())["measured_now"] == 0
    code, out, _ = _run(["measure", "--cohort", str(root), "--backend", "threshold", "--quiet"], capsys)
    assert code == 0 and json.loads((root / "measurements.json").read_text())["measured_now"] == 2
    assert (pd.read_csv(root / "measurements.csv")["backend"] == "threshold").all()


def test_cohort_reports_a_broken_patient(tmp_path, capsys):
    root = tmp_path / "cohort"
    good = root / "patients" / "A"
    bad = root / "patients" / "B"
    body = np.full((30, 30, 20), -1000, np.int16)
    body[8:22, 8:22, :] = 40
    good.mkdir(parents=True), bad.mkdir(parents=True)
    _nifti(good / "ct.nii.gz", body)
    (bad / "ct.nii.gz").write_bytes(b"broken")
    code, out, err = _run(["measure", "--cohort", str(root), "--quiet"], capsys)
    assert code == 1 and "measured 1 of 2" in out and "B:" in err and "not a NIfTI file" in err
    table = pd.read_csv(root / "measurements.csv", dtype={"id": str}, keep_default_na=False)
    assert list(table["id"]) == ["A", "B"] and table.loc[1, "error"] and not table.loc[0, "error"]
