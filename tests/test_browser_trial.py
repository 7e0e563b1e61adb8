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

from conftest import ARTIFACTS, serve_app
from test_registry import BAD_UPLOADS, bad_upload
from trial_fixtures import finished_job, population_csvs
from vctcore.jobs import cancel_job, list_jobs

pytestmark = pytest.mark.browser
EXCEPTION = '[data-testid="stException"]'


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


def _idle(driver, timeout: float = 60.0) -> None:
    """Wait for the script run to finish; fail on an exception shown in the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    time.sleep(0.5)
    WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"]'))
    assert not driver.find_elements(By.CSS_SELECTOR, EXCEPTION), driver.find_element(By.CSS_SELECTOR, EXCEPTION).text


def _wait_for(driver, css: str, n: int = 1, timeout: float = 90.0) -> list:
    """Wait until the page shows at least ``n`` elements matching ``css`` (the script has rendered)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found = WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        lambda d: (lambda els: els if len(els) >= n else False)(d.find_elements(By.CSS_SELECTOR, css)))
    _idle(driver)
    return found


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script('return document.querySelector(\'[data-testid="stMain"]\').scrollHeight')
    driver.set_window_size(1400, min(max(int(height) + 120, 1000), 4000))
    time.sleep(0.5)
    try:
        assert driver.save_screenshot(str(ARTIFACTS / f"app_{name}.png"))
    finally:
        driver.set_window_size(1400, 1000)


def _set_number(driver, label: str, value: int, index: int = 0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_elements(By.CSS_SELECTOR, f'input[aria-label="{label}"]')[index]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.ENTER)
    _idle(driver)


def _click(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f'//button[.//p[normalize-space()="{text}"]]').click()
    _idle(driver)


def test_landing_and_every_bad_model_upload(browser, audit_app, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, root = audit_app
    browser.get(url)
    _wait_for(browser, '[data-testid="stPageLink"]', n=4)
    assert "Start with" in browser.find_element(By.TAG_NAME, "body").text
    _shot(browser, "home")
    browser.get(f"{url}/downstream")
    _wait_for(browser, '[data-testid="stMetric"]')
    browser.find_element(By.XPATH, '//summary[.//p[normalize-space()="Upload your own model"]]').click()
    box = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Name in the workspace"]')
    box.send_keys("bad-model\n")
    _idle(browser)
    for case, message in BAD_UPLOADS.items():
        (tmp_path / case).mkdir()
        model, card = bad_upload(case, tmp_path / case)
        inputs = browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')
        inputs[0].send_keys(str(model))
        _idle(browser)
        browser.find_elements(By.CSS_SELECTOR, 'input[type="file"]')[1].send_keys(str(card))
        _idle(browser)
        time.sleep(1)
        _click(browser, "Check and add")
        alert = WebDriverWait(browser, 60, poll_frequency=0.25).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stAlertContentError"]'))[0]
        assert alert.text.startswith("Not added: ") and re.search(message, alert.text), (case, alert.text)
        assert not (root / "models" / "bad-model").exists()
        # the page keeps working: the shipped model is still checked and shown
        assert "Checks passed" in browser.find_element(By.TAG_NAME, "body").text
        if case == "shape":
            _shot(browser, "model")


def test_audit_from_the_trial_page_to_the_downloaded_report(browser, audit_app, tiny_paper_trial,
                                                           tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    url, root = audit_app
    csvs = population_csvs(tiny_paper_trial[0], tmp_path)
    browser.get(f"{url}/trial")
    _wait_for(browser, 'input[aria-label="Patients (N)"]', n=2)
    for k in range(2):  # reference, then target 1: a CSV of patients each
        options = browser.find_elements(By.XPATH, '//label[@data-testid="stRadioOption"]'
                                                   '[.//p[normalize-space()="CSV of patients"]]')
        options[k].click()
        _idle(browser)
    uploads = _wait_for(browser, 'input[type="file"]', n=2)
    uploads[0].send_keys(str(csvs["adults"]))
    _idle(browser)
    _wait_for(browser, 'input[type="file"]', n=2)[1].send_keys(str(csvs["clinic"]))
    _idle(browser)
    browser.find_element(By.XPATH, '//summary[.//p[normalize-space()="Advanced"]]').click()
    _set_number(browser, "Sampler steps (0: the generator's default)", 3)
    _click(browser, "Start trial")
    _shot(browser, "trial_running")
    job = finished_job(root, "trial", timeout=600)
    assert job.status == "done", job.log_tail()
    trial = json.loads((root / "trials" / "my_audit" / "trial.json").read_text())
    assert trial["provenance"]["stage_seconds"]["generate"] < 5  # every patient came from the store
    browser.get(f"{url}/trial")
    _wait_for(browser, '[data-testid="stDataFrame"]')
    _shot(browser, "trial")

    browser.get(f"{url}/bias")
    _wait_for(browser, '[data-testid="stPlotlyChart"]')
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Verdicts" in body and "Degraded against the reference" in body
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
    _shot(browser, "bias")

    browser.get(f"{url}/report")
    _wait_for(browser, "button")
    _click(browser, "Build the report")
    job = finished_job(root, "report", timeout=300)
    assert job.status == "done", job.log_tail()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get(f"{url}/report")
    _wait_for(browser, '[data-testid="stImage"] img', timeout=120)
    _shot(browser, "report")
    browser.find_element(By.XPATH, '//button[.//p[normalize-space()="Download the PDF"]]').click()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not list(downloads.glob("*.pdf")):
        time.sleep(0.3)
    (pdf,) = downloads.glob("*.pdf")
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "my_audit" in text and "reference" in text and "target_1" in text
