"""Selenium helpers shared by the browser tests: wait for a Streamlit script run, find, click, type, and
save screenshots to test-artifacts/app_<name>.png."""
from __future__ import annotations

import time

from conftest import ARTIFACTS

EXCEPTION = '[data-testid="stException"]'


def idle(driver, timeout: float = 60.0) -> None:
    """Wait for the script run to finish; fail on an exception shown in the page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    time.sleep(0.5)
    WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, '[data-testid="stApp"][data-test-script-state="notRunning"]'))
    assert not driver.find_elements(By.CSS_SELECTOR, EXCEPTION), driver.find_element(By.CSS_SELECTOR, EXCEPTION).text


def wait_for(driver, css: str, n: int = 1, timeout: float = 90.0) -> list:
    """Wait until the page shows at least ``n`` elements matching ``css`` (the script has rendered)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found = WebDriverWait(driver, timeout, poll_frequency=0.25).until(
        lambda d: (lambda els: els if len(els) >= n else False)(d.find_elements(By.CSS_SELECTOR, css)))
    idle(driver)
    return found


def shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    height = driver.execute_script('return document.querySelector(\'[data-testid="stMain"]\').scrollHeight')
    driver.set_window_size(1400, min(max(int(height) + 120, 1000), 4000))
    time.sleep(0.5)
    try:
        assert driver.save_screenshot(str(ARTIFACTS / f"app_{name}.png"))
    finally:
        driver.set_window_size(1400, 1000)


def set_number(driver, label: str, value: int, index: int = 0) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_elements(By.CSS_SELECTOR, f'input[aria-label="{label}"]')[index]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(str(value), Keys.ENTER)
    idle(driver)


def click(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f'//button[.//p[normalize-space()="{text}"]]').click()
    idle(driver)
