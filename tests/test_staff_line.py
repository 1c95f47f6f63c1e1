"""The staff line: a worker's staff number and PIN (the manager line's sign-in, with its
lockout), then 1 to start a shift or 2 to end it; all through signed webhooks, as Twilio sends
them, with the worker's shift and the audit log checked after each."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET

import pytest

from callflow.platform import keys
from callflow.platform.errors import ConfigError
from callflow.platform.jobspec import Job
from callflow.records.audit import AuditKind
from callflow.staff.accounts import Role
from callflow.staff.shifts import WorkerState
from tests.bridge_support import raw_dump
from tests.conftest import CANARY_FIELDS, PUBLIC_URL, RESPECT, assert_no_canary, store_dump
from tests.monitoring_support import CHEAP_HASHER, PASSWORD, later
from tests.test_shift_desk import ring
from webhooks import create_app
from webhooks.simulator import ACCOUNT_SID, TwilioSim, new_call_sid

STAFF_LINE = "+441632960004"
DAN_PHONE = "+447700900201"  # the phone Dan rings from: the roster's own number for him
PIN = "482915"
WRONG_PINS = ("90817263", "81726354", "72635445", "63544536")
WELCOME = "Helpline staff line. Please enter your staff number, then press hash."
STAFF_AGAIN = "Please enter your staff number, then press hash."
PIN_PROMPT = "Please enter your PIN, then press hash."
NOT_ACCEPTED = "That staff number and PIN were not accepted."
CHOICE = "To start your shift, press 1. To end it, press 2."


@pytest.fixture
def app(settings, redis, clock):
    settings = dataclasses.replace(settings, staff_line_numbers=f" {STAFF_LINE} ")
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True})
    app.extensions["callflow"]["staff"].hasher = CHEAP_HASHER
    return app


@pytest.fixture
def staff(app):
    return app.extensions["callflow"]["staff"]


@pytest.fixture
def dan(staff) -> str:
    """Dan's worker account and PIN; returns his staff number."""
    staff.add("dan", PASSWORD, Role.WORKER, actor="cli:test")
    return staff.set_pin("dan", PIN, actor="cli:test").staff_number


@pytest.fixture
def rt(app):
    return app.extensions["callflow"]["runtime"]


@pytest.fixture
def ran(monkeypatch) -> list[tuple[str, tuple]]:
    """The waiting line's jobs run (at once, as SYNC_JOBS runs them): by name and args."""
    from callflow.jobs import tasks

    calls: list[tuple[str, tuple]] = []
    for job in (Job.DISPATCH, Job.WITHDRAW_OFFER):
        monkeypatch.setattr(tasks, job.value,
                            lambda *args, _name=job.value: calls.append((_name, args)))
    return calls


class StaffCall:
    """A call to the staff line from a worker's phone, webhook by webhook."""

    def __init__(self, sim: TwilioSim, to: str = STAFF_LINE) -> None:
        self.sim, self.sid, self.last = sim, new_call_sid(), ""
        self.fields = {"CallSid": self.sid, "AccountSid": ACCOUNT_SID, "From": DAN_PHONE,
                       "Caller": DAN_PHONE, "To": to, "Called": to,
                       "CallStatus": "in-progress", "Direction": "inbound",
                       "ApiVersion": "2010-04-01"}

    def turn(self, url: str, **extra: str) -> str:
        response = self.sim.post(url, {**self.fields, **extra})
        assert response.status_code == 200, (url, response.status_code)
        self.last = response.get_data(as_text=True)
        return self.last

    def ring(self) -> StaffCall:
        self.turn("/voice/staff/incoming")
        return self

    def gather(self) -> ET.Element:
        gather = ET.fromstring(self.last).find("Gather")
        assert gather is not None, f"nothing to answer in {self.last}"
        return gather

    def press(self, digits: str) -> str:
        return self.turn(self.gather().get("action"), Digits=digits)

    def sign_in(self, staff_number: str, pin: str = PIN) -> str:
        self.press(staff_number)
        return self.press(pin)

    def heard(self) -> str:
        return " ".join(e.text or "" for e in ET.fromstring(self.last).iter("Say"))

    def hung_up(self) -> bool:
        return ET.fromstring(self.last).find("Hangup") is not None


@pytest.fixture
def sim(app) -> TwilioSim:
    return TwilioSim(app, extra_fields=CANARY_FIELDS)


def shift_entries(rt) -> list[tuple[str, str, dict]]:
    return [(e.kind, e.actor, e.data) for e in rt.audit.entries()
            if e.kind in (AuditKind.SHIFT_STARTED, AuditKind.SHIFT_ENDED)]


# -- starting and ending a shift -------------------------------------------------------------

def test_the_line_asks_for_a_staff_number_then_a_pin(sim, dan):
    call = StaffCall(sim).ring()
    assert call.heard() == WELCOME
    gather = call.gather()
    assert gather.get("action") == f"{PUBLIC_URL}/voice/staff/staff"
    assert (gather.get("numDigits"), gather.get("finishOnKey")) == ("6", "#")
    call.press(dan)
    assert call.heard() == PIN_PROMPT
    assert call.gather().get("action") == f"{PUBLIC_URL}/voice/staff/pin"


def test_a_worker_starts_and_ends_their_shift_by_phone(sim, dan, rt, ran):
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    assert call.heard() == f"You are off shift. {CHOICE}"
    assert call.gather().get("action") == f"{PUBLIC_URL}/voice/staff/choice"
    call.press("1")
    assert call.heard() == "Your shift has started. Goodbye." and call.hung_up()
    assert rt.shifts.status("Dan").state is WorkerState.AVAILABLE
    assert ran == [("dispatch", ("mal-workers",))]

    again = StaffCall(sim).ring()
    again.sign_in(dan)
    assert again.heard() == f"You are on shift. {CHOICE}"
    again.press("2")
    assert again.heard() == "Your shift has ended. Goodbye."
    assert rt.shifts.status("Dan").state is WorkerState.OFF
    assert shift_entries(rt) == [
        ("shift_started", "dan", {"worker": "Dan", "channel": "phone"}),
        ("shift_ended", "dan", {"worker": "Dan", "channel": "phone", "was": "available"})]
    logins = [e for e in rt.audit.entries(kind=AuditKind.LOGIN)]
    assert [(e.actor, e.data["line"]) for e in logins] == [("dan", "staff-line")] * 2


def test_ending_while_rung_withdraws_the_offer(sim, dan, rt, ran):
    rt.shifts.start("Dan")
    ring(rt.shifts, "Dan", "mal-workers")
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    call.press("2")
    assert ran == [("withdraw_offer", ("Dan",))]
    assert rt.shifts.status("Dan").state is WorkerState.OFF


def test_starting_twice_and_ending_when_off_change_nothing(sim, dan, rt, ran):
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    call.press("2")
    assert call.heard() == "You were not on shift. Goodbye."
    rt.shifts.start("Dan")
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    call.press("1")
    assert call.heard() == "You were already on shift. Goodbye."
    assert shift_entries(rt) == [] and ran == []


@pytest.mark.parametrize("keys_pressed", [["", "9", "12"], ["*", "0", "3"]])
def test_unknown_keys_ask_again_then_change_nothing(sim, dan, rt, keys_pressed):
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    for key in keys_pressed[:-1]:
        call.press(key)
        assert call.heard() == CHOICE and not call.hung_up()
    call.press(keys_pressed[-1])
    assert call.heard() == "Nothing was changed. Goodbye." and call.hung_up()
    assert rt.shifts.status("Dan").state is WorkerState.OFF
    assert shift_entries(rt) == []


def test_a_choice_without_signing_in_is_refused(sim, rt):
    call = StaffCall(sim)
    call.turn("/voice/staff/choice", Digits="1")
    assert call.heard() == "Please sign in again. Goodbye."
    assert shift_entries(rt) == []


def test_an_inactive_worker_cannot_start(sim, staff, rt):
    staff.add("chris", PASSWORD, Role.WORKER, actor="cli:test")
    number = staff.set_pin("chris", PIN, actor="cli:test").staff_number
    call = StaffCall(sim).ring()
    call.sign_in(number)
    call.press("1")
    assert "not active on any team" in call.heard() and call.hung_up()
    assert rt.shifts.status("Chris").state is WorkerState.OFF


def test_a_worker_account_not_on_the_roster_is_told_so(sim, staff, rt):
    staff.add("zed", PASSWORD, Role.WORKER, actor="cli:test")
    number = staff.set_pin("zed", PIN, actor="cli:test").staff_number
    call = StaffCall(sim).ring()
    call.sign_in(number)
    assert call.heard() == ("Your account is not on the team roster, so it has no shift. "
                            "Please ask an admin. Goodbye.")
    assert shift_entries(rt) == []


# -- signing in: the manager line's rules ------------------------------------------------------

def test_a_manager_cannot_sign_in_on_the_staff_line(sim, staff, rt):
    staff.add("maria", PASSWORD, Role.MANAGER, actor="cli:test")
    number = staff.set_pin("maria", PIN, actor="cli:test").staff_number
    call = StaffCall(sim).ring()
    call.sign_in(number)
    assert call.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
    [refused] = rt.audit.entries(kind=AuditKind.LOGIN_FAILED)
    assert refused.actor == "unknown" and refused.data["line"] == "staff-line"


def test_a_worker_cannot_sign_in_on_the_manager_line(sim, dan, rt):
    call = StaffCall(sim, to="+441632960009")  # the manager line
    call.turn("/voice/incoming")
    call.sign_in(dan)
    assert call.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"


def test_wrong_pins_pause_longer_each_time_and_three_end_the_call(sim, dan, rt, clock):
    call = StaffCall(sim).ring()
    call.sign_in(dan, WRONG_PINS[0])
    assert call.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}" and not call.hung_up()
    first = int(ET.fromstring(call.last).find("Pause").get("length"))
    later(clock, seconds=first)
    call.sign_in(dan, WRONG_PINS[1])
    second = int(ET.fromstring(call.last).find("Pause").get("length"))
    assert second > first
    later(clock, seconds=second)
    call.sign_in(dan, WRONG_PINS[2])
    assert call.heard() == f"{NOT_ACCEPTED} Goodbye." and call.hung_up()
    failed = rt.audit.entries(kind=AuditKind.LOGIN_FAILED)
    assert [e.data["failures"] for e in failed] == [1, 2, 3]
    assert {e.data["line"] for e in failed} == {"staff-line"}
    assert rt.shifts.status("Dan").state is WorkerState.OFF
    dump = store_dump(rt.store)
    for pin in WRONG_PINS[:3]:
        assert pin not in dump and pin not in " ".join(e.to_json() for e in failed)


def test_during_the_wait_even_the_right_pin_is_refused_unchecked(sim, dan, rt):
    call = StaffCall(sim).ring()
    call.sign_in(dan, WRONG_PINS[0])
    other = StaffCall(sim).ring()  # a second call at once: no guess is bought by redialling
    other.sign_in(dan)
    assert other.heard() == f"{NOT_ACCEPTED} {STAFF_AGAIN}"
    assert rt.shifts.status("Dan").state is WorkerState.OFF


def test_failures_on_the_manager_line_count_on_the_staff_line(sim, dan, rt, clock):
    """One staff number, one count: switching lines buys no guesses."""
    manager_call = StaffCall(sim, to="+441632960009")
    manager_call.turn("/voice/incoming")
    manager_call.sign_in(dan, WRONG_PINS[0])
    first = int(ET.fromstring(manager_call.last).find("Pause").get("length"))
    later(clock, seconds=first)
    call = StaffCall(sim).ring()
    call.sign_in(dan, WRONG_PINS[1])
    assert int(ET.fromstring(call.last).find("Pause").get("length")) > first


# -- what the line keeps and never keeps -------------------------------------------------------

def test_no_caller_data_and_no_pin_anywhere(sim, dan, rt, redis_url):
    call = StaffCall(sim).ring()
    call.sign_in(dan)
    call.press("1")
    dump = raw_dump(redis_url)  # RQ's job payloads too
    assert PIN not in dump
    assert_no_canary(dump, *sim.responses, *(e.to_json() for e in rt.audit.entries()))
    assert rt.store.ttl(keys.staff_line_call(call.sid)) > 0


def test_a_helpline_number_sent_here_goes_to_the_helpline(sim, rt):
    call = StaffCall(sim, to=RESPECT)
    call.ring()
    redirect = ET.fromstring(call.last).find("Redirect")
    assert redirect is not None and redirect.text == f"{PUBLIC_URL}/voice/incoming"
    assert call.heard() == ""


def test_an_unsigned_request_is_refused(app):
    response = app.test_client().post("/voice/staff/incoming", data={"CallSid": "CA1"})
    assert response.status_code == 403


def test_the_line_fails_closed_when_the_store_is_down(sim, dan, rt, monkeypatch):
    import redis as redis_lib

    def down(*args, **kwargs):
        raise redis_lib.ConnectionError("down")

    monkeypatch.setattr(rt.store, "pipeline", down)
    call = StaffCall(sim)
    call.turn("/voice/staff/incoming")
    assert "unavailable right now" in call.heard() and call.hung_up()


def test_a_malformed_staff_line_number_stops_the_app_starting(settings, redis, clock):
    bad = dataclasses.replace(settings, staff_line_numbers="+441632960004,01632 960005")
    with pytest.raises(ConfigError, match="CALLFLOW_STAFF_LINE_NUMBERS"):
        create_app({"TESTING": True, "SETTINGS": bad, "STORE": redis, "CLOCK": clock})


def test_the_staff_line_is_answered_at_the_helplines_own_incoming_url(sim):
    """Every number the service answers points at /voice/incoming (``twilio sync`` sets them
    so): the staff line's is told apart by the number dialled, before any flow runs."""
    call = StaffCall(sim)
    direct = call.turn("/voice/staff/incoming")

    assert call.turn("/voice/incoming") == direct
    assert call.gather() is not None  # asked for the staff number, not a helpline's notice


def test_a_helplines_number_listed_for_the_staff_line_still_reaches_the_helpline(
        settings, redis, clock):
    """A careless setting must never loop a caller between the staff line and the helpline:
    the helpline's own number answers its callers with the helpline."""
    mistaken = dataclasses.replace(settings, staff_line_numbers=RESPECT)
    app = create_app({"TESTING": True, "SETTINGS": mistaken, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True})
    call = StaffCall(TwilioSim(app, extra_fields=CANARY_FIELDS), to=RESPECT)

    body = call.turn("/voice/incoming")

    assert ET.fromstring(body).find("Redirect") is None
    assert "This call is confidential" in body  # the helpline's notice


# -- a worker's PIN, and the doctor ------------------------------------------------------------

def test_a_workers_pin_is_for_the_staff_line_not_for_listening(staff, dan):
    member = staff.get("dan")
    assert member.has_pin and not member.phone_monitoring and not member.may_listen


@pytest.mark.parametrize("numbers, status, words", [
    (STAFF_LINE, "ok", "answered at /voice/incoming"),
    (f"{STAFF_LINE},{RESPECT}", "FAIL", f"{RESPECT} is flow respect-phoneline's"),
    ("+441632960009", "FAIL", "the manager line's"),
    ("4416", "FAIL", "not a phone number in international form"),
])
def test_the_doctor_checks_the_staff_lines_numbers(settings, numbers, status, words):
    from callflow.language.loader import load_flowset
    from callflow.operations import doctor

    check = doctor.check_staff_line(dataclasses.replace(settings, staff_line_numbers=numbers),
                                    load_flowset(settings.flows_dir))
    assert check.status.value == status and words in check.detail
