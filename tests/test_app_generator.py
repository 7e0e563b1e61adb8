"""The generator and cohort pages through streamlit.testing, on a tiny trained generator."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_pages import open_page



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
    at.number_input(key="gen_n").set_value(2)
    at.text_input(key="gen_name").set_value("synth")
    at.button(key="gen_cohort_go").click().run()
    assert not at.exception, at.exception
    assert (workspace / "cohorts" / "synth" / "patients" / "S0001" / "ct.nii.gz").exists()


def test_cohort_page_opens_phantom_and_generated_cohorts(workspace, tiny_generator):
    at = open_page("views/cohorts.py")
    assert at.title[0].value == "Cohorts"
    assert len(at.get("image")) == 3
    at.selectbox(key="co_patient").set_value("P0003").run()
    assert not at.exception, at.exception
    assert len(at.get("image")) == 3


def test_generator_page_without_a_checkpoint_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VCT_GENERATOR", str(tmp_path / "none"))
    at = open_page("views/generate.py")
    assert "No usable generator checkpoint" in at.error[0].value
    assert any("vct train" in i.value for i in at.info)
