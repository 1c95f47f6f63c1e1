"""Redis stopped mid-call (promise 6): callers already in a call and callers arriving still hear
the notice and are put through by the degraded direct dial, with the helpline's number shown and
nothing recorded; listening in is refused and nothing is rung; when redis-server comes back on
the same port the same app serves the normal flow again, with no restart.

Each test runs its own redis-server and the service's own client
(``callflow.platform.store.connect``: one-second timeouts, one quick retry of a dropped connection
and none of a timeout, no CLIENT SETINFO handshake), so the timeouts under test are the production
ones. The tests assert what callers hear; how fast they are answered while Redis is down is measured
by ``bench/outage.py``, as a share of Twilio's fifteen-second limit.
"""

from __future__ import annotations

import logging
import os
import threading
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from argon2 import PasswordHasher

from callflow.call.degraded import APOLOGY
from callflow.platform.config import Settings
from callflow.platform.store import TIMEOUT_SECONDS, connect
from callflow.staff.accounts import StaffStore
from tests.audit_keys import SIGNING_PEM
from tests.conftest import FLOWS, MENS_ADVICE, OPEN_TIME, PUBLIC_URL, RESPECT, TOKEN, Clock
from tests.reliability.support import (
    ACCOUNT_SID,
    VOICE_ENDPOINTS,
    Caller,
    Line,
    assert_clean,
    log_text,
    redis_text,
    wait_for,
)
from webhooks import create_app
from webhooks.twilio_double import TwilioDouble

MANAGER_LINE = "+441632960009"
MANAGER_PHONE = "+447700900301"
PASSWORD = "a long enough test password"
# Only a guard against a stuck test: a frozen Redis costs the client's socket timeouts.
STUCK_SECONDS = 60


def outage_app(url: str, rest: TwilioDouble):
    settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN,
                        public_url=PUBLIC_URL, secret_key="reliability-secret", redis_url=url,
                        flows_dir=str(FLOWS), reload_interval=0, audit_signing_key=SIGNING_PEM,
                        audit_witness=os.environ["CALLFLOW_AUDIT_WITNESS"])
    return create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False, "SETTINGS": settings,
                       "STORE": connect(settings), "CLOCK": Clock(OPEN_TIME),
                       "TWILIO_HTTP_CLIENT": rest})


def flow(app, flow_id: str):
    return app.extensions["callflow"]["registry"].current.flows[flow_id]


def said(body: str) -> list[str]:
    return [e.text or "" for e in ET.fromstring(body).iter("Say")]


def assert_put_through(app, body: str, flow_id: str, dialled: str, *,
                       notice: bool = True) -> ET.Element:
    """A direct <Dial> of the flow's team showing the helpline's number, unrecorded, each leg
    screened; on the degraded path (``notice``) the notice, monitoring sentence included,
    first."""
    helpline = flow(app, flow_id)
    root = ET.fromstring(body)
    heard = said(body)
    if notice:
        assert helpline.notice_text in heard
        assert "monitored occasionally" in helpline.notice_text
    dial = root.find("Dial")
    assert dial is not None, body
    assert root.find(".//Conference") is None
    assert dial.get("callerId") == dialled
    assert dial.get("record") == "do-not-record"
    team = app.extensions["callflow"]["registry"].current.teams[helpline.degraded.team]
    numbers = dial.findall("Number")
    assert [n.text for n in numbers] == [w.number for w in team.active_workers()]
    assert all("/voice/screen" in (n.get("url") or "") for n in numbers)
    return dial


def answered(send) -> str:
    """A webhook's TwiML, which must come with a 200."""
    response = send()
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def test_callers_are_put_through_while_redis_is_down_and_served_normally_when_it_returns(
        private_redis, caplog):
    caplog.set_level(logging.INFO)
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    line = Line(app, TOKEN)

    at_menu = Caller(line, RESPECT)
    at_menu.ring()
    at_menu.send(at_menu.action())  # the notice, heard to its end
    assert ET.fromstring(at_menu.last).find("Gather") is not None
    menu_url = at_menu.action()
    at_notice = Caller(line, MENS_ADVICE)
    at_notice.ring()
    notice_url = at_notice.action()

    private_redis.kill()

    # A caller in the menu needs no store: the state is in the signed URL. Put through by a
    # direct dial of the flow's own connect step, nothing said again.
    body = answered(lambda: at_menu.send(menu_url, Digits="1"))
    assert said(body) == []
    dial = assert_put_through(app, body, "respect-phoneline", RESPECT, notice=False)
    assert "/voice/dial?" in dial.get("action")
    body = answered(lambda: at_notice.send(notice_url))
    assert APOLOGY not in said(body) and ET.fromstring(body).find("Gather") is not None
    arriving = Caller(line, RESPECT)
    body = answered(arriving.ring)
    assert said(body)[0] == flow(app, "respect-phoneline").notice_text
    arriving.send(arriving.action())
    body = answered(lambda: arriving.send(arriving.action(), Digits="1"))
    dial = assert_put_through(app, body, "respect-phoneline", RESPECT, notice=False)

    # The worker's side of the degraded dial needs no store either: screened, then connected.
    number = dial.find("Number")
    worker = {"CallSid": "CA" + "b" * 32, "AccountSid": ACCOUNT_SID, "To": number.text,
              "Called": number.text, "From": RESPECT, "CallStatus": "in-progress",
              "Direction": "outbound-dial", "ApiVersion": "2010-04-01"}
    body = answered(lambda: line.post(number.get("url"), worker))
    gather = ET.fromstring(body).find("Gather")
    assert gather is not None and gather.get("action")
    body = answered(lambda: line.post(gather.get("action"),
                                                    {**worker, "Digits": "1"}))
    assert ET.fromstring(body).find("Hangup") is None
    body = answered(lambda: arriving.send(dial.get("action"),
                                                     DialCallStatus="no-answer"))
    assert ET.fromstring(body).find("Hangup") is not None
    answered(lambda: arriving.send("/voice/status", CallStatus="completed"))
    body = answered(lambda: Caller(line, MENS_ADVICE).send("/voice/fallback"))
    assert_put_through(app, body, "mens-advice-line", MENS_ADVICE)
    assert rest.requests == []

    private_redis.start()  # the same port, empty: what a restarted non-persistent Redis holds

    fresh = Caller(line, RESPECT)
    fresh.ring()
    assert APOLOGY not in said(fresh.last)
    assert flow(app, "respect-phoneline").notice_text in " ".join(said(fresh.last))
    fresh.send(fresh.action())
    fresh.send(fresh.action(), Digits="1")
    dial = ET.fromstring(fresh.last).find("Dial")
    assert dial is not None and "/voice/dial?" in dial.get("action", "")  # the flow's own step
    assert APOLOGY not in said(fresh.last)
    # A caller in the menu lost nothing with the old Redis: their state is in the URL.
    at_menu.send(menu_url, Digits="1")
    assert said(at_menu.last) == []
    assert ET.fromstring(at_menu.last).find("Dial") is not None

    assert_clean(line.text(), log_text(caplog.records), redis_text(private_redis.url),
                 repr(rest.requests))


def test_webhooks_are_answered_by_the_degraded_path_while_redis_hangs(private_redis, caplog):
    """A frozen redis-server accepts connections and never answers: only the client's socket
    timeouts end the wait. Several callers at once, each answered at once: a caller in the menu
    never waits on the store."""
    caplog.set_level(logging.INFO)
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    line = Line(app, TOKEN)
    mid_call = Caller(line, RESPECT)
    mid_call.ring()
    notice_url = mid_call.action()

    private_redis.freeze()
    bodies: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(name: str, send) -> None:
        try:
            bodies[name] = answered(send)
        except BaseException as exc:  # reported below, in the test's own thread
            errors.append(exc)

    calls = {"incoming respect": Caller(line, RESPECT).ring,
             "incoming mens advice": Caller(line, MENS_ADVICE).ring,
             "notice answered": lambda: mid_call.send(notice_url)}
    threads = [threading.Thread(target=run, args=item) for item in calls.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STUCK_SECONDS)
    assert not errors, errors
    assert set(bodies) == set(calls)
    # Callers in the menu never wait on the store: each is answered as if it were up.
    for name, flow_id in (("incoming respect", "respect-phoneline"),
                          ("incoming mens advice", "mens-advice-line")):
        assert said(bodies[name])[0] == flow(app, flow_id).notice_text
        assert ET.fromstring(bodies[name]).find("Gather") is not None
    assert APOLOGY not in said(bodies["notice answered"])
    assert ET.fromstring(bodies["notice answered"]).find("Gather") is not None

    private_redis.thaw()
    fresh = Caller(line, RESPECT)
    wait_for(lambda: APOLOGY not in said(fresh.ring().get_data(as_text=True)), 10,
             "the normal flow once Redis answers again")
    assert rest.requests == []
    assert_clean(line.text(), log_text(caplog.records), redis_text(private_redis.url))


def test_a_hung_redis_fails_a_fresh_command_with_a_timeout(private_redis):
    """The socket timeout, not the server, ends the wait: a TimeoutError, which the service
    turns into the degraded path (how long it takes: bench/outage.py)."""
    import redis

    client = connect(Settings(redis_url=private_redis.url))
    private_redis.freeze()
    with pytest.raises(redis.TimeoutError):
        client.get("anything")
    client.close()
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == TIMEOUT_SECONDS


# -- monitoring while Redis is down: refused, nothing rung --------------------------------------


def signed_in_manager(app, store_url: str):
    """A manager signed in on the web, and a live call connected to a worker that they could
    otherwise ask to listen to."""
    rt = app.extensions["callflow"]["runtime"]
    staff = StaffStore(rt.store, hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                       parallelism=1))
    staff.add("morgan", PASSWORD, "manager")
    staff.set_phone("morgan", MANAGER_PHONE)
    client = app.test_client()
    with client.session_transaction() as session:
        session["csrf"] = "test-csrf"
    response = client.post("/manager/login", data={"username": "morgan", "password": PASSWORD},
                           headers={"X-CSRF-Token": "test-csrf", "Accept": "application/json"})
    assert response.status_code == 200, response.get_data(as_text=True)
    csrf = response.get_json()["csrf_token"]
    now = rt.clock()
    waiting = rt.live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                           helpline_number=RESPECT, caller_sid="CA" + "c" * 32, now=now)
    connected = rt.live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                             helpline_number=RESPECT, caller_sid="CA" + "d" * 32, now=now)
    assert rt.live.accept(connected.id, 0, now)
    rt.live.note(connected.id, conference_sid="CF" + "e" * 32)
    # The plumbing works while Redis is up: this refusal is about the call, not the request.
    refused = client.post(f"/manager/api/calls/{waiting.id}/listen", json={"purpose": "quality"},
                          headers={"X-CSRF-Token": csrf})
    assert refused.status_code == 409, refused.get_data(as_text=True)
    return client, csrf, connected.id


def listen(client, csrf: str, call_id: str):
    return client.post(f"/manager/api/calls/{call_id}/listen", json={"purpose": "quality"},
                       headers={"X-CSRF-Token": csrf})


def test_listening_fails_closed_while_redis_is_down(private_redis, caplog):
    caplog.set_level(logging.INFO)
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    client, csrf, call_id = signed_in_manager(app, private_redis.url)

    private_redis.kill()
    response = listen(client, csrf, call_id)

    assert response.status_code >= 500  # never 202: nothing listened, nothing unaudited
    body = response.get_data(as_text=True)
    assert "Traceback" not in body and "redis" not in body.lower()
    assert rest.requests == []  # no manager's phone rung
    line = Line(app, TOKEN)
    for stage in ("pin", "list", "purpose"):
        answer = Caller(line, MANAGER_LINE).send(f"/voice/manager/{stage}?call={call_id}",
                                                 Digits="1234")
        assert answer.status_code == 200
        assert ET.fromstring(answer.get_data(as_text=True)).find("Hangup") is not None
        assert ET.fromstring(answer.get_data(as_text=True)).find("Dial") is None
    assert rest.requests == []
    assert_clean(body, line.text(), log_text(caplog.records))


def test_the_listen_api_answers_503_while_redis_is_down(private_redis):
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    client, csrf, call_id = signed_in_manager(app, private_redis.url)

    private_redis.kill()
    response = listen(client, csrf, call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == "unavailable"
    assert rest.requests == []


def test_the_manager_line_fails_closed_while_redis_is_down(private_redis):
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    line = Line(app, TOKEN)

    private_redis.kill()
    answer = Caller(line, MANAGER_LINE).ring()

    assert answer.status_code == 200
    root = ET.fromstring(answer.get_data(as_text=True))
    assert root.find("Dial") is None
    assert root.find("Hangup") is not None
    assert said(answer.get_data(as_text=True)) == [
        "Listening to calls is unavailable right now. Goodbye."]
    assert rest.requests == []


@pytest.mark.parametrize("path", VOICE_ENDPOINTS)
def test_every_webhook_answers_while_redis_is_down(private_redis, caplog, path):
    """TwiML for whatever a caller or a worker hears; for Twilio's own callbacks, TwiML or
    the bridge's deliberate 503; never a 500."""
    caplog.set_level(logging.INFO)
    rest = TwilioDouble()
    app = outage_app(private_redis.url, rest)
    rt = app.extensions["callflow"]["runtime"]
    call = rt.live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                        helpline_number=RESPECT, caller_sid="CA" + "c" * 32, now=rt.clock())
    line = Line(app, TOKEN)
    query = urlencode({"flow": "respect-phoneline", "step": "main-menu", "call": call.id,
                       "team": "respect-workers", "leg": "0", "offer": "an-offer",
                       "session": "a-session"})
    private_redis.kill()

    response = Caller(line, RESPECT).send(f"{path}?{query}", Digits="1", CallStatus="completed",
                                          StatusCallbackEvent="participant-leave",
                                          DialCallStatus="no-answer")

    assert response.status_code in (200, 503), response.status_code
    if response.status_code == 200:
        assert ET.fromstring(response.get_data(as_text=True)).tag == "Response"
    assert rest.requests == []
    assert_clean(line.text(), log_text(caplog.records))
