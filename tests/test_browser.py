"""End to end in a real browser: the app serves, builds the default phantom and shows its slices."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

IMAGES = '[data-testid="stImage"] img'
EXCEPTION = '[data-testid="stException"]'
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _wait_for_slices(driver, timeout: float = 45.0) -> list:
    """Wait until the script run has finished and three slice images have loaded; fail on an exception."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def finished(d):
        if d.find_elements(By.CSS_SELECTOR, EXCEPTION):
            return "exception"
        if not d.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"]'):
            return False
        imgs = d.find_elements(By.CSS_SELECTOR, IMAGES)
        loaded = len(imgs) >= 3 and all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i) for i in imgs)
        return imgs if loaded else False

    result = WebDriverWait(driver, timeout, poll_frequency=0.25).until(finished)
    assert result != "exception", driver.find_element(By.CSS_SELECTOR, EXCEPTION).text
    return result


def test_phantom_page_shows_a_body(browser, app_url):
    from selenium.webdriver.common.by import By

    browser.get(f"{app_url}/phantom")
    imgs = _wait_for_slices(browser)
    sizes = [browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i) for i in imgs]
    assert len(sizes) == 3 and all(w > 50 and h > 50 for w, h in sizes), sizes
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Digital human" in body and "not a real patient" in body
    assert "Traceback" not in body
    assert "Self-check" in body
    assert not browser.find_elements(By.CSS_SELECTOR, f'{EXCEPTION}, [data-testid="stAlertContentError"]')
    ARTIFACTS.mkdir(exist_ok=True)
    height = browser.execute_script('return document.querySelector(\'[data-testid="stMain"]\').scrollHeight')
    browser.set_window_size(1400, min(max(int(height) + 120, 1000), 2400))  # the whole page in one shot
    try:
        _wait_for_slices(browser)
        assert browser.save_screenshot(str(ARTIFACTS / "app_phantom.png"))
    finally:
        browser.set_window_size(1400, 1000)


def test_window_preset_changes_the_images(browser, app_url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(f"{app_url}/phantom")
    before = [i.get_attribute("src") for i in _wait_for_slices(browser)]
    bone = browser.find_element(By.XPATH, '//label[@data-testid="stRadioOption"][.//p[starts-with(., "bone W")]]')
    bone.click()
    WebDriverWait(browser, 20).until(
        lambda d: [i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, IMAGES)][:3] != before[:3])
    after = _wait_for_slices(browser)
    assert len(after) >= 3
