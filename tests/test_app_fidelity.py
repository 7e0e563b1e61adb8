"""The generator fidelity page through streamlit.testing: a saved evaluation of the tiny generator (the
session's, made by `vct evaluate-generator` in conftest.tiny_evaluation)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from app_pages import open_page


@pytest.fixture(scope="module")
def saved_evaluation(tiny_evaluation) -> Path:
    """A workspace holding a saved evaluation of the tiny generator (the session's, conftest.tiny_evaluation)."""
    assert tiny_evaluation["proc"].returncode == 0, tiny_evaluation["proc"].stderr[-2000:]
    return tiny_evaluation["workspace"]


def test_fidelity_page_shows_targets_figures_and_provenance(saved_evaluation, monkeypatch):
    monkeypatch.setenv("VCT_WORKSPACE", str(saved_evaluation))
    at = open_page("views/fidelity.py")
    assert at.title[0].value == "Generator fidelity"
    assert at.selectbox(key="fid_dir").value.endswith("evaluations/tiny")
    report = json.loads((saved_evaluation / "evaluations" / "tiny" / "fidelity.json").read_text())
    targets = at.dataframe[0].value
    assert len(targets) == len(report["passed"]) == 9
    assert set(targets["pass"]) <= {"pass", "FAIL"}
    assert targets.loc[targets["metric"].str.startswith("Sex"), "paper"].iloc[0] == pytest.approx(0.98)
    assert at.metric[0].value == f"{sum(report['passed'].values())} / 9"
    assert len(at.get("plotly_chart")) == 5  # three Fig. 4 panels, organ volumes, Dice per class
    g = report["generation"]
    assert any(c.value.startswith(f"Sampled with {g['sampler']}, {g['steps']} steps, guidance") and "minutes" in c.value
               for c in at.caption)
    assert not at.error


def test_run_line_names_the_guidance_interval():
    from vctcore.fidelity.summary import run_line

    report = {"generation": {"sampler": "dpm++", "steps": 15, "guidance_scale": 2.0, "guidance_interval": [4.0, 100.0]},
              "device_name": "AMD EPYC (2 threads)", "timing": {"seconds": 1686.0}}
    assert run_line(report) == ("Sampled with dpm++, 15 steps, guidance 2 at noise levels sigma in (4, 100]; "
                                "evaluated on AMD EPYC (2 threads) in 28.1 minutes.")
    report["generation"]["guidance_interval"] = None
    assert "guidance 2 at every step" in run_line(report)
    assert run_line({}) == "Sampled with ddim."


def test_fidelity_page_offers_the_evaluation_shipped_with_the_default(saved_evaluation, tmp_path, monkeypatch):
    import shutil

    shutil.copytree(saved_evaluation / "evaluations" / "tiny", tmp_path / "default" / "fidelity")
    monkeypatch.setenv("VCT_GENERATOR", str(tmp_path / "default"))
    monkeypatch.setenv("VCT_WORKSPACE", str(tmp_path / "empty-workspace"))
    at = open_page("views/fidelity.py")
    assert at.selectbox(key="fid_dir").value == str(tmp_path / "default" / "fidelity")
    assert len(at.get("plotly_chart")) == 5 and not at.error


def test_fidelity_page_compares_the_shipped_evaluation_with_the_unsteered_one(saved_evaluation, tmp_path,
                                                                               monkeypatch):
    import shutil

    from vctcore.fidelity.summary import LABELS

    shutil.copytree(saved_evaluation / "evaluations" / "tiny", tmp_path / "default" / "fidelity")
    shutil.copytree(saved_evaluation / "evaluations" / "tiny", tmp_path / "default" / "fidelity" / "bins_only")
    before_file = tmp_path / "default" / "fidelity" / "bins_only" / "fidelity.json"
    before = json.loads(before_file.read_text())
    after_file = tmp_path / "default" / "fidelity" / "fidelity.json"
    after = json.loads(after_file.read_text())
    lower, higher = "bfp_mae", "joint_seg_dice"  # lower is better; higher is better
    after["metrics"][lower]["value"], before["metrics"][lower]["value"] = 3.5, 5.0
    before["metrics"][higher]["value"] = after["metrics"][higher]["value"] - 0.1
    before_file.write_text(json.dumps(before))
    after_file.write_text(json.dumps(after))
    monkeypatch.setenv("VCT_GENERATOR", str(tmp_path / "default"))
    monkeypatch.setenv("VCT_WORKSPACE", str(tmp_path / "empty-workspace"))
    at = open_page("views/fidelity.py")
    assert at.selectbox(key="fid_dir").value == str(tmp_path / "default" / "fidelity")
    at.selectbox(key="fid_base").set_value(str(tmp_path / "default" / "fidelity" / "bins_only")).run()
    table = at.dataframe[1].value.set_index("metric")
    assert table.loc[LABELS[lower], "change"] == pytest.approx(-1.5)
    assert table.loc[LABELS[lower], "better"] == "yes"
    assert table.loc[LABELS[higher], "change"] == pytest.approx(0.1)
    assert table.loc[LABELS[higher], "better"] == "yes"
    assert (table["better"] == "same").sum() == len(table) - 2  # the tiny report's other measurable figures
    assert not at.error


def test_fidelity_page_without_an_evaluation_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv("VCT_GENERATOR", str(tmp_path / "no-default"))
    monkeypatch.setenv("VCT_WORKSPACE", str(tmp_path))
    at = open_page("views/fidelity.py")
    assert any("vct evaluate-generator" in i.value for i in at.info)
    assert not at.get("plotly_chart")
