"""Fixtures for the browser tests: the app served for real, with a real Redis, Twilio's REST
API answered in-process, and headless Chromium driven by Selenium."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from flask import Flask

from callflow.platform.config import Settings
from callflow.staff.accounts import Role, StaffStore
from tests.audit_keys import SIGNING_PEM
from tests.bridge_support import FlakyStore, sign_on
from tests.browser.support import (
    ARTIFACTS,
    CHROMEDRIVER,
    CHROMIUM,
    Served,
    TickingClock,
)
from tests.conftest import FLOWS, OPEN_TIME, TOKEN, free_port
from webhooks import create_app
from webhooks.simulator import TwilioSim
from webhooks.twilio_double import TwilioDouble

ACCOUNT_SID = "AC" + "2" * 32
MANAGER, ADMIN = "hana", "ade"
PASSWORD = "four calm words for testing"
MANAGER_PHONE = "+447700900500"  # fictional (Ofcom's drama range)


@dataclass
class Site:
    app: Flask
    url: str
    clock: TickingClock
    rest: TwilioDouble
    sim: TwilioSim
    store: FlakyStore  # set ``store.down`` and the service's Redis fails as if unreachable

    @property
    def rt(self):
        return self.app.extensions["callflow"]["runtime"]

    @property
    def staff(self) -> StaffStore:
        return self.app.extensions["callflow"]["staff"]


@pytest.fixture
def site(redis_url, redis, audit_environment):
    port = free_port()
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN,
                        public_url=f"http://127.0.0.1:{port}", secret_key="browser-test-secret",
                        redis_url=redis_url, flows_dir=str(FLOWS), reload_interval=0,
                        monitor_daily_limit=4, audit_signing_key=SIGNING_PEM,
                        audit_witness=str(audit_environment))
    clock, rest = TickingClock(OPEN_TIME), TwilioDouble()
    store = FlakyStore.from_url(redis_url, decode_responses=True)  # `down` fails it
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": store, "CLOCK": clock,
                      "TWILIO_HTTP_CLIENT": rest, "SYNC_JOBS": True})
    staff = app.extensions["callflow"]["staff"]
    staff.add(MANAGER, PASSWORD, Role.MANAGER, actor="test")
    staff.set_phone(MANAGER, MANAGER_PHONE, actor="test")
    staff.add(ADMIN, PASSWORD, Role.ADMIN, actor="test")
    sign_on(app)  # every active worker on shift: callers are offered to them
    served = Served.start(app, port)
    try:
        yield Site(app, served.url, clock, rest, TwilioSim(app, rest=rest), store)
    finally:
        served.stop()
        store.close()


@pytest.fixture
def browser():
    """Headless Chromium (tests needing it are skipped at collection without it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,900", "--force-device-scale-factor=1",
                     "--lang=en-GB", "--disable-extensions", "--no-first-run"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-GB,en"})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(exist_ok=True)
    # Dates and times in the browser's own widgets as a UK user sees them.
    service = Service(CHROMEDRIVER, env={**os.environ, "LANG": "en_GB.UTF-8",
                                         "LANGUAGE": "en_GB", "TZ": "Europe/London"})
    driver = webdriver.Chrome(options=options, service=service)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()
