"""`mechintro report RUN --out report.html`: one self-contained page, exercised in a real
headless Chromium (Debian's `chromium` + `chromium-driver`, driven by selenium). The page must
load with no console errors, the filters must change the visible rows, and a clicked row must
open its transcript. A screenshot is kept under tests/artifacts/ for a person to look at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "analyses" / "data" / "smollm2-135m"
ARTIFACTS = ROOT / "tests" / "artifacts"


def _report(run: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "-q", "report", str(run), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "injected-thoughts.html"
    done = _report(SHIPPED / "injected-thoughts.zarr", out)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_the_report_is_self_contained(page):
    text = page.read_text()
    # nothing is fetched: no external script, style sheet, image or font
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(http" not in text
    assert text.count("data:image/png;base64,") == 2  # injected-thoughts draws two figures
    for part in ("weights_sha256", "git_commit", "mechintro_version", "95%"):
        assert part in text


def test_report_refuses_bad_input_in_one_line(tmp_path):
    done = _report(SHIPPED / "injected-thoughts.zarr", tmp_path / "report.txt")
    assert (
        done.returncode == 2
        and "Traceback" not in done.stderr
        and len(done.stderr.strip().splitlines()) == 1
    )
    assert "should end in .html" in done.stderr and not list(tmp_path.iterdir())
    done = _report(tmp_path / "missing.zarr", tmp_path / "r.html")
    assert (
        done.returncode == 2
        and len(done.stderr.strip().splitlines()) == 1
        and not list(tmp_path.iterdir())
    )


def _driver():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):
            pytest.fail(
                "CI is set but chromium/chromedriver are "
                "missing: .ci/run installs them with apt-get"
            )
        pytest.skip(
            "headless browser test: install Debian's chromium and "
            "chromium-driver (apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def test_the_report_works_in_headless_chromium(page):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser = _driver()
    try:
        browser.get(page.as_uri())
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors

        def visible() -> list:
            return [
                r
                for r in browser.find_elements(By.CSS_SELECTOR, "#trials tbody tr[data-trial]")
                if r.is_displayed()
            ]

        everything = visible()
        assert len(everything) == 120
        assert browser.find_element(By.ID, "count").text == "120 of 120 trials shown"
        Select(browser.find_element(By.ID, "f-condition")).select_by_value("control")
        controls = visible()
        assert 0 < len(controls) < len(everything)
        assert all(r.get_attribute("data-condition") == "control" for r in controls)
        Select(browser.find_element(By.ID, "f-condition")).select_by_value("injected")
        Select(browser.find_element(By.ID, "f-layer")).select_by_value("15")
        rows = visible()
        assert rows and all(r.get_attribute("data-layer") == "15" for r in rows)
        box = browser.find_element(By.ID, "q")
        concept = rows[0].get_attribute("data-concept")
        box.send_keys(concept.lower())
        rows = visible()
        assert rows and all(r.get_attribute("data-concept") == concept for r in rows)
        rows[0].click()
        shown = browser.find_element(By.CSS_SELECTOR, "#inline-transcript .mi-t")
        assert shown.get_attribute("data-trial") == rows[0].get_attribute("data-trial")
        assert shown.find_element(By.TAG_NAME, "mark").text.strip()  # the injected window
        assert shown.find_element(By.CSS_SELECTOR, "pre.response").text.strip()
        assert "affirmative_identification" in shown.text
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("document.getElementById('inline-transcript').scrollIntoView()")
        assert browser.save_screenshot(str(ARTIFACTS / "report-injected-thoughts.png"))
    finally:
        browser.quit()
