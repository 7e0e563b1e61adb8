"""The generator and cohort pages through streamlit.testing, on a tiny trained generator."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_pages import open_page
from trial_fixtures import finished_job



@pytest.fixture
def workspace(tmp_path, tiny_generator, monkeypatch) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(tiny_generator["cohort"], ws / "cohorts" / "phantoms")
    monkeypatch.setenv("VCT_WORKSPACE", str(ws))
    monkeypatch.setenv("VCT_GENERATOR", str(tiny_generator["generator"]))
    return ws


def test_generator_page_generates_a_patient_and_writes_a_cohort(workspace):
    at = open_page("views/generate.py")
    assert at.title[0].value == "Synthetic patient"
    assert any("trained on 6 digital-human phantoms" in c.value for c in at.caption)
    at.number_input(key="gen_height_cm").set_value(200.0)
    at.button(key="gen_go").click().run()
    assert not at.exception, at.exception
    assert len(at.get("image")) == 3
    assert any("height_cm" in w.value for w in at.warning)  # 200 cm is outside the 6 phantoms' heights
    # the cohort tab starts a real `vct generate` job; the page lists it and, once done, the cohort
    at.number_input(key="gen_n").set_value(2)
    at.text_input(key="gen_name").set_value("bad name!")
    at.button(key="gen_cohort_go").click().run()
    assert any("cohort name 'bad name!'" in e.value for e in at.error), [e.value for e in at.error]
    assert not (workspace / "jobs").exists() or not list((workspace / "jobs").iterdir())
    at.text_input(key="gen_name").set_value("synth")
    at.button(key="gen_cohort_go").click().run()
    assert not at.exception, at.exception
    job = finished_job(workspace, "generate", timeout=240)
    assert job.status == "done", job.log_tail()
    assert (workspace / "cohorts" / "synth" / "patients" / "S0001" / "ct.nii.gz").exists()
    assert "--n 2" in job.command and "synth" in job.command
    at.run()
    table = at.dataframe[-1].value
    assert list(table["cohort"]) == ["synth"] and table["patients"].iloc[0] == "2 / 2"
    assert table["s / patient"].iloc[0] > 0
    assert any("s per patient measured here" in c.value for c in at.caption)
    # a second job on the same cohort while one runs is refused with the job's name (checked in test_jobs);
    # here the finished cohort is resumed, not overwritten: rerunning finds both patients made
    before = (workspace / "cohorts" / "synth" / "patients" / "S0000" / "ct.nii.gz").stat().st_mtime_ns
    at.button(key="gen_cohort_go").click().run()
    job = finished_job(workspace, "generate", timeout=240)
    assert job.status == "done", job.log_tail()
    assert (workspace / "cohorts" / "synth" / "patients" / "S0000" / "ct.nii.gz").stat().st_mtime_ns == before


def test_viewer_page_opens_phantom_and_generated_cohorts(workspace, tiny_generator):
    at = open_page("views/viewer.py")
    assert at.title[0].value == "Viewer"
    assert len(at.get("image")) == 3
    at.selectbox(key="vw_patient").set_value("P0003").run()
    assert not at.exception, at.exception
    assert len(at.get("image")) == 3


def test_generator_page_without_a_checkpoint_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VCT_GENERATOR", str(tmp_path / "none"))
    at = open_page("views/generate.py")
    assert "No usable generator checkpoint" in at.error[0].value
    assert any("vct train" in i.value for i in at.info)
