"""A generated report in a real browser: headless Chromium (driven by chromedriver through Selenium)
loads the page from disk, every picture decodes and the tables are there, and nothing is fetched.

Skips, naming what is missing, only when Selenium, Chromium or chromedriver is not installed
(`.ci/run` installs the Debian packages chromium and chromium-driver).
"""

from __future__ import annotations

import os
import shutil

import pytest

from sola.viz.report import write_report
from tests.test_report import compare_dir, train_run  # noqa: F401  (fixtures)

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser():
    """A headless Chromium WebDriver, or a skip naming what is not installed."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    binary = next((path for path in map(shutil.which, BROWSERS) if path), None)
    driver = shutil.which("chromedriver")
    if binary is None or driver is None:
        missing = " and ".join(name for name, path in (("chromium", binary), ("chromedriver", driver)) if path is None)
        pytest.skip(f"{missing} not installed (Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-extensions", "--no-first-run", "--window-size=1280,900"):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")  # the driver and browser are given: never download one
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _browser()
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


PAGE_STATE = """
const images = Array.from(document.images);
return {
  images: images.map(img => ({complete: img.complete, width: img.naturalWidth, alt: img.alt})),
  tables: Array.from(document.querySelectorAll("table[id]")).map(t => [t.id, t.rows.length]),
  sections: Array.from(document.querySelectorAll("section[id]")).map(s => s.id),
  fetched: performance.getEntriesByType("resource").map(entry => entry.name),
};
"""


def _load(browser, html_path) -> dict:
    """Open the page from disk, wait for its pictures, return what the page holds."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(html_path.resolve().as_uri())
    WebDriverWait(browser, 30).until(
        lambda d: d.execute_script("return document.readyState === 'complete' && "
                                   "Array.from(document.images).every(img => img.complete)"))
    return browser.execute_script(PAGE_STATE)


def _check_images(state: dict, count: int) -> None:
    assert len(state["images"]) == count
    broken = [image["alt"] for image in state["images"] if not (image["complete"] and image["width"] > 0)]
    assert not broken, f"pictures that did not load: {broken}"
    assert state["fetched"] == []  # every picture is inline: no request of any kind


def test_compare_report_in_chromium(browser, compare_dir, tmp_path):
    state = _load(browser, write_report(compare_dir, tmp_path / "compare.html")["html"])
    _check_images(state, 1 + 2 + 6)  # per-class bars, an error figure per mode, 3 videos x 2 modes
    tables = dict(state["tables"])
    assert tables["map-table"] == 3  # header + baseline + sola
    assert tables["per-class-table"] == 5 and tables["error-table"] == 7
    assert state["sections"] == ["verdict", "comparison", "map", "per-class", "errors", "timelines"]


def test_train_report_in_chromium(browser, train_run, tmp_path):
    state = _load(browser, write_report(train_run, tmp_path / "train.html")["html"])
    _check_images(state, 4)  # curves, health, TSM, selection
    tables = dict(state["tables"])
    assert {"run-summary", "epochs", "selection"} <= set(tables) and tables["epochs"] == 3
