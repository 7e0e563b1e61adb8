"""A regulator's and a clinician's path in a real browser, without a terminal: design a population and
save it, generate 2 patients from it as a background job, reload the page while the job runs and see it
finish, open a generated patient in the viewer, rotate the 3D organs, and build a counterfactual pair.
The app runs over a fresh workspace with the tiny generator (its images are coarse; the path is what is
tested). Screenshots of each page go to test-artifacts/app_regulator_*.png."""
from __future__ import annotations

import time

import pytest
import yaml

from browser_helpers import click, idle, shot, wait_for
from conftest import serve_app
from trial_fixtures import finished_job
from vctcore.jobs import cancel_job, list_jobs
from vctcore.population import PopulationSpec

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def regulator_app(tmp_path_factory, tiny_generator):
    root = tmp_path_factory.mktemp("regulator_ws")
    env = {"VCT_WORKSPACE": str(root), "VCT_GENERATOR": str(tiny_generator["generator"])}
    with serve_app(env, log_name="streamlit_regulator.log") as url:
        yield url, root
    for job in list_jobs(root):
        if job.active:
            cancel_job(job)


def _type(driver, label: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(text, Keys.ENTER)
    idle(driver)


def _choose(driver, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (type to filter, then Enter)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, f'input[aria-label^="Selected"][aria-label*="{label}"], '
                                               f'input[aria-label="{label}"]')
    box.click()
    box.send_keys(option)
    time.sleep(0.3)
    box.send_keys(Keys.ENTER)
    idle(driver)


def _tab(driver, title: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f'//*[@data-testid="stTab"][.//*[normalize-space()="{title}"]]').click()
    idle(driver)


def _camera_eye(driver) -> dict:
    return driver.execute_script(
        "const p = [...document.querySelectorAll('.js-plotly-plot')].find(e => e._fullLayout && e._fullLayout.scene);"
        "return p ? p._fullLayout.scene.camera.eye : null;")


def test_design_generate_reload_view_rotate_and_counterfactual(browser, regulator_app) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    url, root = regulator_app
    # 1. design: the shipped reference population under a new name, saved to the workspace
    browser.get(f"{url}/population")
    wait_for(browser, '[data-testid="stPlotlyChart"]', timeout=120)
    _type(browser, "Name (also the file name)", "older_adults")
    click(browser, "Save to workspace")
    saved = root / "populations" / "older_adults.yaml"
    assert saved.exists(), browser.find_element(By.TAG_NAME, "body").text[-2000:]
    spec = PopulationSpec.from_yaml(saved)
    assert spec.name == "older_adults" and len(spec.sample(5, seed=0)) == 5
    assert yaml.safe_load(saved.read_text())["name"] == "older_adults"
    shot(browser, "regulator_population")

    # 2. generate 2 patients from it as a job; reload the page while it runs
    browser.get(f"{url}/generate")
    wait_for(browser, '[data-testid="stTab"]', n=2)
    _tab(browser, "Cohort")
    _choose(browser, "Population", "older_adults")
    box = browser.find_element(By.CSS_SELECTOR, 'input[aria-label="Patients"]')
    box.send_keys("\b\b\b2\n")
    idle(browser)
    _type(browser, "Cohort name", "older2")
    click(browser, "Generate cohort")
    (job,) = list_jobs(root, kind="generate")
    assert "older_adults.yaml" in job.command and "--n 2" in job.command
    browser.refresh()
    wait_for(browser, '[data-testid="stTab"]', n=2)
    _tab(browser, "Cohort")
    assert "generate older2 (2 patients)" in browser.find_element(By.TAG_NAME, "body").text
    job = finished_job(root, "generate", timeout=300)
    assert job.status == "done", job.log_tail()
    browser.refresh()
    wait_for(browser, '[data-testid="stTab"]', n=2)
    _tab(browser, "Cohort")
    wait_for(browser, '[data-testid="stDataFrame"]')
    assert "done" in browser.find_element(By.TAG_NAME, "body").text
    shot(browser, "regulator_generate")

    # 3. the viewer: the generated patient's slices, then its 3D organs, rotated by a drag
    browser.get(f"{url}/viewer")
    wait_for(browser, '[data-testid="stImage"]', n=3, timeout=120)
    shot(browser, "regulator_viewer")
    assert "older2" in browser.page_source
    _tab(browser, "3D organs")
    wait_for(browser, ".js-plotly-plot", timeout=60)
    time.sleep(1.5)
    before = _camera_eye(browser)
    assert before is not None
    plot = [p for p in browser.find_elements(By.CSS_SELECTOR, ".js-plotly-plot") if p.is_displayed()][0]
    ActionChains(browser).move_to_element(plot).click_and_hold().move_by_offset(120, 40).release().perform()
    time.sleep(1.0)
    after = _camera_eye(browser)
    assert after != before, (before, after)
    shot(browser, "regulator_3d")

    # 4. a counterfactual pair of the same patient with more weight
    _tab(browser, "Counterfactual pair")
    click(browser, "Build the pair")
    wait_for(browser, '[data-testid="stDataFrame"]', timeout=180)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Difference" in body or "difference" in body
    shot(browser, "regulator_counterfactual")
