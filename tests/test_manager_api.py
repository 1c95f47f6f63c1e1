"""The manager's web sign-in and JSON API: the session cookie, CSRF and same-site checks on every
state-changing request (the login form included), lockout per account and per address, what
/manager/api/calls may show, the audit log and its verification, and the exceptions register."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import pytest

from callflow.jobs import tasks as jobs
from callflow.platform import keys
from callflow.records.audit import AuditKind, AuditLog
from callflow.staff.lockout import WINDOW_SECONDS
from callflow.staff.sign_in import ACCOUNT_FREE_FAILURES, ADDRESS_FAILURES, PAIR_FAILURES
from tests.bridge_support import dead_store, raw_dump
from tests.conftest import CANARY_NUMBER, PUBLIC_URL, assert_no_canary
from tests.monitoring_support import (
    ADDRESS,
    ADMIN,
    DEVICE,
    MANAGER,
    MANAGER_PHONE,
    OTHER_MANAGER,
    PASSWORD,
    WORKERS,
    WebManager,
    add_staff,
    build_app,
    connected_caller,
    last_seq,
    later,
    signed_in,
    staff_sign_in,
    waiting_caller,
)

pytest_plugins = ("tests.monitoring_fixtures",)

WRONG_PASSWORD = "not the password at all 7731"
LOCKED_MESSAGE = "Too many failed sign-in attempts; try again in 15 minutes."
CALL_FIELDS = {"id", "helpline", "state", "started_at", "connected_at", "monitorable",
               "being_monitored"}


@pytest.fixture
def maria(monitor_app) -> WebManager:
    return signed_in(monitor_app, MANAGER)


def new_entries(rt, seq: int):
    return [e for e in rt.audit.entries() if e.seq > seq]


# -- signing in ------------------------------------------------------------------------------


def test_the_login_form_carries_a_csrf_token(monitor_app):
    browser = WebManager(monitor_app)

    assert len(browser.form_token()) >= 32


def test_a_json_sign_in_answers_with_the_csrf_token_and_is_audited(monitor_app, rt):
    seq = last_seq(rt)
    browser = WebManager(monitor_app)

    response = browser.login()

    body = response.get_json()
    assert (body["user"], body["role"]) == (MANAGER, "manager")
    assert len(body["csrf_token"]) >= 32
    [entry] = new_entries(rt, seq)
    assert (entry.kind, entry.actor, entry.data) == (
        AuditKind.LOGIN, MANAGER, {"channel": "web", "address": ADDRESS})
    session = browser.get("/manager/api/session")
    assert session.get_json() == {"user": MANAGER, "role": "manager",
                                  "csrf_token": body["csrf_token"], "phone_set": True,
                                  "phone_label": DEVICE}
    assert MANAGER_PHONE not in session.get_data(as_text=True)


def test_a_wrong_password_on_the_form_keeps_the_username(monitor_app):
    browser = WebManager(monitor_app)
    response = browser.client.post("/manager/login", data={
        "username": MANAGER, "password": WRONG_PASSWORD, "csrf_token": browser.form_token()})
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert f'value="{MANAGER}"' in page
    assert WRONG_PASSWORD not in page
    assert re.search(r'id="password"[^>]*autofocus', page)


def test_signing_in_while_the_store_is_down_shows_the_unavailable_page(monitor_app, rt,
                                                                       monkeypatch):
    browser = WebManager(monitor_app)
    token = browser.form_token()
    down = dead_store()
    sign_in = monitor_app.extensions["callflow"]["sign_in"]
    for part in (monitor_app.extensions["callflow"]["staff"], *vars(sign_in).values()):
        if hasattr(part, "client"):  # the staff store and each of sign-in's limits
            monkeypatch.setattr(part, "client", down)
    response = browser.client.post("/manager/login", data={
        "username": MANAGER, "password": PASSWORD, "csrf_token": token})
    assert response.status_code == 503
    assert response.mimetype == "text/html"
    assert "The dashboard is unavailable" in response.get_data(as_text=True)
    api = browser.client.post("/manager/login", data={
        "username": MANAGER, "password": PASSWORD, "csrf_token": token},
        headers={"Accept": "application/json"})
    assert (api.status_code, api.get_json()["reason"]) == (503, "unavailable")


def test_a_form_sign_in_goes_to_the_dashboard(monitor_app):
    browser = WebManager(monitor_app)

    response = browser.client.post("/manager/login", data={
        "username": MANAGER, "password": PASSWORD, "csrf_token": browser.form_token()})

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/manager/")


def test_a_wrong_password_is_refused_and_audited_without_it(monitor_app, rt, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    seq = last_seq(rt)

    response = WebManager(monitor_app).login(MANAGER, WRONG_PASSWORD, status=401)

    assert response.get_json()["reason"] == "sign_in_refused"
    assert response.get_json()["message"] == "That username and password did not match."
    [entry] = new_entries(rt, seq)
    assert (entry.kind, entry.actor, entry.data) == (
        AuditKind.LOGIN_FAILED, MANAGER,
        {"reason": "bad_credentials", "channel": "web", "address": ADDRESS, "failures": 1})
    texts = [e.to_json() for e in rt.audit.entries()] + [raw_dump(redis_url)]
    texts += [r.getMessage() + str(vars(r)) for r in caplog.records]
    for secret in (WRONG_PASSWORD, PASSWORD):
        assert not any(secret in text for text in texts)


def test_a_refused_form_sign_in_shows_the_form_again(monitor_app):
    browser = WebManager(monitor_app)

    response = browser.client.post("/manager/login", data={
        "username": MANAGER, "password": WRONG_PASSWORD, "csrf_token": browser.form_token()})

    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "That username and password did not match." in page
    assert 'name="csrf_token"' in page
    assert WRONG_PASSWORD not in page


def test_an_unknown_name_gets_the_same_answer_and_is_not_recorded(monitor_app, rt):
    seq = last_seq(rt)

    response = WebManager(monitor_app).login("my password perhaps", WRONG_PASSWORD, status=401)

    assert response.get_json()["message"] == "That username and password did not match."
    [entry] = new_entries(rt, seq)
    assert (entry.kind, entry.actor) == (AuditKind.LOGIN_FAILED, "unknown")
    assert "perhaps" not in entry.to_json()


def _post_login(browser: WebManager, token: str | None, **headers: str):
    data = {"username": MANAGER, "password": PASSWORD}
    if token is not None:
        data["csrf_token"] = token
    return browser.client.post("/manager/login", data=data,
                               headers={"Accept": "application/json", **headers})


REFUSED_REQUESTS = {
    "no token": (None, {}),
    "wrong token": ("x" * 43, {}),
    "empty token": ("", {}),
    "non-ASCII token": ("\u00e9" * 8, {}),
    "cross-site fetch": ("ok", {"Sec-Fetch-Site": "cross-site"}),
    "same-site (another subdomain)": ("ok", {"Sec-Fetch-Site": "same-site"}),
    "foreign origin": ("ok", {"Origin": "https://evil.example.com"}),
    "http origin": ("ok", {"Origin": PUBLIC_URL.replace("https", "http")}),
    "null origin": ("ok", {"Origin": "null"}),
}


@pytest.mark.parametrize(("token", "headers"), REFUSED_REQUESTS.values(),
                         ids=REFUSED_REQUESTS.keys())
def test_the_login_form_refuses_forged_posts(monitor_app, rt, token, headers):
    browser = WebManager(monitor_app)
    real = browser.form_token()
    seq = last_seq(rt)

    response = _post_login(browser, real if token == "ok" else token, **headers)

    assert response.status_code == 403
    assert response.get_json()["reason"] == "csrf"
    assert new_entries(rt, seq) == []  # not even a failed sign-in: the password was not tried
    assert browser.get("/manager/api/session").status_code == 401


@pytest.mark.parametrize("headers", [{"Origin": PUBLIC_URL}, {"Sec-Fetch-Site": "same-origin"},
                                     {"Sec-Fetch-Site": "same-origin", "Origin": PUBLIC_URL},
                                     {"Sec-Fetch-Site": "none"}])
def test_the_login_form_accepts_same_origin_posts(monitor_app, headers):
    browser = WebManager(monitor_app)

    response = _post_login(browser, browser.form_token(), **headers)

    assert response.status_code == 200


def test_a_token_from_another_browser_is_refused(monitor_app):
    other = WebManager(monitor_app, "198.51.100.8").form_token()

    response = _post_login(WebManager(monitor_app), other)

    assert response.status_code == 403


# -- lockout: per account and address, slowed per account, the owner kept a way in ----------------


def assert_locked_out(response) -> None:
    """The web's lockout answer: 429, and when to try again."""
    assert response.status_code == 429
    body = response.get_json()
    assert body["reason"] == "sign_in_refused"
    assert body["message"].startswith("Too many failed sign-in attempts; try again in")


def test_five_failures_from_one_address_lock_that_address_out_of_that_account(monitor_app,
                                                                             rt, redis):
    here = "198.51.100.20"
    seq = last_seq(rt)
    for _ in range(PAIR_FAILURES - 1):
        WebManager(monitor_app, here).login(MANAGER, WRONG_PASSWORD, status=401)

    # The failure that locks says so; then the right password from there is refused too.
    assert_locked_out(WebManager(monitor_app, here).login(MANAGER, WRONG_PASSWORD, status=429))
    assert_locked_out(WebManager(monitor_app, here).login(MANAGER, PASSWORD, status=429))

    assert 0 < redis.ttl(keys.lockout_locked(f"pair:{MANAGER}@{here}")) <= WINDOW_SECONDS
    entries = new_entries(rt, seq)
    failures = [e for e in entries if e.kind == AuditKind.LOGIN_FAILED]
    assert [e.data["reason"] for e in failures] == ["bad_credentials"] * PAIR_FAILURES
    assert [e.data["failures"] for e in failures] == list(range(1, PAIR_FAILURES + 1))
    [lockout] = [e for e in entries if e.kind == AuditKind.LOCKOUT]
    assert entries.index(lockout) == entries.index(failures[-1]) + 1
    assert (lockout.actor, lockout.data) == (MANAGER, {
        "scope": "pair", "account": MANAGER, "seconds": 15 * 60, "channel": "web",
        "address": here})
    # The manager, from anywhere else, is not affected; nor is another account from here.
    WebManager(monitor_app, "198.51.100.98").login(MANAGER)
    WebManager(monitor_app, here).login(OTHER_MANAGER)


def test_an_outsider_rotating_addresses_cannot_keep_the_owner_out(monitor_app, rt):
    """The attack: failures from ever new addresses used to lock the account for everyone,
    its owner included, for as long as they kept coming."""
    owner = signed_in(monitor_app, MANAGER)  # the manager's own browser, known from before
    owner.post("/manager/logout", headers={"Accept": "application/json"})
    for n in range(30):
        WebManager(monitor_app, f"203.0.113.{n + 1}").login(MANAGER, WRONG_PASSWORD,
                                                             status=None)

    # Strangers are slowed down; the account's own browser signs in at once.
    assert_locked_out(WebManager(monitor_app, "203.0.113.200").login(MANAGER, PASSWORD,
                                                                     status=429))
    owner.login(MANAGER)
    assert owner.get("/manager/api/session").status_code == 200


def test_strangers_are_slowed_down_per_account_whatever_their_address(monitor_app, clock):
    for n in range(ACCOUNT_FREE_FAILURES):
        WebManager(monitor_app, f"203.0.113.{n + 1}").login(MANAGER, WRONG_PASSWORD,
                                                             status=401)
    WebManager(monitor_app, "203.0.113.50").login(MANAGER, WRONG_PASSWORD, status=401)

    # Now every attempt at the account from an unknown browser waits its turn.
    assert_locked_out(WebManager(monitor_app, "203.0.113.51").login(MANAGER, PASSWORD,
                                                                    status=429))
    later(clock, minutes=1)
    WebManager(monitor_app, "203.0.113.52").login(MANAGER)  # the wait is over: the owner's in


def test_an_admin_can_let_the_owner_back_in(monitor_app, staff):
    for n in range(30):
        WebManager(monitor_app, f"203.0.113.{n + 1}").login(MANAGER, WRONG_PASSWORD,
                                                             status=None)
    assert_locked_out(WebManager(monitor_app, "203.0.113.1").login(MANAGER, PASSWORD,
                                                                   status=429))

    staff_sign_in(monitor_app).unlock(MANAGER, actor="cli:root")

    WebManager(monitor_app, "203.0.113.1").login(MANAGER)


def _lock_an_address(monitor_app, rt, address: str) -> None:
    seq = last_seq(rt)
    names = [f"nobody-{n}" for n in range(ADDRESS_FAILURES)]
    for name in names[:-1]:
        WebManager(monitor_app, address).login(name, WRONG_PASSWORD, status=401)

    # The last failure from the address locks it, for every account, and says so.
    assert_locked_out(WebManager(monitor_app, address).login(names[-1], WRONG_PASSWORD,
                                                             status=429))
    assert_locked_out(WebManager(monitor_app, address).login(OTHER_MANAGER, PASSWORD,
                                                             status=429))

    entries = new_entries(rt, seq)
    [lockout] = [e for e in entries if e.kind == AuditKind.LOCKOUT]
    # By scope, naming no account (the names guessed were no account's); the address is
    # where the failure came from, as on every failure.
    assert (lockout.actor, lockout.data) == ("unknown", {
        "scope": "address", "seconds": 15 * 60, "channel": "web", "address": address})
    WebManager(monitor_app, "2001:db8::99").login(OTHER_MANAGER)  # from elsewhere: fine


def test_failures_at_many_accounts_lock_an_ipv6_address(monitor_app, rt):
    _lock_an_address(monitor_app, rt, "2001:db8::50")


def test_failures_at_many_accounts_lock_an_ipv4_address(monitor_app, rt):
    _lock_an_address(monitor_app, rt, "198.51.100.50")


def test_a_locked_address_is_refused_before_any_hashing_and_audited_once_per_window(
        monitor_app, rt, staff, clock, monkeypatch):
    """The attack: 150 sign-ins from a locked address wrote 150 audit entries (~276 a
    second)."""
    address = "198.51.100.51"
    _lock_an_address(monitor_app, rt, address)
    seq = last_seq(rt)
    hashed = []
    verify = staff.verify  # every password check (and its hashing) goes through it
    monkeypatch.setattr(staff, "verify", lambda *a: hashed.append(1) or verify(*a))

    for n in range(150):
        WebManager(monitor_app, address).login(MANAGER if n % 2 else "nobody",
                                               WRONG_PASSWORD, status=429)

    assert hashed == []
    assert new_entries(rt, seq) == []
    later(clock, minutes=16)
    jobs.audit_refused_sign_ins()
    [entry] = new_entries(rt, seq)
    assert (entry.kind, entry.actor) == (AuditKind.LOGIN_THROTTLED, "unknown")
    assert {k: entry.data[k] for k in ("scope", "channel", "address", "count")} == {
        # the 150, and the one refused while the address was being locked: the same window
        "scope": "address", "channel": "web", "address": address, "count": 151}


def test_a_good_password_clears_the_accounts_count_but_not_a_lock(monitor_app):
    for _ in range(PAIR_FAILURES - 1):
        WebManager(monitor_app, "198.51.100.60").login(MANAGER, WRONG_PASSWORD, status=401)
    WebManager(monitor_app, "198.51.100.60").login(MANAGER)
    for _ in range(PAIR_FAILURES - 1):  # a fresh count
        WebManager(monitor_app, "198.51.100.60").login(MANAGER, WRONG_PASSWORD, status=401)
    WebManager(monitor_app, "198.51.100.60").login(MANAGER)


@pytest.mark.parametrize("forwarded", ["+441134960999", "not an address", "198.51.100.7:80",
                                       "999.1.1.1", "unknown"])
def test_a_malformed_forwarded_address_is_a_400_not_an_error(monitor_settings, redis, clock,
                                                           rt, forwarded):
    """Behind one trusted proxy, the client's address is the X-Forwarded-For it sets."""
    app = build_app(dataclasses.replace(monitor_settings, trusted_proxies=1), redis, clock)
    browser = WebManager(app)
    seq = last_seq(rt)

    response = browser.client.post(
        "/manager/login", data={"username": MANAGER, "password": PASSWORD,
                                "csrf_token": browser.form_token()},
        headers={"Accept": "application/json", "X-Forwarded-For": forwarded})

    assert response.status_code == 400
    assert response.get_json()["reason"] == "bad_request"
    assert "address" in response.get_json()["message"]
    assert_no_canary(response.get_data(as_text=True))
    assert "1134960999" not in " ".join(e.to_json() for e in rt.audit.entries())
    assert new_entries(rt, seq) == []


def test_a_well_formed_forwarded_address_is_the_one_counted(monitor_settings, redis, clock,
                                                            rt):
    app = build_app(dataclasses.replace(monitor_settings, trusted_proxies=1), redis, clock)

    WebManager(app).login(headers_address="2001:db8::7")

    assert rt.audit.entries(kind=AuditKind.LOGIN)[-1].data["address"] == "2001:db8::7"


# -- the session cookie ------------------------------------------------------------------------


def _cookie(response) -> str:
    [cookie] = [v for v in response.headers.getlist("Set-Cookie")
                if v.startswith("callflow_session=")]
    return cookie


def test_the_session_cookie_is_http_only_same_site_strict_and_secure(monitor_app):
    response = WebManager(monitor_app).login()

    flags = [part.strip() for part in _cookie(response).split(";")]
    assert "HttpOnly" in flags
    assert "SameSite=Strict" in flags
    assert "Secure" in flags
    assert "Path=/manager" in flags  # never sent with anything but the dashboard's requests


def test_the_cookie_is_not_secure_only_when_the_public_url_is_plain_http(monitor_settings,
                                                                         redis, clock):
    settings = dataclasses.replace(monitor_settings, public_url="http://localhost:8080")
    app = build_app(settings, redis, clock)
    add_staff(app.extensions["callflow"]["staff"])

    flags = [p.strip() for p in _cookie(WebManager(app).login()).split(";")]

    assert "Secure" not in flags
    assert {"HttpOnly", "SameSite=Strict"} <= set(flags)


def test_signing_out_ends_the_session(maria):
    assert maria.post("/manager/logout", headers={"Accept": "application/json"}
                      ).status_code == 200

    assert maria.get("/manager/api/calls").status_code == 401
    assert maria.get("/manager/api/session").status_code == 401


def test_signing_out_of_the_page_goes_back_to_the_sign_in_form(maria):
    response = maria.client.post("/manager/logout", data={"csrf_token": maria.csrf})

    assert response.status_code == 302
    assert response.headers["Location"].endswith("/manager/login")
    assert maria.get("/manager/api/session").status_code == 401


def test_signing_out_needs_the_csrf_token(maria):
    response = maria.client.post("/manager/logout")

    assert response.status_code == 403
    assert maria.get("/manager/api/calls").status_code == 200


@pytest.mark.parametrize("name", [MANAGER, ADMIN])
def test_a_disabled_accounts_session_stops_working(monitor_app, staff, name):
    browser = signed_in(monitor_app, name)
    assert browser.get("/manager/api/audit").status_code == 200

    staff.disable(name, actor="cli:test")

    for path in ("/manager/api/session", "/manager/api/calls", "/manager/api/audit"):
        response = browser.get(path)
        assert response.status_code == 401
        assert response.get_json()["reason"] == "not_signed_in"
    assert browser.post("/manager/api/exceptions", {}).status_code == 401
    browser.login(name, status=401)  # nor can it sign in again


@pytest.mark.parametrize("path", ["/manager/api/session", "/manager/api/calls",
                                  "/manager/api/audit", "/manager/api/audit/verify",
                                  "/manager/api/exceptions"])
def test_the_api_needs_a_signed_in_account(monitor_app, path):
    response = monitor_app.test_client().get(path)

    assert response.status_code == 401
    assert response.get_json() == {"reason": "not_signed_in", "message": "Please sign in."}


# -- CSRF on the API -----------------------------------------------------------------------------


API_POSTS = ["/manager/api/calls/{call}/listen", "/manager/api/sessions/some-session/stop",
             "/manager/api/exceptions", "/manager/logout"]


@pytest.mark.parametrize("path", API_POSTS)
@pytest.mark.parametrize(("token", "headers"), REFUSED_REQUESTS.values(),
                         ids=REFUSED_REQUESTS.keys())
def test_state_changing_api_requests_need_the_token_from_this_site(maria, sim, rest, rt, path,
                                                                   token, headers):
    call_id = connected_caller(sim, rest).call_id if "{call}" in path else ""
    seq = last_seq(rt)
    sent = {"X-CSRF-Token": maria.csrf if token == "ok" else token} if token is not None else {}

    response = maria.client.post(path.format(call=call_id), json={"purpose": "quality"},
                                 headers={**sent, **headers})

    assert response.status_code == 403
    assert response.get_json()["reason"] == "csrf"
    assert new_entries(rt, seq) == []
    assert rest.of("listen") == []
    assert maria.get("/manager/api/session").status_code == 200  # still signed in


@pytest.fixture
def call_for_csrf(sim, rest) -> str:
    return connected_caller(sim, rest).call_id


def test_the_token_may_come_as_a_form_field(maria):
    response = maria.client.post("/manager/logout", data={"csrf_token": maria.csrf},
                                 headers={"Accept": "application/json"})

    assert response.status_code == 200


def test_a_body_that_is_not_a_json_object_is_refused_not_an_error(maria, call_for_csrf, rest):
    for body in (["quality"], "quality", 4, None):
        response = maria.client.post(f"/manager/api/calls/{call_for_csrf}/listen",
                                     data=json.dumps(body), content_type="application/json",
                                     headers={"X-CSRF-Token": maria.csrf})
        assert response.status_code == 403
        assert response.get_json()["reason"] == "purpose_not_allowed"
    assert rest.of("listen") == []


# -- the list of live calls ------------------------------------------------------------------


def test_the_calls_list_holds_no_caller_or_worker_data(maria, sim, rest, redis):
    connected = connected_caller(sim, rest)
    waiting = waiting_caller(sim, rest)

    response = maria.get("/manager/api/calls")

    calls = {c["id"]: c for c in response.get_json()["calls"]}
    assert set(calls) == {connected.call_id, waiting.call_id}
    assert all(set(c) == CALL_FIELDS for c in calls.values())
    assert calls[connected.call_id] == {
        "id": connected.call_id, "helpline": "Respect Phoneline", "state": "connected",
        "started_at": "2026-11-25T12:00:00+00:00", "connected_at": "2026-11-25T12:00:00+00:00",
        "monitorable": True, "being_monitored": False}
    # In the team's line while Bilal (the free worker) is offered the team's next caller.
    assert waiting.legs()[-1].data["To"] == WORKERS[1]
    assert (calls[waiting.call_id]["state"], calls[waiting.call_id]["connected_at"]) == (
        "waiting", None)
    text = response.get_data(as_text=True)
    assert_no_canary(text)
    for secret in (*WORKERS, connected.sid, waiting.sid, connected.conference_sid,
                   *(leg.sid for leg in connected.legs())):
        assert secret not in text
    assert "7700" not in text


def test_calls_that_ended_are_not_listed(maria, sim, rest):
    call = connected_caller(sim, rest)
    call.conference("participant-leave")
    call.conference("conference-end")

    assert maria.get("/manager/api/calls").get_json()["calls"] == []


def test_the_list_says_whether_each_helpline_is_open_now(monitor_app, maria, clock):
    assert maria.get("/manager/api/calls").get_json()["helplines"] == [
        {"name": "Men's Advice Line", "open": True}, {"name": "Respect Phoneline", "open": True}]
    clock.now = clock.now.replace(hour=18)  # Respect closes at 17:00, the Men's line at 20:00
    later = signed_in(monitor_app, MANAGER)  # hours idle would have ended maria's session
    assert later.get("/manager/api/calls").get_json()["helplines"] == [
        {"name": "Men's Advice Line", "open": True}, {"name": "Respect Phoneline", "open": False}]


def test_an_admin_sees_the_list_too(monitor_app, sim, rest):
    call = connected_caller(sim, rest)

    response = signed_in(monitor_app, ADMIN).get("/manager/api/calls")

    assert [c["id"] for c in response.get_json()["calls"]] == [call.call_id]


# -- the audit log ---------------------------------------------------------------------------------


def test_the_audit_log_is_served_oldest_first_with_its_hashes(maria, rt):
    entries = maria.get("/manager/api/audit").get_json()["entries"]

    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    assert entries[-1]["kind"] == "login"
    assert all(set(e) == {"seq", "at", "kind", "actor", "data", "prev", "hash"} for e in entries)
    assert [e["hash"] for e in entries] == [e.hash for e in rt.audit.entries()]


def test_the_audit_log_filters_by_kind_and_time(maria, rt):
    assert [e["kind"] for e in maria.get("/manager/api/audit?kind=login").get_json()["entries"]
            ] == ["login"]
    newest = rt.audit.entries()[-1].at

    since = maria.get("/manager/api/audit", query_string={"since": newest}).get_json()
    future = maria.get("/manager/api/audit?since=2999-01-01").get_json()

    assert [e["at"] for e in since["entries"]] == [newest]
    assert future == {"entries": []}


@pytest.mark.parametrize(("query", "words"), [("since=yesterday", "since must be a date"),
                                              ("kind=everything", "unknown kind")])
def test_a_bad_audit_query_is_a_clear_400(maria, query, words):
    response = maria.get(f"/manager/api/audit?{query}")

    assert response.status_code == 400
    assert words in response.get_json()["message"]


def test_the_audit_log_down_is_a_503_not_an_error(maria, rt, monkeypatch):
    monkeypatch.setattr(rt, "audit", AuditLog(dead_store(), rt.audit.keys))

    for path in ("/manager/api/audit", "/manager/api/audit/verify"):
        response = maria.get(path)
        assert response.status_code == 503
        assert response.get_json()["reason"] == "unavailable"


def _tamper_edit(redis, entries):
    entry = json.loads(entries[2])
    entry["actor"] = "someone-else"
    redis.lset(keys.audit_entries(), 2, json.dumps(entry))


def _tamper_delete(redis, entries):
    redis.lrem(keys.audit_entries(), 1, entries[2])


def _tamper_reorder(redis, entries):
    redis.lset(keys.audit_entries(), 2, entries[3])
    redis.lset(keys.audit_entries(), 3, entries[2])


def _tamper_truncate(redis, entries):
    redis.rpop(keys.audit_entries())


TAMPERING = {"edit": (_tamper_edit, 3, "edited"), "delete": (_tamper_delete, 3, "removed"),
             "reorder": (_tamper_reorder, 4, "out of order"),
             "truncate": (_tamper_truncate, None, "removed from the end")}


def test_verify_passes_an_untouched_log(maria, rt):
    result = maria.get("/manager/api/audit/verify").get_json()

    assert result["ok"] is True
    assert result["count"] == len(rt.audit.entries())
    assert result["first_bad_seq"] is None


@pytest.mark.parametrize(("tamper", "bad_seq", "words"), TAMPERING.values(),
                         ids=TAMPERING.keys())
def test_verify_catches_tampering(monitor_app, maria, redis, tamper, bad_seq, words):
    admin = signed_in(monitor_app, ADMIN)
    entries = redis.lrange(keys.audit_entries(), 0, -1)
    assert len(entries) >= 8

    tamper(redis, entries)
    result = admin.get("/manager/api/audit/verify").get_json()
    assert maria.get("/manager/api/audit/verify").get_json() == result

    assert result["ok"] is False
    assert result["first_bad_seq"] == (bad_seq or len(entries))
    assert words in result["reason"]


# -- the exceptions register -----------------------------------------------------------------------


EXCEPTION = {"call": "callid-0001", "grounds": ["threat_to_worker"], "agency": "police",
             "caller_informed": False, "why_not": "not_safe",
             "detail": "Telling the caller would put the worker at risk."}


def test_an_exception_is_recorded_in_the_chain(maria, rt):
    response = maria.post("/manager/api/exceptions", EXCEPTION)

    assert response.status_code == 201
    entry = response.get_json()["entry"]
    assert (entry["kind"], entry["actor"]) == ("exception_recorded", MANAGER)
    assert entry["data"] == {"call": "callid-0001", "grounds": ["threat_to_worker"],
                             "agency": "police", "caller_informed": False,
                             "why_not": "not_safe", "detail": EXCEPTION["detail"]}
    last = rt.audit.entries()[-1]
    assert (last.seq, last.hash) == (entry["seq"], entry["hash"])
    assert rt.audit.verify().ok
    assert maria.get("/manager/api/exceptions").get_json()["entries"] == [entry]


def test_an_admin_may_record_an_exception(monitor_app):
    admin = signed_in(monitor_app, ADMIN)

    response = admin.post("/manager/api/exceptions", {**EXCEPTION, "caller_informed": True,
                                                      "why_not": None, "detail": None,
                                                      "grounds": ["caller_consent"]})

    assert response.status_code == 201
    entry = response.get_json()["entry"]
    assert (entry["kind"], entry["actor"]) == ("exception_recorded", ADMIN)
    assert entry["data"] == {"call": "callid-0001", "grounds": ["caller_consent"],
                             "agency": "police", "caller_informed": True}
    assert admin.get("/manager/api/exceptions").get_json()["entries"] == [entry]


@pytest.mark.parametrize(("change", "words"), [
    ({"why_not": None}, "why_not: say why it was not possible or safe"),
    ({"why_not": "   "}, "why_not: say why"),
    ({"why_not": "unsafe"}, "why_not 'unsafe' is not one the policy allows"),
    ({"detail": "x" * 141}, "longer than 140"),
    ({"detail": ["not", "text"]}, "detail must be text"),
    ({"not_informed_reason": "it was not safe"}, "not_informed_reason is no longer taken"),
    ({"grounds": []}, "give at least one of the policy's grounds"),
    ({"grounds": True}, "give one of the policy's grounds, or a list of them"),
    ({"grounds": 1.5}, "give one of the policy's grounds, or a list of them"),
    ({"grounds": {"threat_to_worker": 1}}, "give one of the policy's grounds, or a list"),
    ({"grounds": ["threat_to_workers"]}, "did you mean 'threat_to_worker'"),
    ({"agency": "press"}, "agency 'press' is not one the policy allows"),
    ({"caller_informed": "no"}, "caller_informed must be true or false"),
    ({"call": CANARY_NUMBER}, "never a phone number"),
    ({"detail": f"Caller on {CANARY_NUMBER}"}, "looks like a phone number"),
])
def test_an_exception_that_says_too_little_or_too_much_is_a_clear_400(maria, rt, change,
                                                                      words):
    seq = last_seq(rt)

    response = maria.post("/manager/api/exceptions", {**EXCEPTION, **change})

    assert response.status_code == 400
    assert response.get_json()["reason"] == "bad_request"
    assert words in response.get_json()["message"]
    assert_no_canary(response.get_data(as_text=True))
    assert new_entries(rt, seq) == []


@pytest.mark.parametrize("detail", ["He lives at 14 Acacia Avenue, CN1 1AA",
                                    "write to canary@example.org", "Mr Canaryname agreed"])
def test_an_exception_that_names_or_locates_the_caller_is_refused(maria, rt, detail):
    """The register once took a caller's name, street and postcode as free text."""
    seq = last_seq(rt)

    response = maria.post("/manager/api/exceptions", {**EXCEPTION, "detail": detail})

    assert response.status_code == 400
    assert "never who or where" in response.get_json()["message"]
    assert "Acacia" not in response.get_data(as_text=True)
    assert new_entries(rt, seq) == []


def test_an_exception_must_be_a_json_object(maria):
    response = maria.post("/manager/api/exceptions", ["threat_to_worker"])

    assert response.status_code == 400
    assert "JSON object" in response.get_json()["message"]
