"""The voice webhooks, driven as Twilio drives them: signed requests, TwiML followed.

Every test sends the canary caller (number, name, location) on every request and ends by
checking that none of it reached a log record, the store (during the call as well as after) or
a response, and that every TwiML document keeps the privacy settings (promises 1 and 2).
"""

from __future__ import annotations

import logging
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis as redis_lib
from twilio.request_validator import RequestValidator

from callflow.call.degraded import APOLOGY
from callflow.language.policy import (
    DEFAULT_NOTICE,
    POLICY_OFFER,
    shipped_policy_text,
    spoken_paragraphs,
)
from callflow.language.steps import INVALID_CHOICE
from callflow.platform import keys
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    CLOSED_TIME,
    FLOWS,
    MENS_ADVICE,
    PUBLIC_URL,
    RESPECT,
    TOKEN,
    assert_no_canary,
    free_port,
    store_dump,
)
from webhooks import create_app
from webhooks.simulator import ACCOUNT_SID, Keypad, TwilioSim, new_call_sid

HELPLINE_NUMBERS = {RESPECT, MENS_ADVICE}
UNKNOWN = "+441632960555"
CHRISTMAS_NOON = datetime(2026, 12, 25, 12, 0, tzinfo=UTC)

FLOW = {RESPECT: "respect-phoneline", MENS_ADVICE: "mens-advice-line"}
NAME = {RESPECT: "Respect Phoneline", MENS_ADVICE: "Men's Advice Line"}
FIRST_WORKER = {RESPECT: "Alice (respect-workers)", MENS_ADVICE: "Dan (mal-workers)"}
PROMPT = {
    RESPECT: "If you are worried about your own behaviour towards a partner or family member and "
             "would like to talk to someone, press 1. To hear about our website and webchat, "
             "press 2.",
    MENS_ADVICE: "If you are experiencing domestic abuse and would like to talk to an advisor, "
                 "press 1. If you are in danger right now, hang up and call 999.",
}
CLOSED = {
    RESPECT: "The Respect Phoneline is closed right now. We are open Monday to Friday, 9am to "
             "5pm. If you think someone is in immediate danger, call 999.",
    MENS_ADVICE: "The Men's Advice Line is closed right now. We are open Monday to Friday, 10am "
                 "to 8pm. If you are in immediate danger, call 999.",
}
# On a closure date: that today is one, and when the line opens next, not the usual week.
CLOSURE = {
    RESPECT: "Today is one of the days the Respect Phoneline is closed, so there is nobody to "
             "take your call. We open again on Monday 28 December at 9am. If you think someone "
             "is in immediate danger, call 999.",
    MENS_ADVICE: "Today is one of the days the Men's Advice Line is closed, so there is nobody "
                 "to take your call. We open again on Monday 28 December at 10am. If you are in "
                 "immediate danger, call 999.",
}
BUSY = {
    RESPECT: "Sorry, all our helpline workers are busy helping other callers. Please try again "
             "shortly, or visit respect phone line dot org dot uk. If you think someone is in "
             "immediate danger, call 999.",
    MENS_ADVICE: "Sorry, all our advisors are busy. Please try again shortly. You can also email "
                 "info at mens advice line dot org dot uk. If you are in immediate danger, call "
                 "999.",
}


def notice(number: str) -> str:
    return DEFAULT_NOTICE.format(helpline=NAME[number])


def offered_notice(number: str) -> list[str]:
    """What a caller hears first: the whole notice, then the offer that listens for a key."""
    return [notice(number), POLICY_OFFER.format(digit='9')]


# -- helpers -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def every_log_record(caplog):
    caplog.set_level(logging.DEBUG)


def logged(caplog) -> str:
    """Every log record, with its message, arguments and extra fields, as one text."""
    return caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)


class Snoop(Keypad):
    """Scripted keys that also look into the store each time the caller is asked for one."""

    def __init__(self, store: redis_lib.Redis, caller=None, worker=None, on_prompt=None):
        super().__init__(caller, worker)
        self.store, self.on_prompt = store, on_prompt
        self.dumps: list[str] = []
        self.ttls: list[tuple[str, int]] = []
        self.prompts: list[str] = []

    def caller(self, prompt: str) -> str:
        self.prompts.append(prompt)
        self.dumps.append(store_dump(self.store))
        # Every key a call writes expires; the last good flows are the service's, not a call's.
        self.ttls.extend((key, self.store.ttl(key)) for key in self.store.scan_iter()
                         if key != keys.last_good_flows())
        if self.on_prompt:
            self.on_prompt(prompt)
        return super().caller(prompt)


def nothing_but_the_last_good_flows(store: redis_lib.Redis) -> bool:
    """Whether the store holds nothing a request wrote: only the flows the app kept at start."""
    return set(store.scan_iter()) == {keys.last_good_flows()}


def assert_private_twiml(body: str, helpline: str | None = None) -> None:
    """TwiML with no recording, streaming or transcription; every dial shows a helpline and
    is screened. A body that is not TwiML fails: Twilio would have nothing to follow."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise AssertionError(f"not XML ({exc}): {body[:200]!r}") from None
    assert root.tag == "Response", body
    for element in root.iter():
        assert element.tag not in {"Record", "Stream", "Start", "Siprec", "Transcription",
                                   "Pay", "Refer"}, body
        for name, value in element.attrib.items():
            assert "transcri" not in name.lower(), body
            assert "recordingstatus" not in name.lower(), body
            if name.lower() == "record":
                assert value == "do-not-record", body
    for dial in root.iter("Dial"):
        assert dial.get("record") == "do-not-record", body
        assert dial.get("callerId") in HELPLINE_NUMBERS, body
        if helpline:
            assert dial.get("callerId") == helpline, body
        numbers = list(dial.iter("Number"))
        for number in numbers:
            assert number.get("url", "").startswith(f"{PUBLIC_URL}/voice/"), body
            assert number.text.startswith("+447700900"), body
        assert numbers or dial.find("Conference") is not None, body
        for conference in dial.iter("Conference"):
            assert conference.get("record") in (None, "do-not-record"), body


@pytest.mark.parametrize("body", ["", "Internal Server Error", "<html><body>500</body></html>",
                                  '{"error": "oops"}'])
def test_a_body_that_is_not_twiml_is_never_taken_for_private(body):
    with pytest.raises(AssertionError):
        assert_private_twiml(body)


@pytest.fixture
def check(caplog, redis):
    """The closing check of every test: no canary anywhere, every TwiML document private."""

    def run(*sims: TwilioSim, snoop: Snoop | None = None, helpline: str | None = None) -> None:
        texts = [logged(caplog), store_dump(redis), *(snoop.dumps if snoop else [])]
        for sim in sims:
            texts.extend(sim.responses)
            for body in sim.responses:
                assert_private_twiml(body, helpline)
        assert_no_canary(*texts)
        if snoop:
            assert all(ttl > 0 for _, ttl in snoop.ttls), snoop.ttls

    return run


def call_fields(to: str = RESPECT, sid: str | None = None, **extra: str) -> dict[str, str]:
    """What Twilio posts on a caller's leg, the canary caller's details included."""
    return {"CallSid": sid or new_call_sid(), "AccountSid": ACCOUNT_SID, "From": CANARY_NUMBER,
            "Caller": CANARY_NUMBER, "To": to, "Called": to, "CallStatus": "in-progress",
            "Direction": "inbound", "ApiVersion": "2010-04-01", **CANARY_FIELDS, **extra}


def texts(body: str) -> list[str]:
    return [say.text for say in ET.fromstring(body).iter("Say")]


def gather_action(body: str) -> str:
    """Where Twilio goes after the ``<Gather>`` in ``body``: the signed URL with the state."""
    return ET.fromstring(body).find(".//Gather").get("action")


def commands_served(client: redis_lib.Redis) -> int:
    """Commands the Redis server has processed so far (this question included)."""
    return int(client.info("stats")["total_commands_processed"])


def make_app(settings, store, clock, **changes):
    return create_app({"TESTING": True, "SETTINGS": replace(settings, **changes),
                       "STORE": store, "CLOCK": clock})


@pytest.fixture
def dead_store():
    """A Redis client for a port nobody listens on: every command fails at once."""
    client = redis_lib.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                      decode_responses=True, socket_timeout=0.2,
                                      socket_connect_timeout=0.2)
    yield client
    client.close()


@pytest.fixture
def down(settings, dead_store, clock):
    """Twilio, calling an app whose Redis is unreachable."""
    return TwilioSim(make_app(settings, dead_store, clock), extra_fields=CANARY_FIELDS)


class Outage:
    """A store client whose Redis can be made unreachable mid-call."""

    def __init__(self, url: str) -> None:
        self.client = redis_lib.Redis.from_url(url, decode_responses=True, socket_timeout=0.5)
        self.live = self.client.connection_pool
        self.dead = redis_lib.ConnectionPool.from_url(
            f"redis://127.0.0.1:{free_port()}/0", decode_responses=True, socket_timeout=0.2,
            socket_connect_timeout=0.2)

    def begin(self) -> None:
        self.client.connection_pool = self.dead


@pytest.fixture
def outage(redis_url, redis):
    outage = Outage(redis_url)
    yield outage
    outage.client.connection_pool = outage.live
    outage.client.close()
    outage.dead.disconnect()


# -- both helplines, end to end ------------------------------------------------------------

@pytest.mark.parametrize("number", [RESPECT, MENS_ADVICE])
def test_a_caller_hears_the_notice_then_the_menu_and_reaches_a_screened_worker(
        twilio, redis, check, number):
    snoop = Snoop(redis, ["", "1"], ["1"])
    transcript = twilio.call(number, snoop, caller=CANARY_NUMBER)
    heard = transcript.heard()
    assert heard[:3] == [*offered_notice(number), PROMPT[number]]
    assert transcript.heard("worker") == [f"{NAME[number]} call. Press 1 to accept."]
    kinds = transcript.kinds()
    assert kinds.index("say") < kinds.index("dial") < kinds.index("connected")
    assert [e.name for e in transcript.events if e.kind == "connected"] == [FIRST_WORKER[number]]
    assert [e.text for e in transcript.events if e.kind == "dial"] == [number]
    assert kinds[-1] == "hangup"
    check(twilio, snoop=snoop, helpline=number)


def test_the_incoming_answer_is_exactly_the_notice_with_the_policy_offer(twilio, check):
    response = twilio.post("/voice/incoming", call_fields(RESPECT, CallStatus="ringing"))
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    assert response.get_data(as_text=True) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Say language="en-GB" voice="Polly.Amy">Thank you for calling Respect Phoneline. This '
        "call is confidential. We do not use technology to identify callers, and we do not record "
        "calls. Calls may be monitored occasionally for quality and training purposes.</Say>"
        '<Gather action="https://callflow.example.org/voice/notice?flow=respect-phoneline&amp;'
        'step=welcome" actionOnEmptyResult="true" finishOnKey="" numDigits="1" timeout="2">'
        '<Say language="en-GB" voice="Polly.Amy">To hear our full confidentiality policy, '
        "press 9 now.</Say></Gather></Response>")
    check(twilio)


def test_the_dial_is_exactly_screened_private_and_shows_the_helpline(twilio, check):
    fields = call_fields(MENS_ADVICE)
    body = twilio.post("/voice/incoming", fields).get_data(as_text=True)
    body = twilio.post(gather_action(body), fields).get_data(as_text=True)
    response = twilio.post(gather_action(body), {**fields, "Digits": "1"})
    screen = "https://callflow.example.org/voice/screen?flow=mens-advice-line&amp;step=connect"
    assert response.get_data(as_text=True) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Dial action="https://callflow.example.org/voice/dial?flow=mens-advice-line&amp;'
        'step=connect&amp;n=1" callerId="+441632960002" method="POST" record="do-not-record" '
        'timeout="25">'
        f'<Number method="POST" url="{screen}">+447700900201</Number>'
        f'<Number method="POST" url="{screen}">+447700900202</Number>'
        "</Dial></Response>")
    check(twilio, helpline=MENS_ADVICE)


def test_the_worker_hears_exactly_the_screening(twilio, check):
    leg = call_fields("+447700900101", From=RESPECT, Direction="outbound-dial")
    response = twilio.post("/voice/screen?flow=respect-phoneline&step=connect", leg)
    assert response.get_data(as_text=True) == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        '<Gather action="https://callflow.example.org/voice/screen/answer?flow=respect-phoneline'
        '&amp;step=connect" method="POST" numDigits="1" timeout="8">'
        '<Say language="en-GB" voice="Polly.Amy">Respect Phoneline call. Press 1 to accept.</Say>'
        "</Gather><Hangup /></Response>")
    check(twilio)


@pytest.mark.parametrize(("digits", "accepted"), [("1", True), ("2", False), ("", False),
                                                  ("11", False), ("*", False)])
def test_only_the_worker_pressing_1_is_put_through(twilio, check, digits, accepted):
    leg = call_fields("+447700900101", From=RESPECT, Direction="outbound-dial", Digits=digits)
    body = twilio.post("/voice/screen/answer?flow=respect-phoneline&step=connect",
                       leg).get_data(as_text=True)
    assert ("<Hangup />" not in body) is accepted
    check(twilio)


# -- the menu ------------------------------------------------------------------------------

def test_key_9_reads_the_whole_policy_then_the_call_goes_on(twilio, redis, check):
    snoop = Snoop(redis, ["9", "1"], ["1"])
    transcript = twilio.call(RESPECT, snoop, caller=CANARY_NUMBER)
    policy = spoken_paragraphs(shipped_policy_text())
    heard = transcript.heard()
    assert heard[:2] == offered_notice(RESPECT)
    assert heard[2:2 + len(policy)] == policy
    assert heard[2 + len(policy)] == PROMPT[RESPECT]
    assert transcript.connected
    check(twilio, snoop=snoop, helpline=RESPECT)


def test_silence_at_the_menu_repeats_it_then_takes_on_no_input(twilio, redis, check):
    snoop = Snoop(redis, ["", "", "", ""], ["1"])
    transcript = twilio.call(MENS_ADVICE, snoop, caller=CANARY_NUMBER)
    assert transcript.heard()[:5] == offered_notice(MENS_ADVICE) + [PROMPT[MENS_ADVICE]] * 3
    assert transcript.connected  # on_no_input: connect
    check(twilio, snoop=snoop, helpline=MENS_ADVICE)


def test_a_wrong_key_is_apologised_for_and_the_menu_repeated(twilio, redis, check):
    snoop = Snoop(redis, ["", "7", "1"], ["1"])
    transcript = twilio.call(RESPECT, snoop, caller=CANARY_NUMBER)
    assert transcript.heard()[:5] == [*offered_notice(RESPECT), PROMPT[RESPECT], INVALID_CHOICE,
                                      PROMPT[RESPECT]]
    assert transcript.connected
    check(twilio, snoop=snoop, helpline=RESPECT)


@pytest.mark.parametrize("number", [RESPECT, MENS_ADVICE])
def test_wrong_keys_after_the_retries_take_on_invalid(twilio, redis, check, number):
    snoop = Snoop(redis, ["", "7", "8", "0"], ["1"])
    transcript = twilio.call(number, snoop, caller=CANARY_NUMBER)
    assert transcript.heard()[:8] == [*offered_notice(number), PROMPT[number], INVALID_CHOICE,
                                      PROMPT[number], INVALID_CHOICE, PROMPT[number],
                                      INVALID_CHOICE]
    assert transcript.heard().count(PROMPT[number]) == 3
    assert transcript.connected  # on_invalid (or on_no_input): connect
    check(twilio, snoop=snoop, helpline=number)


def test_option_2_tells_about_the_website_then_returns_to_the_menu(twilio, redis, check):
    snoop = Snoop(redis, ["", "2", "1"], ["1"])
    transcript = twilio.call(RESPECT, snoop, caller=CANARY_NUMBER)
    heard = transcript.heard()
    assert heard[3].startswith("You can find information, self help and our webchat")
    assert heard[4] == PROMPT[RESPECT]
    assert transcript.connected
    check(twilio, snoop=snoop, helpline=RESPECT)


@pytest.mark.parametrize("digits", ["12", "abc", "1" * 2000, "447700900666", "#", "*", " ",
                                    "１", "1\x00"])
def test_odd_digits_at_the_menu_get_an_apology_and_the_menu_again(twilio, check, digits):
    fields = call_fields(RESPECT)
    twilio.post("/voice/incoming", fields)
    twilio.post("/voice/notice?flow=respect-phoneline&step=welcome", fields)
    response = twilio.post("/voice/menu?flow=respect-phoneline&step=main-menu",
                           {**fields, "Digits": digits})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert texts(body) == [INVALID_CHOICE, PROMPT[RESPECT]]
    assert ET.fromstring(body).find("Gather") is not None
    check(twilio)


@pytest.mark.parametrize("digits", ["12", "abc", "1" * 2000, "447700900666", "#"])
def test_odd_digits_at_the_notice_go_on_to_the_menu(twilio, check, digits):
    fields = call_fields(RESPECT)
    twilio.post("/voice/incoming", fields)
    response = twilio.post("/voice/notice?flow=respect-phoneline&step=welcome",
                           {**fields, "Digits": digits})
    assert response.status_code == 200
    assert texts(response.get_data(as_text=True)) == [PROMPT[RESPECT]]
    check(twilio)


def test_the_notice_is_said_before_a_worker_when_the_url_does_not_say_it_was_heard(twilio, redis,
                                                                              check):
    fields = call_fields(RESPECT)
    twilio.post("/voice/incoming", fields)
    redis.flushdb()
    response = twilio.post("/voice/menu?flow=respect-phoneline&step=main-menu",
                           {**fields, "Digits": "1"})
    root = ET.fromstring(response.get_data(as_text=True))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root[0].text == notice(RESPECT)
    check(twilio, helpline=RESPECT)


# -- opening hours -------------------------------------------------------------------------

@pytest.mark.parametrize(("moment", "message"), [(CLOSED_TIME, CLOSED), (CHRISTMAS_NOON, CLOSURE)],
                         ids=["night", "closure"])
@pytest.mark.parametrize("number", [RESPECT, MENS_ADVICE])
def test_out_of_hours_the_caller_hears_the_notice_then_the_closed_message(
        twilio, redis, clock, check, number, moment, message):
    clock.now = moment
    snoop = Snoop(redis, ["", "1"])
    transcript = twilio.call(number, snoop, caller=CANARY_NUMBER)
    assert transcript.heard() == [*offered_notice(number), message[number]]
    assert "999" in message[number]
    assert "dial" not in transcript.kinds()
    assert transcript.kinds()[-1] == "hangup"
    check(twilio, snoop=snoop)


# -- nobody accepts ------------------------------------------------------------------------

@pytest.mark.parametrize("worker_keys", [["", ""], ["2", "3"], ["", "9"]],
                         ids=["voicemail", "declined", "mixed"])
def test_when_no_worker_presses_1_the_caller_hears_the_busy_message(
        twilio, redis, check, worker_keys):
    snoop = Snoop(redis, ["", "1"], worker_keys)
    transcript = twilio.call(RESPECT, snoop, caller=CANARY_NUMBER)
    assert not transcript.connected
    assert [e.name for e in transcript.events if e.kind == "ring"] == [
        "Alice (respect-workers)", "Bilal (respect-workers)"]  # Chris is not active
    assert transcript.heard()[-1] == BUSY[RESPECT]
    assert transcript.kinds()[-1] == "hangup"
    check(twilio, snoop=snoop, helpline=RESPECT)


@pytest.mark.parametrize(("status", "ends"), [
    ("completed", True), ("answered", True), ("busy", False), ("no-answer", False),
    ("failed", False), ("canceled", False), ("", False), ("bogus", False)])
def test_the_dial_result_ends_the_call_or_takes_on_no_answer(twilio, check, status, ends):
    fields = call_fields(MENS_ADVICE)
    twilio.post("/voice/incoming", fields)
    response = twilio.post("/voice/dial?flow=mens-advice-line&step=connect",
                           {**fields, "DialCallStatus": status})
    body = response.get_data(as_text=True)
    if ends:
        assert body == '<?xml version="1.0" encoding="UTF-8"?><Response><Hangup /></Response>'
    else:
        assert texts(body) == [BUSY[MENS_ADVICE]]
        assert body.endswith("<Hangup /></Response>")
    check(twilio)


# -- the degraded path ---------------------------------------------------------------------

def test_an_unknown_number_hears_an_apology_and_the_notice_and_is_put_through(twilio, redis,
                                                                              check):
    snoop = Snoop(redis, [], ["1"])
    transcript = twilio.call(UNKNOWN, snoop, caller=CANARY_NUMBER)
    heard = transcript.heard()
    assert heard[0] == APOLOGY
    assert heard[1] == notice(MENS_ADVICE)  # the default flow
    dials = [e.text for e in transcript.events if e.kind == "dial"]
    assert dials == [MENS_ADVICE] and transcript.connected
    check(twilio, snoop=snoop)


def test_an_unknown_number_out_of_hours_hears_the_closed_advice(twilio, clock, check):
    clock.now = CLOSED_TIME
    transcript = twilio.call(UNKNOWN, Keypad(), caller=CANARY_NUMBER)
    assert transcript.heard()[0] == APOLOGY
    assert "999" in transcript.heard()[-1]
    assert "dial" not in transcript.kinds()
    check(twilio)


@pytest.mark.parametrize("number", [RESPECT, MENS_ADVICE, UNKNOWN])
def test_the_fallback_url_plays_the_notice_and_dials_with_redis_down(down, check, number):
    response = down.post("/voice/fallback", call_fields(number))
    assert response.status_code == 200
    root = ET.fromstring(response.get_data(as_text=True))
    assert [child.tag for child in root] == ["Say", "Say", "Dial"]
    assert root[0].text == APOLOGY
    helpline = number if number in HELPLINE_NUMBERS else MENS_ADVICE
    assert root[1].text == notice(helpline)
    dial = root.find("Dial")
    assert dial.get("callerId") == helpline
    assert dial.get("action").startswith(f"{PUBLIC_URL}/voice/degraded/dial?flow=")
    check(down, helpline=helpline)


def test_the_fallback_url_works_with_redis_up_too(twilio, check):
    body = twilio.post("/voice/fallback", call_fields(RESPECT)).get_data(as_text=True)
    assert texts(body) == [APOLOGY, notice(RESPECT)]
    check(twilio, helpline=RESPECT)


@pytest.mark.parametrize("number", [RESPECT, MENS_ADVICE])
def test_with_redis_down_a_caller_in_the_menu_is_served_exactly_as_with_it_up(
        down, twilio, redis, check, caplog, number):
    """The menu's state is in the signed URLs: a Redis outage never reaches a caller who is
    still in the menu, nor one put through by a direct dial."""
    normal = twilio.call(number, Keypad(["", "1"], ["1"]), caller=CANARY_NUMBER)
    snoop = Snoop(redis, ["", "1"], ["1"])
    transcript = down.call(number, snoop, caller=CANARY_NUMBER)
    assert transcript.heard() == normal.heard() == [*offered_notice(number), PROMPT[number]]
    assert transcript.kinds() == normal.kinds()
    assert transcript.connected
    assert [e.text for e in transcript.events if e.kind == "dial"] == [number]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    check(down, snoop=snoop, helpline=number)


def test_with_redis_down_nobody_answering_gives_the_flows_no_answer_step(down, check):
    transcript = down.call(RESPECT, Keypad([], ["", ""]), caller=CANARY_NUMBER)
    assert not transcript.connected
    assert transcript.heard()[-1] == BUSY[RESPECT]
    check(down, helpline=RESPECT)


@pytest.mark.parametrize(("moment", "closed"), [(CLOSED_TIME, CLOSED), (CHRISTMAS_NOON, CLOSURE)],
                         ids=["night", "closure"])
def test_with_redis_down_opening_hours_still_apply(down, clock, check, moment, closed):
    clock.now = moment
    transcript = down.call(RESPECT, Keypad(), caller=CANARY_NUMBER)
    assert transcript.heard() == [*offered_notice(RESPECT), closed[RESPECT]]
    assert "dial" not in transcript.kinds()
    check(down)


def test_redis_going_down_mid_call_changes_nothing_for_the_caller(settings, clock, redis,
                                                                  outage, check):
    app = make_app(settings, outage.client, clock)
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)
    snoop = Snoop(redis, ["", "1"], ["1"],
                  on_prompt=lambda prompt: outage.begin() if "press 1" in prompt else None)
    transcript = sim.call(RESPECT, snoop, caller=CANARY_NUMBER)
    assert transcript.heard() == [*offered_notice(RESPECT), PROMPT[RESPECT]]
    assert APOLOGY not in transcript.heard()
    assert transcript.connected
    check(sim, snoop=snoop, helpline=RESPECT)


# -- reloads -------------------------------------------------------------------------------

@pytest.fixture
def flows_copy(tmp_path):
    for path in FLOWS.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def edit_flow(folder, old: str, new: str) -> None:
    path = folder / "respect-phoneline.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_a_step_removed_by_a_reload_mid_call_gets_an_apology_and_the_degraded_path(
        settings, redis, clock, flows_copy, check):
    app = make_app(settings, redis, clock, flows_dir=str(flows_copy))
    registry = app.extensions["callflow"]["registry"]
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)

    def rename_the_menu(prompt: str) -> None:
        if "press 1" in prompt:
            edit_flow(flows_copy, "main-menu", "choices")
            assert registry.reload() is True

    transcript = sim.call(RESPECT, Snoop(redis, ["", "1"], ["1"], on_prompt=rename_the_menu),
                          caller=CANARY_NUMBER)
    assert transcript.heard()[3:5] == [APOLOGY, notice(RESPECT)]
    assert transcript.connected
    assert "choices" in registry.current.flows["respect-phoneline"].steps
    check(sim, helpline=RESPECT)


def test_a_broken_edit_keeps_the_last_good_flow_live_and_a_good_one_is_picked_up(
        settings, redis, clock, flows_copy, check):
    app = make_app(settings, redis, clock, flows_dir=str(flows_copy))
    registry = app.extensions["callflow"]["registry"]
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)

    edit_flow(flows_copy, "start: welcome", "start: main-menu")  # skips the notice
    assert registry.reload() is False
    transcript = sim.call(RESPECT, Keypad(["", "1"]), caller=CANARY_NUMBER)
    assert transcript.heard()[:3] == [*offered_notice(RESPECT), PROMPT[RESPECT]]
    assert transcript.connected

    edit_flow(flows_copy, "start: main-menu", "start: welcome")
    edit_flow(flows_copy, "      If you are worried", "      Welcome back. If you are worried")
    assert registry.reload() is True
    transcript = sim.call(RESPECT, Keypad(["", "1"]), caller=CANARY_NUMBER)
    assert transcript.heard()[2] == "Welcome back. " + PROMPT[RESPECT]
    assert transcript.connected
    check(sim, helpline=RESPECT)


# -- the edge: signatures, methods, sizes, malformed requests -------------------------------

def signed(url: str, fields: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, fields)


def attack(name: str, fields: dict[str, str]) -> tuple[str, dict, dict]:
    """(path, form, headers) of a forged or broken request to /voice/incoming."""
    url = f"{PUBLIC_URL}/voice/incoming"
    good = signed(url, fields)
    return {
        "missing": ("/voice/incoming", fields, {}),
        "empty": ("/voice/incoming", fields, {"X-Twilio-Signature": ""}),
        "wrong": ("/voice/incoming", fields, {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
        "another URL": ("/voice/incoming", fields,
                        {"X-Twilio-Signature": signed("https://evil.example/voice/incoming",
                                                      fields)}),
        "another path": ("/voice/menu?flow=respect-phoneline&step=main-menu", fields,
                         {"X-Twilio-Signature": good}),
        "plain http": ("/voice/incoming", fields,
                       {"X-Twilio-Signature": signed(url.replace("https:", "http:"), fields)}),
        "another token": ("/voice/incoming", fields,
                          {"X-Twilio-Signature": signed(url, fields, "another-auth-token")}),
        "tampered field": ("/voice/incoming", {**fields, "To": MENS_ADVICE},
                           {"X-Twilio-Signature": good}),
        "added field": ("/voice/incoming", {**fields, "Digits": "1"},
                        {"X-Twilio-Signature": good}),
        "query added": ("/voice/incoming?flow=respect-phoneline", fields,
                        {"X-Twilio-Signature": good}),
        "unknown algorithm": ("/voice/incoming", fields,
                              {"X-Twilio-Signature": good,
                               "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_MD5"}),
    }[name]


ATTACKS = ["missing", "empty", "wrong", "another URL", "another path", "plain http",
           "another token", "tampered field", "added field", "query added", "unknown algorithm"]


@pytest.mark.parametrize("name", ATTACKS)
def test_a_forged_request_is_refused_and_logged_without_its_body(client, redis, caplog, name):
    path, form, headers = attack(name, call_fields(RESPECT))
    response = client.post(path, data=form, headers=headers)
    assert response.status_code == 403
    body = response.get_data(as_text=True)
    assert "<Response" not in body
    refusals = [r for r in caplog.records if "without a valid Twilio signature" in r.getMessage()]
    assert len(refusals) == 1
    assert refusals[0].path == path.split("?")[0]
    assert refusals[0].status == 403
    assert form["CallSid"] not in logged(caplog)
    assert_no_canary(logged(caplog), body, store_dump(redis))
    assert nothing_but_the_last_good_flows(redis)


def test_behind_a_proxy_the_signature_is_checked_on_the_public_url(client, check):
    fields = call_fields(RESPECT)
    internal = "http://10.0.0.5:8080"
    on_public = signed(f"{PUBLIC_URL}/voice/incoming", fields)
    on_internal = signed(f"{internal}/voice/incoming", fields)
    response = client.post("/voice/incoming", base_url=internal, data=fields,
                           headers={"X-Twilio-Signature": on_public})
    assert response.status_code == 200
    response = client.post("/voice/incoming", base_url=internal, data=fields,
                           headers={"X-Twilio-Signature": on_internal})
    assert response.status_code == 403
    check()


def test_a_request_signed_with_sha256_is_accepted(client, check):
    fields = call_fields(RESPECT)
    url = f"{PUBLIC_URL}/voice/incoming"
    signature = RequestValidator(TOKEN).compute_signature(url, fields, "HMAC_SHA256")
    response = client.post("/voice/incoming", data=fields, headers={
        "X-Twilio-Signature": signature,
        "X-Twilio-Webhooks-Signature-Settings": "algorithm=HMAC_SHA256"})
    assert response.status_code == 200
    assert texts(response.get_data(as_text=True)) == offered_notice(RESPECT)
    check()


def test_without_an_auth_token_every_webhook_is_refused(settings, redis, clock):
    app = make_app(settings, redis, clock, twilio_auth_token="")
    fields = call_fields(RESPECT)
    response = app.test_client().post("/voice/incoming", data=fields, headers={
        "X-Twilio-Signature": signed(f"{PUBLIC_URL}/voice/incoming", fields, "")})
    assert response.status_code == 403


def test_a_webhook_sent_as_get_is_signed_on_its_url_and_the_caller_in_the_query_is_dropped(
        twilio, redis, check):
    fields = call_fields(RESPECT)
    response = twilio.post("/voice/incoming", fields, method="GET")
    assert response.status_code == 200
    assert texts(response.get_data(as_text=True)) == offered_notice(RESPECT)
    response = twilio.post("/voice/notice?flow=respect-phoneline&step=welcome",
                           {**fields, "Digits": "9"}, method="GET")
    assert response.status_code == 200
    assert texts(response.get_data(as_text=True))[-1] == PROMPT[RESPECT]
    assert gather_action(response.get_data(as_text=True)).endswith("step=main-menu&n=1")
    assert nothing_but_the_last_good_flows(redis)
    check(twilio)


def test_a_get_webhook_with_a_tampered_query_is_refused(client, redis, caplog):
    fields = call_fields(RESPECT)
    query = "&".join(f"{k}={v}" for k, v in {"CallSid": fields["CallSid"], "To": RESPECT}.items())
    signature = signed(f"{PUBLIC_URL}/voice/incoming?{query}", {})
    response = client.get(f"/voice/incoming?{query.replace(RESPECT, MENS_ADVICE)}",
                          headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403


def test_a_huge_unsigned_body_is_not_read(client, redis, caplog):
    """(What a caller hears then, and why, is in test_body_size.)"""
    fields = call_fields(RESPECT, Padding="x" * 2_000_000)
    response = client.post("/voice/incoming", data=fields)
    assert response.status_code == 200
    assert nothing_but_the_last_good_flows(redis)
    assert_no_canary(logged(caplog), response.get_data(as_text=True))


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
def test_a_wrong_method_is_refused(client, method):
    fields = call_fields(RESPECT)
    response = client.open("/voice/incoming", method=method, data=fields, headers={
        "X-Twilio-Signature": signed(f"{PUBLIC_URL}/voice/incoming", fields)})
    assert response.status_code == 405


@pytest.mark.parametrize("path", ["/voice/incoming", "/voice/notice?flow=respect-phoneline&"
                                  "step=welcome", "/voice/menu?flow=respect-phoneline&"
                                  "step=main-menu", "/voice/status"])
@pytest.mark.parametrize("sid", [None, "", "CA123", "CA" + "g" * 32, "CA" + "A" * 32,
                                 "XX" + "0" * 32, "CA" + "0" * 32 + "\n", CANARY_NUMBER],
                         ids=["missing", "empty", "short", "not hex", "upper case", "not CA",
                              "newline", "a phone number"])
def test_a_missing_or_malformed_call_sid_is_a_400(twilio, redis, caplog, path, sid):
    fields = call_fields(RESPECT)
    if sid is None:
        del fields["CallSid"]
    else:
        fields["CallSid"] = sid
    response = twilio.post(path, fields)
    assert response.status_code == 400
    assert nothing_but_the_last_good_flows(redis)
    assert_no_canary(logged(caplog), response.get_data(as_text=True))


# -- call state: in the signed URLs, nothing in the store --------------------------------

def test_a_call_in_the_menu_sends_redis_no_command_and_leaves_nothing(twilio, redis, check):
    fields = call_fields(RESPECT)
    before = commands_served(redis)
    body = twilio.post("/voice/incoming", fields).get_data(as_text=True)
    body = twilio.post(gather_action(body), {**fields, "Digits": "2"}).get_data(as_text=True)
    body = twilio.post(gather_action(body), {**fields, "Digits": "2"}).get_data(as_text=True)
    body = twilio.post(gather_action(body), {**fields, "Digits": "7"}).get_data(as_text=True)
    twilio.post(gather_action(body), fields)
    assert commands_served(redis) == before + 1  # only the question itself
    assert nothing_but_the_last_good_flows(redis)
    check(twilio)


def test_the_state_travels_in_the_urls_twilio_signs(twilio, check):
    fields = call_fields(RESPECT)
    body = twilio.post("/voice/incoming", fields).get_data(as_text=True)
    assert gather_action(body) == f"{PUBLIC_URL}/voice/notice?flow=respect-phoneline&step=welcome"
    body = twilio.post(gather_action(body), fields).get_data(as_text=True)
    menu = f"{PUBLIC_URL}/voice/menu?flow=respect-phoneline&step=main-menu&n=1"
    assert gather_action(body) == menu
    body = twilio.post(menu, fields).get_data(as_text=True)  # no key: the prompt again
    assert gather_action(body) == menu + "&t=1"
    body = twilio.post(menu + "&t=1", {**fields, "Digits": "5"}).get_data(as_text=True)
    assert texts(body) == [INVALID_CHOICE, PROMPT[RESPECT]]
    assert gather_action(body) == menu + "&t=2"
    check(twilio)


def test_an_altered_state_in_the_url_is_refused(client, check):
    """The state is authenticated by the signature: a caller (or anyone) cannot say the notice
    was heard, or reset their tries, without the auth token."""
    fields = call_fields(RESPECT)
    signature = signed(f"{PUBLIC_URL}/voice/menu?flow=respect-phoneline&step=main-menu", fields)
    response = client.post("/voice/menu?flow=respect-phoneline&step=main-menu&n=1",
                           data=fields, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403


@pytest.mark.parametrize("query", ["n=yes&t=many", "t=-1", "t=999", "t=%C2%B2", "d=2"])
def test_an_odd_state_in_a_signed_url_is_read_as_saying_least(twilio, check, query):
    """Only the service writes these URLs; anything odd (a link from an older release) is
    read as the state that says least, so the notice is said again before any worker."""
    fields = call_fields(RESPECT)
    response = twilio.post(f"/voice/menu?flow=respect-phoneline&step=main-menu&{query}",
                           {**fields, "Digits": "1"})
    assert response.status_code == 200
    root = ET.fromstring(response.get_data(as_text=True))
    assert [child.tag for child in root] == ["Say", "Dial"]
    assert root[0].text == notice(RESPECT)
    check(twilio, helpline=RESPECT)


@pytest.mark.parametrize("status", ["completed", "busy", "failed", "no-answer", "canceled"])
def test_every_final_status_of_a_call_that_never_reached_the_bridge_leaves_nothing(
        twilio, redis, status):
    fields = call_fields(RESPECT)
    twilio.post("/voice/incoming", fields)
    twilio.post("/voice/status", {**fields, "CallStatus": status})
    assert nothing_but_the_last_good_flows(redis)


def test_the_menus_turns_are_rendered_once_and_served_as_bytes(twilio, check):
    engine = twilio.app.extensions["callflow"]["engine"]
    first = [twilio.post("/voice/incoming", call_fields(RESPECT)).get_data() for _ in range(3)]
    flowset = engine.registry.current
    assert first[0] == first[1] == first[2]
    cached = flowset.compiled["twiml"].bodies
    assert first[0] in cached.values()
    check(twilio)


def test_a_reload_swaps_the_rendered_turns_with_the_flows(settings, redis, clock, flows_copy,
                                                          check):
    app = make_app(settings, redis, clock, flows_dir=str(flows_copy))
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)
    before = texts(sim.post("/voice/incoming", call_fields(RESPECT)).get_data(as_text=True))
    edit_flow(flows_copy, "    kind: notice\n", "    kind: notice\n    policy_digit: \"8\"\n")
    assert app.extensions["callflow"]["registry"].reload()
    after = texts(sim.post("/voice/incoming", call_fields(RESPECT)).get_data(as_text=True))
    assert before[-1] == POLICY_OFFER.format(digit="9")
    assert after[-1] == POLICY_OFFER.format(digit="8")
    check(sim)


def test_a_status_callback_with_redis_down_is_still_answered(down, check):
    response = down.post("/voice/status", call_fields(RESPECT, CallStatus="completed"))
    assert response.status_code == 200
    check(down)


# -- the hash key and the worker's leg ----------------------------------------------------

def test_a_menu_option_on_the_hash_key_can_be_chosen(settings, redis, clock, flows_copy, check):
    edit_flow(flows_copy, "      2: website\n", "      2: website\n      \"#\": website\n")
    app = make_app(settings, redis, clock, flows_dir=str(flows_copy))
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)
    transcript = sim.call(RESPECT, Keypad(["", "#", "1"]), caller=CANARY_NUMBER)
    assert transcript.heard()[3].startswith("You can find information")
    check(sim, helpline=RESPECT)


@pytest.mark.parametrize("path", ["/voice/screen?flow=respect-phoneline&step=connect",
                                  "/voice/screen/answer?flow=respect-phoneline&step=connect"])
def test_a_failing_worker_webhook_never_dials_from_the_workers_leg(twilio, monkeypatch, path):
    engine = twilio.app.extensions["callflow"]["engine"]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(engine, "screen", broken)
    monkeypatch.setattr(engine, "screen_answer", broken)
    leg = call_fields("+447700900101", From=RESPECT, Direction="outbound-dial", Digits="1")
    response = twilio.post(path, leg)
    assert response.status_code == 200
    assert ET.fromstring(response.get_data(as_text=True)).find("Dial") is None
