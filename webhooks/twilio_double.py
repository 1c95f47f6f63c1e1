"""An in-process stand-in for Twilio's REST API, for the simulator.

The real ``twilio`` client builds every request; this transport records it and answers the way
Twilio does (a call resource with a fresh sid), so the simulator can play the legs the service
asked for: ring the worker, run the screening, cancel, redirect the caller.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field

from twilio.http import HttpClient
from twilio.http.response import Response

CALLS = re.compile(r"/Accounts/(?P<account>\w+)/Calls\.json$")
CALL = re.compile(r"/Accounts/(?P<account>\w+)/Calls/(?P<sid>\w+)\.json$")
PARTICIPANTS = re.compile(r"/Accounts/(?P<account>\w+)/Conferences/(?P<conf>[\w-]+)/"
                          r"Participants\.json$")


@dataclass
class RestRequest:
    kind: str  # ring, listen, hang_up, redirect, delete
    method: str
    url: str
    data: dict[str, object]
    sid: str = ""


@dataclass
class TwilioDouble(HttpClient):
    requests: list[RestRequest] = field(default_factory=list)
    seen: int = 0

    def take_new(self) -> list[RestRequest]:
        """The requests made since the last call."""
        new = self.requests[self.seen:]
        self.seen = len(self.requests)
        return new

    def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                timeout=None, allow_redirects=False) -> Response:
        data = dict(data or {})
        path = uri.split("?", 1)[0]
        if method.upper() == "POST" and CALLS.search(path):
            sid = "CA" + secrets.token_hex(16)
            self.requests.append(RestRequest("ring", "POST", uri, data, sid))
            return self._json(201, {"sid": sid, "status": "queued", "to": data.get("To")})
        if (match := PARTICIPANTS.search(path)) and method.upper() == "POST":
            sid = "CA" + secrets.token_hex(16)
            self.requests.append(RestRequest("listen", "POST", uri, data, sid))
            return self._json(201, {"call_sid": sid, "conference_sid": match["conf"],
                                    "muted": True})
        if match := CALL.search(path):
            sid = match["sid"]
            if method.upper() == "DELETE":
                self.requests.append(RestRequest("delete", "DELETE", uri, data, sid))
                return Response(204, "")
            kind = "redirect" if "Url" in data else "hang_up"
            self.requests.append(RestRequest(kind, "POST", uri, data, sid))
            return self._json(200, {"sid": sid, "status": data.get("Status", "in-progress")})
        return self._json(404, {"code": 20404, "message": "not found", "status": 404})

    @staticmethod
    def _json(status: int, body: dict) -> Response:
        return Response(status, json.dumps(body))
