"""The app in a real headless Chromium: `python -m app` starts, a digit is uploaded through the
page's file input, the right class appears, and a screenshot is kept as a test artifact.

Chromium and its driver are Debian's (`apt-get install chromium chromium-driver`); the driver's
path is given to Selenium, so Selenium Manager never looks anything up or downloads anything.
Screenshots go to $BROWSER_ARTIFACTS (default build/browser-artifacts/). Run by `make test-browser`
(it installs them); not in `make test`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.registry import Registry
from tests.app_support import digit_png, train_digits_model
from tests.serving import free_port, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("BROWSER_ARTIFACTS") or ROOT / "build" / "browser-artifacts")
STARTUP_SECONDS = 60
PREDICTION_SECONDS = 90  # the first prediction imports torch and loads the model
DIGIT = 1234


def healthy(port: int) -> bool:
    """Whether Streamlit's health endpoint answers 200."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture
def running_app(tmp_path: Path) -> Iterator[int]:
    """`python -m app` on a free port of 127.0.0.1, a registered digits model in its registry."""
    registry = tmp_path / "registry"
    Registry(registry, "digits").register({"model": train_digits_model(tmp_path / "model")},
                                          tmp_path / "run")
    port = free_port()
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app", "--port", str(port), "--registry",
                                 str(registry), "--runs", str(tmp_path / "runs")],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "HOME": str(tmp_path)})
    try:
        wait_until(lambda: healthy(port), "python -m app's start-up", proc, log, STARTUP_SECONDS)
        yield port
    finally:
        stop_process(proc)


@pytest.fixture
def browser(tmp_path: Path):
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "no Chromium: run `make test-browser`, which installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_a_digit_uploaded_in_a_real_browser_shows_its_class(running_app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    png, label = digit_png(DIGIT)
    image = tmp_path / "digit.png"
    image.write_bytes(png)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"http://127.0.0.1:{running_app}/")
    try:
        # st.file_uploader's <input type=file> is hidden but takes a path through send_keys
        upload = WebDriverWait(browser, STARTUP_SECONDS).until(
            ec.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")))
        upload.send_keys(str(image))
        page = browser.find_element(By.TAG_NAME, "body")
        WebDriverWait(browser, PREDICTION_SECONDS).until(
            lambda _: "predicted class" in page.text and "%)" in page.text)
        assert f"digit.png: predicted class {label} (" in page.text
        WebDriverWait(browser, PREDICTION_SECONDS).until(  # the top-k table, drawn on a canvas
            ec.visibility_of_element_located((By.CSS_SELECTOR, "[data-testid='stDataFrame'] canvas")))
    finally:
        browser.save_screenshot(str(ARTIFACTS / "app-predict.png"))
    assert (ARTIFACTS / "app-predict.png").stat().st_size > 0
