"""Plays a call through the app exactly as Twilio would: signed requests, TwiML followed.

Used by ``callflow simulate`` in the terminal and by the tests. It signs every request with
the auth token, sends the fields Twilio sends (the caller's number included, which the edge
must drop), follows ``<Gather>``, ``<Redirect>`` and ``<Dial>`` (playing the worker's side of
the screening too), and records what each party hears.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from flask import Flask
from twilio.request_validator import RequestValidator

from webhooks.twilio_double import TwilioDouble

SIM_CALLER = "+447700900999"  # fictional (Ofcom drama range)
ACCOUNT_SID = "AC" + "0" * 32


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


@dataclass
class Event:
    who: str  # "caller", "worker", "system"
    kind: str  # say, play, gather, step, ring, accepted, declined, connected, cancelled,
    #           hangup, http
    text: str = ""
    name: str = ""  # the worker's, on a worker's events


@dataclass
class Transcript:
    events: list[Event] = field(default_factory=list)

    def heard(self, who: str = "caller") -> list[str]:
        return [e.text for e in self.events if e.who == who and e.kind == "say"]

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    @property
    def connected(self) -> bool:
        return any(e.kind == "connected" for e in self.events)


class Keypad:
    """Scripted keypresses: each gather takes the next entry ('' = no key pressed)."""

    def __init__(self, caller: list[str] | None = None, worker: list[str] | None = None):
        self.caller_keys = list(caller or [])
        self.worker_keys = list(worker if worker is not None else ["1"])

    def caller(self, prompt: str) -> str:
        return self.caller_keys.pop(0) if self.caller_keys else ""

    def worker(self, name: str, whisper: str) -> str:
        return self.worker_keys.pop(0) if self.worker_keys else ""


class TwilioSim:
    """Signs and sends webhooks to a Flask app as Twilio does."""

    def __init__(self, app: Flask, *, extra_fields: dict[str, str] | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 rest: TwilioDouble | None = None):
        settings = app.extensions["callflow"]["settings"]
        self.app = app
        self.client = app.test_client()
        self.base = (settings.public_url or "http://localhost").rstrip("/") + "/"
        self.validator = RequestValidator(settings.twilio_auth_token)
        self.extra_fields = dict(extra_fields or {})
        self.on_event = on_event
        self.rest = rest
        self.responses: list[str] = []
        self.talker: tuple[str, dict[str, str], str] = ("", {}, "")  # the worker who accepted

    def post(self, url: str, fields: dict[str, str], *, method: str = "POST"):
        """Send one signed webhook; returns the Flask test response."""
        url = urljoin(self.base, url)
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        if method == "GET":
            # Twilio appends the fields to the query, URL-encoded, and signs the whole URL.
            url = f"{url}{'&' if parts.query else '?'}{urlencode(fields)}"
            target = urlsplit(url).path + "?" + urlsplit(url).query
            signature = self.validator.compute_signature(url, {})
            response = self.client.get(target, headers={"X-Twilio-Signature": signature})
            self.responses.append(response.get_data(as_text=True))
            return response
        signature = self.validator.compute_signature(url, fields)
        response = self.client.post(target, data=fields, headers={"X-Twilio-Signature": signature})
        self.responses.append(response.get_data(as_text=True))
        return response

    def emit(self, transcript: Transcript, event: Event) -> None:
        transcript.events.append(event)
        if self.on_event:
            self.on_event(event)

    def call(self, to: str, keypad: Keypad | None = None, *, caller: str = SIM_CALLER,
             max_requests: int = 60) -> Transcript:
        """Ring ``to`` and play the call to its end."""
        keypad = keypad or Keypad()
        transcript = Transcript()
        sid = new_call_sid()
        fields = {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": caller, "Caller": caller,
                  "To": to, "Called": to, "CallStatus": "ringing", "Direction": "inbound",
                  "ApiVersion": "2010-04-01", **self.extra_fields}
        url: str | None = "/voice/incoming"
        extra: dict[str, str] = {}
        for _ in range(max_requests):
            if url is None:
                break
            self.emit(transcript, Event("system", "step", _describe(url)))
            response = self.post(url, {**fields, **extra})
            if response.status_code != 200:
                self.emit(transcript, Event("system", "http", str(response.status_code)))
                break
            fields["CallStatus"] = "in-progress"
            url, extra = self._follow(response.get_data(as_text=True), transcript, keypad, fields)
        self.post("/voice/status", {**fields, "CallStatus": "completed"})
        return transcript

    def _follow(self, body: str, transcript: Transcript, keypad: Keypad, fields):
        """Play one TwiML document; return the next URL to request (or None) and its fields."""
        for verb in ET.fromstring(body):
            if verb.tag == "Say":
                self.emit(transcript, Event("caller", "say", verb.text or ""))
            elif verb.tag == "Play":
                self.emit(transcript, Event("caller", "play", verb.text or ""))
            elif verb.tag == "Gather":
                prompt = " ".join(child.text or "" for child in verb)
                for child in verb:
                    self.emit(transcript, Event("caller", "say" if child.tag == "Say" else "play",
                                                child.text or ""))
                digits = submitted(keypad.caller(prompt), verb)
                self.emit(transcript, Event("caller", "gather", digits))
                if digits or verb.get("actionOnEmptyResult") == "true":
                    return verb.get("action"), {"Digits": digits} if digits else {}
            elif verb.tag == "Redirect":
                return verb.text, {}
            elif verb.tag == "Enqueue":
                return self._line(verb, transcript, keypad, fields)
            elif verb.tag == "Dial" and verb.find("Conference") is not None:
                return self._conference(verb.find("Conference"), transcript, fields), {}
            elif verb.tag == "Dial":
                status = self._dial(verb, transcript, keypad, fields)
                if verb.get("action"):
                    return verb.get("action"), {"DialCallStatus": status}
            elif verb.tag == "Hangup":
                self.emit(transcript, Event("caller", "hangup"))
                return None, {}
        return None, {}

    def _dial(self, dial: ET.Element, transcript: Transcript, keypad: Keypad, fields) -> str:
        """Every number of the <Dial> rings at once; the first worker to press 1 at the
        screening is connected and the other phones stop ringing."""
        names = self._worker_names()
        self.emit(transcript, Event("system", "dial", dial.get("callerId", "")))
        ringing = [(number, names.get((number.text or "").strip(), "a worker"))
                   for number in dial.findall("Number")]
        for _number, name in ringing:
            self.emit(transcript, Event("worker", "ring", name=name))
        for index, (number, name) in enumerate(ringing):
            if self._screen(number, name, transcript, keypad, dial.get("callerId", "")):
                self.emit(transcript, Event("system", "connected", name=name))
                for _other, other_name in ringing[index + 1:]:
                    self.emit(transcript, Event("worker", "cancelled", name=other_name))
                return "completed"
        return "no-answer"

    def _screen(self, number: ET.Element, name: str, transcript, keypad, caller_id) -> bool:
        if not number.get("url"):
            return False
        leg = {"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID, "From": caller_id,
               "To": (number.text or "").strip(), "CallStatus": "in-progress",
               "Direction": "outbound-dial", "ApiVersion": "2010-04-01"}
        return self._answer(number.get("url"), leg, name, transcript, keypad)

    def _answer(self, url: str, leg: dict[str, str], name: str, transcript, keypad) -> bool:
        """The worker answers: hears the screening, presses a key (or not). Accepted?"""
        body = self.post(url, leg).get_data(as_text=True)
        for verb in ET.fromstring(body):
            if verb.tag == "Say":
                self.emit(transcript, Event("worker", "say", verb.text or "", name))
            if verb.tag == "Gather":
                whisper = " ".join(child.text or "" for child in verb)
                self.emit(transcript, Event("worker", "say", whisper, name))
                digits = submitted(keypad.worker(name, whisper), verb)
                if not digits:
                    self.emit(transcript, Event("worker", "declined", name=name))
                    return False
                answer = self.post(verb.get("action"), {**leg, "Digits": digits})
                accepted = "<Hangup" not in answer.get_data(as_text=True)
                self.emit(transcript, Event("worker", "accepted" if accepted else "declined",
                                            name=name))
                return accepted
        return False

    def _hold(self, url: str, transcript, fields) -> bool:
        """One hold turn of the waiting line; True if it says to leave the line."""
        hold = self.post(url, {**fields}).get_data(as_text=True)
        for verb in ET.fromstring(hold):
            if verb.tag in ("Say", "Play"):
                self.emit(transcript, Event("caller", verb.tag.lower(), verb.text or ""))
            elif verb.tag == "Leave":
                return True
        return False

    def _line(self, line: ET.Element, transcript, keypad, fields):
        """The caller waits in the team's line while the service offers them to workers over
        REST; a worker who accepts has the caller moved into their room (a REST redirect).
        With nobody left to offer, the caller gives up and hangs up."""
        self.emit(transcript, Event("system", "waiting", line.text or ""))
        left = line.get("action")
        if self._hold(line.get("waitUrl"), transcript, fields):
            return left, {"QueueResult": "leave"}
        if self.rest is None:
            return None, {}
        names = self._worker_names()
        ringing: dict[str, str] = {}  # leg sid -> the worker it rings

        def ring(requests: list) -> list:
            """The legs the service just asked for start ringing, all at once."""
            legs = [r for r in requests if r.kind == "ring"]
            for leg in legs:
                ringing[leg.sid] = names.get(str(leg.data.get("To", "")), "a worker")
                self.emit(transcript, Event("worker", "ring", name=ringing[leg.sid]))
            return legs

        pending = ring(self.rest.take_new())
        while pending:
            leg = pending.pop(0)
            name = ringing[leg.sid]
            fields_leg = {"CallSid": leg.sid, "AccountSid": ACCOUNT_SID,
                          "From": str(leg.data.get("From", "")),
                          "To": str(leg.data.get("To", "")), "CallStatus": "in-progress",
                          "Direction": "outbound-api", "ApiVersion": "2010-04-01"}
            if self._answer(str(leg.data["Url"]), fields_leg, name, transcript, keypad):
                self.emit(transcript, Event("system", "connected", name=name))
                self.talker = (leg.sid, fields_leg, str(leg.data["StatusCallback"]))
                new = self.rest.take_new()
                moved = [r for r in new if r.kind == "redirect" and r.sid == fields["CallSid"]]
                self._settle_cancelled(transcript, ringing, new)
                if moved:
                    return str(moved[-1].data["Url"]), {}
                return left, {"QueueResult": "leave"}
            self.post(str(leg.data["StatusCallback"]), {**fields_leg, "CallStatus": "completed"})
            pending += ring(self.rest.take_new())
        if self._hold(line.get("waitUrl"), transcript, fields):
            return left, {"QueueResult": "leave"}
        self.emit(transcript, Event("system", "unanswered", "nobody took the call"))
        self.emit(transcript, Event("caller", "hangup"))
        return None, {}

    def _conference(self, conference: ET.Element, transcript, fields) -> str | None:
        """The caller joins the room where the worker who accepted waits; they talk, and
        hang up."""
        room, events = conference.text or "", conference.get("statusCallback")
        conference_sid = "CF" + secrets.token_hex(16)
        worker_sid, worker_fields, worker_status = self.talker

        def event(name: str, call_sid: str) -> None:
            self.post(events, {"AccountSid": ACCOUNT_SID, "ConferenceSid": conference_sid,
                               "FriendlyName": room, "StatusCallbackEvent": name,
                               "CallSid": call_sid})

        if worker_sid:
            event("participant-join", worker_sid)
        event("participant-join", fields["CallSid"])
        event("conference-start", fields["CallSid"])
        event("participant-leave", fields["CallSid"])
        event("conference-end", fields["CallSid"])
        if worker_status:
            self.post(worker_status, {**worker_fields, "CallStatus": "completed"})
        self.emit(transcript, Event("caller", "hangup"))
        return None

    def _settle_cancelled(self, transcript, ringing: dict[str, str], seen: list) -> None:
        """Workers whose legs the service cancelled stop ringing."""
        for request in [*seen, *self.rest.take_new()]:
            if request.kind == "hang_up" and request.sid in ringing:
                self.emit(transcript, Event("worker", "cancelled", name=ringing[request.sid]))

    def _worker_names(self) -> dict[str, str]:
        flowset = self.app.extensions["callflow"]["registry"].current
        return {w.number: f"{w.name} ({team.name})"
                for team in flowset.teams.values() for w in team.workers}


def submitted(keys: str, gather: ET.Element) -> str:
    """The Digits Twilio sends when ``keys`` are pressed at ``gather``: those before its
    finishOnKey (default '#', never sent itself), and no more than numDigits."""
    finish = gather.get("finishOnKey", "#")
    if finish and finish in keys:
        keys = keys[:keys.index(finish)]
    limit = gather.get("numDigits", "")
    return keys[:int(limit)] if limit.isdigit() else keys


def _describe(url: str) -> str:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    step = query.get("step", [""])[0]
    return f"{parts.path} {step}".strip()
