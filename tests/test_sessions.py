"""Web sessions held on the server: the cookie carries only an opaque id, the session's record
is in Redis (with a TTL), and signing out deletes it, so a copy of the cookie saved before
sign-out is worthless wherever it is replayed. A session also ends 12 hours after sign-in,
however active it has been."""

from __future__ import annotations

from datetime import timedelta

from callflow.platform import keys
from callflow.staff.sessions import ABSOLUTE_LIFETIME
from tests.monitoring_support import MANAGER, WebManager, signed_in

pytest_plugins = ("tests.monitoring_fixtures",)
COOKIE = "callflow_session"


def cookie_of(browser: WebManager) -> str:
    cookie = browser.client.get_cookie(COOKIE, path="/manager")
    assert cookie is not None, "no session cookie"
    return cookie.value


def replay(monitor_app, value: str) -> WebManager:
    """Another browser (an attacker's) holding a copy of the cookie."""
    thief = WebManager(monitor_app, "203.0.113.66")
    thief.client.set_cookie(COOKIE, value, path="/manager")
    return thief


def set_cookies(response) -> list[str]:
    return [v for v in response.headers.getlist("Set-Cookie") if v.startswith(f"{COOKIE}=")]


def test_a_cookie_saved_before_sign_out_no_longer_works_and_is_not_renewed(monitor_app):
    """The attack: a copy of the cookie, taken while the manager was signed in, replayed after
    they signed out."""
    maria = signed_in(monitor_app)
    saved = cookie_of(maria)
    assert replay(monitor_app, saved).get("/manager/api/session").status_code == 200

    assert maria.post("/manager/logout", headers={"Accept": "application/json"}
                      ).status_code == 200

    thief = replay(monitor_app, saved)
    for path in ("/manager/api/session", "/manager/api/calls", "/manager/api/audit"):
        response = thief.get(path)
        assert response.status_code == 401
        assert not any(saved in value for value in set_cookies(response))
    assert thief.post("/manager/api/exceptions", {}).status_code == 403  # no CSRF token either


def test_the_cookie_carries_an_opaque_id_and_the_session_lives_in_redis(monitor_app, redis):
    maria = signed_in(monitor_app)

    value = cookie_of(maria)

    assert MANAGER not in value and "." not in value  # not a signed copy of the session
    assert len(value) >= 43
    [key] = list(redis.scan_iter(keys.web_session("*")))
    assert value not in key  # the id is kept only as its hash
    assert 0 < redis.ttl(key) <= ABSOLUTE_LIFETIME.total_seconds()


def test_signing_in_starts_a_new_session_id(monitor_app):
    browser = WebManager(monitor_app)
    browser.form_token()
    before = cookie_of(browser)

    browser.login()

    assert cookie_of(browser) != before
    assert replay(monitor_app, before).get("/manager/api/session").status_code == 401


def test_a_session_ends_twelve_hours_after_sign_in_however_active(monitor_app, clock):
    maria = signed_in(monitor_app)
    for _ in range(int(ABSOLUTE_LIFETIME / timedelta(minutes=20)) - 1):
        clock.now += timedelta(minutes=20)
        assert maria.get("/manager/api/session").status_code == 200

    clock.now += timedelta(minutes=21)

    assert maria.get("/manager/api/session").status_code == 401
    page = maria.get("/manager/login").get_data(as_text=True)
    assert "12 hours" in page


def test_a_forged_or_unknown_session_id_is_simply_no_session(monitor_app, redis):
    for value in ("x" * 43, "", "not/an/id", "é" * 10):
        response = replay(monitor_app, value).get("/manager/api/session")
        assert response.status_code == 401
    assert list(redis.scan_iter(keys.web_session("*"))) == []  # nothing is stored for them


def test_twilios_webhooks_never_touch_the_session_store(monitor_app, sim, redis):
    from tests.monitoring_support import connected_caller

    connected_caller(sim, sim.rest)

    assert list(redis.scan_iter(keys.web_session("*"))) == []


def test_a_sign_in_pages_session_is_kept_briefly(monitor_app, redis):
    from webhooks.sessions import ANONYMOUS_SECONDS

    WebManager(monitor_app).form_token()  # the sign-in page's CSRF token needs a session

    [key] = list(redis.scan_iter(keys.web_session("*")))
    assert 0 < redis.ttl(key) <= ANONYMOUS_SECONDS
