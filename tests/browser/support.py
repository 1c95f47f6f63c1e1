"""What the browser tests drive besides the browser: the app really served on a free port, a
clock that ticks from a fixed opening time, and callers played through signed webhooks."""

from __future__ import annotations

import shutil
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from webhooks.simulator import ACCOUNT_SID as SIM_ACCOUNT_SID
from webhooks.simulator import SIM_CALLER, TwilioSim, new_call_sid
from webhooks.twilio_double import TwilioDouble

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def chromium_present() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


class TickingClock:
    """The app's clock: starts at a fixed moment (both helplines open) and runs in real time,
    so the page's timers tick; ``advance`` jumps ahead, for calls that began a while ago."""

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.began = time.monotonic()
        self.skipped = timedelta()

    def advance(self, **delta: float) -> None:
        self.skipped += timedelta(**delta)

    def __call__(self) -> datetime:
        return self.start + self.skipped + timedelta(seconds=time.monotonic() - self.began)


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


@dataclass
class Served:
    app: Flask
    url: str
    server: BaseWSGIServer
    thread: threading.Thread

    @classmethod
    def start(cls, app: Flask, port: int) -> Served:
        server = make_server("127.0.0.1", port, app, threaded=True, request_handler=QuietHandler)
        thread = threading.Thread(target=server.serve_forever, name="served-app", daemon=True)
        thread.start()
        return cls(app, f"http://127.0.0.1:{port}", server, thread)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


class LiveCaller:
    """One caller on a helpline, through the same signed webhooks Twilio sends: the notice,
    the menu, the team's waiting line; then, when the test says so, a worker offered the
    team's next caller accepts, and the caller is moved into the room."""

    def __init__(self, sim: TwilioSim, rest: TwilioDouble, to: str) -> None:
        self.sim, self.rest = sim, rest
        self.sid = new_call_sid()
        self.conference_sid = "CF" + new_call_sid()[2:]
        self.fields = {"CallSid": self.sid, "AccountSid": SIM_ACCOUNT_SID, "From": SIM_CALLER,
                       "Caller": SIM_CALLER, "To": to, "Called": to,
                       "CallStatus": "in-progress", "Direction": "inbound",
                       "ApiVersion": "2010-04-01"}
        self.room: ET.Element | None = None
        self.call_id = ""
        self.wait_url = ""

    def _post(self, url: str, fields: dict[str, str]) -> str:
        response = self.sim.post(url, fields)
        assert response.status_code == 200, (url, response.status_code)
        return response.get_data(as_text=True)

    def ring(self, keys: tuple[str, ...] = ("", "1")) -> LiveCaller:
        """Ring the helpline and press ``keys`` at its gathers, into the team's waiting line
        (and one hold turn there)."""
        body = self._post("/voice/incoming", self.fields)
        presses = list(keys)
        for _ in range(10):
            root = ET.fromstring(body)
            line = root.find("Enqueue")
            if line is not None:
                self.wait_url = line.get("waitUrl")
                self.call_id = _query(self.wait_url)["call"]
                self._post(self.wait_url, self.fields)
                return self
            gather, redirect = root.find("Gather"), root.find("Redirect")
            if gather is not None:
                digits = presses.pop(0) if presses else ""
                body = self._post(gather.get("action"),
                                  {**self.fields, **({"Digits": digits} if digits else {})})
            elif redirect is not None:
                body = self._post(redirect.text or "", self.fields)
            else:
                break
        raise AssertionError("the caller never reached the waiting line")

    def event(self, name: str, call_sid: str) -> None:
        assert self.room is not None, "the caller is not in the room"
        self._post(self.room.get("statusCallback"),
                   {"AccountSid": SIM_ACCOUNT_SID, "ConferenceSid": self.conference_sid,
                    "FriendlyName": self.room.text or "", "StatusCallbackEvent": name,
                    "CallSid": call_sid})

    def answer(self) -> LiveCaller:
        """The worker offered last presses 1 and is given the team's next caller (this one:
        the test rings a caller only when nobody else waits for that team); the caller is
        moved into the room and both join it: the call is connected."""
        legs = [r for r in self.rest.requests if r.kind == "ring"]
        assert legs, "no worker was rung"
        leg = legs[-1]
        fields = {"CallSid": leg.sid, "AccountSid": SIM_ACCOUNT_SID,
                  "From": str(leg.data.get("From", "")), "To": str(leg.data.get("To", "")),
                  "CallStatus": "in-progress", "Direction": "outbound-api",
                  "ApiVersion": "2010-04-01"}
        gather = ET.fromstring(self._post(str(leg.data["Url"]), fields)).find("Gather")
        assert gather is not None, "the worker was not screened"
        self._post(gather.get("action"), {**fields, "Digits": "1"})
        # Twilio carrying out the service's REST redirect of the caller into the room.
        moves = [r for r in self.rest.requests if r.kind == "redirect" and r.sid == self.sid]
        assert moves, "the caller was never moved into the room"
        conference = ET.fromstring(self._post(str(moves[-1].data["Url"]),
                                              self.fields)).find("Dial/Conference")
        assert conference is not None, "the caller was not put in the room"
        self.room = conference
        self.event("participant-join", leg.sid)
        self.event("participant-join", self.sid)
        self.event("conference-start", leg.sid)
        return self

    def listener_joins(self) -> None:
        """The manager's phone, rung for a listen-in, joins the room (muted)."""
        listens = [r for r in self.rest.requests if r.kind == "listen"]
        assert listens, "the manager's phone was never rung"
        self.event("participant-join", listens[-1].sid)
