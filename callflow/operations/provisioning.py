"""Making Twilio's configuration of each helpline number match what the service needs.

Every number a flow answers (and the manager line's) must send its calls to this service and
nothing else: the voice URL, the fallback URL that serves the notice and a direct dial when the
service cannot answer, and the status callback that ends a call's state. Caller-ID lookup
(CNAM) must be off (promise 1: it would post the caller's name to us), and no voice application
or SIP trunk may sit in front of the URLs, since either would take the call somewhere that may
record or identify callers (promise 2) and Twilio ignores the voice URLs while one is attached.

``plan`` reads the account and says what differs; ``apply`` changes only those fields.
``callflow twilio sync`` and ``callflow doctor`` both use ``plan``, so they never disagree.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from callflow.language.flow import FlowSet
from callflow.platform.errors import ConfigError

log = logging.getLogger(__name__)
NONE = "(none)"


@dataclass(frozen=True)
class Field:
    """One setting of an IncomingPhoneNumber: Twilio's parameter name and the library's."""

    param: str
    attribute: str


FIELDS = (
    Field("VoiceUrl", "voice_url"),
    Field("VoiceMethod", "voice_method"),
    Field("VoiceFallbackUrl", "voice_fallback_url"),
    Field("VoiceFallbackMethod", "voice_fallback_method"),
    Field("StatusCallback", "status_callback"),
    Field("StatusCallbackMethod", "status_callback_method"),
    Field("VoiceCallerIdLookup", "voice_caller_id_lookup"),
    Field("VoiceApplicationSid", "voice_application_sid"),
    Field("TrunkSid", "trunk_sid"),
    Field("VoiceReceiveMode", "voice_receive_mode"),
)
BY_PARAM = {f.param: f for f in FIELDS}
# Values compared without regard to case: Twilio answers "POST" or "post" alike.
CASELESS = frozenset({"VoiceMethod", "VoiceFallbackMethod", "StatusCallbackMethod",
                      "VoiceReceiveMode"})


@dataclass(frozen=True)
class Difference:
    number: str
    field: str
    current: str
    wanted: str


@dataclass
class NumberState:
    """One helpline number as the account has it, and what must change."""

    number: str
    owner: str  # which flow (or the manager line) answers it, for messages
    sid: str = ""
    differences: list[Difference] = field(default_factory=list)


@dataclass
class Plan:
    numbers: list[NumberState] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each says what is wrong and the fix

    @property
    def differences(self) -> list[Difference]:
        return [d for n in self.numbers for d in n.differences]

    @property
    def in_sync(self) -> bool:
        return not self.problems and not self.differences


@dataclass(frozen=True)
class Update:
    number: str
    fields: tuple[str, ...]
    error: str = ""


def check_public_url(public_url: str) -> str:
    """The base URL Twilio is given, or a ConfigError saying how to fix it.

    Only https: a webhook carries the caller's number before the edge drops it, and its
    signature and body must not cross the internet in clear text.
    """
    if not public_url:
        raise ConfigError("set CALLFLOW_PUBLIC_URL to the https:// address Twilio reaches the "
                          "service on (the one your TLS proxy serves)")
    parts = urlsplit(public_url)
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigError(f"CALLFLOW_PUBLIC_URL {public_url!r} must be an https:// URL that "
                          "Twilio can reach, e.g. https://calls.example.org")
    if parts.query or parts.fragment:
        raise ConfigError(f"CALLFLOW_PUBLIC_URL {public_url!r} must not have a query or "
                          "fragment")
    return public_url.rstrip("/")


def wanted_settings(public_url: str) -> dict[str, str]:
    """Every field the service insists on, as Twilio's API spells the value."""
    base = check_public_url(public_url)
    return {
        "VoiceUrl": f"{base}/voice/incoming",
        "VoiceMethod": "POST",
        "VoiceFallbackUrl": f"{base}/voice/fallback",
        "VoiceFallbackMethod": "POST",
        "StatusCallback": f"{base}/voice/status",
        "StatusCallbackMethod": "POST",
        "VoiceCallerIdLookup": "false",
        "VoiceApplicationSid": "",
        "TrunkSid": "",
        "VoiceReceiveMode": "voice",
    }


def current_settings(instance) -> dict[str, str]:
    """The fields of an IncomingPhoneNumber resource, as strings ('' for unset)."""
    values = {}
    for f in FIELDS:
        value = getattr(instance, f.attribute, None)
        if isinstance(value, bool):
            value = "true" if value else "false"
        values[f.param] = "" if value is None else str(value)
    return values


def _same(param: str, current: str, wanted: str) -> bool:
    if param in CASELESS:
        return current.lower() == wanted.lower()
    if param == "VoiceCallerIdLookup":
        return (current or "false").lower() == wanted  # unset is Twilio's default: off
    return current == wanted


def differences(number: str, current: dict[str, str], wanted: dict[str, str]
                ) -> list[Difference]:
    return [Difference(number, param, current.get(param, ""), value)
            for param, value in wanted.items()
            if not _same(param, current.get(param, ""), value)]


def http_status(exc: Exception) -> int | None:
    """The HTTP status of a refused request: the library raises a TwilioRestException for
    one resource, and a bare TwilioException carrying the response for a page of a list."""
    if isinstance(exc, TwilioRestException):
        return exc.status
    response = exc.args[1] if isinstance(exc, TwilioException) and len(exc.args) > 1 else None
    return getattr(response, "status_code", None)


def describe_error(exc: Exception, account_sid: str = "") -> str:
    """A Twilio or network failure in words an admin can act on."""
    status = http_status(exc)
    if status in (401, 403):
        return (f"Twilio refused the credentials (HTTP {status}): check TWILIO_ACCOUNT_SID and "
                "TWILIO_AUTH_TOKEN")
    if status == 404 and account_sid:
        return f"Twilio has no account {account_sid}: check TWILIO_ACCOUNT_SID"
    if isinstance(exc, TwilioRestException):
        return f"Twilio answered HTTP {exc.status} (error {exc.code}): {exc.msg}"
    if status is not None:
        return f"Twilio answered HTTP {status}"
    if isinstance(exc, requests.RequestException):
        return (f"could not reach Twilio's API ({type(exc).__name__}): check the network and "
                "TWILIO_API_URL")
    return f"{type(exc).__name__}: {exc}"


def plan(client: Client, flowset: FlowSet, public_url: str,
         staff_line: tuple[str, ...] = ()) -> Plan:
    """Read each number the service answers (the helplines', the manager line's, the staff
    line's) from the account and list what differs from the wanted."""
    wanted = wanted_settings(public_url)
    result = Plan()
    numbers = dict(flowset.answered_numbers())
    for number in staff_line:
        numbers.setdefault(number, "the staff line")
    for number, owner in numbers.items():
        try:
            found = [n for n in client.incoming_phone_numbers.list(phone_number=number)
                     if n.phone_number == number]
        except (TwilioException, requests.RequestException) as exc:
            result.problems.append(f"{number} ({owner}): "
                                   f"{describe_error(exc, client.account_sid)}")
            if http_status(exc) in (401, 403, 404):
                break  # every other number would fail the same way
            continue
        if not found:
            result.problems.append(
                f"{number} ({owner}) is not a number of Twilio account {client.account_sid}: "
                "buy or port it into this account (or move it from a subaccount), or correct "
                "the numbers in the flow file")
            continue
        state = NumberState(number, owner, found[0].sid)
        state.differences = differences(number, current_settings(found[0]), wanted)
        result.numbers.append(state)
    return result


def apply(client: Client, plan: Plan) -> list[Update]:
    """Change the fields that differ, one request per number; the others are left alone."""
    updates = []
    for state in plan.numbers:
        if not state.differences:
            continue
        kwargs = {}
        for difference in state.differences:
            value: str | bool = difference.wanted
            if difference.field == "VoiceCallerIdLookup":
                value = value == "true"
            # An empty VoiceApplicationSid or TrunkSid detaches the application or trunk.
            kwargs[BY_PARAM[difference.field].attribute] = value
        changed = tuple(d.field for d in state.differences)
        try:
            client.incoming_phone_numbers(state.sid).update(**kwargs)
        except (TwilioException, requests.RequestException) as exc:
            updates.append(Update(state.number, changed, describe_error(exc, client.account_sid)))
            continue
        log.info("helpline number configured", extra={"event": "number_synced",
                                                      "kind": ",".join(changed)})
        updates.append(Update(state.number, changed))
    return updates
