"""The dashboard's pages without a browser: who may open which page, the audit trail's filters,
badge and exports, the exceptions form, the flows page, the security headers on every response,
the inactivity timeout and "sign out everywhere"."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from callflow.platform import keys
from callflow.records.audit import AuditKind, Entry
from callflow.staff.accounts import Role
from webhooks.dashboard import _cell
from webhooks.security import CSP

TEMPLATES = Path(__file__).resolve().parent.parent / "webhooks" / "templates"
STATIC = Path(__file__).resolve().parent.parent / "webhooks" / "static"
PASSWORD = "several plain words for tests"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
PAGES = ("/manager/", "/manager/audit", "/manager/exceptions", "/manager/flows",
         "/manager/audit/export.jsonl", "/manager/audit/export.csv")


def sign_in(app, name: str = "maria", role: Role = Role.MANAGER) -> FlaskClient:
    staff = app.extensions["callflow"]["staff"]
    if staff.get(name) is None:
        staff.add(name, PASSWORD, role, actor="test")
    client = app.test_client()
    token = TOKEN.search(client.get("/manager/login").get_data(as_text=True)).group(1)
    response = client.post("/manager/login", data={"csrf_token": token, "username": name,
                                                   "password": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)
    # Signing in starts a new session, with a new token: the one the pages now carry.
    page = client.get("/manager/").get_data(as_text=True)
    client.csrf = META_TOKEN.search(page).group(1)
    return client


def rt(app):
    return app.extensions["callflow"]["runtime"]


@pytest.fixture
def manager(app) -> FlaskClient:
    return sign_in(app)


@pytest.fixture
def admin(app) -> FlaskClient:
    return sign_in(app, "adam", Role.ADMIN)


# -- who may open what ------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_signed_out_every_page_goes_to_sign_in(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/manager/login")


def test_the_flows_page_is_for_admins(manager, admin):
    refused = manager.get("/manager/flows")
    assert refused.status_code == 403
    assert "This page is not for your account" in refused.get_data(as_text=True)
    assert admin.get("/manager/flows").status_code == 200


def test_the_nav_shows_flows_to_admins_only(manager, admin):
    assert "/manager/flows" not in manager.get("/manager/audit").get_data(as_text=True)
    assert "/manager/flows" in admin.get("/manager/audit").get_data(as_text=True)


def test_the_sign_in_page_sends_a_signed_in_person_home(manager):
    response = manager.get("/manager/login")
    assert response.status_code == 302 and response.headers["Location"].endswith("/manager/")


def test_signing_out_says_so(manager):
    response = manager.post("/manager/logout", data={"csrf_token": manager.csrf},
                            follow_redirects=True)
    assert "You have signed out." in response.get_data(as_text=True)
    assert "You have signed out." not in manager.get("/manager/login").get_data(as_text=True)


# -- the live-calls page ----------------------------------------------------------------------

def test_the_live_page_has_both_helplines_and_what_its_script_needs(manager, clock):
    page = manager.get("/manager/").get_data(as_text=True)
    assert 'data-helpline="Men&#39;s Advice Line"' in page
    assert 'data-helpline="Respect Phoneline"' in page
    assert f'data-server-now="{clock.now.isoformat()}"' in page
    assert 'data-listen-url="/manager/api/calls/CALL_ID/listen"' in page
    assert 'data-stop-url="/manager/api/sessions/SESSION_ID/stop"' in page
    assert '<meta name="csrf-token" content="' in page
    assert 'data-phone-set="no"' in page


def test_the_live_page_never_shows_the_managers_phone(app):
    app.extensions["callflow"]["staff"].add("maria", PASSWORD, Role.MANAGER, actor="test")
    app.extensions["callflow"]["staff"].set_phone("maria", "+447700900301",
                                                  label="maria's mobile", actor="test")
    page = sign_in(app).get("/manager/").get_data(as_text=True)
    assert 'data-phone-set="yes"' in page
    assert 'data-phone-label="maria&#39;s mobile"' in page
    assert "7700900" not in page


def test_the_listen_form_has_no_phone_to_fill_in(manager):
    """Only the registered phone is rung: the form cannot name another."""
    page = manager.get("/manager/").get_data(as_text=True)
    script = (STATIC / "dashboard.js").read_text(encoding="utf-8")
    assert 'type="tel"' not in page and 'name="phone"' not in page
    assert "payload.phone" not in script and "phone:" not in script


# -- security headers and the templates ---------------------------------------------------------

@pytest.mark.parametrize("path", ["/manager/login", "/policy", "/healthz", "/static/app.css",
                                  "/manager/api/calls", "/no-such-page"])
def test_every_response_carries_the_security_headers(client, path):
    with client.get(path) as response:
        headers = response.headers
    assert headers["Content-Security-Policy"] == CSP
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"


def test_twiml_carries_only_the_headers_a_browser_opening_it_would_need(twilio):
    fields = {"CallSid": "CA" + "1" * 32, "To": "+441632960001", "CallStatus": "ringing"}
    response = twilio.post("/voice/incoming", fields)
    assert response.mimetype == "text/xml"
    assert response.headers["Content-Security-Policy"] == (
        "default-src 'none'; frame-ancestors 'none'")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Referrer-Policy" not in response.headers


def test_the_csp_allows_no_inline_script_and_no_framing():
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert "frame-ancestors 'none'" in CSP
    assert "http" not in CSP


def test_manager_pages_are_not_cached(manager):
    assert manager.get("/manager/audit").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_templates_hold_no_inline_script_or_style(template):
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline <script>"
    assert not re.search(r"\son[a-z]+\s*=", text), "inline event handler"
    assert "style=" not in text and "<style" not in text
    assert "http://" not in text and "https://" not in text, "something from another site"


def test_static_files_load_nothing_from_another_site():
    for path in STATIC.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), path.name
        assert "eval(" not in text and "innerHTML" not in text, path.name


# -- the audit trail ------------------------------------------------------------------------------

def test_the_trail_is_newest_first_with_a_verified_badge(manager, app):
    rt(app).audit.append(AuditKind.FLOW_RELOADED, "system", files={"a.yaml": "f" * 64})
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "Chain verified from entry 3, the newest its witness saw, to entry 3" in page
    table = page.split("<tbody>")[1]
    assert table.index("Flows reloaded") < table.index("Signed in") < table.index(
        "Staff account changed")


def test_a_broken_chain_shows_where(manager, app, redis):
    raw = redis.lindex(keys.audit_entries(), -1)
    redis.lset(keys.audit_entries(), -1, raw.replace('"web"', '"phone"'))
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "Chain broken at entry 2" in page


def test_the_page_checks_from_the_witness_and_check_again_walks_everything(manager, redis):
    # An old entry edited: the page's quick check starts at the newest witnessed head, so it
    # does not claim every entry is intact; the whole walk ("check again") finds it.
    raw = redis.lindex(keys.audit_entries(), 0)
    redis.lset(keys.audit_entries(), 0, raw.replace('"added"', '"removed"'))
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "Chain verified from entry 2" in page and "intact" not in page
    assert manager.get("/manager/api/audit/verify").get_json()["first_bad_seq"] == 1


def test_a_rolled_back_log_shows_on_the_page(manager, app, redis):
    saved = redis.lrange(keys.audit_entries(), 0, -1), redis.get(keys.audit_head())
    rt(app).audit.append(AuditKind.FLOW_RELOADED, "system", files={"a.yaml": "f" * 64})
    redis.delete(keys.audit_entries())
    redis.rpush(keys.audit_entries(), *saved[0])
    redis.set(keys.audit_head(), saved[1])
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "Chain broken at entry 3" in page and "rolled back" in page


def test_the_trail_filters_by_kind_and_date(manager, app):
    page = manager.get("/manager/audit?kind=login").get_data(as_text=True)
    assert "Signed in" in page and "Staff account changed</span>" not in page
    today = rt(app).audit.entries()[-1].when.date()
    later = (today + timedelta(days=2)).isoformat()
    page = manager.get(f"/manager/audit?from={later}").get_data(as_text=True)
    assert "No entries match." in page
    page = manager.get(f"/manager/audit?from={today}&to={today}").get_data(as_text=True)
    assert "2 entries, newest first." in page


@pytest.mark.parametrize(("query", "message"), [
    ("kind=nonsense", "That kind of entry does not exist"),
    ("from=25th+November", "Dates are written day first, like 25/11/2026"),
    ("from=31/02/2026", "Dates are written day first, like 25/11/2026"),
    ("from=11/25/2026", "Dates are written day first, like 25/11/2026"),
    ("from=2026-11-25&to=2026-11-01", "they were swapped"),
])
def test_a_bad_filter_is_explained(manager, query, message):
    response = manager.get(f"/manager/audit?{query}")
    assert response.status_code == 200
    assert message in response.get_data(as_text=True)


@pytest.mark.parametrize("typed", ["25/11/2026", "25-11-2026", "25.11.2026", "2026-11-25",
                                   " 25/11/2026 "])
def test_dates_are_typed_and_shown_day_first(manager, typed):
    page = manager.get("/manager/audit", query_string={"from": typed, "to": typed}
                       ).get_data(as_text=True)
    assert "Dates are written" not in page
    assert 'value="25/11/2026"' in page
    assert 'placeholder="dd/mm/yyyy"' in page
    assert "from=25/11/2026" in page.replace("%2F", "/")  # the exports keep the filter


def test_a_date_that_was_refused_is_left_to_correct(manager):
    page = manager.get("/manager/audit?from=25th+Nov").get_data(as_text=True)
    assert 'value="25th Nov"' in page


def test_ids_in_entries_are_shown_as_they_are(manager, app):
    rt(app).audit.append(AuditKind.MONITOR_ENDED, "maria", session="ab_cd-ef", call="x_y",
                         reason="call_ended")
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "ab_cd-ef" in page and "x_y" in page and "call ended" in page


def test_the_json_lines_export_is_the_entries_as_stored(manager, app):
    response = manager.get("/manager/audit/export.jsonl?kind=login")
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    lines = response.get_data(as_text=True).splitlines()
    stored = [e.to_json() for e in rt(app).audit.entries(kind=AuditKind.LOGIN)]
    assert lines == stored
    assert all(Entry.from_json(line).computed_hash() == json.loads(line)["hash"]
               for line in lines)


def test_the_csv_export(manager, app):
    response = manager.get("/manager/audit/export.csv")
    assert response.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    entries = rt(app).audit.entries()
    assert [int(r["seq"]) for r in rows] == [e.seq for e in entries]
    assert json.loads(rows[0]["data"]) == entries[0].data


@pytest.mark.parametrize(("value", "cell"), [("=SUM(A1)", "'=SUM(A1)"), ("+1", "'+1"),
                                             ("-2", "'-2"), ("@x", "'@x"), ("plain", "plain"),
                                             (12, "12")])
def test_csv_cells_are_never_formulas(value, cell):
    assert _cell(value) == cell


# -- the exceptions register -----------------------------------------------------------------------

def exception_form(client, **fields):
    data = {"csrf_token": client.csrf, "call": "CA0123abcd", "grounds": ["threat_to_worker"],
            "agency": "police", "caller_informed": "yes", "why_not": "", "detail": "", **fields}
    return client.post("/manager/exceptions", data=data)


def test_an_exception_is_recorded_and_listed(manager, app):
    response = exception_form(manager)
    assert response.status_code == 302
    entry = rt(app).audit.entries(kind=AuditKind.EXCEPTION_RECORDED)[-1]
    assert entry.actor == "maria"
    assert entry.data == {"call": "CA0123abcd", "grounds": ["threat_to_worker"],
                          "agency": "police", "caller_informed": True}
    page = manager.get(response.headers["Location"]).get_data(as_text=True)
    assert f"recorded as audit entry #{entry.seq}" in page
    assert "Helpline workers are threatened or verbally attacked by callers" in page


def test_not_informed_needs_a_reason(manager):
    response = exception_form(manager, caller_informed="no", detail="the call had ended")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Say why the caller was not told: it was not safe, or not possible." in page
    assert 'value="CA0123abcd"' in page  # what was typed is kept
    assert 'value="the call had ended"' in page


def test_not_informed_is_recorded_with_its_reason_and_shown(manager, app):
    response = exception_form(manager, caller_informed="no", why_not="not_possible",
                              detail="the call had ended before the worker could say")
    assert response.status_code == 302
    entry = rt(app).audit.entries(kind=AuditKind.EXCEPTION_RECORDED)[-1]
    assert (entry.data["why_not"], entry.data["detail"]) == (
        "not_possible", "the call had ended before the worker could say")
    page = manager.get("/manager/exceptions").get_data(as_text=True)
    assert "it was not possible: the call had ended or they could not be reached" in page
    assert "the call had ended before the worker could say" in page


def test_the_form_warns_before_anything_is_typed(manager):
    page = manager.get("/manager/exceptions").get_data(as_text=True)
    assert "never who or where" in page
    assert 'name="detail"' in page and 'maxlength="140"' in page
    assert 'name="not_informed_reason"' not in page
    for value in ("not_safe", "not_possible"):
        assert f'name="why_not" value="{value}"' in page


def test_an_entry_recorded_before_the_structured_reasons_is_still_shown(manager, app):
    rt(app).audit.append(AuditKind.EXCEPTION_RECORDED, "maria", call="CA0123abcd",
                         grounds=["threat_to_worker"], agency="police", caller_informed=False,
                         not_informed_reason="an older free-text reason")
    page = manager.get("/manager/exceptions").get_data(as_text=True)
    assert "an older free-text reason" in page


@pytest.mark.parametrize(("fields", "message"), [
    ({"caller_informed": ""}, "Say whether the caller was told"),
    ({"agency": "newspaper"}, "Choose who the information was shared with."),
    ({"grounds": []}, "Give at least one of the policy&#39;s grounds"),
    ({"call": "+447700900666"}, "never a phone number"),
    ({"caller_informed": "no", "why_not": "not_safe", "detail": "ring them on 07700 900666"},
     "looks like a phone number"),
    ({"caller_informed": "no", "why_not": "not_safe", "detail": "lives at 14 Acacia Avenue"},
     "never who or where"),
    ({"caller_informed": "no", "why_not": "because"}, "Say why the caller was not told"),
])
def test_a_bad_exception_is_refused_in_words(manager, app, fields, message):
    before = len(rt(app).audit.entries())
    response = exception_form(manager, **fields)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert message in page
    assert "7700900666" not in page.replace('value="+447700900666"', "").replace(
        "ring them on 07700 900666", "")
    assert len(rt(app).audit.entries()) == before


def test_a_call_reference_that_looks_like_a_number_is_refused_in_words_and_not_kept(manager):
    response = exception_form(manager, call="01632960123")
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert ("The call reference looks like a phone number; the audit log never holds caller "
            "data.") in page
    assert "call_id" not in page and "Call_id" not in page
    assert "1632960123" not in page


def test_the_form_needs_the_csrf_token(manager):
    response = manager.post("/manager/exceptions", data={"call": "CA1"})
    assert response.status_code == 403


# -- the flows page --------------------------------------------------------------------------------

def test_the_flows_page_draws_each_flow(admin, app):
    rt(app).registry.reload()
    page = admin.get("/manager/flows").get_data(as_text=True)
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="flow-diagram"') == 2
    assert 'id="diagram-respect-phoneline-arrow"' in page
    assert "Valid" in page and "Where the notice is" in page
    assert "respect-phoneline.yaml:" in page
    assert "01632 960001" in page and "Open now" in page
    assert "Loaded</span>" in page and "by system" in page
    assert "7700900" not in page


def test_a_broken_folder_is_shown_with_its_errors(admin, app, tmp_path, settings, redis, clock):
    import dataclasses
    import shutil

    from tests.conftest import FLOWS
    from webhooks import create_app

    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    broken = create_app({"TESTING": True, "STORE": redis, "CLOCK": clock,
                         "SETTINGS": dataclasses.replace(settings, flows_dir=str(folder))})
    path = folder / "respect-phoneline.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("kind: notice", "kind: notise"),
                    encoding="utf-8")
    rt(broken).registry.reload()
    page = sign_in(broken, "adam", Role.ADMIN).get("/manager/flows").get_data(as_text=True)
    assert "would not load" in page and "respect-phoneline.yaml:" in page
    assert "Flow edit refused" not in page and "Refused</span>" in page
    assert page.count('class="flow-diagram"') == 2  # the last good flows, still drawn


# -- sessions: inactivity and sign out everywhere --------------------------------------------------

def test_an_idle_session_ends(manager, clock):
    clock.now += timedelta(minutes=31)
    assert manager.get("/manager/api/session").status_code == 401
    page = manager.get("/manager/login").get_data(as_text=True)
    assert "You were signed out after 30 minutes without activity." in page


def test_activity_keeps_a_session_and_polling_does_not(manager, clock):
    for _ in range(4):
        clock.now += timedelta(minutes=20)
        assert manager.get("/manager/api/session").status_code == 200
    for _ in range(2):
        clock.now += timedelta(minutes=16)
        response = manager.get("/manager/api/calls", headers={"X-Callflow-Poll": "1"})
    assert response.status_code == 401


def test_sign_out_everywhere_ends_every_session_of_the_account(app):
    laptop, phone = sign_in(app), sign_in(app)
    other = sign_in(app, "martin")

    response = laptop.post("/manager/sign-out-everywhere", data={"csrf_token": laptop.csrf},
                           follow_redirects=True)

    assert "signed out on every device" in response.get_data(as_text=True)
    assert laptop.get("/manager/api/session").status_code == 401
    assert phone.get("/manager/api/session").status_code == 401
    assert other.get("/manager/api/session").status_code == 200
    entry = rt(app).audit.entries(kind=AuditKind.STAFF_CHANGED)[-1]
    assert (entry.actor, entry.data) == ("maria", {"name": "maria",
                                                   "change": "signed_out_everywhere"})
    assert sign_in(app).get("/manager/api/session").status_code == 200


def test_sign_out_everywhere_needs_the_csrf_token(manager):
    assert manager.post("/manager/sign-out-everywhere").status_code == 403
    assert manager.get("/manager/api/session").status_code == 200


# -- forms under "Referrer-Policy: no-referrer" --------------------------------------------------

@pytest.mark.parametrize(("headers", "status"), [
    ({"Origin": "null", "Sec-Fetch-Site": "same-origin"}, 302),
    ({"Origin": "null", "Sec-Fetch-Site": "cross-site"}, 403),
    ({"Origin": "null"}, 403),
])
def test_a_browsers_null_origin_is_ours_only_when_it_says_same_origin(manager, headers, status):
    response = manager.post("/manager/logout", data={"csrf_token": manager.csrf},
                            headers=headers)
    assert response.status_code == status
