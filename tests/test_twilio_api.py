"""Every REST request the service makes, on the real twilio Client and its real HTTP stack,
answered by ``responses`` at ``TWILIO_API_URL`` and checked against Twilio's OpenAPI
description: the parameter names, the required ones, the values' types."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import requests
import urllib3
from twilio.base.exceptions import TwilioRestException

from callflow.platform.config import TWILIO_API_DEFAULT, Settings
from callflow.platform.twilio_api import (
    LEG_EVENTS,
    NOT_CHANGEABLE,
    REST_TIMEOUT_SECONDS,
    BaseUrlHttpClient,
    TwilioApi,
    make_client,
    may_have_happened,
)
from tests import twilio_openapi
from tests.bridge_support import MOCK_API, TwilioMock
from tests.conftest import MENS_ADVICE, RESPECT

WORKER = "+447700900101"
MANAGER = "+447700900301"
LEG_SID = "CA" + "ab" * 16
CONFERENCE_SID = "CF" + "cd" * 16
WORKER_URL = "https://callflow.example.org/voice/worker?call=abc&leg=0"
STATUS_URL = "https://callflow.example.org/voice/worker/status?call=abc&leg=0"
STEP_URL = "https://callflow.example.org/voice/step?flow=respect-phoneline&step=busy"
MONITOR_URL = "https://callflow.example.org/voice/monitor/status?session=s1"
NO_DETECTION = ("MachineDetection", "AsyncAmd", "AmdStatusCallback")


@pytest.fixture
def api(bridge_settings) -> TwilioApi:
    return TwilioApi(make_client(bridge_settings))


def ring(api: TwilioApi, helpline: str = RESPECT) -> str:
    return api.ring(to=WORKER, helpline_number=helpline, url=WORKER_URL,
                    status_callback=STATUS_URL, timeout=20)


def listen(api: TwilioApi) -> str:
    return api.listen(conference_sid=CONFERENCE_SID, to=MANAGER, helpline_number=RESPECT,
                      status_callback=MONITOR_URL, label="monitor")


def assert_checked(mock: TwilioMock, count: int) -> None:
    """Exactly ``count`` requests, each at the mock base and valid for Twilio's API."""
    assert mock.strays == []
    assert mock.problems == []
    assert len(mock.sent) == count
    assert all(s.url.startswith(MOCK_API + "/2010-04-01/Accounts/") for s in mock.sent)


def assert_private_leg(form: dict[str, list[str]], helpline: str) -> None:
    """A leg the service creates shows the helpline's number and is never recorded or
    screened by answering-machine detection."""
    assert form["From"] == [helpline]
    assert form["Record"] == ["false"]
    assert not [name for name in form if name.startswith(NO_DETECTION)]
    assert not [name for name in form if name.startswith("Recording")]


# -- each request, one by one -----------------------------------------------------------------


@pytest.mark.parametrize("helpline", [RESPECT, MENS_ADVICE])
def test_ring_calls_the_worker_from_the_helpline_unrecorded(api, twilio_api, helpline):
    sid = ring(api, helpline)

    assert_checked(twilio_api, 1)
    sent = twilio_api.sent[0]
    assert (sent.kind, sent.method, sid) == ("ring", "POST", sent.sid)
    assert sent.url == f"{MOCK_API}/2010-04-01/Accounts/{api.client.account_sid}/Calls.json"
    assert_private_leg(sent.form, helpline)
    assert sent.form["To"] == [WORKER]
    assert sent.form["Url"] == [WORKER_URL]
    assert sent.form["Method"] == ["POST"]
    assert sent.form["Timeout"] == ["20"]
    assert sent.form["StatusCallback"] == [STATUS_URL]
    assert sent.form["StatusCallbackMethod"] == ["POST"]
    assert sent.form["StatusCallbackEvent"] == LEG_EVENTS


def test_listen_adds_a_muted_beepless_unrecorded_participant(api, twilio_api):
    sid = listen(api)

    assert_checked(twilio_api, 1)
    sent = twilio_api.sent[0]
    assert (sent.kind, sid) == ("listen", sent.sid)
    assert sent.url.endswith(f"/Conferences/{CONFERENCE_SID}/Participants.json")
    assert_private_leg(sent.form, RESPECT)
    assert sent.form["To"] == [MANAGER]
    assert sent.form["Muted"] == ["true"]
    assert sent.form["Beep"] == ["false"]
    assert sent.form["ConferenceRecord"] == ["do-not-record"]
    assert sent.form["StartConferenceOnEnter"] == ["false"]
    assert sent.form["EndConferenceOnExit"] == ["false"]
    assert sent.form["EarlyMedia"] == ["false"]
    assert sent.form["StatusCallback"] == [MONITOR_URL]


def test_the_rooms_participants_are_listed_with_their_labels(api, twilio_api):
    sid = listen(api)
    twilio_api.joined(CONFERENCE_SID, LEG_SID)

    listed = api.participants(CONFERENCE_SID)

    assert_checked(twilio_api, 2)
    assert twilio_api.sent[1].method == "GET"
    assert twilio_api.sent[1].url.split("?")[0].endswith(
        f"/Conferences/{CONFERENCE_SID}/Participants.json")
    assert {(p.call_sid, p.label, p.status) for p in listed} == {
        (sid, "monitor", "queued"), (LEG_SID, "", "connected")}


def test_one_participant_is_read_and_an_absent_one_is_none(api, twilio_api):
    sid = listen(api)

    assert api.participant(CONFERENCE_SID, sid).label == "monitor"
    assert api.participant(CONFERENCE_SID, LEG_SID) is None
    assert_checked(twilio_api, 3)


def test_a_participant_is_removed_and_removing_one_gone_is_fine(api, twilio_api):
    sid = listen(api)

    api.remove(CONFERENCE_SID, sid)
    api.remove(CONFERENCE_SID, sid)  # Twilio answers 404: already out

    assert_checked(twilio_api, 3)
    assert [s.method for s in twilio_api.sent[1:]] == ["DELETE", "DELETE"]
    assert twilio_api.sent[1].url.endswith(
        f"/Conferences/{CONFERENCE_SID}/Participants/{sid}.json")
    assert twilio_api.rooms[CONFERENCE_SID] == {}


@pytest.mark.parametrize("error, happened", [
    (TwilioRestException(400, "uri"), False),
    (TwilioRestException(500, "uri"), False),
    (TwilioRestException(502, "uri"), True),
    (TwilioRestException(504, "uri"), True),
    (requests.ConnectTimeout("never connected"), False),
    (requests.ConnectionError(urllib3.exceptions.MaxRetryError(
        None, "/", urllib3.exceptions.NewConnectionError(None, "refused"))), False),
    (requests.ReadTimeout("no answer in time"), True),
    (requests.ConnectionError(urllib3.exceptions.ProtocolError("Connection aborted.")), True),
    (requests.ConnectionError("dropped"), True),
])
def test_only_an_answer_from_twilio_or_no_connection_says_nothing_happened(error, happened):
    assert may_have_happened(error) is happened


def test_hang_up_cancels_a_ringing_leg(api, twilio_api):
    api.hang_up(LEG_SID)

    assert_checked(twilio_api, 1)
    sent = twilio_api.sent[0]
    assert (sent.kind, sent.sid) == ("hang_up", LEG_SID)
    assert sent.url.endswith(f"/Calls/{LEG_SID}.json")
    assert sent.form == {"Status": ["canceled"]}


def test_hang_up_completes_a_leg_that_was_answered(api, twilio_api):
    twilio_api.fail("hang_up", (400, NOT_CHANGEABLE))

    api.hang_up(LEG_SID)

    assert_checked(twilio_api, 2)
    assert [s.form["Status"] for s in twilio_api.sent] == [["canceled"], ["completed"]]


def test_hang_up_of_a_leg_twilio_no_longer_has_is_not_an_error(api, twilio_api, caplog):
    twilio_api.fail("hang_up", 404, 404)

    with caplog.at_level(logging.INFO, logger="callflow.platform.twilio_api"):
        api.hang_up(LEG_SID)

    assert len(twilio_api.sent) == 2
    assert "leg already finished" in caplog.text


def test_hang_up_raises_when_twilio_fails(api, twilio_api):
    twilio_api.fail("hang_up", 500)

    with pytest.raises(TwilioRestException):
        api.hang_up(LEG_SID)
    assert len(twilio_api.sent) == 1


def test_redirect_takes_the_caller_to_a_step(api, twilio_api):
    api.redirect(LEG_SID, STEP_URL)

    assert_checked(twilio_api, 1)
    sent = twilio_api.sent[0]
    assert (sent.kind, sent.sid) == ("redirect", LEG_SID)
    assert sent.form == {"Url": [STEP_URL], "Method": ["POST"]}


def test_delete_record_deletes_the_call_resource(api, twilio_api):
    api.delete_record(LEG_SID)

    assert_checked(twilio_api, 1)
    sent = twilio_api.sent[0]
    assert (sent.kind, sent.method, sent.sid, sent.body) == ("delete", "DELETE", LEG_SID, "")


def test_delete_record_of_a_call_already_gone_is_fine(api, twilio_api):
    twilio_api.fail("delete", 404)

    api.delete_record(LEG_SID)

    assert len(twilio_api.sent) == 1


def test_delete_record_raises_when_twilio_fails(api, twilio_api):
    twilio_api.fail("delete", 500)

    with pytest.raises(TwilioRestException):
        api.delete_record(LEG_SID)


@pytest.mark.parametrize("request_kind, make", [
    ("ring", ring),
    ("listen", listen),
    ("redirect", lambda api: api.redirect(LEG_SID, STEP_URL)),
    ("hang_up", lambda api: api.hang_up(LEG_SID)),
    ("delete", lambda api: api.delete_record(LEG_SID)),
])
def test_an_unreachable_api_raises(api, twilio_api, request_kind, make):
    twilio_api.fail(request_kind, requests.ConnectionError("connection refused"))

    with pytest.raises(requests.ConnectionError):
        make(api)


# -- the base URL ---------------------------------------------------------------------------


@pytest.mark.parametrize("base, expected", [
    ("https://twilio-mock.test", "https://twilio-mock.test/2010-04-01/"),
    ("https://twilio-mock.test/", "https://twilio-mock.test/2010-04-01/"),
    ("https://proxy.test/twilio", "https://proxy.test/twilio/2010-04-01/"),
    (TWILIO_API_DEFAULT, "https://api.twilio.com/2010-04-01/"),
])
def test_twilio_api_url_is_the_base_of_every_request(bridge_settings, twilio_api, base,
                                                     expected):
    api = TwilioApi(make_client(dataclasses.replace(bridge_settings, twilio_api_url=base)))

    if expected.startswith(MOCK_API):
        ring(api)
        urls = [s.url for s in twilio_api.sent]
    else:  # anywhere but the mock base is refused, and noted
        with pytest.raises(requests.ConnectionError):
            ring(api)
        urls = [stray.split(" ", 1)[1] for stray in twilio_api.strays]
        twilio_api.strays.clear()  # provoked on purpose, and checked below
    assert len(urls) == 1
    assert urls[0].startswith(expected)


@pytest.mark.parametrize("variable, value", [("TWILIO_REGION", "ie1"),
                                             ("TWILIO_EDGE", "dublin")])
def test_twilio_api_url_holds_whatever_region_or_edge_the_environment_names(
        bridge_settings, twilio_api, monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    api = TwilioApi(make_client(bridge_settings))

    ring(api)

    assert_checked(twilio_api, 1)


def test_twilio_api_url_comes_from_the_environment():
    settings = Settings.from_env({"TWILIO_API_URL": MOCK_API, "TWILIO_ACCOUNT_SID": "AC" + "2" * 32,
                                  "TWILIO_AUTH_TOKEN": "token"})

    client = make_client(settings)

    assert isinstance(client.http_client, BaseUrlHttpClient)
    assert client.http_client.base_url == MOCK_API
    assert Settings.from_env({}).twilio_api_url == TWILIO_API_DEFAULT


def test_a_hung_api_times_out_instead_of_blocking_a_worker(api, twilio_api):
    ring(api)

    assert twilio_api.mock.calls[0].request.req_kwargs["timeout"] == REST_TIMEOUT_SECONDS


# -- the OpenAPI check itself ----------------------------------------------------------------


CALLS_URL = f"{MOCK_API}/2010-04-01/Accounts/AC{'1' * 32}/Calls.json"


@pytest.mark.parametrize("method, url, body, problem", [
    ("POST", CALLS_URL, "To=%2B447700900101&From=%2B441632960001&Recrod=false", "Recrod"),
    ("POST", CALLS_URL, "To=%2B447700900101&Url=https%3A%2F%2Fx.test", "required parameter From"),
    ("POST", CALLS_URL, "To=a&From=b&Record=no", "not a boolean"),
    ("POST", CALLS_URL, "To=a&From=b&Timeout=soon", "not an integer"),
    ("POST", CALLS_URL, "To=a&From=b&Method=PUT", "is not one of"),
    ("POST", CALLS_URL, "To=a&From=b&Url=/voice/worker", "absolute URL"),
    ("POST", CALLS_URL, "To=a&To=b&From=c", "not an array"),
    ("POST", CALLS_URL.replace("Calls.json", f"Calls/{LEG_SID}.json"), "Status=hungup",
     "is not one of"),
    ("POST", CALLS_URL.replace("Calls.json", "Calls/nope.json"), "Status=canceled",
     "does not match"),
    ("PUT", CALLS_URL, "To=a&From=b", "no PUT"),
    ("POST", f"{MOCK_API}/2010-04-01/Accounts/AC{'1' * 32}/Calls/x/Nope.json", "", "no path"),
])
def test_the_openapi_check_refuses_what_twilio_would(method, url, body, problem):
    with pytest.raises(AssertionError, match=problem):
        twilio_openapi.check(method, url, body)


def test_the_openapi_check_accepts_a_real_create_call():
    form = twilio_openapi.check("POST", CALLS_URL, "To=%2B447700900101&From=%2B441632960001"
                                "&StatusCallbackEvent=ringing&StatusCallbackEvent=completed")

    assert form["StatusCallbackEvent"] == ["ringing", "completed"]
