"""End to end in a real browser: the app serves, builds the default phantom and shows its slices."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

IMAGES = '[data-testid="stImage"] img'
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _wait_for_slices(driver, timeout: float = 45.0) -> list:
    """Wait until three slice images have loaded and nothing is running any more."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def loaded(d):
        if d.find_elements(By.CSS_SELECTOR, '[data-testid="stSpinner"], [data-testid="stException"]'):
            return bool(d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')) and "exception"
        imgs = d.find_elements(By.CSS_SELECTOR, IMAGES)
        ok = len(imgs) >= 3 and all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
                                    for i in imgs)
        return imgs if ok else False

    result = WebDriverWait(driver, timeout, poll_frequency=0.25).until(loaded)
    assert result != "exception", driver.find_element(By.CSS_SELECTOR, '[data-testid="stException"]').text
    return result


def test_phantom_page_shows_a_body(app_url, browser):
    from selenium.webdriver.common.by import By

    browser.get(app_url)
    imgs = _wait_for_slices(browser)
    sizes = [browser.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", i) for i in imgs]
    assert len(sizes) == 3 and all(w > 50 and h > 50 for w, h in sizes), sizes
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "Digital human" in body and "not a real patient" in body
    assert "Traceback" not in body
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"], [data-testid="stAlertContentError"]')
    ARTIFACTS.mkdir(exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "app_phantom.png"))


def test_window_preset_changes_the_images(app_url, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(app_url)
    before = [i.get_attribute("src") for i in _wait_for_slices(browser)]
    bone = browser.find_element(By.XPATH, '//label[@data-testid="stRadioOption"][.//p[starts-with(., "bone W")]]')
    bone.click()
    WebDriverWait(browser, 20).until(
        lambda d: [i.get_attribute("src") for i in d.find_elements(By.CSS_SELECTOR, IMAGES)][:3] != before[:3])
    after = _wait_for_slices(browser)
    assert len(after) >= 3
