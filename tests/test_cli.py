"""`vct phantom` writes a real cohort on disk, resumes, and rejects bad arguments in one line."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from vctcore.cli import main
from vctcore.cohort import read_attributes
from vctcore.labels import MERGED_CLASSES
from vctcore.volume import read_ct, read_labels


def test_phantom_cohort_on_disk_and_resume(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert main(["phantom", "--n", "2", "--seed", "7", "--out", str(out), "--quiet"]) == 0
    table = read_attributes(out)
    assert list(table.id) == ["P0000", "P0001"]
    for col in ("sex", "age_years", "height_cm", "weight_kg", "bfp_pct", "mmp_pct", "bone_density_hu", "body_volume_l"):
        assert col in table.columns
    ct = read_ct(out / "patients" / "P0000" / "ct.nii.gz")
    seg = read_labels(out / "patients" / "P0000" / "seg.nii.gz", names=MERGED_CLASSES, like=ct)
    assert ct.spacing_mm == (6.0, 6.0, 8.0)
    assert seg.data.max() <= 16 and (seg.data > 0).any()
    prov = json.loads((out / "cohort.json").read_text())
    assert prov["seed"] == 7 and prov["maker"] == "vctcore.phantom" and "numpy" in prov["versions"]
    assert prov["created_utc"].endswith("Z") and "cpu" in prov["machine"]
    mtime = (out / "patients" / "P0000" / "ct.nii.gz").stat().st_mtime_ns
    assert main(["phantom", "--n", "3", "--seed", "7", "--out", str(out), "--quiet"]) == 0
    assert (out / "patients" / "P0000" / "ct.nii.gz").stat().st_mtime_ns == mtime  # resumed, not rebuilt
    assert len(read_attributes(out)) == 3
    again = read_ct(out / "patients" / "P0000" / "ct.nii.gz")
    np.testing.assert_array_equal(again.data, ct.data)


def test_phantom_workers_build_the_same_cohort_and_resume(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert main(["phantom", "--n", "3", "--seed", "11", "--out", str(serial), "--quiet"]) == 0
    assert main(["phantom", "--n", "3", "--seed", "11", "--out", str(parallel), "--quiet", "--workers", "2"]) == 0
    assert (parallel / "attributes.csv").read_text() == (serial / "attributes.csv").read_text()
    skipped = [json.loads((d / "cohort.json").read_text())["skipped_rows"] for d in (serial, parallel)]
    assert skipped[0] == skipped[1]

    def volumes(root, pid):
        d = root / "patients" / pid
        return [read_ct(d / "ct.nii.gz").data] + [read_labels(d / f, names=None).data
                                                   for f in ("seg.nii.gz", "labels.nii.gz")]

    for pid in ("P0000", "P0001", "P0002"):
        for a, b in zip(volumes(serial, pid), volumes(parallel, pid)):
            np.testing.assert_array_equal(a, b)
    # a patient lost mid-write is rebuilt, in place and the same; the others are kept
    (parallel / "patients" / "P0001" / "ct.nii.gz").unlink()
    kept = {p: (parallel / "patients" / p / "ct.nii.gz").stat().st_mtime_ns for p in ("P0000", "P0002")}
    assert main(["phantom", "--n", "3", "--seed", "11", "--out", str(parallel), "--quiet", "--workers", "2"]) == 0
    assert {p: (parallel / "patients" / p / "ct.nii.gz").stat().st_mtime_ns for p in kept} == kept
    np.testing.assert_array_equal(volumes(parallel, "P0001")[0], volumes(serial, "P0001")[0])
    assert (parallel / "attributes.csv").read_text() == (serial / "attributes.csv").read_text()


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vctcore.cli", *args], capture_output=True, text=True, timeout=120)


def test_bad_arguments_are_one_line_errors(tmp_path):
    r = _run("phantom", "--n", "0", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and r.stderr.strip() == "vct phantom: error: --n must be at least 1, got 0"
    r = _run("phantom", "--n", "1", "--out", str(tmp_path / "x"), "--workers", "-1")
    assert r.returncode == 2 and r.stderr.strip() == "vct phantom: error: --workers must be 0 (every core) or more, got -1"
    r = _run("phantom", "--n", "1", "--out", str(tmp_path / "x"), "--population", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nattributes:\n  height_cm: {dist: uniform, low: 190, high: 150}\n")
    r = _run("phantom", "--n", "1", "--out", str(tmp_path / "x"), "--population", str(bad))
    assert r.returncode == 2 and "height_cm" in r.stderr and "Traceback" not in r.stderr


def test_cohort_provenance_reads_missing_and_broken_files_without_failing(tmp_path):
    from vctcore.cohort import read_provenance
    from vctcore.workspace import list_cohorts

    for name, text in (("made", '{"maker": "vctcore.phantom", "seed": 13}'), ("broken", "{not json"), ("bare", None)):
        d = tmp_path / "cohorts" / name
        d.mkdir(parents=True)
        (d / "attributes.csv").write_text("id,sex\nP0000,F\n")
        if text is not None:
            (d / "cohort.json").write_text(text)
    root = tmp_path / "cohorts"
    assert read_provenance(root / "made") == {"maker": "vctcore.phantom", "seed": 13}
    assert read_provenance(root / "bare") == {}
    assert "broken/cohort.json is not valid JSON" in read_provenance(root / "broken")["error"]
    listed = {c.name: c for c in list_cohorts(tmp_path)}
    assert listed["made"].maker == "vctcore.phantom" and listed["bare"].maker == "unknown"
    assert "not valid JSON" in listed["broken"].provenance["error"]
