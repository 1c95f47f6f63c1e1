"""The dashboard and the policy page in a real browser (headless Chromium), with the app served
for real: sign in, watch a live call arrive through signed webhooks, listen with a purpose, be
refused on the fifth listen of the day, stop, read the audit trail and its verify badge, record
a confidentiality exception, see the flow diagrams, and read the policy signed out.

Screenshots of every page go to ``test-artifacts/`` (not committed).
"""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

from callflow.monitoring.gate import MonitoringGate
from tests.browser.conftest import ADMIN, MANAGER, PASSWORD, Site
from tests.browser.support import ARTIFACTS, LiveCaller
from tests.conftest import MENS_ADVICE, RESPECT

# Every number a caller, worker or manager has in these tests is in Ofcom's drama range
# 07700 900xxx; none may ever be on a page.
PRIVATE_DIGITS = ("7700900", "7700 900")
# Enqueueing under RQ 3 warns about the failure callback (see tests/bridge_support.py).
RQ_ON_FAILURE = ("ignore:Passing a string or function for `on_failure` is deprecated"
                 ":DeprecationWarning")
pytestmark = pytest.mark.filterwarnings(RQ_ON_FAILURE)


def wait(driver: WebDriver, seconds: float = 8) -> WebDriverWait:
    return WebDriverWait(driver, seconds, poll_frequency=0.1)


def shot(driver: WebDriver, name: str, width: int = 1280, tallest: int = 6000) -> None:
    """A screenshot of the page (its first ``tallest`` pixels) on a screen ``width`` wide."""
    mobile = width < 600
    metrics = {"width": width, "height": 900, "deviceScaleFactor": 2 if mobile else 1,
               "mobile": mobile}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {**metrics, "height": min(int(height), tallest)})
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def visible_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def assert_private(driver: WebDriver) -> None:
    source = driver.page_source
    for digits in PRIVATE_DIGITS:
        assert digits not in source, f"a private number is on {driver.current_url}"


def console_problems(driver: WebDriver) -> list[str]:
    """Script errors and CSP refusals (an HTTP 4xx of the API is expected, not a problem)."""
    return [entry["message"] for entry in driver.get_log("browser")
            if entry["level"] == "SEVERE" and "status of 4" not in entry["message"]]


def sign_in(driver: WebDriver, site: Site, name: str) -> None:
    driver.get(site.url + "/manager/login")
    driver.find_element(By.ID, "username").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(ec.presence_of_element_located((By.CSS_SELECTOR, "nav.mainnav")))


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.CSS_SELECTOR, ".account summary").click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Sign out']").click()
    wait(driver).until(ec.presence_of_element_located((By.ID, "username")))


def call_card(driver: WebDriver, call_id: str):
    return wait(driver).until(ec.presence_of_element_located(
        (By.CSS_SELECTOR, f'li.call[data-id="{call_id}"]')))


def listen(driver: WebDriver, call_id: str, purpose: str) -> None:
    card = call_card(driver, call_id)
    button = wait(driver).until(lambda d: card.find_element(By.CSS_SELECTOR, "[data-listen]")
                                if card.find_element(By.CSS_SELECTOR, "[data-listen]")
                                .is_displayed() else None)
    button.click()
    card.find_element(By.CSS_SELECTOR, f"input[name=purpose][value={purpose}]").click()
    card.find_element(By.CSS_SELECTOR, "[data-submit]").click()


def grant_and_stop(site: Site, call_id: str) -> None:
    """A listen granted and stopped outside the browser (earlier in the manager's day)."""
    gate = MonitoringGate(site.rt, site.rt.audit)
    member = site.staff.get(MANAGER)
    decision = gate.request(member, call_id, "quality")
    assert decision.granted, decision.message
    assert gate.stop(member, decision.session).granted


def test_a_manager_and_an_admin_use_the_dashboard(site: Site, browser: WebDriver):
    driver = browser

    # Signed out, the dashboard sends you to sign in.
    driver.get(site.url + "/manager/")
    wait(driver).until(ec.presence_of_element_located((By.ID, "username")))
    shot(driver, "01-sign-in")
    driver.find_element(By.ID, "username").send_keys(MANAGER)
    driver.find_element(By.ID, "password").send_keys("not the password at all")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    assert "did not match" in wait(driver).until(
        ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]"))).text

    # Calls arrive through signed webhooks: one has been connected a few minutes, one waits,
    # and a Men's Advice Line caller has asked not to be monitored.
    respect = LiveCaller(site.sim, site.rest, RESPECT).ring()
    site.clock.advance(seconds=40)
    respect.answer()
    site.clock.advance(minutes=3, seconds=12)
    mens = LiveCaller(site.sim, site.rest, MENS_ADVICE).ring()
    site.clock.advance(seconds=25)
    mens.answer()
    site.rt.live.set_monitorable(mens.call_id, False)
    site.clock.advance(minutes=1, seconds=30)
    waiting = LiveCaller(site.sim, site.rest, RESPECT).ring()
    site.clock.advance(seconds=48)

    sign_in(driver, site, MANAGER)
    assert driver.current_url.rstrip("/").endswith("/manager")

    card = call_card(driver, respect.call_id)
    call_card(driver, waiting.call_id)
    call_card(driver, mens.call_id)
    assert "Connected" in card.text and "May be monitored" in card.text
    assert re.search(r"for 0[56]:\d\d\b", card.text), card.text  # connected ~6 minutes
    assert "Not to be monitored" in call_card(driver, mens.call_id).text
    section = driver.find_element(By.CSS_SELECTOR, '[data-helpline="Respect Phoneline"]')
    wait(driver).until(lambda d: "1 connected, 1 waiting" in section.text)
    assert_private(driver)
    shot(driver, "02-live-calls")
    shot(driver, "02-live-calls-phone", width=390)

    # Three listens earlier today; the fourth, from the page, is allowed.
    for _ in range(3):
        grant_and_stop(site, respect.call_id)
    listen(driver, respect.call_id, "training")
    banner = wait(driver).until(ec.visibility_of_element_located((By.ID, "listening")))
    assert "You are listening to a call on Respect Phoneline" in banner.text
    assert "Your phone will ring" in banner.text
    respect.listener_joins()
    assert driver.switch_to.active_element.text == "Stop listening"
    wait(driver).until(lambda d: banner.find_element(
        By.CSS_SELECTOR, ".listening-timer").text >= "00:02")
    wait(driver).until(lambda d: "Being listened to" in call_card(d, respect.call_id).text)
    shot(driver, "03-listening")
    driver.find_element(By.ID, "stop-listening").click()
    status = wait(driver).until(ec.visibility_of_element_located((By.ID, "page-status")))
    assert "You have stopped listening" in status.text
    assert not banner.is_displayed()

    # The fifth listen of the day is refused, and the page says why in words.
    listen(driver, respect.call_id, "quality")
    refusal = wait(driver).until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, f'li.call[data-id="{respect.call_id}"] [data-error]')))
    assert refusal.text == "You have listened to 4 calls today; the limit is 4."
    shot(driver, "04-refused")

    # The audit trail: newest first, the listen-ins in it, and the chain verified.
    driver.find_element(By.LINK_TEXT, "Audit trail").click()
    badge = wait(driver).until(ec.visibility_of_element_located((By.ID, "verify-badge")))
    assert badge.text.startswith("✓") and "Chain verified" in badge.text
    kinds = [e.text for e in driver.find_elements(By.CSS_SELECTOR, ".audit-table .kind")]
    assert kinds[0] == "Listen refused"
    for kind in ("Listen requested", "Listen allowed", "Listening started", "Listening ended",
                 "Signed in", "Sign-in refused"):
        assert kind in kinds
    driver.find_element(By.ID, "verify-again").click()
    wait(driver).until(lambda d: "intact" in badge.text)
    assert_private(driver)
    shot(driver, "05-audit")
    Select(driver.find_element(By.ID, "kind")).select_by_value("monitor_refused")
    driver.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait(driver).until(ec.url_contains("kind=monitor_refused"))
    kinds = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".audit-table .kind")}
    assert kinds == {"Listen refused"}
    assert "daily limit reached" in visible_text(driver)
    csv_text = driver.execute_async_script(
        "var done = arguments[0];"
        "fetch(document.querySelector('.exports a[href*=\"csv\"]').href)"
        ".then(function (r) { return r.text(); }).then(done);")
    assert csv_text.splitlines()[0] == "seq,at,kind,actor,data,prev,hash"
    assert all(",monitor_refused," in line for line in csv_text.splitlines()[1:])

    # The exceptions register: a form with the policy's grounds, and the list.
    driver.find_element(By.LINK_TEXT, "Exceptions").click()
    driver.find_element(By.ID, "call").send_keys(respect.call_id)
    driver.find_element(By.CSS_SELECTOR, "input[value=safeguarding_child_or_vulnerable_adult]"
                        ).click()
    Select(driver.find_element(By.ID, "agency")).select_by_value("social_services")
    assert not driver.find_element(By.ID, "detail").is_displayed()
    driver.find_element(By.CSS_SELECTOR, "input[name=caller_informed][value=no]").click()
    driver.find_element(By.CSS_SELECTOR, "input[name=why_not][value=not_safe]").click()
    driver.find_element(By.ID, "detail").send_keys("The child was at greater risk if told.")
    driver.find_element(By.XPATH, "//button[normalize-space()='Record exception']").click()
    recorded = wait(driver).until(ec.visibility_of_element_located(
        (By.CSS_SELECTOR, ".notice-ok")))
    assert "was recorded as audit entry" in recorded.text
    entry = driver.find_element(By.CSS_SELECTOR, ".exceptions li")
    assert "Social Services" in entry.text and "child or vulnerable adult" in entry.text
    shot(driver, "06-exceptions")

    sign_out(driver)
    assert "You have signed out." in visible_text(driver)

    # An admin sees each flow's diagram, drawn on the server.
    sign_in(driver, site, ADMIN)
    assert "Listen" not in [b.text for b in driver.find_elements(By.CSS_SELECTOR, "button")]
    driver.find_element(By.LINK_TEXT, "Flows").click()
    diagrams = driver.find_elements(By.CSS_SELECTOR, "svg.flow-diagram")
    assert len(diagrams) == 2
    assert "welcome" in diagrams[1].text and "Confidentiality notice" in diagrams[1].text
    assert "Valid" in visible_text(driver) and "Where the notice is" in visible_text(driver)
    assert_private(driver)
    shot(driver, "07-flows")
    sign_out(driver)

    # The policy is public: no sign-in, the helplines' numbers and hours from the flows.
    driver.get(site.url + "/policy")
    text = visible_text(driver)
    assert "Our confidentiality policy" in text
    assert "01632 960001" in text and "01632 960002" in text
    assert "Open now" in text and "09:00–17:00" in text
    assert "We do not use technology to identify callers" in text
    assert_private(driver)
    shot(driver, "08-policy")
    shot(driver, "08-policy-phone", width=390, tallest=1600)

    assert console_problems(driver) == []


def test_the_dashboard_says_clearly_what_went_wrong_and_what_it_still_knows(
        site: Site, browser: WebDriver):
    driver = browser

    # A wrong password keeps the username typed, and the password is where to type next.
    driver.get(site.url + "/manager/login")
    driver.find_element(By.ID, "username").send_keys(MANAGER)
    driver.find_element(By.ID, "password").send_keys("not the password at all")
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(ec.visibility_of_element_located((By.CSS_SELECTOR, "[role=alert]")))
    assert driver.find_element(By.ID, "username").get_attribute("value") == MANAGER
    assert driver.switch_to.active_element.get_attribute("id") == "password"

    # Signing in while Redis is down: the same clear page as the other pages, not JSON.
    site.store.down = True
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    heading = wait(driver).until(ec.visibility_of_element_located((By.TAG_NAME, "h1")))
    assert heading.text == "The dashboard is unavailable"
    assert "Callers are still being put through" in visible_text(driver)
    assert "{" not in visible_text(driver)
    shot(driver, "09-unavailable")
    site.store.down = False

    respect = LiveCaller(site.sim, site.rest, RESPECT).ring()
    respect.answer()
    site.clock.advance(hours=4, minutes=59, seconds=40)  # 16:59:40: the call goes on
    sign_in(driver, site, MANAGER)
    card = call_card(driver, respect.call_id)
    listen_button = card.find_element(By.CSS_SELECTOR, "[data-listen]")
    wait(driver).until(lambda d: listen_button.is_displayed() and listen_button.is_enabled())
    respect_pill = driver.find_element(By.CSS_SELECTOR,
                                       '[data-helpline="Respect Phoneline"] .pill')
    assert respect_pill.text == "Open now"

    # The Open/Closed pill follows the clock with the calls: 17:00 closes the Respect line.
    wait(driver, 40).until(lambda d: respect_pill.text == "Closed now")
    assert "pill-closed" in respect_pill.get_attribute("class")
    mens_pill = driver.find_element(By.CSS_SELECTOR, '[data-helpline="Men\'s Advice Line"] .pill')
    assert mens_pill.text == "Open now"  # open until 20:00

    # The service stops answering: an error, the cards marked not up to date, no Listen.
    site.store.down = True
    status = wait(driver, 20).until(ec.visibility_of_element_located((By.ID, "page-status")))
    wait(driver, 20).until(lambda d: "page-status-error" in status.get_attribute("class"))
    assert "What is shown is from" in status.text
    assert "Not up to date" in card.text
    assert "call-stale" in card.get_attribute("class")
    assert not listen_button.is_enabled()
    colour = status.value_of_css_property("background-color")
    assert colour != driver.find_element(By.CSS_SELECTOR, ".helpline").value_of_css_property(
        "background-color")
    shot(driver, "10-live-calls-stale")
    site.store.down = False
    wait(driver, 30).until(lambda d: not status.is_displayed())
    assert "Not up to date" not in card.text
    assert listen_button.is_enabled()

    # An exception whose call reference is wrong is explained in words, not field names.
    driver.find_element(By.LINK_TEXT, "Exceptions").click()
    driver.find_element(By.ID, "call").send_keys("01632960123")  # a number, not a reference
    driver.find_element(By.CSS_SELECTOR, "input[value=caller_consent]").click()
    Select(driver.find_element(By.ID, "agency")).select_by_value("police")
    driver.find_element(By.CSS_SELECTOR, "input[name=caller_informed][value=yes]").click()
    driver.find_element(By.XPATH, "//button[normalize-space()='Record exception']").click()
    error = wait(driver).until(ec.visibility_of_element_located((By.ID, "exception-error")))
    assert error.text == ("The call reference looks like a phone number; the audit log never "
                          "holds caller data."), error.text
    assert "1632960123" not in driver.page_source  # not echoed back into the form

    # Dates are shown and typed day first.
    driver.find_element(By.LINK_TEXT, "Audit trail").click()
    when = driver.find_element(By.CSS_SELECTOR, ".audit-table .when time")
    assert re.match(r"\d{1,2} [A-Z][a-z]{2} \d{4}, ", when.text), when.text
    written = datetime.fromisoformat(when.get_attribute("datetime"))
    day = written.astimezone(ZoneInfo("Europe/London")).strftime("%d/%m/%Y")
    date_field = driver.find_element(By.ID, "from")
    assert date_field.get_attribute("placeholder") == "dd/mm/yyyy"
    date_field.send_keys(day)
    driver.find_element(By.ID, "to").send_keys(day)
    driver.find_element(By.CSS_SELECTOR, ".filters button[type=submit]").click()
    wait(driver).until(ec.url_contains("from="))
    assert driver.find_element(By.ID, "from").get_attribute("value") == day
    assert not driver.find_elements(By.CSS_SELECTOR, ".filters + .form-error")
    assert driver.find_elements(By.CSS_SELECTOR, ".audit-table .when")
    sign_out(driver)

    # On a 390 px phone a flow diagram keeps its size and scrolls, so its words stay legible.
    sign_in(driver, site, ADMIN)
    driver.find_element(By.LINK_TEXT, "Flows").click()
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    try:
        scroll = driver.find_element(By.CSS_SELECTOR, ".diagram-scroll")
        diagram = scroll.find_element(By.CSS_SELECTOR, "svg")
        drawn = driver.execute_script("return arguments[0].getBoundingClientRect().width", diagram)
        assert drawn >= float(diagram.get_attribute("width")) - 1  # not shrunk to fit
        assert driver.execute_script("return arguments[0].scrollWidth > arguments[0].clientWidth",
                                     scroll)
        label = diagram.find_element(By.CSS_SELECTOR, "text")
        assert driver.execute_script("return arguments[0].getBoundingClientRect().height",
                                     label) >= 10
        shot(driver, "11-flows-phone", width=390)
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # The only failed loads are the ones the outage caused.
    assert [p for p in console_problems(driver) if "status of 503" not in p] == []
