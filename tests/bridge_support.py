"""Helpers for the conference bridge tests: Twilio's REST API on ``responses``, a caller driven
webhook by webhook, and a byte-level dump of Redis (RQ's job payloads included)."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qs, urlencode, urlsplit

import redis as redis_lib
import requests
import responses

from callflow.staff.shifts import Shifts
from tests import twilio_openapi
from webhooks.simulator import ACCOUNT_SID as SIM_ACCOUNT_SID
from webhooks.simulator import TwilioSim, new_call_sid
from webhooks.twilio_double import RestRequest

ACCOUNT_SID = "AC" + "1" * 32
MOCK_API = "https://twilio-mock.test"

_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC\w+)"
CALLS = re.compile(re.escape(MOCK_API) + _ACCOUNT + r"/Calls\.json$")
CALLS_LIST = re.compile(re.escape(MOCK_API) + _ACCOUNT + r"/Calls\.json(?:\?.*)?$")
CALL = re.compile(re.escape(MOCK_API) + _ACCOUNT + r"/Calls/(?P<sid>\w+)\.json$")
PARTICIPANTS = re.compile(re.escape(MOCK_API) + _ACCOUNT
                          + r"/Conferences/(?P<conf>[\w-]+)/Participants\.json$")
PARTICIPANT = re.compile(re.escape(MOCK_API) + _ACCOUNT
                         + r"/Conferences/(?P<conf>[\w-]+)/Participants/(?P<sid>\w+)\.json$")
# Every request reaches one callback, which routes it: `responses` would use each of several
# matching routes only once, so a route per endpoint could not also catch what matches none.
ANYWHERE = re.compile(r".*")
METHODS = (responses.GET, responses.POST, responses.DELETE, responses.PUT, responses.PATCH)


class MockProblems(AssertionError):
    """What a REST mock saw that Twilio would refuse, or that was not for Twilio at all."""


def check_at_exit(name: str, problems: list[str], strays: list[str]) -> None:
    """Fail the test that used a mock: each request Twilio's API would refuse, and each one
    sent anywhere but the mock, is a defect whether or not the test looked for it. A test
    that provokes them on purpose says so by emptying the list once it has checked it."""
    found = [f"refused by Twilio's API description: {p}" for p in problems]
    found += [f"sent to no Twilio endpoint of the mock: {s}" for s in strays]
    if found:
        raise MockProblems(f"{name}: " + "; ".join(found))


class RoutedMock:
    """A REST mock on ``responses`` whose every request reaches one router (``routes``: method,
    URL pattern, handler); what matches no route is kept in ``strays``. At the end of the
    ``with`` block each request Twilio's API would refuse (``problems``) and each stray fails
    the test that used the mock."""

    name: ClassVar[str] = "a REST mock"
    mock: responses.RequestsMock
    routes: list
    problems: list[str]
    strays: list[str]

    def __enter__(self):
        self.mock.start()
        for method in METHODS:
            self.mock.add_callback(method, ANYWHERE, callback=self._route)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.mock.stop()
        self.mock.reset()
        if exc_type is None:
            check_at_exit(self.name, self.problems, self.strays)

    def routed_url(self, request) -> str:
        """What the route patterns are matched against."""
        return request.url

    def _route(self, request):
        url = self.routed_url(request)
        for method, pattern, handler in self.routes:
            if request.method == method and pattern.match(url):
                return handler(request)
        self.strays.append(f"{request.method} {request.url}")
        return requests.ConnectionError(f"not an endpoint of {self.name}: {request.url}")


def _json(status: int, body: dict) -> tuple[int, dict, str]:
    return status, {"Content-Type": "application/json"}, json.dumps(body)


def twilio_error(status: int, code: int) -> tuple[int, dict, str]:
    return _json(status, {"code": code, "message": f"error {code}", "status": status,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}"})


class LostAnswer:
    """An outcome for ``TwilioMock.fail``: Twilio does what was asked, but its answer never
    reaches the service (it came after the client's timeout, or the connection dropped)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error or requests.ReadTimeout("Twilio answered after the client gave up")


@dataclass
class Sent:
    """One request the service sent: what Twilio would have received."""

    kind: str  # ring, listen, hang_up, redirect, delete, list, participants, participant, remove
    method: str
    url: str
    body: str
    form: dict[str, list[str]]
    sid: str = ""

    def one(self, name: str) -> str:
        values = self.form.get(name, [])
        assert len(values) == 1, f"{name} sent {len(values)} times"
        return values[0]

    def as_double(self) -> RestRequest:
        data = {k: v[0] if len(v) == 1 else v for k, v in self.form.items()}
        return RestRequest(self.kind, self.method, self.url, data, self.sid)


@dataclass
class TwilioMock(RoutedMock):
    """Twilio's REST API at ``MOCK_API``, answered as Twilio does, on ``responses``.

    Every request is kept (``sent``) and checked against Twilio's OpenAPI description
    (``problems``); one sent anywhere else (another host, a path or method the mock does not
    answer) is kept in ``strays``, and either fails the test when the mock exits. ``fail(kind,
    ...)`` makes the next requests of a kind fail with an HTTP error or an exception.

    ``calls`` is the account's call log, as Twilio keeps it: each call the service creates, and
    any a test adds with ``keep_call`` (a caller's call, which reaches Twilio by phone, not by
    REST). Listing it (``GET Calls.json``) filters by ``To``, ``From`` and ``Status``, newest
    first, in pages of ``PageSize`` (50 unless asked) with a ``next_page_uri`` that carries a
    ``PageToken`` cursor, as Twilio's does; deleting a call takes it out of the log.
    """

    name: ClassVar[str] = "Twilio's REST API mock"

    sent: list[Sent] = field(default_factory=list)
    calls: dict[str, dict] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # every sid the log ever held, oldest first
    strays: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    failures: dict[str, list] = field(default_factory=dict)
    seen: int = 0
    # Who is in each conference, as Twilio would list them: conference sid -> call sid ->
    # the participant's label and status. REST-added participants are put in by the create;
    # those who join by TwiML, by ``joined`` (the Caller's conference callbacks call it).
    rooms: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.routes = [(responses.POST, CALLS, self._create_call),
                       (responses.GET, CALLS, self._list_calls),
                       (responses.POST, CALL, self._update_call),
                       (responses.DELETE, CALL, self._delete_call),
                       (responses.POST, PARTICIPANTS, self._participant),
                       (responses.GET, PARTICIPANTS, self._list_participants),
                       (responses.GET, PARTICIPANT, self._fetch_participant),
                       (responses.DELETE, PARTICIPANT, self._remove_participant)]

    def routed_url(self, request) -> str:
        return request.url.split("?", 1)[0]  # list requests carry their filters in the query

    # -- what tests use ---------------------------------------------------------------

    def fail(self, kind: str, *outcomes) -> None:
        """The next requests of ``kind`` get these outcomes in turn: an HTTP status (a Twilio
        error body), a ``(status, code)`` pair, or an exception to raise."""
        self.failures.setdefault(kind, []).extend(outcomes)

    def of(self, kind: str) -> list[Sent]:
        return [s for s in self.sent if s.kind == kind]

    def joined(self, conference_sid: str, call_sid: str, label: str = "") -> None:
        """Someone is in the room (by TwiML, or a REST-added participant who answered)."""
        room = self.rooms.setdefault(conference_sid, {})
        room.setdefault(call_sid, {"label": label})["status"] = "connected"

    def left(self, conference_sid: str, call_sid: str) -> None:
        self.rooms.get(conference_sid, {}).pop(call_sid, None)

    @property
    def requests(self) -> list[RestRequest]:
        """The requests in TwilioDouble's shape, so the same driver works with either."""
        return [s.as_double() for s in self.sent]

    def keep_call(self, *, to: str, from_: str, status: str = "completed",
                  direction: str = "inbound") -> str:
        """A call in the account's log (as Twilio keeps every call); its sid."""
        sid = "CA" + secrets.token_hex(16)
        self.order.append(sid)
        self.calls[sid] = {"sid": sid, "account_sid": ACCOUNT_SID, "to": to, "from": from_,
                           "status": status, "direction": direction, "parent_call_sid": None,
                           "api_version": "2010-04-01",
                           "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json"}
        return sid

    def take_new(self) -> list[RestRequest]:
        new = self.requests[self.seen:]
        self.seen = len(self.sent)
        return new

    # -- the API ----------------------------------------------------------------------

    def _record(self, kind: str, request, sid: str = "") -> Sent:
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        try:
            form = twilio_openapi.check(request.method, request.url, body)
        except AssertionError as exc:
            self.problems.append(str(exc))
            form = parse_qs(body, keep_blank_values=True)
        sent = Sent(kind, request.method, request.url, body, form, sid)
        self.sent.append(sent)
        return sent

    def _failure(self, kind: str):
        queue = self.failures.get(kind)
        if not queue:
            return None
        outcome = queue.pop(0)
        if isinstance(outcome, LostAnswer):
            return outcome.error
        if isinstance(outcome, BaseException):
            return outcome
        status, code = outcome if isinstance(outcome, tuple) else (outcome, 20500)
        return twilio_error(status, code)

    def _create_call(self, request):
        sent = self._record("ring", request, "CA" + secrets.token_hex(16))
        failure = self._failure("ring")
        if failure is not None:
            return failure
        self.order.append(sent.sid)
        self.calls[sent.sid] = {"sid": sent.sid, "account_sid": ACCOUNT_SID,
                                "to": sent.one("To"), "from": sent.one("From"),
                                "status": "queued", "direction": "outbound-api",
                                "parent_call_sid": None, "api_version": "2010-04-01"}
        return _json(201, {"sid": sent.sid, "status": "queued", "to": sent.one("To")})

    def _list_calls(self, request):
        self._record("list", request)
        failure = self._failure("list")
        if failure is not None:
            return failure
        asked = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
        size = min(int(asked.get("PageSize", 50)), 1000)
        number = int(asked.get("Page", 0))
        wanted = {field: asked[name] for name, field in
                  (("To", "to"), ("From", "from"), ("Status", "status")) if name in asked}
        newest_first = list(reversed(self.order))
        # The cursor: the page goes on after this call, whatever was deleted since.
        after = asked.get("PageToken", "").removeprefix("PA")
        if after in newest_first:
            newest_first = newest_first[newest_first.index(after) + 1:]
        matching = [self.calls[sid] for sid in newest_first if sid in self.calls
                    and all(self.calls[sid][f] == v for f, v in wanted.items())]
        page = matching[:size]
        base = f"/2010-04-01/Accounts/{CALLS_LIST.match(request.url)['account']}/Calls.json"
        keep = {k: v for k, v in asked.items() if k in ("To", "From", "Status")}
        first = f"{base}?{urlencode({**keep, 'PageSize': size})}"
        next_uri = None
        if len(matching) > size:
            next_uri = f"{base}?" + urlencode({**keep, "PageSize": size, "Page": number + 1,
                                               "PageToken": "PA" + page[-1]["sid"]})
        return _json(200, {"calls": page, "page": number, "page_size": size,
                           "start": number * size, "end": number * size + len(page) - 1,
                           "uri": request.url.removeprefix(MOCK_API), "first_page_uri": first,
                           "next_page_uri": next_uri, "previous_page_uri": None})

    def _update_call(self, request):
        sid = CALL.match(request.url)["sid"]
        form = parse_qs(request.body or "")
        kind = "redirect" if "Url" in form else "hang_up"
        self._record(kind, request, sid)
        status = form.get("Status", ["in-progress"])[0]
        return self._failure(kind) or _json(200, {"sid": sid, "status": status})

    def _delete_call(self, request):
        sid = CALL.match(request.url)["sid"]
        self._record("delete", request, sid)
        failure = self._failure("delete")
        if failure is not None:
            return failure
        self.calls.pop(sid, None)
        return 204, {}, ""

    def _participant(self, request):
        sent = self._record("listen", request, "CA" + secrets.token_hex(16))
        conference = PARTICIPANTS.match(request.url)["conf"]
        label = sent.form.get("Label", [""])[0]
        queue = self.failures.get("listen") or [None]
        lost = isinstance(queue[0], LostAnswer)
        failure = self._failure("listen")
        if failure is None or lost:  # Twilio created the participant: it is ringing
            self.rooms.setdefault(conference, {})[sent.sid] = {"label": label,
                                                               "status": "queued"}
        return failure or self._participant_json(conference, sent.sid, "queued", label, 201)

    def _participant_json(self, conference: str, sid: str, status: str, label: str,
                          code: int = 200):
        return _json(code, self._participant_record(conference, sid, status, label))

    @staticmethod
    def _participant_record(conference: str, sid: str, status: str, label: str) -> dict:
        return {"account_sid": ACCOUNT_SID, "call_sid": sid, "conference_sid": conference,
                "label": label or None, "status": status, "muted": True, "hold": False,
                "coaching": False, "end_conference_on_exit": False,
                "start_conference_on_enter": False,
                "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{conference}"
                       f"/Participants/{sid}.json"}

    def _list_participants(self, request):
        self._record("participants", request)
        conference = PARTICIPANTS.match(request.url)["conf"]
        failure = self._failure("participants")
        if failure is not None:
            return failure
        room = self.rooms.get(conference, {})
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{conference}/Participants.json"
        return _json(200, {
            "participants": [self._participant_record(conference, sid, p["status"], p["label"])
                             for sid, p in room.items()],
            "first_page_uri": f"{uri}?PageSize=50&Page=0", "next_page_uri": None,
            "previous_page_uri": None, "uri": f"{uri}?PageSize=50&Page=0", "page": 0,
            "page_size": 50, "start": 0, "end": max(0, len(room) - 1)})

    def _fetch_participant(self, request):
        match = PARTICIPANT.match(request.url)
        self._record("participant", request, match["sid"])
        failure = self._failure("participant")
        if failure is not None:
            return failure
        found = self.rooms.get(match["conf"], {}).get(match["sid"])
        if found is None:
            return twilio_error(404, 20404)
        return self._participant_json(match["conf"], match["sid"], found["status"],
                                      found["label"])

    def _remove_participant(self, request):
        match = PARTICIPANT.match(request.url)
        self._record("remove", request, match["sid"])
        failure = self._failure("remove")
        if failure is not None:
            return failure
        if self.rooms.get(match["conf"], {}).pop(match["sid"], None) is None:
            return twilio_error(404, 20404)
        return 204, {}, ""



# -- a caller, webhook by webhook -----------------------------------------------------------


def verbs(twiml: str) -> list[ET.Element]:
    return list(ET.fromstring(twiml))


def said(twiml: str) -> list[str]:
    return [e.text or "" for e in ET.fromstring(twiml).iter("Say")]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def sign_on(app, *names: str) -> None:
    """Put workers on shift (every active worker of every team when none are named)."""
    rt = app.extensions["callflow"]["runtime"]
    shifts = Shifts(rt.store, rt.clock)
    for name in names or [w.name for team in rt.registry.current.teams.values()
                          for w in team.active_workers()]:
        shifts.start(name)


class Caller:
    """One caller, driven by hand through the flow to the bridge, with Twilio's callbacks for
    the caller, the conference and each worker's leg sent when the test says so."""

    def __init__(self, sim: TwilioSim, rest, *, to: str, number: str) -> None:
        self.sim, self.rest = sim, rest
        self.sid = new_call_sid()
        self.conference_sid = "CF" + secrets.token_hex(16)
        self.fields = {"CallSid": self.sid, "AccountSid": SIM_ACCOUNT_SID, "From": number,
                       "Caller": number, "To": to, "Called": to, "CallStatus": "in-progress",
                       "Direction": "inbound", "ApiVersion": "2010-04-01", **sim.extra_fields}
        self.heard: list[str] = []
        self.answer_urls: dict[int, str] = {}
        self.answer_offers: dict[int, str] = {}
        self.room: ET.Element | None = None
        self.room_twiml = ""  # the TwiML that put the caller in the room with a worker
        self.line_twiml = ""  # the TwiML that put the caller in the team's waiting line
        self.wait_url = self.left_url = ""
        self.call_id = ""

    def post(self, url: str, fields: dict[str, str], *, status: int = 200) -> str:
        response = self.sim.post(url, fields)
        assert response.status_code == status, (url, response.status_code)
        return response.get_data(as_text=True)

    def turn(self, url: str, **extra: str) -> str:
        """One webhook of the caller's own call; what it says is added to ``heard``."""
        body = self.post(url, {**self.fields, **extra})
        self.heard += said(body)
        return body

    def enter(self, keys: tuple[str, ...] = ("", "1")) -> str:
        """Ring the helpline and answer its gathers with ``keys``; the last TwiML returned.
        A caller put in the team's waiting line keeps its hold and action URLs."""
        body = self.turn("/voice/incoming")
        presses = list(keys)
        while (gather := ET.fromstring(body).find("Gather")) is not None and presses:
            digits = presses.pop(0)
            body = self.turn(gather.get("action"), **({"Digits": digits} if digits else {}))
        line = ET.fromstring(body).find("Enqueue")
        if line is not None:
            self.line_twiml, self.wait_url, self.left_url = (body, line.get("waitUrl"),
                                                             line.get("action"))
            self.call_id = query(self.wait_url)["call"]
        self._find_room(body)
        return body

    def _find_room(self, body: str) -> None:
        conference = ET.fromstring(body).find("Dial/Conference")
        if conference is not None:
            self.room, self.room_twiml = conference, body

    # -- the caller in the waiting line ------------------------------------------------------

    def hold(self) -> str:
        """One hold turn (Twilio fetching the line's waitUrl)."""
        return self.turn(self.wait_url)

    def leave(self, result: str = "leave") -> str:
        """The caller's <Enqueue> ended (a <Leave> said by a hold turn, by default): Twilio
        calls its action, and what it says next is followed."""
        body = self.turn(self.left_url, QueueResult=result, QueueTime="10")
        self._find_room(body)
        return body

    def moved(self) -> str:
        """Twilio carrying out the service's REST redirect of this caller (into the room)."""
        redirects = [r for r in self.rest.requests
                     if r.kind == "redirect" and r.sid == self.sid]
        assert redirects, "the caller was never redirected"
        body = self.turn(str(redirects[-1].data["Url"]))
        self._find_room(body)
        return body

    # -- the caller in the conference ------------------------------------------------------

    def conference(self, event: str, call_sid: str | None = None, *, status: int = 200,
                   label: str | None = None) -> str:
        """Twilio's conference callback. A participant's label is sent as Twilio sends it
        (``ParticipantLabel``, for one added with a label) unless ``label`` says otherwise
        ("" for none); the REST mock's room follows joins and leaves."""
        call_sid = call_sid or self.sid
        room = getattr(self.rest, "rooms", {}).get(self.conference_sid, {})
        if label is None:
            label = room.get(call_sid, {}).get("label", "")
        if event == "participant-join" and hasattr(self.rest, "joined"):
            self.rest.joined(self.conference_sid, call_sid, label)
        elif event == "participant-leave" and hasattr(self.rest, "left"):
            self.rest.left(self.conference_sid, call_sid)
        fields = {"AccountSid": SIM_ACCOUNT_SID, "ConferenceSid": self.conference_sid,
                  "FriendlyName": f"room-{self.call_id}", "StatusCallbackEvent": event,
                  "CallSid": call_sid}
        if label:
            fields["ParticipantLabel"] = label
        # The room's callback, as the worker's TwiML or the caller's gave it.
        return self.post(f"/voice/conference?call={self.call_id}", fields, status=status)

    def status(self, call_status: str = "completed") -> str:
        return self.post("/voice/status", {**self.fields, "CallStatus": call_status})

    # -- the workers' legs -------------------------------------------------------------------

    def legs(self) -> list[RestRequest]:
        """Every worker's leg rung so far, oldest first: offers of the line, not of one
        caller (whoever accepts is given the caller who has waited longest)."""
        return [r for r in self.rest.requests if r.kind == "ring"]

    def leg(self, index: int) -> RestRequest:
        """The latest leg rung to the worker at ``index`` in the team's roster."""
        for request in reversed(self.legs()):
            if query(str(request.data["Url"]))["leg"] == str(index):
                return request
        raise AssertionError(f"leg {index} was never rung")

    def worker_fields(self, index: int, **extra: str) -> dict[str, str]:
        leg = self.leg(index)
        return {"CallSid": leg.sid, "AccountSid": SIM_ACCOUNT_SID, "From": str(leg.data["From"]),
                "To": str(leg.data["To"]), "Called": str(leg.data["To"]),
                "CallStatus": "in-progress", "Direction": "outbound-api",
                "ApiVersion": "2010-04-01", **extra}

    def screen(self, index: int) -> str:
        """The worker picks up: what the service tells their phone to do."""
        url = str(self.leg(index).data["Url"])
        self.answer_urls.pop(index, None)
        body = self.post(url, self.worker_fields(index))
        gather = ET.fromstring(body).find("Gather")
        if gather is not None:
            self.answer_urls[index] = gather.get("action")
            self.answer_offers[index] = query(url)["offer"]
        return body

    def press(self, index: int, digits: str) -> str:
        """The worker answers the screening with ``digits`` (picking up first if they have
        not yet)."""
        if self.answer_offers.get(index) != query(str(self.leg(index).data["Url"]))["offer"]:
            self.screen(index)  # picking up this offer first
        assert index in self.answer_urls, "the worker was not screened"
        return self.post(self.answer_urls[index], self.worker_fields(index, Digits=digits))

    def press_again(self, index: int, digits: str = "1") -> str:
        """The worker's keypress request sent again (Twilio retrying it)."""
        return self.post(self.answer_urls[index], self.worker_fields(index, Digits=digits))

    def leg_status(self, index: int, call_status: str) -> str:
        return self.post(str(self.leg(index).data["StatusCallback"]),
                         self.worker_fields(index, CallStatus=call_status))


# -- Redis, byte for byte -------------------------------------------------------------------


def decoded(value) -> str:
    """A Redis value as text; RQ's compressed job payloads are unpacked first."""
    if isinstance(value, bytes):
        with contextlib.suppress(zlib.error):
            value = zlib.decompress(value)  # RQ compresses job payloads
        return value.decode("utf-8", errors="replace")
    return str(value)


def raw_dump(url: str) -> str:
    """Every key and value in the store as text, read as bytes so that RQ's (compressed) job
    payloads and results are searched too."""
    client = redis_lib.Redis.from_url(url, socket_timeout=5)
    parts: list[str] = []
    try:
        for key in client.scan_iter():
            parts.append(decoded(key))
            kind = client.type(key)
            if kind == b"string":
                parts.append(decoded(client.get(key)))
            elif kind == b"hash":
                parts += [decoded(x) for pair in client.hgetall(key).items() for x in pair]
            elif kind == b"list":
                parts += [decoded(x) for x in client.lrange(key, 0, -1)]
            elif kind == b"set":
                parts += [decoded(x) for x in client.smembers(key)]
            elif kind == b"zset":
                parts += [decoded(x) for x, _ in client.zrange(key, 0, -1, withscores=True)]
            elif kind == b"stream":
                for _id, entry in client.xrange(key):
                    parts += [decoded(x) for pair in entry.items() for x in pair]
    finally:
        client.close()
    return "\n".join(parts)


def job_payloads(url: str) -> dict[str, str]:
    """Each RQ job hash (``rq:job:*``), every field decoded, by job id."""
    client = redis_lib.Redis.from_url(url)
    try:
        return {decoded(key).removeprefix("rq:job:"):
                "\n".join(decoded(x) for pair in client.hgetall(key).items() for x in pair)
                for key in client.scan_iter("rq:job:*")}
    finally:
        client.close()


def dead_store(**kwargs) -> redis_lib.Redis:
    """A client for a Redis that is not there (a free port), failing fast as the service's own
    client does (``from_url``: one retry, no backoff)."""
    from tests.conftest import free_port

    return redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2,
                                    socket_connect_timeout=0.2, decode_responses=True, **kwargs)


class FlakyStore(redis_lib.Redis):
    """A real Redis client that fails like an unreachable server while ``down`` is set."""

    down = False

    def execute_command(self, *args, **options):
        if self.down:
            raise redis_lib.ConnectionError("Redis went away")
        return super().execute_command(*args, **options)

    def pipeline(self, *args, **kwargs):
        if self.down:
            raise redis_lib.ConnectionError("Redis went away")
        return super().pipeline(*args, **kwargs)
