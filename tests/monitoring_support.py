"""Helpers for the monitoring tests (the gate, the manager's web API, the manager line, the
timed jobs): flows that let a caller decline monitoring, staff accounts hashed with cheap argon2
parameters, a caller connected to a worker through signed webhooks, a manager signed in on the
web with the session's CSRF token, and a call to the manager line. The fixtures that use them
are in ``tests/monitoring_fixtures.py``.
"""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient

from callflow.platform.config import Settings
from callflow.records.audit import Entry
from callflow.runtime import Runtime
from callflow.staff.accounts import Role, StaffStore
from tests.bridge_support import Caller, TwilioMock, query
from tests.conftest import CANARY_NUMBER, FLOWS, RESPECT
from webhooks import create_app
from webhooks.simulator import ACCOUNT_SID as SIM_ACCOUNT_SID
from webhooks.simulator import TwilioSim, new_call_sid

MANAGER, OTHER_MANAGER, ADMIN = "maria", "martin", "adam"
PASSWORD = "several plain words for tests"
MANAGER_PHONE, OTHER_PHONE = "+447700900301", "+447700900302"
PIN, OTHER_PIN = "482615", "593720"
# Staff numbers are given out in order as accounts are added (add_staff adds these two first).
MANAGER_NUMBER, OTHER_NUMBER = "1001", "1002"
# The registered phone's label, as every entry of a web listen names it (the default label).
DEVICE = f"{MANAGER}'s phone"
MANAGER_LINE = "+441632960009"
ADDRESS = "198.51.100.7"  # TEST-NET-2: a manager's browser
WORKERS = ("+447700900101", "+447700900102", "+447700900103", "+447700900201",
           "+447700900202")
OPT_OUT_DIGIT = "8"
# Cheap but real argon2id: sign-in stays a real hash check and the suite stays fast.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- the app -----------------------------------------------------------------------------------


def opt_out_flows(folder: Path) -> Path:
    """A copy of the shipped flows whose Respect Phoneline notice offers key 8 to decline
    monitoring."""
    shutil.copytree(FLOWS, folder)
    path = folder / "respect-phoneline.yaml"
    text = path.read_text(encoding="utf-8")
    notice = "  welcome:\n    kind: notice\n    next: open-now\n"
    assert text.count(notice) == 1, "the shipped notice step changed shape"
    path.write_text(text.replace(
        notice, notice + f'    monitoring_opt_out: "{OPT_OUT_DIGIT}"\n'), encoding="utf-8")
    return folder


def build_app(settings: Settings, redis, clock) -> Flask:
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True})
    app.extensions["callflow"]["staff"].hasher = CHEAP_HASHER
    return app


def add_staff(staff: StaffStore) -> None:
    """Two managers with phones and PINs, and an admin."""
    for name, phone, pin in ((MANAGER, MANAGER_PHONE, PIN), (OTHER_MANAGER, OTHER_PHONE,
                                                             OTHER_PIN)):
        staff.add(name, PASSWORD, Role.MANAGER, actor="cli:test")
        staff.set_phone(name, phone, actor="cli:test")
        staff.set_pin(name, pin, actor="cli:test")
    staff.add(ADMIN, PASSWORD, Role.ADMIN, actor="cli:test")
    assert (staff.get(MANAGER).staff_number, staff.get(OTHER_MANAGER).staff_number) == (
        MANAGER_NUMBER, OTHER_NUMBER)


# -- callers -------------------------------------------------------------------------------------


def waiting_caller(sim: TwilioSim, rest: TwilioMock, *, presses=("", "1"),
                   to: str = RESPECT) -> Caller:
    """The canary caller through the notice and menu, waiting in the team's line (its free
    workers are offered the team's next caller)."""
    caller = Caller(sim, rest, to=to, number=CANARY_NUMBER)
    caller.offered_from = len(caller.legs())  # the legs rung before this caller came
    caller.enter(presses)
    assert caller.call_id, "the caller was not put on the bridge"
    assert caller.line_twiml, "the caller was not put in the team's waiting line"
    return caller


def connect(caller: Caller) -> Caller:
    """The first worker offered when the caller came presses 1 and is given the team's next
    caller (this one, so no other caller of the team may be waiting); the caller is moved
    into the room, both join and the room starts. The team needs a free worker: one on a
    call is never offered another."""
    legs = caller.legs()[getattr(caller, "offered_from", 0):]
    assert legs, "no worker was offered the caller"
    index = int(query(str(legs[0].data["Url"]))["leg"])
    caller.press(index, "1")
    worker = caller.leg(index).sid
    caller.moved()
    assert caller.room is not None, "the caller was not moved into the room"
    caller.conference("participant-join", worker)
    caller.conference("participant-join")
    caller.conference("conference-start", worker)
    return caller


def connected_caller(sim: TwilioSim, rest: TwilioMock, *, declined: bool = False) -> Caller:
    """A live call, connected to a worker; ``declined``: the caller pressed the opt-out key
    during the notice."""
    presses = (OPT_OUT_DIGIT, "1") if declined else ("", "1")
    return connect(waiting_caller(sim, rest, presses=presses))


def manager_leg(rest: TwilioMock) -> str:
    """The call sid Twilio gave the latest manager's leg (a Participants create)."""
    listens = rest.of("listen")
    assert listens, "no manager's leg was created"
    return listens[-1].sid


def leg_status(sim: TwilioSim, rest: TwilioMock, status: str = "completed"):
    """Twilio's status callback for the latest manager's leg."""
    listen = rest.of("listen")[-1]
    return sim.post(listen.one("StatusCallback"),
                    {"CallSid": listen.sid, "AccountSid": SIM_ACCOUNT_SID,
                     "From": listen.one("From"), "To": listen.one("To"), "CallStatus": status,
                     "Direction": "outbound-api", "ApiVersion": "2010-04-01"})


# -- managers on the web -------------------------------------------------------------------------


class WebManager:
    """One browser: its own cookie jar and address; the CSRF token once signed in."""

    def __init__(self, app: Flask, address: str = ADDRESS) -> None:
        self.client: FlaskClient = app.test_client()
        self.client.environ_base["REMOTE_ADDR"] = address
        self.csrf = ""

    def form_token(self) -> str:
        page = self.client.get("/manager/login")
        assert page.status_code == 200
        return CSRF_INPUT.search(page.get_data(as_text=True)).group(1)

    def login(self, name: str = MANAGER, password: str = PASSWORD, *, status: int | None = 200,
              headers_address: str = "", **headers: str):
        """Sign in by the form (JSON answer); ``status=None`` takes whatever comes.
        ``headers_address`` is sent as X-Forwarded-For (for an app behind a proxy)."""
        if headers_address:
            headers["X-Forwarded-For"] = headers_address
        response = self.client.post(
            "/manager/login", data={"username": name, "password": password,
                                    "csrf_token": self.form_token()},
            headers={"Accept": "application/json", **headers})
        if status is not None:
            assert response.status_code == status, response.get_data(as_text=True)
        if response.status_code == 200:
            self.csrf = response.get_json()["csrf_token"]
        return response

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def post(self, path: str, json=None, **headers: str):
        return self.client.post(path, json=json if json is not None else {},
                                headers={"X-CSRF-Token": self.csrf, **headers})

    def listen(self, call_id: str, purpose: str = "quality"):
        return self.post(f"/manager/api/calls/{call_id}/listen", {"purpose": purpose})

    def stop(self, session: str):
        return self.post(f"/manager/api/sessions/{session}/stop")


def staff_sign_in(app: Flask):
    """The app's web sign-in (its throttles and the owner's ways back in)."""
    return app.extensions["callflow"]["sign_in"]


def signed_in(app: Flask, name: str = MANAGER, address: str = ADDRESS) -> WebManager:
    manager = WebManager(app, address)
    manager.login(name)
    return manager


# -- the audit log ---------------------------------------------------------------------------------


def entries_after(rt: Runtime, seq: int = 0, *, prefix: str = "monitor_") -> list[Entry]:
    """Audit entries after ``seq`` whose kind starts with ``prefix``."""
    return [e for e in rt.audit.entries() if e.seq > seq and e.kind.startswith(prefix)]


def last_seq(rt: Runtime) -> int:
    entries = rt.audit.entries()
    return entries[-1].seq if entries else 0


def later(clock, **delta) -> None:
    clock.now = clock.now + timedelta(**delta)


# -- the manager line ------------------------------------------------------------------------------


class LineCall:
    """A call to the manager line from the manager's own phone, webhook by webhook."""

    def __init__(self, sim: TwilioSim, number: str = MANAGER_PHONE) -> None:
        self.sim = sim
        self.sid = new_call_sid()
        self.fields = {"CallSid": self.sid, "AccountSid": SIM_ACCOUNT_SID, "From": number,
                       "Caller": number, "To": MANAGER_LINE, "Called": MANAGER_LINE,
                       "CallStatus": "in-progress", "Direction": "inbound",
                       "ApiVersion": "2010-04-01"}
        self.last = ""

    def turn(self, url: str, **extra: str) -> str:
        response = self.sim.post(url, {**self.fields, **extra})
        assert response.status_code == 200, (url, response.status_code)
        self.last = response.get_data(as_text=True)
        return self.last

    def ring(self) -> str:
        return self.turn("/voice/incoming")

    def gather(self) -> ET.Element:
        gather = ET.fromstring(self.last).find("Gather")
        assert gather is not None, f"nothing to answer in {self.last}"
        return gather

    def press(self, digits: str) -> str:
        """Answer the gather in the last TwiML with ``digits``."""
        return self.turn(self.gather().get("action"), Digits=digits)

    def sign_in(self, staff_number: str, pin: str) -> str:
        """Answer the staff number prompt, then the PIN prompt."""
        self.press(staff_number)
        return self.press(pin)

    def heard(self) -> str:
        return " ".join(e.text or "" for e in ET.fromstring(self.last).iter("Say"))

    def hung_up(self) -> bool:
        return ET.fromstring(self.last).find("Hangup") is not None
