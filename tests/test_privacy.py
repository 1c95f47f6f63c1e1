"""Promise 1 at the edge: only allow-listed webhook fields survive, never the caller's."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from callflow.platform.privacy import ALLOWED_FIELDS, strip_caller_data
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, assert_no_canary

CALL_SID = "CA0123456789abcdef0123456789abcdef"

# Every field Twilio sends about the caller today (voice webhooks, conference callbacks), and
# made-up ones a future Twilio might add: none may survive.
CALLER_FIELDS = ["From", "Caller", "CallerName", "ForwardedFrom", "FromCity", "FromState",
                 "FromZip", "FromCountry", "CallerCity", "CallerState", "CallerZip",
                 "CallerCountry", "StirVerstat", "StirPassportToken", "CallToken", "CallerId",
                 "CallerCarrier", "CallerLocation", "from", "FROM", "caller"]


def twilio_form(**extra: str) -> MultiDict:
    return MultiDict({"CallSid": CALL_SID, "AccountSid": "AC" + "0" * 32, "From": CANARY_NUMBER,
                      "Caller": CANARY_NUMBER, "To": "+441632960001",
                      "Called": "+441632960001", "CallStatus": "ringing",
                      "Direction": "inbound", "ApiVersion": "2010-04-01", **CANARY_FIELDS,
                      **extra})


@pytest.mark.parametrize("name", CALLER_FIELDS)
def test_a_caller_field_is_dropped(name):
    kept = strip_caller_data(twilio_form(**{name: CANARY_NUMBER}))
    assert name not in kept
    assert_no_canary(repr(kept))


def test_what_the_service_needs_survives():
    kept = strip_caller_data(twilio_form(Digits="1"))
    assert kept == {"CallSid": CALL_SID, "AccountSid": "AC" + "0" * 32, "To": "+441632960001",
                    "Called": "+441632960001", "CallStatus": "ringing", "Direction": "inbound",
                    "ApiVersion": "2010-04-01", "Digits": "1"}


def test_no_allowed_field_names_the_caller():
    for name in ALLOWED_FIELDS:
        assert not name.startswith(("From", "Caller", "Forwarded", "Stir")), name


def test_a_repeated_field_keeps_its_first_value():
    form = MultiDict([("CallSid", CALL_SID), ("Digits", "1"), ("Digits", "2")])
    assert strip_caller_data(form)["Digits"] == "1"


def test_an_empty_form():
    assert strip_caller_data(MultiDict()) == {}


def test_the_result_is_a_plain_copy():
    form = twilio_form()
    kept = strip_caller_data(form)
    form["To"] = "+447700900000"
    assert kept["To"] == "+441632960001"
