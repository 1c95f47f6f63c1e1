"""Hostile input on every voice webhook, signed correctly so that the handlers really run
(``hypothesis``): odd Digits, huge values, any unicode, repeated keys, a missing or malformed
CallSid, unknown flows, steps, calls, legs and sessions, GET as well as POST, and raw bodies of
any bytes. Whatever arrives: never a 5xx, never a traceback in a response, a 200 is always
TwiML, and the caller's details sent with every request reach no log record, Redis key or value,
RQ job or REST request.

The app has a Twilio account (REST requests recorded, jobs run inline), a live call waiting on
the bridge, one connected to a worker, and a manager with a PIN, so that the links a fuzzed
request names can be real as well as made up.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher
from flask import request
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from callflow.bridge.staff_line import LineState as StaffLineState
from callflow.bridge.waiting_line import WaitingLine
from callflow.monitoring.gate import MonitoringGate
from callflow.monitoring.manager_line import LineState
from callflow.platform.privacy import ALLOWED_FIELDS
from callflow.staff.accounts import StaffStore
from tests.bridge_support import sign_on
from tests.conftest import MENS_ADVICE, PUBLIC_URL, RESPECT, TOKEN
from tests.reliability.support import (
    ACCOUNT_SID,
    CALLER_FIELDS,
    VOICE_ENDPOINTS,
    assert_clean,
    log_text,
    redis_text,
    sign,
)
from webhooks import create_app
from webhooks.twilio_double import TwilioDouble

MANAGER_LINE = "+441632960009"
PIN = "258013"
LINK_PARAMS = ("flow", "step", "call", "team", "leg", "offer", "session")
FUZZ = settings(max_examples=50, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
RAW_FUZZ = settings(FUZZ, max_examples=25)

# Any unicode a form can carry (no lone surrogates: they cannot be sent as UTF-8).
UNICODE = st.text(st.characters(exclude_categories=("Cs",)), max_size=60)
ODD = st.sampled_from([
    "", " ", "#", "*", "0", "1", "9", "12", "1#", "#1", "**", "1\n", "\n", "\x00", "\t1",
    "١", "１", "½", "-1", "+1", "1e3", "0x1", "NaN", "None", "null", "true", "[]", "{}",
    "%00", "%2B441632960001", "+441632960001", "+441632960009", "{helpline}", "{0}", "%s",
    "<Response><Record/></Response>", "]]>", "' OR 1=1 --", "../../etc/passwd",
    "9" * 64, "1" * 4096, "é" * 20_000, "x" * 60_000,
])
VALUE = st.one_of(ODD, UNICODE, st.text(max_size=5))
def new_sid() -> str:
    return "CA" + secrets.token_hex(16)


CALL_SIDS = st.one_of(
    st.builds(new_sid),
    st.sampled_from(["", "CA", "CA" + "0" * 31, "CA" + "F" * 32, "CA" + "0" * 32 + "\n",
                     "ca" + "0" * 32, "CA" + "0" * 33, "CA" + "g" * 32]),
    VALUE)
STATUSES = st.one_of(st.sampled_from(["queued", "ringing", "in-progress", "completed", "busy",
                                      "failed", "no-answer", "canceled", "answered"]), VALUE)
EVENTS = st.one_of(st.sampled_from([
    "conference-start", "conference-end", "participant-join", "participant-leave",
    "participant-mute", "participant-speech-start"]), VALUE)
NUMBERS = st.one_of(st.sampled_from([RESPECT, MENS_ADVICE, MANAGER_LINE, "+447700900101",
                                     "+441632960999", ""]), VALUE)
FIELDS = {
    "To": NUMBERS, "Called": NUMBERS,
    "CallStatus": STATUSES, "DialCallStatus": STATUSES, "StatusCallbackEvent": EVENTS,
    "ConferenceSid": st.one_of(st.builds(lambda: "CF" + secrets.token_hex(16)), VALUE),
    "AccountSid": st.one_of(st.just("AC" + "0" * 32), VALUE),
    "Digits": st.one_of(st.sampled_from([PIN, PIN + "#", "1", "2", "9"]), ODD, VALUE),
    "FinishedOnKey": VALUE, "ParticipantLabel": VALUE, "Direction": VALUE,
}
FIELD_NAMES = st.one_of(st.sampled_from(sorted(ALLOWED_FIELDS | set(CALLER_FIELDS))),
                        st.text(min_size=1, max_size=30))


@dataclasses.dataclass
class Known:
    """Real values for what a request names, beside made-up ones: calls in a flow's step or
    signed in on the manager line, live calls on the bridge, a listening session."""

    flows: list[str]
    steps: list[str]
    calls: list[str]
    teams: list[str]
    offers: list[str]
    sessions: list[str]
    call_sids: list[str]


def often(real, odd):
    """Mostly ``real`` (so the handlers get past their first checks), sometimes ``odd``."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda r: real if r else odd)


def link_values(known: Known, name: str):
    real = {"flow": known.flows, "step": known.steps, "call": known.calls,
            "team": known.teams, "offer": known.offers,
            "leg": ["0", "1", "2", "9", "10", "99", "-1", "01", "1.0", "٣"],
            "session": known.sessions}[name]
    return often(st.sampled_from(real), VALUE)


@st.composite
def webhook(draw, known: Known) -> tuple[str, list[tuple[str, str]], list[tuple[str, str]]]:
    """(method, query pairs, form pairs): a request Twilio could sign, odd in every way."""
    pairs: list[tuple[str, str]] = list(CALLER_FIELDS.items())  # always: the caller's details
    sid = draw(often(st.sampled_from(known.call_sids) | st.builds(new_sid),
                     st.none() | CALL_SIDS))
    if sid is not None:
        pairs.append(("CallSid", sid))
    for name, values in FIELDS.items():
        if draw(st.booleans()):
            pairs.append((name, draw(values)))
    pairs += draw(st.lists(st.tuples(FIELD_NAMES, VALUE), max_size=4))  # repeats included
    pairs = draw(st.permutations(pairs))
    query = []
    for name in LINK_PARAMS:
        for _ in range(draw(st.sampled_from([1, 1, 0, 2]))):  # present, absent or repeated
            query.append((name, draw(link_values(known, name))))
    query += draw(st.lists(st.tuples(st.text(min_size=1, max_size=10), VALUE), max_size=2))
    return draw(st.sampled_from(["POST", "GET"])), draw(st.permutations(query)), pairs


@dataclasses.dataclass
class Verdict:
    """What every answer must be, checked as each arrives; counted to show the handlers ran."""

    handled: int = 0
    refused: int = 0

    def check(self, response, path: str) -> None:
        status = response.status_code
        body = response.get_data(as_text=True)
        assert status < 500, (path, status, body[:300])
        for trace in ("Traceback", 'File "', "Error:", "site-packages"):
            assert trace not in body, (path, body[:300])
        if status == 403:
            self.refused += 1
            return
        self.handled += 1
        if status == 200 and response.mimetype == "text/xml":
            assert ET.fromstring(body).tag == "Response", (path, body[:300])


@pytest.fixture
def fuzz_app(settings, redis, clock):
    rest = TwilioDouble()
    bridged = dataclasses.replace(settings, twilio_account_sid=ACCOUNT_SID)
    app = create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False, "SETTINGS": bridged,
                      "STORE": redis, "CLOCK": clock, "TWILIO_HTTP_CLIENT": rest,
                      "SYNC_JOBS": True})
    rt = app.extensions["callflow"]["runtime"]
    staff = StaffStore(rt.store, hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                       parallelism=1))
    staff.add("morgan", "a long enough test password", "manager")
    staff.set_pin("morgan", PIN)
    now = clock()
    waiting = rt.live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                           helpline_number=RESPECT, caller_sid="CA" + "1" * 32, now=now)
    connected = rt.live.open(flow="mens-advice-line", step="connect", team="mal-workers",
                             helpline_number=MENS_ADVICE, caller_sid="CA" + "2" * 32, now=now)
    rt.live.accept(connected.id, 0, now)
    rt.live.note(connected.id, conference_sid="CF" + "3" * 32)
    # The waiting caller is in the team's line, and offered to Alice (on shift, as is
    # everyone), so a worker's leg URLs can name a real offer.
    sign_on(app)
    line = WaitingLine(rt.store)
    line.join("respect-workers", waiting.id, now.timestamp())
    offers = line.offer("respect-workers", [(0, "Alice")], offer_prefix="fuzz",
                        every_free=False, now=(now.timestamp(), now.isoformat()), lasts=60)
    assert [o.worker for o in offers] == ["Alice"]
    listened = rt.live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                            helpline_number=RESPECT, caller_sid="CA" + "4" * 32, now=now)
    rt.live.accept(listened.id, 1, now)
    rt.live.note(listened.id, conference_sid="CF" + "5" * 32)
    session = MonitoringGate(rt, rt.audit).request(
        staff.get("morgan"), listened.id, "training", channel="phone",
        own_call_sid="CA" + "6" * 32).session
    assert session
    # A caller in the menu (whose state is in the signed URLs, not the store), and a manager
    # signed in on the manager line.
    in_menu, signed_in = "CA" + "7" * 32, "CA" + "8" * 32
    app.extensions["callflow"]["manager_line"].save_state(
        signed_in, LineState(manager="morgan", choices=connected.id))
    # And a worker signed in on the staff line, choosing to start or end their shift.
    staff.add("dan", "a long enough test password", "worker")
    staff.set_pin("dan", PIN)
    on_staff_line = "CA" + "9" * 32
    app.extensions["callflow"]["staff_line"].save_state(
        on_staff_line, StaffLineState(worker="Dan", account="dan"))
    flowset = rt.registry.current
    app.config["KNOWN"] = Known(
        flows=sorted(flowset.flows), calls=[waiting.id, connected.id, listened.id],
        teams=sorted(flowset.teams), offers=[o.id for o in offers],
        steps=sorted({step for flow in flowset.flows.values() for step in flow.steps}),
        sessions=[session], call_sids=[in_menu, signed_in, on_staff_line, "CA" + "1" * 32])
    app.config["REST"] = rest
    return app


def send(client, method: str, path: str, query: list[tuple[str, str]],
         pairs: list[tuple[str, str]]):
    """One request signed as Twilio signs it: POST fields in the body, GET ones in the URL."""
    if method == "GET":
        target = f"{path}?{urlencode(query + pairs)}"
        signature = sign(TOKEN, PUBLIC_URL + target, [])
        return client.get(target, headers={"X-Twilio-Signature": signature})
    target = f"{path}?{urlencode(query)}" if query else path
    return client.post(target, data=urlencode(pairs),
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": sign(TOKEN, PUBLIC_URL + target, pairs)})


def test_every_voice_endpoint_is_fuzzed(app):
    rules = {rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/voice/")}
    assert rules == set(VOICE_ENDPOINTS)


@pytest.mark.parametrize("path", VOICE_ENDPOINTS)
def test_odd_fields_never_break_a_webhook(fuzz_app, redis_url, caplog, path):
    caplog.set_level(logging.DEBUG)
    client = fuzz_app.test_client()
    verdict = Verdict()

    @FUZZ
    @given(webhook(fuzz_app.config["KNOWN"]))
    def run(sent) -> None:
        method, query, pairs = sent
        verdict.check(send(client, method, path, query, pairs), path)

    run()

    assert verdict.refused == 0  # signed correctly: every request reached its handler
    assert verdict.handled > 0
    assert_clean(log_text(caplog.records), redis_text(redis_url),
                 repr(fuzz_app.config["REST"].requests))


CONTENT_TYPES = st.sampled_from([
    "application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
    "multipart/form-data; boundary=xyz", "multipart/form-data", "application/json",
    "text/plain", None])
RAW_BODIES = st.one_of(
    st.binary(max_size=3000),
    st.lists(st.sampled_from([b"CallSid=CA" + b"0" * 32, b"Digits=", b"Digits=%FF", b"%",
                              b"%zz", b"=", b"&", b"&&", b"To=%2B441632960001", b"+", b"%00",
                              b"From=%2B447700900666", b"Caller=%2B447700900666", b"a=b=c",
                              b"\xff\xfe", b"--xyz\r\n", b"{\"CallSid\": 1}", b"x" * 70_000]),
             max_size=8).map(b"&".join))


@pytest.mark.parametrize("path", VOICE_ENDPOINTS)
def test_raw_bodies_never_break_a_webhook(fuzz_app, redis_url, caplog, path):
    """Any bytes as the body, signed over the form the app itself parses from them, so the
    signature holds whenever the app can read a form at all."""
    caplog.set_level(logging.DEBUG)
    client = fuzz_app.test_client()
    verdict = Verdict()
    known = fuzz_app.config["KNOWN"]

    @RAW_FUZZ
    @given(body=RAW_BODIES, content_type=CONTENT_TYPES,
           query=st.lists(st.tuples(st.sampled_from(LINK_PARAMS), st.sampled_from(
               known.calls + known.flows + known.steps + known.teams + known.offers
               + ["0", "x"])), max_size=3))
    def run(body: bytes, content_type: str | None, query: list[tuple[str, str]]) -> None:
        target = f"{path}?{urlencode(query)}" if query else path
        headers = {} if content_type is None else {"Content-Type": content_type}
        with fuzz_app.test_request_context(target, method="POST", data=body, headers=headers):
            try:
                form = request.form.copy()
            except Exception:  # the app will refuse what it cannot parse: sign no fields
                form = {}
        headers["X-Twilio-Signature"] = sign(TOKEN, PUBLIC_URL + target, list(
            (k, v) for k in form for v in form.getlist(k)) if form else [])
        verdict.check(client.post(target, data=body, headers=headers), path)

    run()

    assert verdict.handled > 0
    assert_clean(log_text(caplog.records), redis_text(redis_url),
                 repr(fuzz_app.config["REST"].requests))


# -- the manager's JSON API: the same, for a signed-in manager ------------------------------------

PHONE_LIKE_CANARIES = st.sampled_from(["+447700900666", "447700900666", "+44 7700 900666"])
JSON_TEXT = st.one_of(VALUE, PHONE_LIKE_CANARIES)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), JSON_TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(JSON_TEXT, inner, max_size=4),
    max_leaves=12)
EXCEPTION_BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries({}, optional={
        "call": st.one_of(st.sampled_from(["CA" + "1" * 32, "abc"]), JSON_TEXT, JSON),
        "grounds": st.one_of(st.lists(st.sampled_from(["caller_consent", "police",
                                                       "threat_to_worker"])), JSON),
        "agency": st.one_of(st.sampled_from(["police", "social_services", "other"]), JSON),
        "caller_informed": st.one_of(st.booleans(), JSON),
        "not_informed_reason": st.one_of(JSON_TEXT, JSON)}))


@pytest.fixture
def manager_client(fuzz_app):
    client = fuzz_app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = "fuzz-csrf"
    response = client.post("/manager/login", headers={"X-CSRF-Token": "fuzz-csrf",
                                                      "Accept": "application/json"},
                           data={"username": "morgan", "password": "a long enough test password"})
    assert response.status_code == 200, response.get_data(as_text=True)
    client.environ_base["HTTP_X_CSRF_TOKEN"] = response.get_json()["csrf_token"]
    return client


def test_odd_json_never_breaks_the_manager_api(fuzz_app, manager_client, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    known = fuzz_app.config["KNOWN"]
    verdict = Verdict()
    ids = st.one_of(st.sampled_from(known.calls + known.sessions), st.text(
        st.characters(exclude_categories=("Cs",), exclude_characters="/?#%"), min_size=1,
        max_size=80))

    @FUZZ
    @given(st.one_of(
        st.tuples(st.just("listen"), ids, JSON),
        st.tuples(st.just("stop"), ids, JSON),
        st.tuples(st.just("exception"), st.just(""), EXCEPTION_BODIES),
        st.tuples(st.just("audit"), JSON_TEXT, JSON_TEXT),
        st.tuples(st.just("raw"), st.sampled_from(["listen", "exception"]), st.binary())))
    def run(case) -> None:
        what, target, body = case
        if what == "listen":
            response = manager_client.post(f"/manager/api/calls/{target}/listen", json=body)
        elif what == "stop":
            response = manager_client.post(f"/manager/api/sessions/{target}/stop", json=body)
        elif what == "exception":
            response = manager_client.post("/manager/api/exceptions", json=body)
        elif what == "audit":
            response = manager_client.get("/manager/api/audit", query_string={
                "since": target, "kind": str(body)})
        else:
            path = (f"/manager/api/calls/{known.calls[1]}/listen" if target == "listen"
                    else "/manager/api/exceptions")
            response = manager_client.post(path, data=body, content_type="application/json")
        verdict.check(response, what)
        if response.status_code in (401, 403):  # refused by the gate, not for the session
            assert response.get_json()["reason"] not in ("csrf", "not_signed_in"), what

    run()

    assert verdict.handled > 0
    assert_clean(log_text(caplog.records), redis_text(redis_url),
                 repr(fuzz_app.config["REST"].requests))
