"""A Twilio account's phone numbers on ``responses``, for provisioning and doctor tests.

Answers the three requests those make (list numbers by PhoneNumber, update one number, fetch
the account) as Twilio does, applies updates so a second look sees them, and checks every
request against Twilio's OpenAPI description: form fields through ``twilio_openapi.check``,
query parameters against the operation's declared ``in: query`` parameters. A request Twilio
would refuse, or one to anything else, fails the test when the mock exits.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

import responses

from callflow.operations import provisioning
from tests import twilio_openapi
from tests.bridge_support import ACCOUNT_SID, MOCK_API, RoutedMock

PUBLIC_URL = "https://calls.example.org"
ACCOUNT = re.escape(MOCK_API) + r"/2010-04-01/Accounts/(?P<account>AC\w+)"
LIST = re.compile(ACCOUNT + r"/IncomingPhoneNumbers\.json(\?.*)?$")
ONE = re.compile(ACCOUNT + r"/IncomingPhoneNumbers/(?P<sid>PN\w+)\.json$")
FETCH_ACCOUNT = re.compile(ACCOUNT + r"\.json$")
# Twilio clears an application or trunk reference given an empty value; the description's
# pattern for those SIDs does not admit the empty string, so they are checked apart.
CLEARED_BY_EMPTY = ("VoiceApplicationSid", "TrunkSid")
ATTRIBUTE = {f.param: f.attribute for f in provisioning.FIELDS}


def wanted(base: str = PUBLIC_URL) -> dict:
    """A number as the service wants it, in the API's JSON shape."""
    return {"voice_url": f"{base}/voice/incoming", "voice_method": "POST",
            "voice_fallback_url": f"{base}/voice/fallback", "voice_fallback_method": "POST",
            "status_callback": f"{base}/voice/status", "status_callback_method": "POST",
            "voice_caller_id_lookup": False, "voice_application_sid": None, "trunk_sid": None,
            "voice_receive_mode": "voice"}


def fresh() -> dict:
    """A number as Twilio leaves it when bought: its demo URL, CNAM as the buyer ticked it."""
    return {"voice_url": "https://demo.twilio.com/welcome/voice/", "voice_method": "POST",
            "voice_fallback_url": "", "voice_fallback_method": "POST", "status_callback": "",
            "status_callback_method": "POST", "voice_caller_id_lookup": True,
            "voice_application_sid": None, "trunk_sid": None, "voice_receive_mode": "voice"}


@dataclass
class Sent:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]


@dataclass
class TwilioNumbers(RoutedMock):
    """The account's numbers (E.164 -> resource), and every request that reached it."""

    name: ClassVar[str] = "Twilio's numbers mock"

    numbers: dict[str, dict] = field(default_factory=dict)
    account_status: str = "active"
    sent: list[Sent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    fail_with: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (status, code)

    def __post_init__(self) -> None:
        self.mock = responses.RequestsMock(assert_all_requests_are_fired=False)
        self.routes = [(responses.GET, LIST, self._list), (responses.POST, ONE, self._update),
                       (responses.GET, FETCH_ACCOUNT, self._account)]

    def own(self, number: str, base: dict | None = None, **changes) -> dict:
        """Add a number to the account: as bought (``fresh``) or ``base``, with ``changes``."""
        sid = "PN" + format(len(self.numbers) + 1, "032x")
        resource = {"sid": sid, "account_sid": ACCOUNT_SID, "phone_number": number,
                    "friendly_name": number, **(base or fresh()), **changes}
        self.numbers[number] = resource
        return resource

    def updates(self) -> list[Sent]:
        return [s for s in self.sent if s.method == "POST"]

    # -- the API ------------------------------------------------------------------------

    def _check(self, request) -> Sent:
        parts = urlsplit(request.url)
        query = parse_qs(parts.query, keep_blank_values=True)
        body = request.body or ""
        if isinstance(body, bytes):
            body = body.decode("utf-8")
        form = parse_qs(body, keep_blank_values=True)
        checked = "&".join(pair for pair in body.split("&")
                           if pair.split("=", 1)[0] not in CLEARED_BY_EMPTY
                           or pair.split("=", 1)[1:] != [""]) if body else body
        try:
            _, operation, _ = twilio_openapi.operation_for(request.method, parts.path)
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "query"}
            unknown = sorted(set(query) - declared)
            assert not unknown, f"{request.method} {parts.path}: unknown query {unknown}"
            twilio_openapi.check(request.method, request.url, checked)
        except AssertionError as exc:
            self.problems.append(str(exc))
        sent = Sent(request.method, parts.path, query, form)
        self.sent.append(sent)
        return sent

    def _failure(self, kind: str):
        if kind not in self.fail_with:
            return None
        status, code = self.fail_with[kind]
        return status, {"Content-Type": "application/json"}, json.dumps(
            {"code": code, "message": f"error {code}", "status": status,
             "more_info": f"https://www.twilio.com/docs/errors/{code}"})

    def _list(self, request):
        sent = self._check(request)
        failure = self._failure("list")
        if failure:
            return failure
        pattern = sent.query.get("PhoneNumber", [""])[0]
        # Twilio matches PhoneNumber as a pattern: any number containing it.
        found = [r for n, r in self.numbers.items() if pattern and pattern in n]
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/IncomingPhoneNumbers.json"
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"incoming_phone_numbers": found, "page": 0, "page_size": 50, "start": 0,
             "end": max(len(found) - 1, 0), "uri": uri, "first_page_uri": uri,
             "next_page_uri": None, "previous_page_uri": None})

    def _update(self, request):
        sent = self._check(request)
        failure = self._failure("update")
        if failure:
            return failure
        sid = ONE.match(request.url)["sid"]
        resource = next((r for r in self.numbers.values() if r["sid"] == sid), None)
        if resource is None:
            return 404, {"Content-Type": "application/json"}, json.dumps(
                {"code": 20404, "message": "not found", "status": 404})
        for param, values in sent.form.items():
            value = values[0]
            if param == "VoiceCallerIdLookup":
                value = value == "true"
            resource[ATTRIBUTE.get(param, param)] = value or None
        return 200, {"Content-Type": "application/json"}, json.dumps(resource)

    def _account(self, request):
        self._check(request)
        failure = self._failure("account")
        if failure:
            return failure
        return 200, {"Content-Type": "application/json"}, json.dumps(
            {"sid": ACCOUNT_SID, "status": self.account_status, "type": "Full",
             "friendly_name": "Helplines", "auth_token": "not-shown"})
