"""The auditor's pages through streamlit.testing with real vctcore calls: the landing page, the model
under test (shipped model, checks, a real `vct predict` job on a phantom cohort), the trial page (config
errors shown in the page, an audit started as a real background job and cancelled), the bias explorer
and the report page on a real finished trial (tests/data/trials/paper_bfp_small: the seed paper's BFP
trial at ID 25 / OOD 25 on 360 phantoms, model excluded)."""
from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app_pages import open_page
from trial_fixtures import finished_job
from vctcore.jobs import cancel_job, list_jobs, load_job

TRIAL = Path(__file__).resolve().parent / "data" / "trials" / "paper_bfp_small"


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch) -> Iterator[Path]:
    """An empty workspace with one finished trial in it."""
    root = tmp_path / "ws"
    shutil.copytree(TRIAL, root / "trials" / "paper_bfp_small")
    monkeypatch.setenv("VCT_WORKSPACE", str(root))
    yield root
    for job in list_jobs(root):  # no job outlives its test
        if job.active:
            cancel_job(job)


def _frame(at, column: str):
    """The first table on the page with ``column``."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with a {column!r} column")


def test_landing_page_says_what_vct_is_and_where_to_start(workspace: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from app_pages import APP

    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("vct")
    text = at.markdown[0].value
    assert "synthetic patients" in text and "1 · Model under test" in text
    assert text.count(". ") + 1 >= 3


def test_model_page_checks_the_shipped_model_and_runs_it_on_a_cohort(workspace: Path, tiny_paper_trial) -> None:
    out, _ = tiny_paper_trial
    import json

    pool = next(Path(json.loads((out / "config.json").read_text())["config"]["cache"], "phantoms").glob("*/"))
    shutil.copytree(pool, workspace / "cohorts" / "tiny")
    at = open_page("views/downstream.py")
    assert at.selectbox(key="dm_model").value == "shipped/bfp_reference"
    assert any("Checks passed" in s.value for s in at.success)
    assert at.metric[0].value == "bfp_pct (%)"
    at.button(key="dm_run").click().run()
    assert not at.exception, at.exception
    job = finished_job(workspace, "predict")
    assert job.status == "done", job.log_tail()
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 2
    assert any("MAE" in c.value and "8 patients" in c.value for c in at.caption)


def test_trial_page_shows_config_errors_and_starts_a_background_audit(workspace: Path) -> None:
    at = open_page("views/trial.py")
    at.text_input(key="tr_name").set_value("no spaces allowed").run()
    at.button(key="tr_start_audit").click().run()
    assert not at.exception, at.exception
    assert any("trial name 'no spaces allowed'" in e.value for e in at.error)
    assert not list_jobs(workspace)

    at.text_input(key="tr_name").set_value("page_audit").run()
    at.number_input(key="tr_ref_n").set_value(2).run()
    at.button(key="tr_start_audit").click().run()
    assert not at.exception, at.exception
    (job,) = list_jobs(workspace, kind="trial")
    assert job.args[:2] == ["trial", "--config"] and job.output == str((workspace / "trials" / "page_audit").resolve())
    cfg = (workspace / "trials" / "page_audit.yaml").read_text()
    assert "design: audit" in cfg and "bfp_reference" in cfg
    # the finished trial is listed with its verdicts; the running one has a live panel
    assert "paper_bfp_small" in _frame(at, "verdicts")["trial"].tolist()
    if load_job(job.dir).active:
        cancel_job(job)
    assert load_job(job.dir).status in ("cancelled", "failed", "done")


def test_bias_explorer_shows_verdicts_tables_figures_and_slice_patients(workspace: Path) -> None:
    at = open_page("views/bias.py")
    assert at.selectbox(key="bias_trial").value == "paper_bfp_small"
    verdicts = _frame(at, "verdict")
    assert {"ID", "OOD"} == set(verdicts["population"]) and verdicts["verdict"].str.contains("inconclusive").all()
    assert _frame(at, "z_low")["sample_type"].tolist()[:2] == ["real", "reconstructed"]  # Table 1
    for column in ("p_difference", "mean_abs_error", "impurity_sd", "r_permutation", "r_shortcut_female",
                   "reads_differently"):
        assert not _frame(at, column).empty  # Tables 2-4, importance correlation, split, faithful twins
    assert any({"attribute", "mean", "sd"} <= set(df.value.columns) for df in at.dataframe)  # twin drift
    assert len(at.get("plotly_chart")) >= 6  # distributions, split plane, error vs attribute, importances, SHAP x2
    at.radio(key="bias_plane_type").set_value("synthetic").run()
    at.selectbox(key="bias_attr").set_value("bfp_pct").run()
    at.selectbox(key="bias_dep").set_value("mmp_pct").run()
    assert not at.exception, at.exception
    scan = _frame(at, "p_adjusted")
    assert len(scan) > 0 and {"slice", "n", "p_adjusted"} <= set(scan.columns)


def test_report_page_builds_previews_and_offers_the_pdf(workspace: Path) -> None:
    at = open_page("views/report.py")
    at.button(key="rep_build").click().run()
    assert not at.exception, at.exception
    job = finished_job(workspace, "report", timeout=240)
    assert job.status == "done", job.log_tail()
    at.run()
    assert not at.exception, at.exception
    assert (workspace / "reports" / "paper_bfp_small.pdf").read_bytes()[:5] == b"%PDF-"
    assert len(at.get("download_button")) == 1
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1
