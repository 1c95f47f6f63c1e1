"""The Reports page in a real browser (headless Chromium): the charts drawn, each with its text
alternative and table, no console error (the strict policy holds), the Publish button; and a
screenshot in ``test-artifacts/reports.png``, which with ``UPDATE_SCREENSHOTS=1`` also
replaces the README's ``docs/screenshots/reports.png`` (so a test run leaves the tree as it
was)."""

from __future__ import annotations

import os
import random
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.conftest import MANAGER, Site
from tests.browser.support import ARTIFACTS, LiveCaller
from tests.browser.test_pages import (
    RQ_ON_FAILURE,
    assert_private,
    console_problems,
    sign_in,
    wait,
)
from tests.conftest import OPEN_TIME, RESPECT

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
HELPLINE = "respect-phoneline"
TEAM = "respect-workers"
pytestmark = pytest.mark.filterwarnings(RQ_ON_FAILURE)


def a_fortnight_of_counts(site: Site) -> None:
    """Two weeks of calls, counted through the same API the service counts with."""
    counts = site.rt.counts
    dice = random.Random(15)
    for back in range(1, 14):
        day = OPEN_TIME - timedelta(days=back)
        for hour in range(8, 21):
            for _ in range(dice.randint(0, 3 if 9 <= hour < 17 else 1)):
                at = day.replace(hour=hour, minute=dice.randint(0, 59))
                counts.offered(HELPLINE, at=at)
                counts.notice_heard(HELPLINE, at=at)
                if not 9 <= hour < 17 or day.weekday() >= 5:
                    counts.ended(HELPLINE, "out_of_hours", at=at)
                    continue
                counts.queued(HELPLINE, TEAM, at=at)
                wait_s = dice.choice((4, 8, 12, 18, 25, 40, 70, 150))
                worker = dice.choice(("Alice", "Bilal"))
                if wait_s > 100:
                    counts.abandoned(HELPLINE, TEAM, wait_s, at=at)
                else:
                    counts.offer(HELPLINE, TEAM, worker, at=at)
                    counts.answered(HELPLINE, TEAM, wait_s, worker=worker, at=at)
                    counts.talk(HELPLINE, TEAM, worker, dice.randint(120, 1500), at=at)
    assert counts.flush()


def test_the_reports_page_in_the_browser(site: Site, browser: WebDriver):
    driver = browser
    a_fortnight_of_counts(site)
    # And today, calls played through the app as Twilio sends them.
    answered = LiveCaller(site.sim, site.rest, RESPECT).ring()
    site.clock.advance(seconds=14)
    answered.answer()
    LiveCaller(site.sim, site.rest, RESPECT).ring(keys=("",))  # left in the menu

    sign_in(driver, site, MANAGER)
    driver.find_element(By.LINK_TEXT, "Reports").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "publish")))
    start = (OPEN_TIME - timedelta(days=13)).date().isoformat()
    end = OPEN_TIME.date().isoformat()
    driver.get(f"{site.url}/manager/reports?from={start}&to={end}&helpline={HELPLINE}")

    figures = driver.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert len(figures) == 3
    for figure in figures:
        image = figure.find_element(By.TAG_NAME, "img")
        wait(driver).until(lambda d, i=image: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 0", i))
        assert image.get_attribute("src").startswith(site.url + "/manager/reports/chart/")
        alt = image.get_attribute("alt")
        assert len(alt) > 40  # says what the chart shows, in figures
        assert figure.find_element(By.TAG_NAME, "figcaption").text == alt
    body = driver.find_element(By.TAG_NAME, "body").text
    assert "Calls offered" in body and "Answered within 20 s" in body
    summaries = [s.text for s in driver.find_elements(By.CSS_SELECTOR, ".report-data summary")]
    assert summaries == ["Table view of the charts: each day",
                         "Table view of the charts: calls by hour of day and day of week"]
    workers = driver.find_element(By.XPATH, "//table[caption[contains(., 'Each worker')]]")
    assert "Alice" in workers.get_attribute("textContent")
    assert_private(driver)
    assert console_problems(driver) == []
    keep_screenshot(driver, ARTIFACTS / "reports.png")
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "reports.png", SCREENSHOTS / "reports.png")

    driver.find_element(By.ID, "publish").click()
    wait(driver).until(ec.presence_of_element_located(
        (By.XPATH, "//h1[contains(., 'figures to publish')]")))
    assert "fewer than 5" in driver.find_element(By.TAG_NAME, "body").text
    assert driver.find_elements(By.CSS_SELECTOR, "figure.chart") == []
    assert console_problems(driver) == []


def keep_screenshot(driver: WebDriver, path: Path, tallest: int = 2600) -> None:
    """The top of the page (its charts and first table) on a desktop screen."""
    metrics = {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {**metrics, "height": min(int(height), tallest)})
    driver.save_screenshot(str(path))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
