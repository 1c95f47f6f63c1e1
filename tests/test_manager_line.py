"""The manager line: a PIN sign-in with lockout, the live calls read out by helpline, a call
picked by key, a purpose, and the manager's own call joining the room muted, beepless and
unrecorded; all through signed webhooks, as Twilio sends them."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest

from callflow import jobs
from callflow.audit import AuditKind
from callflow.errors import AuditUnavailable
from callflow.lockout import PHONE_LINE
from tests.bridge_support import Caller, raw_dump
from tests.conftest import CANARY_NUMBER, MENS_ADVICE, PUBLIC_URL, assert_no_canary
from tests.monitoring_support import (
    MANAGER,
    OTHER_MANAGER,
    OTHER_PIN,
    PIN,
    LineCall,
    connect,
    connected_caller,
    entries_after,
    last_seq,
    later,
    signed_in,
    waiting_caller,
)

pytest_plugins = ("tests.monitoring_fixtures",)

PIN_PROMPT = "Helplines manager line. Please enter your PIN, then press hash."
PIN_AGAIN = "That PIN was not accepted. Please enter your PIN, then press hash."
PIN_GOODBYE = "That PIN was not accepted. Goodbye."
LOCKED = "Phone sign-in is locked after too many wrong PINs. Please try again later."
PURPOSE_PROMPT = "For quality, press 1. For training, press 2."
NOTHING = "There are no calls you can listen to right now."
# Wrong PINs long enough to be found if they leaked anywhere (and not a straight run).
WRONG_PINS = ("90817263", "81726354", "72635445", "63544536", "54453627")


@pytest.fixture
def line(sim) -> LineCall:
    """The manager rings the manager line and hears the PIN prompt."""
    call = LineCall(sim)
    call.ring()
    return call


def signed_in_line(sim) -> LineCall:
    call = LineCall(sim)
    call.ring()
    call.press(PIN)
    return call


def conference_of(twiml: str) -> ET.Element | None:
    return ET.fromstring(twiml).find("Dial/Conference")


def kinds(entries) -> list[str]:
    return [e.kind for e in entries]


# -- signing in ------------------------------------------------------------------------------


def test_the_line_asks_for_a_pin(line):
    gather = line.gather()

    assert line.heard() == PIN_PROMPT
    assert gather.get("action") == f"{PUBLIC_URL}/voice/manager/pin"
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == ("8", "#")


def test_the_right_pin_signs_in_and_is_audited(line, rt):
    seq = last_seq(rt)

    line.press(PIN)

    [entry] = entries_after(rt, seq, prefix="login")
    assert (entry.kind, entry.actor) == (AuditKind.LOGIN, MANAGER)
    assert entry.data == {"channel": "phone", "call_sid": line.sid}
    assert line.heard() == f"{NOTHING} Press 1 to hear the list again, or hang up."


def test_a_wrong_pin_is_asked_again_and_three_end_the_call(line):
    line.press(WRONG_PINS[0])
    assert line.heard() == PIN_AGAIN
    assert not line.hung_up()
    line.press(WRONG_PINS[1])
    assert line.heard() == PIN_AGAIN

    line.press(WRONG_PINS[2])

    assert line.heard() == PIN_GOODBYE
    assert line.hung_up()


def test_no_pin_at_all_is_a_wrong_pin(line):
    line.turn(line.gather().get("action"))  # the gather timed out: no Digits

    assert line.heard() == PIN_AGAIN


def test_a_disabled_managers_pin_is_not_accepted(line, staff):
    staff.disable(MANAGER, actor="cli:test")

    line.press(PIN)

    assert line.heard() == PIN_AGAIN


def _five_wrong_pins(sim) -> LineCall:
    """Three wrong PINs in one call (which ends it) and two in the next: five in all."""
    first = LineCall(sim)
    first.ring()
    for pin in WRONG_PINS[:3]:
        first.press(pin)
    assert first.hung_up()
    second = LineCall(sim)
    second.ring()
    for pin in WRONG_PINS[3:]:
        second.press(pin)
    return second


def test_five_wrong_pins_lock_the_line_which_says_so_and_hangs_up(sim, rt):
    seq = last_seq(rt)
    second = _five_wrong_pins(sim)

    # The fifth wrong PIN is the one that locks the line: it says so and hangs up.
    assert second.heard() == LOCKED
    assert second.hung_up()
    for pin in (PIN, OTHER_PIN):  # a new call, any manager's PIN: still locked
        third = LineCall(sim)
        third.ring()
        third.press(pin)
        assert third.heard() == LOCKED
        assert third.hung_up()
    entries = [e for e in rt.audit.entries() if e.seq > seq]
    failures = [e for e in entries if e.kind == AuditKind.LOGIN_FAILED]
    assert [e.data["reason"] for e in failures] == ["bad_credentials"] * 5 + ["locked_out"] * 2
    assert {e.data["channel"] for e in failures} == {"phone"}
    [lockout] = [e for e in entries if e.kind == AuditKind.LOCKOUT]
    # Audited with the failure that caused it (the fifth, on the second call), by its scope;
    # a phone-line lockout names no account, and no combined "subject" string is kept.
    assert entries.index(lockout) == entries.index(failures[4]) + 1
    assert lockout.actor == failures[4].actor
    assert lockout.data == {"scope": PHONE_LINE, "seconds": 15 * 60, "channel": "phone",
                            "call_sid": second.sid}
    assert AuditKind.LOGIN not in kinds(entries)


def test_the_wrong_pin_that_locks_the_line_says_so_and_hangs_up(sim):
    second = _five_wrong_pins(sim)

    assert second.heard() == LOCKED
    assert second.hung_up()


def test_pins_are_never_kept_logged_or_audited(sim, rt, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    _five_wrong_pins(sim)

    texts = [e.to_json() for e in rt.audit.entries()]
    texts += [r.getMessage() + " " + str(vars(r)) for r in caplog.records]
    texts.append(raw_dump(redis_url))
    for pin in WRONG_PINS:
        assert not any(pin in text for text in texts), f"PIN {pin} was kept"


def test_the_line_refuses_unsigned_requests(monitor_app):
    client = monitor_app.test_client()

    for stage in ("pin", "list", "purpose"):
        response = client.post(f"/voice/manager/{stage}", data={"CallSid": "CA" + "1" * 32,
                                                                "Digits": PIN})
        assert response.status_code == 403


@pytest.mark.parametrize("url", ["/voice/manager/list", "/voice/manager/purpose?call=whatever"])
def test_choosing_without_signing_in_is_refused(sim, rest, url):
    connected_caller(sim, rest)
    call = LineCall(sim)
    call.ring()

    call.turn(url, Digits="1")

    assert call.heard() == "Please sign in again. Goodbye."
    assert call.hung_up()


# -- the list and the listen ---------------------------------------------------------------------


@pytest.mark.parametrize(("minutes", "said"), [(0, "connected 0 minutes"),
                                               (1, "connected 1 minute"),
                                               (4, "connected 4 minutes")])
def test_live_calls_are_read_out_by_helpline(sim, rest, clock, minutes, said):
    connected_caller(sim, rest)
    later(clock, minutes=minutes)

    line = signed_in_line(sim)

    assert line.heard() == f"Respect Phoneline, call 1, {said}: press 1."
    assert line.gather().get("action") == f"{PUBLIC_URL}/voice/manager/list"


def test_only_calls_a_manager_may_listen_to_are_read_out(monitor_app, sim, rest, clock):
    waiting_caller(sim, rest)
    connected_caller(sim, rest, declined=True)
    taken = connected_caller(sim, rest)
    signed_in(monitor_app, OTHER_MANAGER).listen(taken.call_id)
    mal = connect(waiting_caller(sim, rest, to=MENS_ADVICE))
    later(clock, minutes=2)

    line = signed_in_line(sim)

    assert line.heard() == "Men's Advice Line, call 1, connected 2 minutes: press 1."
    line.press("1")
    assert line.gather().get("action").endswith(f"/voice/manager/purpose?call={mal.call_id}")


def test_with_no_call_to_hear_the_list_can_be_heard_again(sim, rest):
    line = signed_in_line(sim)
    assert NOTHING in line.heard()

    connected_caller(sim, rest)
    line.press("1")

    assert line.heard().startswith("Respect Phoneline, call 1, connected 0 minutes")


def test_a_phone_listen_joins_the_managers_own_call_to_the_room(sim, rest, rt, clock):
    call = connected_caller(sim, rest)
    later(clock, minutes=4)
    seq = last_seq(rt)
    rest_before = len(rest.sent)
    line = LineCall(sim)
    line.ring()

    line.press(PIN)
    assert line.heard() == "Respect Phoneline, call 1, connected 4 minutes: press 1."
    line.press("1")
    assert line.heard() == PURPOSE_PROMPT
    joined = line.press("2")

    assert line.heard() == "You are listening, muted. Hang up to stop."
    dial = ET.fromstring(joined).find("Dial")
    room = dial.find("Conference")
    assert room.text == f"room-{call.call_id}"
    assert room.attrib == {
        "muted": "true", "beep": "false", "record": "do-not-record",
        "startConferenceOnEnter": "false", "endConferenceOnExit": "false",
        "statusCallback": f"{PUBLIC_URL}/voice/conference?call={call.call_id}",
        "statusCallbackMethod": "POST", "statusCallbackEvent": "start end join leave mute"}
    assert dial.get("record") in (None, "do-not-record")
    assert rest.sent[rest_before:] == []  # the manager's own call joins: nothing is rung

    call.conference("participant-join", line.sid)
    call.conference("participant-leave", line.sid)

    entries = entries_after(rt, seq)
    session = entries[0].data["session"]
    asked = {"call": call.call_id, "channel": "phone", "purpose": "training",
             "session": session, "device": "manager line"}
    assert [(e.kind, e.actor, e.data) for e in entries] == [
        ("monitor_requested", MANAGER, asked),
        ("monitor_granted", MANAGER, asked),
        ("monitor_started", MANAGER, {"call": call.call_id, "session": session,
                                      "device": "manager line"}),
        ("monitor_ended", MANAGER, {"call": call.call_id, "session": session,
                                    "reason": "left", "device": "manager line"})]
    assert rt.audit.verify().ok


def test_a_key_that_is_not_a_purpose_asks_again(sim, rest):
    connected_caller(sim, rest)
    line = signed_in_line(sim)
    line.press("1")

    line.press("3")

    assert line.heard() == ("Calls may be listened to for quality or training only. "
                            f"{PURPOSE_PROMPT}")
    assert conference_of(line.last) is None


def test_a_key_that_is_not_on_the_list_reads_the_list_again(sim, rest):
    connected_caller(sim, rest)
    line = signed_in_line(sim)

    line.press("7")

    assert line.heard().startswith("Respect Phoneline, call 1")


def test_a_refusal_is_spoken_and_the_list_read_again(monitor_app, sim, rest, rt, clock):
    first = connected_caller(sim, rest)
    later(clock, seconds=1)
    second = connected_caller(sim, rest)
    line = signed_in_line(sim)
    line.press("1")
    assert line.gather().get("action").endswith(f"call={first.call_id}")
    signed_in(monitor_app, OTHER_MANAGER).listen(first.call_id)  # got there first
    seq = last_seq(rt)

    line.press("1")

    assert line.heard() == ("Someone is already listening to that call. "
                            "Respect Phoneline, call 1, connected 0 minutes: press 1.")
    assert conference_of(line.last) is None
    [entry] = entries_after(rt, seq)
    assert (entry.kind, entry.data["reason"], entry.data["channel"]) == (
        "monitor_refused", "call_already_monitored", "phone")
    line.press("1")
    assert line.gather().get("action").endswith(f"call={second.call_id}")


def test_a_manager_disabled_during_the_call_is_refused(sim, rest, rt, staff):
    connected_caller(sim, rest)
    line = signed_in_line(sim)
    line.press("1")
    staff.disable(MANAGER, actor="cli:test")
    seq = last_seq(rt)

    line.press("1")

    assert line.heard().startswith("This account is disabled.")
    assert conference_of(line.last) is None
    assert entries_after(rt, seq)[0].data["reason"] == "account_disabled"


def test_phone_and_web_listens_share_the_days_limit(monitor_app, sim, rest):
    call = connected_caller(sim, rest)
    web = signed_in(monitor_app, MANAGER)
    for _ in range(4):
        web.stop(web.listen(call.call_id).get_json()["session"])
    line = signed_in_line(sim)
    line.press("1")

    line.press("1")

    assert line.heard().startswith("You have listened to 4 calls today; the limit is 4.")
    assert conference_of(line.last) is None


def test_no_audit_write_no_listen_by_phone(sim, rest, rt, monkeypatch):
    connected_caller(sim, rest)
    line = signed_in_line(sim)
    line.press("1")

    def down(*args, **kwargs):
        raise AuditUnavailable("the audit log could not be written: test")

    monkeypatch.setattr(rt.audit, "append", down)
    line.press("1")

    assert line.heard().startswith("The audit log cannot be written, so listening is refused.")
    assert conference_of(line.last) is None


def test_no_audit_write_no_phone_sign_in(sim, staff, monkeypatch):
    def down(*args, **kwargs):
        raise AuditUnavailable("the audit log could not be written: test")

    monkeypatch.setattr(staff, "audit", down)
    line = LineCall(sim)
    line.ring()

    line.press(PIN)

    assert line.heard() == "Listening to calls is unavailable right now. Goodbye."
    assert line.hung_up()


def _phone_session(sim, rest, rt) -> tuple[Caller, LineCall, str]:
    call = connected_caller(sim, rest)
    line = signed_in_line(sim)
    line.press("1")
    line.press("1")
    call.conference("participant-join", line.sid)
    session = rt.audit.entries(kind=AuditKind.MONITOR_GRANTED)[-1].data["session"]
    return call, line, session


def _stop_on_the_web(monitor_app, clock, rt, session) -> None:
    response = signed_in(monitor_app, MANAGER).stop(session)
    assert response.status_code == 200


def _closed_by_timer(monitor_app, clock, rt, session) -> None:
    later(clock, minutes=rt.settings.monitor_max_minutes + 1)
    assert jobs.close_stale_monitoring() == 1


@pytest.mark.parametrize("end", [_stop_on_the_web, _closed_by_timer],
                         ids=["stopped-on-the-web", "closed-by-timer"])
def test_ending_a_phone_listen_ends_the_managers_call(monitor_app, sim, rest, rt, clock, end):
    _call, line, session = _phone_session(sim, rest, rt)
    before = len(rest.sent)

    end(monitor_app, clock, rt, session)

    # The manager's own call is hung up through the REST API, once, as a web leg would be.
    assert [s.sid for s in rest.sent[before:] if s.kind == "hang_up"] == [line.sid]
    assert [s.sid for s in rest.sent[before:] if s.kind == "redirect"] == []
    [ended] = rt.audit.entries(kind=AuditKind.MONITOR_ENDED)
    assert ended.data["session"] == session


def test_the_canary_caller_is_nowhere_on_the_manager_line(sim, rest, rt, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    call, line, _session = _phone_session(sim, rest, rt)
    call.conference("participant-leave", line.sid)
    call.conference("conference-end")

    assert CANARY_NUMBER not in " ".join(sim.responses)
    assert_no_canary(*[e.to_json() for e in rt.audit.entries()], *sim.responses,
                     *[r.getMessage() + " " + str(vars(r)) for r in caplog.records],
                     raw_dump(redis_url))



@pytest.mark.parametrize("key", ["²", "١"])
def test_a_key_that_is_a_digit_only_to_unicode_reads_the_list_again(sim, rest, key):
    """'²' and '١' are digits to ``str.isdigit`` but not keys on a phone: a wrong choice, not
    a 500."""
    connected_caller(sim, rest)
    line = signed_in_line(sim)
    listed = line.heard()
    line.press(key)
    assert line.heard() == listed
