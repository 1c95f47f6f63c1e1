"""The manager line: a staff number and a PIN, failures counted per account and slowed down by a
growing pause (never one lock for everyone), the live calls read out by helpline, a call picked
by key, a purpose, and the manager's own call joining the room muted, beepless and unrecorded;
all through signed webhooks, as Twilio sends them."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

import pytest

from callflow.jobs import tasks as jobs
from callflow.platform.errors import AuditUnavailable
from callflow.records.audit import AuditKind
from tests.bridge_support import Caller, raw_dump
from tests.conftest import CANARY_NUMBER, MENS_ADVICE, PUBLIC_URL, assert_no_canary
from tests.monitoring_support import (
    MANAGER,
    MANAGER_NUMBER,
    OTHER_MANAGER,
    OTHER_NUMBER,
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

STAFF_PROMPT = "Helplines manager line. Please enter your staff number, then press hash."
STAFF_AGAIN = "Please enter your staff number, then press hash."
PIN_PROMPT = "Please enter your PIN, then press hash."
NOT_ACCEPTED = "That staff number and PIN were not accepted."
GOODBYE = "That staff number and PIN were not accepted. Goodbye."
PURPOSE_PROMPT = "For quality, press 1. For training, press 2."
NOTHING = "There are no calls you can listen to right now."
# Wrong PINs long enough to be found if they leaked anywhere (and not a straight run).
WRONG_PINS = ("90817263", "81726354", "72635445", "63544536", "54453627", "45362718",
              "36271809", "27180936")


@pytest.fixture
def line(sim) -> LineCall:
    """The manager rings the manager line and hears the staff number prompt."""
    call = LineCall(sim)
    call.ring()
    return call


def signed_in_line(sim, number: str = MANAGER_NUMBER, pin: str = PIN) -> LineCall:
    call = LineCall(sim)
    call.ring()
    call.sign_in(number, pin)
    return call


def conference_of(twiml: str) -> ET.Element | None:
    return ET.fromstring(twiml).find("Dial/Conference")


def kinds(entries) -> list[str]:
    return [e.kind for e in entries]


def pause_of(twiml: str) -> int:
    """The seconds the line waits before asking again (0 if it does not)."""
    pause = ET.fromstring(twiml).find("Pause")
    return int(pause.get("length")) if pause is not None else 0


# -- signing in ------------------------------------------------------------------------------


def test_the_line_asks_for_a_staff_number_then_a_pin(line):
    gather = line.gather()
    assert line.heard() == STAFF_PROMPT
    assert gather.get("action") == f"{PUBLIC_URL}/voice/manager/staff"
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == ("6", "#")

    line.press(MANAGER_NUMBER)

    assert line.heard() == PIN_PROMPT
    assert line.gather().get("action") == f"{PUBLIC_URL}/voice/manager/pin"
    assert (line.gather().get("numDigits"), line.gather().get("finishOnKey")) == ("12", "#")


def test_the_right_staff_number_and_pin_sign_in_and_are_audited(line, rt):
    seq = last_seq(rt)

    line.sign_in(MANAGER_NUMBER, PIN)

    [entry] = entries_after(rt, seq, prefix="login")
    assert (entry.kind, entry.actor) == (AuditKind.LOGIN, MANAGER)
    assert entry.data == {"channel": "phone", "line": "manager-line", "call_sid": line.sid}
    assert line.heard() == f"{NOTHING} Press 1 to hear the list again, or hang up."


def test_a_pin_is_checked_against_the_staff_numbers_account_only(line):
    line.sign_in(OTHER_NUMBER, PIN)  # maria's PIN, martin's number

    assert line.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"


def test_a_wrong_pin_is_asked_again_after_a_pause_and_three_end_the_call(line, clock):
    line.sign_in(MANAGER_NUMBER, WRONG_PINS[0])
    assert line.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
    assert not line.hung_up()
    first = pause_of(line.last)
    assert first >= 1
    later(clock, seconds=first)  # Twilio plays the pause, then asks again
    line.sign_in(MANAGER_NUMBER, WRONG_PINS[1])
    assert pause_of(line.last) > first  # a growing pause

    line.sign_in(MANAGER_NUMBER, WRONG_PINS[2])

    assert line.heard() == GOODBYE
    assert line.hung_up()


@pytest.mark.parametrize("number", ["", "12", "9999", "1234567", CANARY_NUMBER[1:]])
def test_an_unknown_or_malformed_staff_number_is_told_nothing_more(line, number, redis_url):
    line.sign_in(number, PIN)

    assert line.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
    # A phone number typed in place of a staff number is never kept.
    assert_no_canary(raw_dump(redis_url))


def test_no_pin_at_all_is_a_wrong_pin(line):
    line.press(MANAGER_NUMBER)
    line.turn(line.gather().get("action"))  # the gather timed out: no Digits

    assert line.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"


def test_a_disabled_managers_pin_is_not_accepted(line, staff):
    staff.disable(MANAGER, actor="cli:test")

    line.sign_in(MANAGER_NUMBER, PIN)

    assert line.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"


def _guess(sim, number: str, pins) -> LineCall:
    """Wrong PINs at one staff number, three to a call, ignoring the line's pauses (a caller
    who hangs up and rings again at once)."""
    call = None
    for index, pin in enumerate(pins):
        if index % 3 == 0:
            call = LineCall(sim)
            call.ring()
        call.sign_in(number, pin)
    return call


def test_guessing_at_one_account_never_locks_out_another_manager(sim, rt):
    """The attack: wrong PINs from any caller used to lock phone monitoring for every manager
    at once (two calls every 15 minutes kept it shut)."""
    _guess(sim, OTHER_NUMBER, WRONG_PINS)

    line = signed_in_line(sim, MANAGER_NUMBER, PIN)

    assert line.heard().startswith(NOTHING)
    assert rt.audit.entries(kind=AuditKind.LOGIN)[-1].actor == MANAGER


def test_while_an_account_is_paused_its_pins_are_not_even_checked(sim, rt, clock, staff,
                                                                   monkeypatch):
    """Redialling in parallel buys no guesses: until the pause is over, an attempt at that
    staff number is refused without its PIN being checked, the right PIN included."""
    _guess(sim, MANAGER_NUMBER, WRONG_PINS[:4])
    checked = []
    verify = staff.verify  # every PIN and password check goes through it
    monkeypatch.setattr(staff, "verify", lambda *args: checked.append(1) or verify(*args))

    during = signed_in_line(sim, MANAGER_NUMBER, PIN)

    assert during.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
    assert checked == []
    later(clock, seconds=pause_of(during.last))
    during.sign_in(MANAGER_NUMBER, PIN)
    assert during.heard().startswith(NOTHING)
    assert checked


def test_the_pause_grows_with_each_failure_up_to_a_limit(sim, clock):
    pauses = []
    for pin in WRONG_PINS + WRONG_PINS:
        call = LineCall(sim)
        call.ring()
        call.sign_in(OTHER_NUMBER, pin)
        if call.hung_up():  # paused for longer than a call should wait in silence
            assert "Please try again in" in call.heard()
            pauses.append(None)
            break
        pauses.append(pause_of(call.last))
        later(clock, seconds=pause_of(call.last))
    waits = [p for p in pauses if p is not None]
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert pauses[-1] is None  # and then the line says how long, rather than holding the call


def test_every_failure_is_audited_from_the_first(sim, rt):
    seq = last_seq(rt)

    call = LineCall(sim)
    call.ring()
    call.sign_in(MANAGER_NUMBER, WRONG_PINS[0])

    [failure] = entries_after(rt, seq, prefix="login")
    assert (failure.kind, failure.actor) == (AuditKind.LOGIN_FAILED, MANAGER)
    assert failure.data == {"reason": "bad_credentials", "channel": "phone",
                            "line": "manager-line", "call_sid": call.sid,
                            "staff_number": MANAGER_NUMBER, "failures": 1,
                            "pause_seconds": pause_of(call.last)}


def test_attempts_refused_unchecked_are_audited_once_per_window_with_a_count(sim, rt, clock):
    _guess(sim, OTHER_NUMBER, WRONG_PINS[:1])
    seq = last_seq(rt)
    for _ in range(5):  # all during the pause
        signed_in_line(sim, OTHER_NUMBER, OTHER_PIN)
    assert entries_after(rt, seq, prefix="login") == []

    later(clock, minutes=16)
    jobs.audit_refused_sign_ins()
    jobs.audit_refused_sign_ins()

    [entry] = entries_after(rt, seq, prefix="login")
    assert (entry.kind, entry.actor) == (AuditKind.LOGIN_THROTTLED, OTHER_MANAGER)
    assert entry.data["count"] == 5
    assert (entry.data["scope"], entry.data["channel"]) == ("staff-number", "phone")


def test_pins_and_staff_numbers_typed_are_never_logged_or_kept(sim, rt, redis_url, caplog):
    caplog.set_level(logging.DEBUG)
    _guess(sim, MANAGER_NUMBER, WRONG_PINS[:5])

    texts = [e.to_json() for e in rt.audit.entries()]
    texts += [r.getMessage() + " " + str(vars(r)) for r in caplog.records]
    texts.append(raw_dump(redis_url))
    for pin in WRONG_PINS[:5]:
        assert not any(pin in text for text in texts), f"PIN {pin} was kept"


def test_the_line_refuses_unsigned_requests(monitor_app):
    client = monitor_app.test_client()

    for stage in ("staff", "pin", "list", "purpose"):
        response = client.post(f"/voice/manager/{stage}", data={"CallSid": "CA" + "1" * 32,
                                                                "Digits": PIN})
        assert response.status_code == 403


@pytest.mark.parametrize("url", ["/voice/manager/list", "/voice/manager/purpose?call=whatever",
                                 "/voice/manager/pin"])
def test_choosing_without_signing_in_is_refused(sim, rest, url):
    connected_caller(sim, rest)
    call = LineCall(sim)
    call.ring()

    call.turn(url, Digits="1")

    if url.endswith("/pin"):  # a PIN with no staff number before it
        assert call.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
        return
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
    connected_caller(sim, rest, declined=True)
    taken = connected_caller(sim, rest)
    # Last: a caller already waiting would be the one the next worker to accept is given.
    waiting_caller(sim, rest)  # both Respect workers are on a call: this caller waits
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

    line.sign_in(MANAGER_NUMBER, PIN)
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

    line.sign_in(MANAGER_NUMBER, PIN)

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
