"""Twilio's largest webhooks (a call with Add-ons results attached) reach a caller-facing path
whole and signed; past the limit the caller still hears the notice and is put through, by a
redirect that reveals nothing to whoever sent the oversized request. Everything else keeps the
small limit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from callflow.call.degraded import APOLOGY
from callflow.platform import keys
from tests.conftest import CANARY_NUMBER, PUBLIC_URL, RESPECT, TOKEN, assert_no_canary
from tests.test_voice import call_fields, logged, notice, texts
from webhooks import MAX_BODY_BYTES
from webhooks.body_size import OVERSIZED_APOLOGY, TWILIO_MAX_BODY_BYTES
from webhooks.simulator import TwilioSim

WORKER_NUMBERS = ("+447700900",)  # the teams' phones (Ofcom's drama range, flows/teams.yaml)


def add_ons(size: int) -> str:
    """An Add-ons payload of about ``size`` bytes, shaped as Twilio sends one (JSON, the results
    of a number lookup about the caller: exactly what the edge must drop)."""
    filler = "x" * max(0, size - 200)
    return json.dumps({"status": "successful", "message": None, "code": None, "results": {
        "lookup": {"status": "successful", "result": {"caller_name": "CANARYNAME",
                                                      "number": CANARY_NUMBER,
                                                      "notes": filler}}}})


def signed_post(client, path: str, fields: dict[str, str]):
    from twilio.request_validator import RequestValidator

    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC_URL}{path}", fields)
    return client.post(path, data=fields, headers={"X-Twilio-Signature": signature})


def unsigned_post(client, path: str, body: bytes):
    return client.post(path, data=body, content_type="application/x-www-form-urlencoded")


@pytest.mark.parametrize("size", [70_000, 300_000, TWILIO_MAX_BODY_BYTES - 4096])
def test_a_signed_webhook_with_large_add_ons_is_answered_as_any_other(client, size, caplog,
                                                                     redis):
    fields = call_fields(RESPECT, AddOns=add_ons(size))
    response = signed_post(client, "/voice/incoming", fields)

    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert texts(body)[0] == notice(RESPECT)
    assert ET.fromstring(body).find("Gather") is not None
    assert_no_canary(body, logged(caplog))


def test_twilios_fallback_takes_large_add_ons_too(client):
    fields = call_fields(RESPECT, AddOns=add_ons(70_000))
    response = signed_post(client, "/voice/fallback", fields)

    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert texts(body)[:2] == [APOLOGY, notice(RESPECT)]
    assert ET.fromstring(body).find("Dial") is not None


def test_past_the_limit_the_caller_is_redirected_to_the_signed_fallback(app, client):
    body = b"AddOns=" + b"x" * (TWILIO_MAX_BODY_BYTES + 1) + f"&To={RESPECT}".encode()
    response = unsigned_post(client, "/voice/incoming", body)

    assert response.status_code == 200
    twiml = response.get_data(as_text=True)
    root = ET.fromstring(twiml)
    assert [verb.tag for verb in root] == ["Redirect"]
    assert root.find("Redirect").text == f"{PUBLIC_URL}/voice/fallback?oversized=1"
    assert root.find("Redirect").get("method") == "POST"
    # Unsigned, so nothing in it: no worker's number, no helpline's, no flow.
    assert not any(number in twiml for number in (*WORKER_NUMBERS, "+44"))

    # Twilio follows the redirect with the call's ordinary (signed) parameters.
    sim = TwilioSim(app)
    followed = sim.post(root.find("Redirect").text, call_fields(RESPECT))
    assert followed.status_code == 200
    heard = followed.get_data(as_text=True)
    assert texts(heard)[:2] == [APOLOGY, notice(RESPECT)]
    assert ET.fromstring(heard).find("Dial/Number") is not None


def test_a_second_oversized_request_ends_with_an_apology_not_a_loop(client):
    body = b"AddOns=" + b"x" * (TWILIO_MAX_BODY_BYTES + 1)
    response = unsigned_post(client, "/voice/fallback?oversized=1", body)

    assert response.status_code == 200
    root = ET.fromstring(response.get_data(as_text=True))
    assert [verb.tag for verb in root] == ["Say", "Hangup"]
    assert root.find("Say").text == OVERSIZED_APOLOGY
    assert "+44" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/voice/step?flow=respect-phoneline&step=main-menu",
                                  "/voice/menu?flow=respect-phoneline&step=main-menu",
                                  "/voice/notice?flow=respect-phoneline&step=welcome"])
def test_every_caller_facing_path_is_redirected_not_refused(client, path):
    response = unsigned_post(client, path, b"x=" + b"y" * (TWILIO_MAX_BODY_BYTES + 10))
    assert response.status_code == 200
    assert ET.fromstring(response.get_data(as_text=True)).find("Redirect") is not None


def test_a_status_callback_past_the_limit_is_refused(client):
    response = unsigned_post(client, "/voice/status", b"x=" + b"y" * (TWILIO_MAX_BODY_BYTES + 10))
    assert response.status_code == 413


def test_the_manager_pages_keep_the_small_limit(client):
    response = unsigned_post(client, "/manager/login", b"name=" + b"y" * (MAX_BODY_BYTES + 10))
    assert response.status_code == 413


def test_an_oversized_request_is_never_signature_checked_or_read(client, caplog, redis):
    body = b"From=%2B447700900666&AddOns=" + b"x" * (TWILIO_MAX_BODY_BYTES + 1)
    unsigned_post(client, "/voice/incoming", body)
    assert set(redis.scan_iter()) <= {keys.last_good_flows()}  # what the app kept at start
    assert_no_canary(logged(caplog))
