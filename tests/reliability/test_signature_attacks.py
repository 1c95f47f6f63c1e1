"""Forged and tampered webhooks: every voice endpoint, by POST and by GET, answers 403 to a
request whose Twilio signature is missing, wrong, made for another URL or another account,
made before a parameter was added or changed, or made with another algorithm than the one its
header claims; and nothing of the request (the caller's details included) reaches the store or
a log line. The same request correctly signed is served, so each refusal is the attack's doing.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from tests.conftest import PUBLIC_URL, RESPECT, TOKEN
from tests.reliability.support import (
    VOICE_ENDPOINTS,
    assert_clean,
    caller_fields,
    log_text,
    new_call_sid,
    redis_text,
)
from webhooks import create_app

SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
OTHER_TOKEN = "another-accounts-auth-token-000000"
QUERY = {"flow": "respect-phoneline", "step": "main-menu", "call": "abc",
         "team": "respect-workers", "leg": "0", "offer": "o1", "session": "s1"}


@dataclasses.dataclass
class Forged:
    """A request as sent: method, path with query, form fields, headers."""

    method: str
    target: str
    fields: list[tuple[str, str]]
    headers: dict[str, str]


def signature(url: str, fields: list[tuple[str, str]], token: str = TOKEN,
              algorithm: str | None = None) -> str:
    return RequestValidator(token).compute_signature(url, MultiDict(fields), algorithm)


def genuine(method: str, path: str) -> Forged:
    """What Twilio itself would send: signed on the public URL with the account's token."""
    fields = list(caller_fields(new_call_sid(), RESPECT, Digits="1").items())
    target = f"{path}?{urlencode(QUERY)}"
    if method == "GET":
        target = f"{target}&{urlencode(fields)}"
        return Forged("GET", target, [], {"X-Twilio-Signature": signature(PUBLIC_URL + target,
                                                                          [])})
    return Forged("POST", target, fields,
                  {"X-Twilio-Signature": signature(PUBLIC_URL + target, fields)})


def resigned(forged: Forged, **kwargs) -> Forged:
    url = PUBLIC_URL + forged.target
    return dataclasses.replace(forged, headers={**forged.headers, "X-Twilio-Signature":
                                                signature(url, forged.fields, **kwargs)})


def missing(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, headers={})


def empty(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, headers={"X-Twilio-Signature": ""})


def wrong(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, headers={"X-Twilio-Signature": base64.b64encode(
        b"\x00" * 20).decode()})


def another_accounts_token(f: Forged, path: str) -> Forged:
    return resigned(f, token=OTHER_TOKEN)


def replayed_to_another_endpoint(f: Forged, path: str) -> Forged:
    other = "/voice/fallback" if path != "/voice/fallback" else "/voice/incoming"
    return dataclasses.replace(f, target=f.target.replace(path, other, 1))


def signed_for_another_host(f: Forged, path: str) -> Forged:
    url = "https://attacker.example.net" + f.target
    return dataclasses.replace(f, headers={"X-Twilio-Signature": signature(url, f.fields),
                                           "Host": "attacker.example.net"})


def signed_over_plain_http(f: Forged, path: str) -> Forged:
    url = PUBLIC_URL.replace("https://", "http://") + f.target
    return dataclasses.replace(f, headers={"X-Twilio-Signature": signature(url, f.fields)})


def query_param_added_after_signing(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, target=f"{f.target}&step=connect")


def query_param_changed_after_signing(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, target=f.target.replace("flow=respect-phoneline",
                                                          "flow=mens-advice-line"))


def form_field_changed_after_signing(f: Forged, path: str) -> Forged:
    if f.method == "GET":
        return dataclasses.replace(f, target=f.target.replace("Digits=1", "Digits=9"))
    return dataclasses.replace(f, fields=[(k, "9" if k == "Digits" else v) for k, v in f.fields])


def form_field_repeated_after_signing(f: Forged, path: str) -> Forged:
    if f.method == "GET":
        return dataclasses.replace(f, target=f"{f.target}&Digits=9")
    return dataclasses.replace(f, fields=[*f.fields, ("Digits", "9")])


def sha1_signature_claimed_as_sha256(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, headers={**f.headers,
                                           SETTINGS_HEADER: "algorithm=HMAC_SHA256"})


def sha256_signature_without_its_header(f: Forged, path: str) -> Forged:
    return resigned(f, algorithm="HMAC_SHA256")


def unknown_algorithm_claimed(f: Forged, path: str) -> Forged:
    return dataclasses.replace(f, headers={**f.headers, SETTINGS_HEADER: "algorithm=HMAC_MD5"})


def md5_signature_claimed_as_md5(f: Forged, path: str) -> Forged:
    url = PUBLIC_URL + f.target
    data = url + "".join(f"{k}{v}" for k, v in sorted(f.fields))
    digest = hmac.new(TOKEN.encode(), data.encode(), hashlib.md5).digest()
    return dataclasses.replace(f, headers={"X-Twilio-Signature": base64.b64encode(
        digest).decode(), SETTINGS_HEADER: "algorithm=HMAC_MD5"})


ATTACKS: list[Callable[[Forged, str], Forged]] = [
    missing, empty, wrong, another_accounts_token, replayed_to_another_endpoint,
    signed_for_another_host, signed_over_plain_http, query_param_added_after_signing,
    query_param_changed_after_signing, form_field_changed_after_signing,
    form_field_repeated_after_signing, sha1_signature_claimed_as_sha256,
    sha256_signature_without_its_header, unknown_algorithm_claimed,
    md5_signature_claimed_as_md5,
]


def send(client, forged: Forged):
    if forged.method == "GET":
        return client.get(forged.target, headers=forged.headers)
    return client.post(forged.target, data=urlencode(forged.fields), headers=forged.headers,
                       content_type="application/x-www-form-urlencoded")


@pytest.fixture
def attacked(app, redis):
    return app.test_client()


def assert_served(response, what) -> None:
    """Past the signature check and answered: a 200 of TwiML (never a 403, nor a 500)."""
    assert response.status_code == 200, (what, response.status_code)
    assert ET.fromstring(response.get_data(as_text=True)).tag == "Response", what


def test_genuine_requests_are_served(attacked):
    """The control: each request below, untampered, gets past the signature check and is
    answered with TwiML."""
    for path in VOICE_ENDPOINTS:
        for method in ("POST", "GET"):
            assert_served(send(attacked, genuine(method, path)), (method, path))
    sha256 = resigned(genuine("POST", "/voice/incoming"), algorithm="HMAC_SHA256")
    sha256.headers[SETTINGS_HEADER] = "key=webhooks_sharedkey_x,algorithm=HMAC_SHA256"
    response = send(attacked, sha256)
    assert_served(response, "HMAC_SHA256")
    assert "This call is confidential" in response.get_data(as_text=True)


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_forged_requests_are_refused_everywhere(attacked, redis, redis_url, caplog, attack):
    caplog.set_level(logging.INFO)
    for path in VOICE_ENDPOINTS:
        for method in ("POST", "GET"):
            forged = attack(genuine(method, path), path)
            response = send(attacked, forged)
            assert response.status_code == 403, (attack.__name__, method, path)
            body = response.get_data(as_text=True)
            assert "<Response" not in body and "Traceback" not in body
            assert_clean(body)
    assert not list(redis.scan_iter("callflow:call:*"))  # no handler ran: no call state
    assert_clean(log_text(caplog.records), redis_text(redis_url))


def test_without_an_auth_token_every_webhook_is_refused(settings, redis, clock):
    """An HMAC keyed with nothing is one anybody can make: such an app must refuse them all."""
    app = create_app({"TESTING": True, "STORE": redis, "CLOCK": clock,
                      "SETTINGS": dataclasses.replace(settings, twilio_auth_token="")})
    client = app.test_client()
    for path in VOICE_ENDPOINTS:
        fields = list(caller_fields(new_call_sid(), RESPECT).items())
        headers = {"X-Twilio-Signature": signature(PUBLIC_URL + path, fields, token="")}
        response = client.post(path, data=urlencode(fields), headers=headers,
                               content_type="application/x-www-form-urlencoded")
        assert response.status_code == 403, path
