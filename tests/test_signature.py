"""The edge's signature check: the ``twilio`` library's own signing function, the form of the
URL the public URL has tried first, the other form only when that does not match, and a
constant-time comparison. Checked against the library's published test vectors."""

from __future__ import annotations

import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import PUBLIC_URL, RESPECT, TOKEN
from webhooks.edge import signature_matches
from webhooks.simulator import ACCOUNT_SID, new_call_sid

# twilio-python's tests/unit/test_request_validator.py: the vectors Twilio publishes.
VECTOR_TOKEN = "12345"
VECTOR_URI = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR_PARAMS = {"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309",
                 "To": "+18005551212", "Caller": "+14158675309"}
VECTOR_SIGNATURE = "RSOYDt4T1cUTdK1PDd93/VVr8B8="
WITH_PORT_443 = "kvajT1Ptam85bY51eRf/AJRuM3w="  # the https URI signed with :443
HTTP_WITH_PORT_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4="
HTTP_WITH_PORT_1234 = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="


class Counting(RequestValidator):
    """The library's validator, counting the HMACs computed."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.computed: list[str] = []

    def compute_signature(self, uri, params, algorithm=None):
        self.computed.append(uri)
        return super().compute_signature(uri, params, algorithm)


@pytest.mark.parametrize("uri, signature", [
    (VECTOR_URI, VECTOR_SIGNATURE),
    (VECTOR_URI.replace(".com", ".com:1234"), VECTOR_SIGNATURE),  # signed without the port
    (VECTOR_URI, WITH_PORT_443),  # signed with the default port added
    (VECTOR_URI.replace("https", "http"), HTTP_WITH_PORT_80),
    (VECTOR_URI.replace(".com", ".com:1234").replace("https", "http"), HTTP_WITH_PORT_1234),
], ids=["as-is", "port-removed", "port-443-added", "port-80-added", "http-with-port"])
def test_the_published_vectors_match(uri, signature):
    assert signature_matches(RequestValidator(VECTOR_TOKEN), uri, VECTOR_PARAMS, signature,
                             "HMAC_SHA1")


@pytest.mark.parametrize("change", [
    lambda p: {**p, "Digits": "1235"}, lambda p: {k: v for k, v in p.items() if k != "To"},
    lambda p: {**p, "Extra": ""},
], ids=["value", "missing", "added"])
def test_any_change_to_the_fields_fails(change):
    assert not signature_matches(RequestValidator(VECTOR_TOKEN), VECTOR_URI,
                                 change(VECTOR_PARAMS), VECTOR_SIGNATURE, "HMAC_SHA1")


@pytest.mark.parametrize("signature", ["", "x", VECTOR_SIGNATURE.lower(), "é" * 28,
                                       VECTOR_SIGNATURE + "="])
def test_a_wrong_or_odd_signature_fails(signature):
    assert not signature_matches(RequestValidator(VECTOR_TOKEN), VECTOR_URI, VECTOR_PARAMS,
                                 signature, "HMAC_SHA1")


def test_an_unknown_algorithm_fails_rather_than_raising():
    assert not signature_matches(RequestValidator(VECTOR_TOKEN), VECTOR_URI, VECTOR_PARAMS,
                                 VECTOR_SIGNATURE, "HMAC_MD5")


def test_the_configured_form_costs_one_hmac_and_the_other_form_two():
    validator = Counting(VECTOR_TOKEN)
    assert signature_matches(validator, VECTOR_URI, VECTOR_PARAMS, VECTOR_SIGNATURE, "")
    assert validator.computed == [VECTOR_URI]

    validator.computed.clear()
    assert signature_matches(validator, VECTOR_URI, VECTOR_PARAMS, WITH_PORT_443, "")
    assert validator.computed == [VECTOR_URI, "https://mycompany.com:443/myapp.php?foo=1&bar=2"]


@pytest.mark.parametrize("signed_as", [f"{PUBLIC_URL}/voice/incoming",
                                       "https://callflow.example.org:443/voice/incoming"],
                         ids=["without-port", "with-port"])
def test_the_app_accepts_twilio_signing_either_form(client, signed_as):
    fields = {"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID, "To": RESPECT,
              "Called": RESPECT, "CallStatus": "ringing", "Direction": "inbound"}
    signature = RequestValidator(TOKEN).compute_signature(signed_as, fields)
    response = client.post("/voice/incoming", data=fields,
                           headers={"X-Twilio-Signature": signature})
    assert response.status_code == 200
