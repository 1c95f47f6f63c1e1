"""The conference bridge end to end: signed webhooks as Twilio sends them, RQ jobs run inside
the request that queues them, and Twilio's REST API answered by ``responses`` (every request
checked against Twilio's OpenAPI description)."""

from __future__ import annotations

import dataclasses
import logging
import random
import shutil
import xml.etree.ElementTree as ET
from datetime import timedelta
from urllib.parse import urlencode

import pytest
import redis as redis_lib
import requests
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from callflow import runtime
from callflow.bridge.bridge import HOLDING, TAKEN
from callflow.call.degraded import APOLOGY
from callflow.jobs import tasks as jobs
from callflow.platform import keys
from callflow.records.live import ENDED_TTL_SECONDS, LiveState
from callflow.staff.shifts import MISSED_REST_SECONDS, Shifts, WorkerState
from tests import twilio_openapi
from tests.bridge_support import (
    Caller,
    FlakyStore,
    dead_store,
    job_payloads,
    raw_dump,
    said,
    sign_on,
    verbs,
)
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    FLOWS,
    MENS_ADVICE,
    PUBLIC_URL,
    RESPECT,
    assert_no_canary,
)
from webhooks import create_app
from webhooks.simulator import Keypad, TwilioSim
from webhooks.twilio_double import TwilioDouble

ALICE, BILAL = "+447700900101", "+447700900102"  # Chris, the third, is not active
WHISPER = "Respect Phoneline call. Press 1 to accept."
BUSY = "Sorry, all our helpline workers are busy"
NOTICE = "This call is confidential"
# The caller heard the notice on the way to the bridge: the redirect's URL carries that on.
BUSY_STEP = f"{PUBLIC_URL}/voice/step?flow=respect-phoneline&step=busy&n=1"
PLACE_1 = "You are number 1 in the queue."


@pytest.fixture
def caller(bridge_sim, twilio_api) -> Caller:
    """A caller to the Respect Phoneline with the canary's number, not yet in the flow."""
    return Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)


@pytest.fixture
def live(bridge_app):
    return bridge_app.extensions["callflow"]["runtime"].live


def waiting(caller: Caller) -> Caller:
    """The caller, through the notice and the menu, now in the waiting room."""
    caller.enter()
    assert caller.call_id, "the caller was not put on the bridge"
    return caller


def leg_requests(twilio_api) -> list[str]:
    """What the service asked of Twilio for the legs, in order (the deletion of the call's
    records once it is over is tested on its own, below)."""
    return [s.kind for s in twilio_api.sent if s.kind != "delete"]


def state(live, caller: Caller) -> LiveState:
    return live.get(caller.call_id).state


def assert_twilio_ok(twilio_api) -> None:
    """Every REST request went to the mock base and is one Twilio's API accepts."""
    assert twilio_api.strays == []
    assert twilio_api.problems == []


def assert_gone(redis, caller: Caller) -> None:
    """The call is over: its entry expires within ten minutes and is out of the index."""
    key = keys.live_call(caller.call_id)
    assert 0 < redis.ttl(key) <= ENDED_TTL_SECONDS <= 600
    assert caller.call_id not in redis.zrange(keys.live_index(), 0, -1)


def app_with(settings, redis, clock, *, on_shift: bool = True, **config):
    """The app with ``settings``, every active worker on shift (unless the store is dead)."""
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True, **config})
    if on_shift:
        sign_on(app)
    return app


@pytest.fixture
def shifts(bridge_app):
    rt = bridge_app.extensions["callflow"]["runtime"]
    return Shifts(rt.store, rt.clock)


# -- the caller's side ------------------------------------------------------------------------


def test_the_caller_hears_the_notice_then_waits_in_the_teams_line(caller, twilio_api):
    call = waiting(caller).call_id

    assert caller.line_twiml == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Enqueue action="{PUBLIC_URL}/voice/waiting/left?call={call}&amp;'
        'flow=respect-phoneline&amp;step=connect&amp;n=1" method="POST" '
        f'waitUrl="{PUBLIC_URL}/voice/hold?call={call}" waitUrlMethod="POST">'
        'callflow-respect-workers</Enqueue></Response>')
    assert NOTICE in caller.heard[0]
    assert_twilio_ok(twilio_api)


def test_the_waiting_caller_hears_their_place_then_the_holding_message(caller):
    first = waiting(caller).hold()
    again = caller.hold()

    assert said(first) == [PLACE_1, HOLDING]
    assert [v.tag for v in verbs(first)] == ["Say", "Say", "Pause"]
    assert said(again) == [HOLDING]  # the place again only after position_every


def test_every_dial_carries_do_not_record(caller):
    """Promise 2: every <Dial> and <Conference> says do-not-record, not just by default."""
    waiting(caller)
    joined = caller.press(1, "1")
    caller.moved()

    for document in (caller.room_twiml, joined):
        for verb in ("Dial", "Dial/Conference"):
            assert ET.fromstring(document).find(verb).get("record") == "do-not-record"


# -- two workers ring; one accepts -----------------------------------------------------------


def test_two_workers_ring_and_the_one_who_presses_1_is_joined(caller, twilio_api, live, redis):
    waiting(caller)

    legs = caller.legs()
    assert [str(leg.data["To"]) for leg in legs] == [ALICE, BILAL]  # Chris is not active
    assert {str(leg.data["From"]) for leg in legs} == {RESPECT}
    assert {str(leg.data["Record"]) for leg in legs} == {"false"}
    assert state(live, caller) is LiveState.WAITING

    screen = caller.screen(1)
    assert said(screen) == [WHISPER]
    assert [v.tag for v in verbs(screen)] == ["Gather", "Hangup"]  # no key: the leg ends

    joined = caller.press(1, "1")
    call = caller.call_id
    room = (f'<Conference beep="false" endConferenceOnExit="true" record="do-not-record" '
            'startConferenceOnEnter="true" '
            f'statusCallback="{PUBLIC_URL}/voice/conference?call={call}" '
            'statusCallbackEvent="start end join leave mute" statusCallbackMethod="POST">'
            f'room-{call}</Conference>')
    assert joined == ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                      '<Say language="en-GB" voice="Polly.Amy">Connecting you now.</Say>'
                      f'<Dial record="do-not-record">{room}</Dial></Response>')
    now = live.get(call)
    assert (now.state, now.accepted) == (LiveState.CONNECTED, 1)

    # Alice's phone, still ringing, is cancelled; the caller is moved into Bilal's room.
    hang_ups = twilio_api.of("hang_up")
    assert [(h.sid, h.form) for h in hang_ups] == [(legs[0].sid, {"Status": ["canceled"]})]
    assert caller.moved() == (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Dial action="{PUBLIC_URL}/voice/dial?flow=respect-phoneline&amp;step=connect&amp;'
        f'n=1&amp;call={call}" method="POST" record="do-not-record">{room}</Dial></Response>')

    caller.conference("participant-join", legs[1].sid)
    caller.conference("participant-join")
    caller.conference("conference-start", legs[1].sid)
    caller.leg_status(0, "canceled")
    assert state(live, caller) is LiveState.CONNECTED

    caller.conference("participant-leave")
    caller.conference("conference-end")
    after_dial = caller.turn(f"{PUBLIC_URL}/voice/dial?flow=respect-phoneline&step=connect",
                             DialCallStatus="completed")
    caller.status("completed")

    assert [v.tag for v in verbs(after_dial)] == ["Hangup"]
    assert state(live, caller) is LiveState.ENDED
    assert_gone(redis, caller)
    assert leg_requests(twilio_api) == ["ring", "ring", "redirect", "hang_up"]
    assert_twilio_ok(twilio_api)


def test_a_live_call_takes_under_a_kibibyte_of_redis(caller, redis):
    """Measured on a call through the webhooks at its fullest: both legs rung, one accepted,
    the other cancelled, the caller told their place, the conference known, then ended;
    its entry in the line included."""
    waiting(caller)
    caller.hold()
    line = redis.memory_usage(keys.waiting_line("respect-workers"))
    caller.press(1, "1")
    caller.leg_status(0, "canceled")
    caller.moved()
    caller.conference("participant-join")
    caller.conference("conference-start", caller.leg(1).sid)
    assert redis.memory_usage(keys.live_call(caller.call_id)) + line < 1024

    caller.conference("conference-end")
    caller.leg_status(1, "completed")
    caller.status("completed")

    assert redis.memory_usage(keys.live_call(caller.call_id)) < 1024


def test_callbacks_sent_twice_and_out_of_order_change_nothing_wrongly(caller, twilio_api,
                                                                      live, redis):
    waiting(caller)
    legs = caller.legs()
    caller.press(1, "1")
    sent_at_accept = len(twilio_api.sent)
    connected = live.get(caller.call_id)

    during = [
        lambda: caller.conference("participant-join"),
        lambda: caller.conference("participant-join", legs[1].sid),
        lambda: caller.conference("conference-start", legs[1].sid),
        lambda: caller.conference("participant-mute", legs[1].sid),
        lambda: caller.leg_status(0, "canceled"),
        lambda: caller.leg_status(0, "ringing"),  # late: it rang before it was cancelled
        lambda: caller.leg_status(1, "answered"),
        lambda: caller.leg_status(1, "in-progress"),
        lambda: caller.hold(),  # a late hold turn: it says to leave the line
    ]
    shuffled = during * 2
    random.Random(4).shuffle(shuffled)
    for callback in shuffled:
        callback()
        now = live.get(caller.call_id)
        assert (now.state, now.accepted) == (LiveState.CONNECTED, 1)
        assert now.connected_at == connected.connected_at
    assert len(twilio_api.sent) == sent_at_accept

    ending = [
        lambda: caller.conference("conference-end"),
        lambda: caller.conference("participant-leave", legs[1].sid),
        lambda: caller.conference("participant-leave"),
        lambda: caller.leg_status(1, "completed"),
        lambda: caller.status("completed"),
    ]
    for callback in ending + ending[::-1] + during:
        callback()
        assert state(live, caller) is LiveState.ENDED
        assert_gone(redis, caller)

    ended = live.get(caller.call_id)
    assert ended.accepted == 1
    assert leg_requests(twilio_api) == ["ring", "ring", "redirect", "hang_up"]
    assert_twilio_ok(twilio_api)


def test_a_second_worker_pressing_1_hears_the_call_is_taken(caller, live):
    waiting(caller)
    caller.screen(0)  # Alice has picked up and is listening to the screening

    caller.press(1, "1")
    late = caller.press(0, "1")

    assert said(late) == [TAKEN]
    assert [v.tag for v in verbs(late)] == ["Say", "Hangup"]
    assert live.get(caller.call_id).accepted == 1


def test_a_worker_reaching_the_screen_after_the_call_was_taken_is_not_screened(caller):
    waiting(caller)
    caller.press(1, "1")

    screen = caller.screen(0)

    assert said(screen) == [TAKEN]
    assert [v.tag for v in verbs(screen)] == ["Say", "Hangup"]


@pytest.mark.parametrize("digits", ["2", "9", "*"])
def test_a_worker_pressing_another_key_declines(caller, live, shifts, digits):
    waiting(caller)

    declined = caller.press(0, digits)

    assert [v.tag for v in verbs(declined)] == ["Hangup"]
    assert state(live, caller) is LiveState.WAITING
    alice = shifts.status("Alice")  # missed once: resting a moment before the next offer
    assert (alice.state, alice.missed) == (WorkerState.AVAILABLE, 1)
    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE, BILAL]


def test_twilio_retrying_the_winners_keypress_still_joins_them(caller, live, twilio_api):
    """Twilio retries a webhook it got no answer to: the winner must not be told the call
    is taken (the caller would be left waiting)."""
    waiting(caller)
    first = caller.press(1, "1")

    again = caller.press_again(1, "1")

    assert again == first
    assert live.get(caller.call_id).accepted == 1
    assert len(twilio_api.of("hang_up")) == 1  # Alice's leg, cancelled once
    assert len(twilio_api.of("redirect")) == 1  # the caller, moved once


# -- nobody accepts ----------------------------------------------------------------------------


@pytest.mark.parametrize("alice, bilal", [("no-answer", "busy"), ("failed", "completed")])
def test_offers_nobody_answers_are_made_again_until_the_workers_are_paused(
        caller, twilio_api, live, shifts, clock, alice, bilal):
    waiting(caller)

    caller.leg_status(0, alice)
    caller.leg_status(0, alice)  # Twilio's retry: one miss
    caller.leg_status(1, bilal)
    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE, BILAL]
    clock.now += timedelta(seconds=MISSED_REST_SECONDS)
    caller.hold()  # a hold turn offers the line again once the workers have rested
    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE, BILAL, ALICE, BILAL]
    caller.leg_status(0, alice)
    caller.leg_status(1, bilal)
    clock.now += timedelta(seconds=MISSED_REST_SECONDS)
    caller.hold()

    # Two offers missed in a row each (autopause_after: 2): both paused, nobody rung more.
    assert len(caller.legs()) == 4
    for name in ("Alice", "Bilal"):
        status = shifts.status(name)
        assert (status.state, status.reason) == (WorkerState.PAUSED, "missed 2 offers in a row")
    assert state(live, caller) is LiveState.WAITING  # the caller still waits, hearing hold
    assert said(caller.hold())[-1] == HOLDING
    assert twilio_api.of("redirect") == []
    assert_twilio_ok(twilio_api)


def test_a_worker_who_answers_late_after_their_offer_ended_is_told_the_call_is_taken(caller):
    waiting(caller)
    caller.leg_status(0, "no-answer")

    assert said(caller.post(str(caller.legs()[0].data["Url"]), caller.worker_fields(0))) == [
        TAKEN]


def test_a_workers_voicemail_is_treated_as_a_missed_offer(caller, shifts):
    """Voicemail picks up, hears the screening, presses nothing: the <Gather> times out, the
    leg hangs up ('completed'), and the offer counts as missed."""
    waiting(caller)

    screen = caller.screen(0)
    assert [v.tag for v in verbs(screen)] == ["Gather", "Hangup"]
    caller.leg_status(0, "completed")

    assert shifts.status("Alice").missed == 1


def test_voicemail_in_the_simulator_leaves_the_caller_unanswered(bridge_sim, twilio_api):
    transcript = bridge_sim.call(RESPECT, Keypad(["", "1"], ["", ""]), caller=CANARY_NUMBER)

    kinds = [(e.who, e.kind) for e in transcript.events if e.kind in
             ("ring", "declined", "accepted", "unanswered", "connected")]
    # The team rings simultaneously: both phones ring, each voicemail answers; nobody takes
    # the call, and the caller (in the simulator) gives up.
    assert kinds == [("worker", "ring"), ("worker", "ring"), ("worker", "declined"),
                     ("worker", "declined"), ("system", "unanswered")]
    assert not transcript.connected
    assert_twilio_ok(twilio_api)


def test_the_caller_held_past_max_wait_is_taken_to_the_no_answer_step(
        caller, twilio_api, live, clock, bridge_app, redis):
    team = bridge_app.extensions["callflow"]["registry"].current.teams["respect-workers"]
    waiting(caller)
    first = caller.legs()

    clock.now += timedelta(seconds=team.max_wait - 1)
    assert said(caller.hold())[-1] == HOLDING
    # No callback said how the first offers ended: they ran out, and were made again.
    ringing = caller.legs()[len(first):]
    assert [str(leg.data["To"]) for leg in ringing] == [ALICE, BILAL]

    clock.now += timedelta(seconds=1)
    hold = caller.hold()

    # No REST request needed: the hold turn itself says to leave the line.
    assert [v.tag for v in verbs(hold)] == ["Leave"]
    assert twilio_api.of("redirect") == []
    assert state(live, caller) is LiveState.FALLBACK
    # The offers ringing then are withdrawn (those that ran out had ended already).
    assert sorted(h.sid for h in twilio_api.of("hang_up")) == sorted(leg.sid for leg in ringing)
    busy = caller.leave()
    assert said(busy)[0].startswith(BUSY)
    assert [v.tag for v in verbs(busy)][-1] == "Hangup"
    assert caller.call_id not in redis.zrange(keys.waiting_line("respect-workers"), 0, -1)
    assert_twilio_ok(twilio_api)


# -- the caller hangs up first --------------------------------------------------------------


HANG_UPS = {
    "status completed": lambda caller: caller.status("completed"),
}


@pytest.mark.parametrize("hang_up", HANG_UPS.values(), ids=HANG_UPS.keys())
def test_the_caller_hanging_up_while_workers_ring_cancels_their_legs(caller, twilio_api, live,
                                                                     redis, hang_up):
    waiting(caller)
    legs = caller.legs()

    hang_up(caller)

    assert sorted((h.sid, h.one("Status")) for h in twilio_api.of("hang_up")) == sorted(
        (leg.sid, "canceled") for leg in legs)
    assert state(live, caller) is LiveState.ENDED
    assert_gone(redis, caller)
    assert caller.call_id not in redis.zrange(keys.waiting_line("respect-workers"), 0, -1)

    # The cancelled legs report in; nobody else is rung, nobody is redirected, nobody missed.
    for leg in (0, 1):
        caller.leg_status(leg, "canceled")
    caller.status("completed")
    assert leg_requests(twilio_api) == ["ring", "ring", "hang_up", "hang_up"]
    assert said(caller.screen(0)) == [TAKEN]
    assert_twilio_ok(twilio_api)


def test_callbacks_for_a_call_the_bridge_does_not_know_change_nothing(bridge_sim, redis):
    before = sorted(redis.scan_iter())
    for path, fields in [
        ("/voice/conference?call=nope", {"StatusCallbackEvent": "conference-end"}),
        ("/voice/worker/status?team=nope&leg=0&offer=x", {"CallStatus": "no-answer"}),
        ("/voice/worker/status?team=respect-workers&leg=0&offer=x", {"CallStatus": "busy"}),
        ("/voice/hold?call=nope", {}),
    ]:
        response = bridge_sim.post(path, {"CallSid": "CA" + "1" * 32, **fields})
        assert response.status_code == 200

    screen = bridge_sim.post("/voice/worker?team=respect-workers&leg=0&offer=x",
                             {"CallSid": "CA" + "2" * 32})
    assert said(screen.get_data(as_text=True)) == [TAKEN]
    assert sorted(redis.scan_iter()) == before


@pytest.mark.parametrize("path", ["/voice/worker?team=t&leg=a&offer=x",
                                  "/voice/worker?team=t&offer=x", "/voice/worker?leg=0&offer=x",
                                  "/voice/worker?team=t&leg=0",
                                  "/voice/worker/status?team=t&leg=100&offer=x", "/voice/hold",
                                  "/voice/conference?call=" + "x" * 65, "/voice/waiting/join"])
def test_malformed_bridge_links_are_refused(bridge_sim, path):
    assert bridge_sim.post(path, {"CallSid": "CA" + "1" * 32}).status_code == 400


@pytest.mark.parametrize("path", ["/voice/hold?call=x", "/voice/conference?call=x",
                                  "/voice/worker?team=t&leg=0&offer=x",
                                  "/voice/worker/answer?team=t&leg=0&offer=x",
                                  "/voice/worker/status?team=t&leg=0&offer=x",
                                  "/voice/waiting/left?call=x", "/voice/waiting/join?call=x"])
def test_unsigned_bridge_requests_are_refused(bridge_app, path):
    assert bridge_app.test_client().post(path, data={"Digits": "1"}).status_code == 403


# -- sequential ringing ----------------------------------------------------------------------


@pytest.fixture
def sequential(tmp_path, bridge_settings, redis, clock, twilio_api):
    """The app with the shipped flows, but the Respect team rung one worker at a time."""
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    teams = (folder / "teams.yaml").read_text(encoding="utf-8")
    old = "  respect-workers:\n    workers:\n"
    assert teams.count(old) == 1
    (folder / "teams.yaml").write_text(
        teams.replace(old, "  respect-workers:\n    ring: sequential\n    workers:\n"),
        encoding="utf-8")
    settings = dataclasses.replace(bridge_settings, flows_dir=str(folder))
    app = app_with(settings, redis, clock)
    assert app.extensions["callflow"]["registry"].current.teams["respect-workers"].ring == (
        "sequential")
    return app


def test_a_sequential_team_is_rung_one_worker_at_a_time(sequential, twilio_api):
    caller = waiting(Caller(TwilioSim(sequential, extra_fields=CANARY_FIELDS), twilio_api,
                            to=RESPECT, number=CANARY_NUMBER))

    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE]
    caller.leg_status(0, "no-answer")
    caller.leg_status(0, "no-answer")  # again: still only one more leg
    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE, BILAL]
    assert twilio_api.of("redirect") == []
    assert_twilio_ok(twilio_api)


def test_a_sequential_team_in_the_simulator(sequential, twilio_api):
    sim = TwilioSim(sequential, extra_fields=CANARY_FIELDS, rest=twilio_api)

    transcript = sim.call(RESPECT, Keypad(["", "1"], ["", "1"]), caller=CANARY_NUMBER)

    assert [(e.kind, e.name.split(" ")[0]) for e in transcript.events
            if e.kind in ("ring", "declined", "accepted", "connected")] == [
        ("ring", "Alice"), ("declined", "Alice"), ("ring", "Bilal"), ("accepted", "Bilal"),
        ("connected", "Bilal")]
    assert_twilio_ok(twilio_api)


def test_a_sequential_worker_accepting_stops_the_ringing(sequential, twilio_api):
    caller = waiting(Caller(TwilioSim(sequential, extra_fields=CANARY_FIELDS), twilio_api,
                            to=RESPECT, number=CANARY_NUMBER))

    caller.press(0, "1")
    caller.leg_status(0, "completed")  # later, when Alice's call with the caller ends

    assert [str(leg.data["To"]) for leg in caller.legs()] == [ALICE]
    assert len(twilio_api.of("redirect")) == 1  # the caller, moved into Alice's room


# -- the simulator, with Twilio's REST API played in process ----------------------------------


def test_the_simulator_plays_both_sides_with_the_twilio_double(bridge_settings, redis, clock):
    double = TwilioDouble()
    app = app_with(bridge_settings, redis, clock, TWILIO_HTTP_CLIENT=double)
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS, rest=double)

    transcript = sim.call(RESPECT, Keypad(["", "1"], ["", "1"]), caller=CANARY_NUMBER)

    assert transcript.connected
    # The team rings simultaneously: both phones ring, Alice declines, Bilal accepts.
    assert [(e.kind, e.name.split(" ")[0]) for e in transcript.events if e.who == "worker"][:6] \
        == [("ring", "Alice"), ("ring", "Bilal"), ("say", "Alice"), ("declined", "Alice"),
            ("say", "Bilal"), ("accepted", "Bilal")]
    assert PLACE_1 in transcript.heard() and HOLDING in transcript.heard()
    # What the double took is what Twilio would: every request valid for its API.
    for request in double.requests:
        body = urlencode({k: v for k, v in request.data.items()}, doseq=True)
        twilio_openapi.check(request.method, request.url, body)
        if request.kind == "ring":
            assert (request.data["From"], request.data["Record"]) == (RESPECT, "false")
    # Rung, the caller moved into the room, and once the call is over its records deleted
    # from Twilio's log (the default).
    assert {r.kind for r in double.requests} == {"ring", "redirect", "delete"}


def test_both_helplines_are_bridged_with_their_own_number_and_team(bridge_sim, twilio_api):
    caller = waiting(Caller(bridge_sim, twilio_api, to=MENS_ADVICE, number=CANARY_NUMBER))

    assert [(str(leg.data["To"]), str(leg.data["From"])) for leg in caller.legs()] == [
        ("+447700900201", MENS_ADVICE), ("+447700900202", MENS_ADVICE)]
    assert said(caller.screen(0)) == ["Men's Advice Line call. Press 1 to accept."]


# -- when something is down -------------------------------------------------------------------


def assert_direct_dial(document: str, helpline: str = RESPECT) -> ET.Element:
    """A <Dial> straight to the team's active workers, each screened, with the helpline's
    number shown and recording off."""
    dial = ET.fromstring(document).find("Dial")
    assert dial is not None and dial.find("Conference") is None
    assert dial.get("callerId") == helpline
    assert dial.get("record") == "do-not-record"
    numbers = dial.findall("Number")
    assert [n.text for n in numbers] == [ALICE, BILAL]
    assert all("/voice/screen?" in n.get("url") for n in numbers)
    return dial


def test_redis_down_when_the_caller_rings_the_menu_goes_on_and_the_team_is_dialled_directly(
        bridge_settings, clock, twilio_api):
    store = dead_store()
    app = app_with(bridge_settings, store, clock, on_shift=False)
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS, rest=twilio_api)

    transcript = sim.call(RESPECT, Keypad(["", "1"], ["1"]), caller=CANARY_NUMBER)

    heard = transcript.heard()
    assert APOLOGY not in heard
    assert NOTICE in heard[0]
    assert [NOTICE in text for text in heard].count(True) == 1  # said once, never again
    dial = assert_direct_dial(sim.responses[2])
    assert dial.get("action").startswith(f"{PUBLIC_URL}/voice/dial?flow=respect-phoneline&")
    assert transcript.connected
    assert twilio_api.sent == []
    store.close()


class DownAtConnect(redis_lib.Redis):
    """A store that answers until the bridge asks it something at the connect step."""

    def exists(self, *names):
        raise redis_lib.ConnectionError("Redis went away")


@pytest.fixture
def flaky(bridge_settings, redis_url, clock, twilio_api):
    """A caller waiting on the bridge of an app whose store can be taken down."""
    store = FlakyStore.from_url(redis_url, decode_responses=True)
    store.flushdb()
    app = app_with(bridge_settings, store, clock)
    caller = waiting(Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                            number=CANARY_NUMBER))
    yield store, caller
    store.down = False
    store.flushdb()
    store.close()


def test_redis_down_while_the_caller_waits_puts_them_through_directly(flaky):
    """Queue order is all that is lost: the next hold turn leaves the line, and the line's
    action dials the team directly, with the same privacy settings."""
    store, caller = flaky
    store.down = True

    assert [v.tag for v in verbs(caller.hold())] == ["Leave"]
    body = caller.leave()

    assert said(body)[0] == APOLOGY
    dial = assert_direct_dial(body)
    assert dial.get("callerId") == RESPECT


def test_redis_down_as_the_caller_is_moved_to_their_worker_puts_them_through_directly(flaky):
    """Never a hang-up: the caller Twilio moves into the room while the store is down is put
    through by the flow's direct dial, with the same privacy settings."""
    store, caller = flaky
    caller.press(1, "1")
    store.down = True

    body = caller.moved()

    assert said(body)[0] == APOLOGY
    assert assert_direct_dial(body).get("callerId") == RESPECT


def test_redis_down_a_worker_who_picks_up_is_told_the_call_is_gone(flaky):
    """The callers are being dialled directly meanwhile; an offer cannot be checked."""
    store, caller = flaky
    store.down = True

    assert said(caller.screen(1)) == [TAKEN]


@pytest.mark.parametrize("callback", [
    lambda caller: caller.post(str(caller.leg(0).data["StatusCallback"]),
                               caller.worker_fields(0, CallStatus="no-answer"), status=503),
    lambda caller: caller.post(f"/voice/conference?call={caller.call_id}",
                               {"CallSid": caller.sid, "StatusCallbackEvent": "conference-end",
                                "ConferenceSid": "CF" + "0" * 32}, status=503),
], ids=["worker-status", "conference"])
def test_redis_down_for_a_callback_answers_503_so_twilio_logs_it(flaky, callback):
    store, caller = flaky
    store.down = True

    callback(caller)


def test_redis_down_at_the_connect_step_dials_the_team_directly(
        bridge_settings, redis_url, clock, twilio_api, caplog):
    store = DownAtConnect.from_url(redis_url, decode_responses=True)
    store.flushdb()
    app = app_with(bridge_settings, store, clock)
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)

    with caplog.at_level(logging.ERROR):
        body = caller.enter()

    assert said(body) == []  # the caller heard the notice and the menu already
    dial = assert_direct_dial(body)
    assert dial.get("action") == (f"{PUBLIC_URL}/voice/dial?flow=respect-phoneline&"
                                  "step=connect&n=1")  # the flow's own no-answer step follows
    assert caller.call_id == ""
    assert not list(store.scan_iter(keys.live_call("*")))
    assert twilio_api.sent == []
    assert [r.event for r in caplog.records if r.levelno >= logging.ERROR] == ["degraded"]
    store.flushdb()
    store.close()


@pytest.mark.parametrize("failure", [500, requests.ConnectionError("Twilio unreachable")],
                         ids=["http-500", "connection-error"])
def test_rest_api_failing_sends_the_next_caller_by_direct_dial(bridge_sim, twilio_api, redis,
                                                               failure):
    twilio_api.fail("ring", failure, failure)
    first = waiting(Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER))

    assert len(first.legs()) == 2  # both tried, both refused
    assert redis.exists(keys.rest_trouble())
    assert 0 < redis.ttl(keys.rest_trouble()) <= 60

    second = Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
    body = second.enter()

    assert second.call_id == ""
    assert_direct_dial(body)
    assert len(twilio_api.of("ring")) == 2

    with runtime.binding(bridge_sim.app.extensions["callflow"]["runtime"]):
        jobs.dispatch("respect-workers")  # RQ's retry, with Twilio back: no offer was kept
    assert [str(leg.data["To"]) for leg in first.legs()] == [ALICE, BILAL, ALICE, BILAL]
    assert_twilio_ok(twilio_api)


def test_one_workers_number_twilio_refuses_does_not_send_every_caller_by_direct_dial(
        bridge_sim, twilio_api, redis):
    twilio_api.fail("ring", (400, 21211))  # Alice's number, mistyped in teams.yaml
    first = waiting(Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER))
    assert [str(leg.data["To"]) for leg in first.legs()] == [ALICE, BILAL]

    assert not redis.exists(keys.rest_trouble())
    assert waiting(Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)).call_id


def test_a_leg_twilio_refused_counts_as_a_missed_offer(bridge_sim, twilio_api):
    twilio_api.fail("ring", (400, 21211))
    waiting(Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER))

    rt = bridge_sim.app.extensions["callflow"]["runtime"]
    alice = Shifts(rt.store, rt.clock).status("Alice")
    assert (alice.state, alice.missed) == (WorkerState.AVAILABLE, 1)


@pytest.fixture
def no_sync(bridge_settings, redis, clock, twilio_api):
    """The bridged app leaving jobs to a job runner."""
    return create_app({"TESTING": True, "SETTINGS": bridge_settings, "STORE": redis,
                       "CLOCK": clock})


def test_without_a_worker_process_callers_are_dialled_directly(no_sync, twilio_api):
    caller = Caller(TwilioSim(no_sync, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)

    assert_direct_dial(caller.enter())


def test_a_crashed_worker_process_does_not_count(no_sync, twilio_api):
    queue = no_sync.extensions["callflow"]["runtime"].queue
    crashed = SimpleWorker([queue], connection=queue.connection, serializer=JSONSerializer)
    crashed.register_birth()
    queue.connection.delete(crashed.key)  # killed: its heartbeat key expires, nothing else
    caller = Caller(TwilioSim(no_sync, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)

    assert_direct_dial(caller.enter())


def test_callers_are_bridged_again_once_the_trouble_flag_expires(bridge_sim, twilio_api, redis):
    redis.set(keys.rest_trouble(), "1", ex=60)
    direct = Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
    assert_direct_dial(direct.enter())

    redis.delete(keys.rest_trouble())  # as its TTL would

    assert waiting(Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)).call_id


def test_a_caller_whose_move_into_the_room_failed_is_taken_there_by_the_next_hold(
        caller, twilio_api, live):
    """The REST redirect is only the fast way: with Twilio's API failing, the caller's next
    hold turn leaves the line and the line's action puts them in the room."""
    waiting(caller)
    twilio_api.fail("redirect", 500, 500, 500, 500)
    caller.press(1, "1")

    assert [v.tag for v in verbs(caller.hold())] == ["Leave"]
    body = caller.leave()

    assert ET.fromstring(body).find("Dial/Conference").text == f"room-{caller.call_id}"
    assert state(live, caller) is LiveState.CONNECTED


# -- Twilio's call logs ------------------------------------------------------------------------


@pytest.fixture
def purging(bridge_settings, redis, clock, twilio_api):
    settings = dataclasses.replace(bridge_settings, purge_twilio_logs=True)
    return TwilioSim(app_with(settings, redis, clock), extra_fields=CANARY_FIELDS,
                     rest=twilio_api)


def test_with_purging_on_a_finished_calls_records_are_deleted(purging, twilio_api):
    caller = waiting(Caller(purging, twilio_api, to=RESPECT, number=CANARY_NUMBER))
    legs = caller.legs()
    caller.press(1, "1")
    caller.conference("conference-end")

    assert twilio_api.of("delete") == []  # not while the call is going on
    caller.status("completed")
    caller.status("completed")  # Twilio's retry: a second delete would only meet a 404

    # The caller's call and the leg that talked to them; the cancelled leg, which never
    # carried the caller, is left to the sweep of the helplines' numbers.
    deleted = twilio_api.of("delete")
    assert {d.sid for d in deleted} == {caller.sid, legs[1].sid}
    assert all(d.method == "DELETE" and d.body == "" for d in deleted)
    assert_twilio_ok(twilio_api)


def test_by_default_a_finished_calls_records_are_deleted(caller, twilio_api):
    legs = waiting(caller).legs()
    caller.press(1, "1")
    caller.status("completed")

    assert {d.sid for d in twilio_api.of("delete")} == {caller.sid, legs[1].sid}


def test_with_purging_turned_off_nothing_is_deleted(bridge_settings, redis, clock, twilio_api):
    settings = dataclasses.replace(bridge_settings, purge_twilio_logs=False)
    sim = TwilioSim(app_with(settings, redis, clock), extra_fields=CANARY_FIELDS,
                    rest=twilio_api)
    caller = waiting(Caller(sim, twilio_api, to=RESPECT, number=CANARY_NUMBER))
    caller.press(1, "1")
    caller.status("completed")

    assert twilio_api.of("delete") == []


def test_with_purging_on_a_call_that_never_reached_the_bridge_is_deleted_too(purging,
                                                                             twilio_api):
    caller = Caller(purging, twilio_api, to=RESPECT, number=CANARY_NUMBER)
    caller.enter(keys=("",))  # hears the notice and the menu, then hangs up
    caller.status("completed")

    assert [d.sid for d in twilio_api.of("delete")] == [caller.sid]


def test_with_purging_on_a_caller_who_stays_long_after_the_fallback_is_deleted(purging,
                                                                              twilio_api,
                                                                              redis):
    caller = waiting(Caller(purging, twilio_api, to=RESPECT, number=CANARY_NUMBER))
    caller.leg_status(0, "no-answer")
    caller.leg_status(1, "no-answer")
    caller.turn(BUSY_STEP)
    redis.delete(keys.live_call(caller.call_id))  # as its ten-minute TTL would

    caller.status("completed")

    assert caller.sid in {d.sid for d in twilio_api.of("delete")}


# -- the canary --------------------------------------------------------------------------------


def test_the_callers_number_is_in_no_job_request_key_log_or_response(
        purging, twilio_api, redis_url, caplog, clock):
    """The canary rings (number, name and place in every webhook) and is connected, then
    rings again and nobody answers, then again and hangs up while workers ring; with the log
    purge on, so that every kind of job runs."""
    caplog.set_level(logging.DEBUG)

    connected = purging.call(RESPECT, Keypad(["", "1"], ["", "1"]), caller=CANARY_NUMBER)
    fallback = purging.call(RESPECT, Keypad(["", "1"], ["", ""]), caller=CANARY_NUMBER)
    rt = purging.app.extensions["callflow"]["runtime"]
    Shifts(rt.store, rt.clock).resume("Alice")  # paused after two missed offers
    clock.now += timedelta(minutes=2)  # Bilal's wrap-up is over
    caller = waiting(Caller(purging, twilio_api, to=RESPECT, number=CANARY_NUMBER))
    caller.conference("participant-leave")
    caller.status("completed")

    assert connected.connected and not fallback.connected
    payloads = job_payloads(redis_url)
    for kind in ("dispatch-", "surplus-", "join-", "purge-"):
        assert any(job.startswith(kind) for job in payloads), kind
    assert_no_canary(*payloads.values())
    for kind in ("ring", "hang_up", "redirect", "delete"):
        assert twilio_api.of(kind), kind
    assert_no_canary(*(f"{s.method} {s.url} {s.body}" for s in twilio_api.sent))
    assert_no_canary(raw_dump(redis_url))
    assert caplog.records
    assert_no_canary(*(f"{r.getMessage()} {r.__dict__}" for r in caplog.records))
    assert_no_canary(*purging.responses)
    assert_twilio_ok(twilio_api)
