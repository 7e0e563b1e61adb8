"""The auditor's whole flow in a real browser, without a terminal: the app served over a fresh workspace
whose patient store is the tiny paper trial's; a small audit started from the Trial page (the shipped
reference model, two CSV populations of 2 patients uploaded in the page, 3 sampler steps) runs as a
background job; the Bias explorer shows it; the Report page builds the PDF and the browser downloads it;
pdftotext reads it. Each bad model upload (not ONNX, input shapes that disagree with the card, a card
missing a field, a file over the upload limit) shows its own error and the page keeps working.
Screenshots of each page go to test-artifacts/."""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from browser_helpers import click, idle, set_number, shot, wait_for
from conftest import serve_app
from test_registry import BAD_UPLOADS, bad_upload
from trial_fixtures import finished_job, population_csvs
from vctcore.jobs import cancel_job, list_jobs

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def audit_app(tmp_path_factory, tiny_paper_trial):
    """The app over a fresh workspace whose patient store is the tiny paper trial's (its synthetic test
    patients are found there, not made again)."""
    out, _ = tiny_paper_trial
    root = tmp_path_factory.mktemp("browser_ws")
    (root / "cache").symlink_to(json.loads((out / "config.json").read_text())["config"]["cache"])
    env = {"VCT_WORKSPACE": str(root), "VCT_MAX_UPLOAD_MB": "0.5"}  # a 1 MB model is over the limit
    with serve_app(env, log_name="streamlit_trial.log") as url:
        yield url, root
    for job in list_jobs(root):
        if job.active:
            cancel_job(job)


def test_landing_and_every_bad_model_upload(browser, audit_app, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = audit_app
    browser.get(url)
    wait_for(browser, '[data-testid="stPageLink"]', n=4)
    assert "Start with" in browser.find_element(By.TAG_NAME, "body").text
    shot(browser, "home")
    browser.get(f"{url}/downstream")
    wait_for(browser, '[data-testid="stMetric"]')
    browser.find_element(By.XPATH, '//summary[.//p[normalize-space()="Upload your own model"]]').click()
    box = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Name in the workspace"]')
    box.send_keys("bad-model\n")
    idle(browser)
    for case, message in BAD_UPLOADS.items():
        (tmp_path / case).mkdir()
        model, card = bad_upload(case, tmp_path / case)
        inputs = browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
        inputs[0].send_keys(str(model))
        idle(browser)
        browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[1].send_keys(str(card))
        idle(browser)
        time.sleep(1)
        click(browser, "Check and add")
        alert = WebDriverWait(browser, 60, poll_frequency=0.25).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]'))[0]
        assert alert.text.startswith("Not added: ") and re.search(message, alert.text), (case, alert.text)
        assert not (root / "models" / "bad-model").exists()
        # the page keeps working: the shipped model is still checked and shown
        assert "Checks passed" in browser.find_element(By.TAG_NAME, "body").text
        if case == "shape":
            shot(browser, "model")


def test_audit_from_the_trial_page_to_the_downloaded_report(browser, audit_app, tiny_paper_trial,
                                                           tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, root = audit_app
    csvs = population_csvs(tiny_paper_trial[0], tmp_path)
    browser.get(f"{url}/trial")
    wait_for(browser, 'input[aria-label="Patients (N)"]', n=2)
    for k in range(2):  # reference, then target 1: a CSV of patients each
        options = browser.find_elements(By.XPATH, '//label[@data-testid="stRadioOption"]'
                                                   '[.//p[normalize-space()="CSV of patients"]]')
        options[k].click()
        idle(browser)
    uploads = wait_for(browser, 'input[type="file"]', n=2)
    uploads[0].send_keys(str(csvs["adults"]))
    idle(browser)
    wait_for(browser, 'input[type="file"]', n=2)[1].send_keys(str(csvs["clinic"]))
    idle(browser)
    browser.find_element(By.XPATH, '//summary[.//p[normalize-space()="Advanced"]]').click()
    set_number(browser, "Sampler steps (0: the generator's default)", 3)
    click(browser, "Start trial")
    shot(browser, "trial_running")
    job = finished_job(root, "trial", timeout=600)
    assert job.status == "done", job.log_tail()
    trial = json.loads((root / "trials" / "my_audit" / "trial.json").read_text())
    assert trial["provenance"]["stage_seconds"]["generate"] < 5  # every patient came from the store
    browser.get(f"{url}/trial")
    wait_for(browser, '[data-testid="stDataFrame"]')
    shot(browser, "trial")

    browser.get(f"{url}/bias")
    wait_for(browser, '[data-testid="stPlotlyChart"]')
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Verdicts" in body and "Degraded against the reference" in body
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
    shot(browser, "bias")

    browser.get(f"{url}/report")
    wait_for(browser, "button")
    click(browser, "Build the report")
    job = finished_job(root, "report", timeout=300)
    assert job.status == "done", job.log_tail()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get(f"{url}/report")
    wait_for(browser, '[data-testid="stImage"] img', timeout=120)
    shot(browser, "report")
    browser.find_element(By.XPATH, '//button[.//p[normalize-space()="Download the PDF"]]').click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(downloads.glob("*.pdf")):
        time.sleep(0.3)
    (pdf,) = downloads.glob("*.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "my_audit" in text and "reference" in text and "target_1" in text
