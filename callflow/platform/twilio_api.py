"""Every request the service makes to Twilio's REST API, in one place.

Each call leg the service creates shows the helpline's number, is never recorded and never
runs answering-machine detection; the parameter names are Twilio's own (checked against its
OpenAPI description in the tests). ``TWILIO_API_URL`` points the client elsewhere (a mock, a
staging proxy) by rewriting the base of every request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NewConnectionError

from callflow.platform.config import TWILIO_API_DEFAULT, Settings

log = logging.getLogger(__name__)
LEG_EVENTS = ["initiated", "ringing", "answered", "completed"]
# A call in one of these states is over; its record can be deleted.
FINISHED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Twilio answers 21220 when a call is no longer in a state that can be changed.
NOT_CHANGEABLE = 21220
REST_TIMEOUT_SECONDS = 5
# Gateways that may already have handed the request to Twilio when they gave up waiting.
GATEWAY_TIMEOUTS = frozenset({502, 504})


def may_have_happened(exc: BaseException) -> bool:
    """Whether Twilio may have carried out a request that failed with ``exc``.

    Only an error Twilio itself answered with, or a connection that was never made, says for
    certain that nothing happened. A request that timed out waiting for the answer, or whose
    connection dropped after it was sent, may have been done: a listen-in leg may be ringing.
    """
    if isinstance(exc, TwilioRestException):
        return exc.status in GATEWAY_TIMEOUTS
    if isinstance(exc, requests.ConnectTimeout):
        return False
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout):
        cause = exc.args[0] if exc.args else None
        cause = getattr(cause, "reason", cause)  # urllib3's MaxRetryError wraps the cause
        return not isinstance(cause, NewConnectionError)
    return True


@dataclass(frozen=True)
class Participant:
    """Someone in a conference, as Twilio lists them: their leg, label and status."""

    call_sid: str
    label: str
    status: str


class BaseUrlHttpClient(TwilioHttpClient):
    """Sends what the twilio library builds for api.twilio.com to another base URL."""

    def __init__(self, base_url: str, **kwargs) -> None:
        super().__init__(timeout=REST_TIMEOUT_SECONDS, **kwargs)
        self.base_url = base_url.rstrip("/")

    def request(self, method, url, *args, **kwargs):
        if url.startswith(TWILIO_API_DEFAULT):
            url = self.base_url + url[len(TWILIO_API_DEFAULT):]
        return super().request(method, url, *args, **kwargs)


def make_client(settings: Settings, http_client=None) -> Client:
    http_client = http_client or BaseUrlHttpClient(settings.twilio_api_url)
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                    http_client=http_client)
    if settings.twilio_api_url.rstrip("/") != TWILIO_API_DEFAULT:
        # TWILIO_REGION / TWILIO_EDGE would build a regional host that the base-URL rewrite
        # does not match, and real credentials would leave for real Twilio.
        client.region = client.edge = None
    return client


@dataclass
class TwilioApi:
    client: Client

    def ring(self, *, to: str, helpline_number: str, url: str, status_callback: str,
             timeout: int) -> str:
        """Call a worker (or a manager) from the helpline's number; returns the leg's sid."""
        call = self.client.calls.create(
            to=to, from_=helpline_number, url=url, method="POST", timeout=timeout, record=False,
            status_callback=status_callback, status_callback_method="POST",
            status_callback_event=LEG_EVENTS)
        return call.sid

    def listen(self, *, conference_sid: str, to: str, helpline_number: str,
               status_callback: str, label: str) -> str:
        """Add a muted, beepless, unrecorded participant to a live conference."""
        participant = self.client.conferences(conference_sid).participants.create(
            from_=helpline_number, to=to, muted=True, beep="false", record=False,
            conference_record="do-not-record", start_conference_on_enter=False,
            end_conference_on_exit=False, label=label, early_media=False,
            status_callback=status_callback, status_callback_method="POST",
            status_callback_event=LEG_EVENTS)
        return participant.call_sid

    def participants(self, conference_sid: str) -> list[Participant]:
        """Everyone Twilio has in the conference now, ringing or connected."""
        return [Participant(p.call_sid or "", p.label or "", p.status or "")
                for p in self.client.conferences(conference_sid).participants.list()]

    def participant(self, conference_sid: str, call_sid: str) -> Participant | None:
        """One participant as Twilio has it, or None when it is not in the conference."""
        try:
            p = self.client.conferences(conference_sid).participants(call_sid).fetch()
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise
        return Participant(p.call_sid or call_sid, p.label or "", p.status or "")

    def remove(self, conference_sid: str, call_sid: str) -> None:
        """Take a participant out of a conference (it is already out if Twilio says 404)."""
        try:
            self.client.conferences(conference_sid).participants(call_sid).delete()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise

    def hang_up(self, call_sid: str) -> None:
        """End a leg whatever its state: cancel it while ringing, complete it once answered."""
        for status in ("canceled", "completed"):
            try:
                self.client.calls(call_sid).update(status=status)
                return
            except TwilioRestException as exc:
                if exc.code != NOT_CHANGEABLE and exc.status != 404:
                    raise
        log.info("leg already finished", extra={"call": call_sid})

    def redirect(self, call_sid: str, url: str) -> None:
        """Take a live call out of whatever it is doing and run the TwiML at ``url``."""
        self.client.calls(call_sid).update(url=url, method="POST")

    def finished_calls(self, *, to: str | None = None, from_: str | None = None,
                       page_size: int, limit: int) -> list[str]:
        """The sids of finished calls in the account's log to (or from) one of the service's
        own numbers, at most ``limit``, following Twilio's pages. Only ever asked by the
        helplines' numbers: a caller's number is never sent to look anything up."""
        found: list[str] = []
        for call in self.client.calls.stream(to=to, from_=from_, page_size=page_size):
            if call.status in FINISHED:
                found.append(call.sid)
                if len(found) >= limit:
                    break
        return found

    def delete_record(self, call_sid: str) -> None:
        """Delete a finished call's record (and with it the caller's number) from Twilio."""
        try:
            self.client.calls(call_sid).delete()
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
