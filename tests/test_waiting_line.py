"""The waiting line: callers in order, their places and the team's messages, workers on shift,
wrap-up, missed offers and fair ringing; driven as Twilio would, on a real Redis."""

from __future__ import annotations

import dataclasses
import random
import shutil
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest

from callflow.bridge.announcements import spoken_position
from callflow.bridge.bridge import HOLDING, TAKEN
from callflow.bridge.waiting_line import ENOUGH_RECENT, WaitingLine
from callflow.platform import keys
from callflow.platform.jobspec import Job
from callflow.records.live import LiveState
from callflow.staff.shifts import MISSED_REST_SECONDS, Shifts, WorkerState
from tests.bridge_support import Caller, LostAnswer, query, said, sign_on, verbs
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, FLOWS, RESPECT, assert_no_canary
from webhooks import create_app
from webhooks.simulator import TwilioSim

TEAM = "respect-workers"
BUSY = "Sorry, all our helpline workers are busy"
ALICE, BILAL, CHRIS = 0, 1, 2  # places in the roster


def team_app(tmp_path, bridge_settings, redis, clock, team_yaml: str, *, on_shift=True,
             respect_flow=lambda text: text):
    """The shipped flows with the Respect team as ``team_yaml`` says (three workers), and the
    Respect Phoneline's flow as ``respect_flow`` makes it."""
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder, dirs_exist_ok=True)
    flow = folder / "respect-phoneline.yaml"
    flow.write_text(respect_flow(flow.read_text(encoding="utf-8")), encoding="utf-8")
    teams = (folder / "teams.yaml").read_text(encoding="utf-8")
    start, end = teams.index("  respect-workers:"), teams.index("  mal-workers:")
    (folder / "teams.yaml").write_text(teams[:start] + team_yaml + teams[end:],
                                       encoding="utf-8")
    settings = dataclasses.replace(bridge_settings, flows_dir=str(folder))
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True})
    if on_shift:
        sign_on(app)
    return app


def roster(**settings) -> str:
    lines = [f"    {name}: {value}" for name, value in settings.items()]
    return "\n".join(["  respect-workers:", *lines, "    workers:",
                      '      - {name: Alice, number: "+447700900101"}',
                      '      - {name: Bilal, number: "+447700900102"}',
                      '      - {name: Chris, number: "+447700900103"}', ""])


@pytest.fixture
def shifts(redis, clock):
    return Shifts(redis, clock)


def callers(app, twilio_api, count: int) -> list[Caller]:
    sim = TwilioSim(app, extra_fields=CANARY_FIELDS)
    made = []
    for _ in range(count):
        caller = Caller(sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
        caller.enter()
        assert caller.call_id, "not put in the line"
        made.append(caller)
    return made


# -- places, the wait, the team's messages -------------------------------------------------


def test_each_caller_hears_their_own_place_and_it_moves_up(tmp_path, bridge_settings, redis,
                                                           clock, twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(position_every=30))
    first, second, third = callers(app, twilio_api, 3)

    assert said(third.hold())[0] == "You are number 3 in the queue."
    assert said(second.hold())[0] == "You are number 2 in the queue."
    first.press(ALICE, "1")  # Alice takes the caller who has waited longest
    clock.now += timedelta(seconds=30)

    assert said(third.hold())[0] == "You are number 2 in the queue."
    assert said(second.hold())[0] == "You are number 1 in the queue."
    assert said(third.hold()) == [HOLDING]  # not again before position_every


def test_above_five_the_place_is_said_as_further_back():
    assert spoken_position(5) == "You are number 5 in the queue."
    assert spoken_position(6) == "You are further back than number 5 in the queue."


def test_the_expected_wait_is_said_only_as_a_band_and_only_on_enough_calls(
        tmp_path, bridge_settings, redis, clock, twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster())
    line = WaitingLine(redis)
    (caller,) = callers(app, twilio_api, 1)
    for _ in range(ENOUGH_RECENT - 1):
        line.answered_after(TEAM, 100)
    assert said(caller.hold()) == ["You are number 1 in the queue.", HOLDING]

    line.answered_after(TEAM, 100)
    clock.now += timedelta(seconds=60)
    assert said(caller.hold())[:2] == ["You are number 1 in the queue.",
                                       "The wait is expected to be less than five minutes."]


def test_the_teams_messages_are_said_in_turn(tmp_path, bridge_settings, redis, clock,
                                             twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(
        position_every=0, announce_every=20,
        announcements='["If you are in danger, call 999.", "You can also visit our website."]'))
    (caller,) = callers(app, twilio_api, 1)

    assert said(caller.hold()) == [HOLDING]
    clock.now += timedelta(seconds=20)
    assert said(caller.hold()) == ["If you are in danger, call 999.", HOLDING]
    clock.now += timedelta(seconds=10)
    assert said(caller.hold()) == [HOLDING]
    clock.now += timedelta(seconds=10)
    assert said(caller.hold()) == ["You can also visit our website.", HOLDING]
    clock.now += timedelta(seconds=20)
    assert said(caller.hold()) == ["If you are in danger, call 999.", HOLDING]


# -- nobody on shift ---------------------------------------------------------------------------


def test_with_nobody_on_shift_the_caller_does_not_wait(tmp_path, bridge_settings, redis,
                                                       clock, twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(), on_shift=False)
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)

    body = caller.enter()

    assert caller.call_id == ""
    redirect = ET.fromstring(body).find("Redirect")
    assert query(redirect.text)["step"] == "busy"  # on_no_workers defaults to on_no_answer
    assert said(caller.turn(redirect.text))[0].startswith(BUSY)
    assert twilio_api.sent == []
    assert not redis.exists(keys.waiting_line(TEAM))


def test_when_the_last_worker_ends_their_shift_the_waiting_callers_go_on(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster())
    first, second = callers(app, twilio_api, 2)

    for name in ("Alice", "Bilal", "Chris"):
        shifts.end(name)

    for caller in (first, second):
        assert [v.tag for v in verbs(caller.hold())] == ["Leave"]
        assert said(caller.leave())[0].startswith(BUSY)
    assert redis.zcard(keys.waiting_line(TEAM)) == 0


# -- a worker's day --------------------------------------------------------------------------


def test_a_worker_on_a_call_is_never_offered_another(tmp_path, bridge_settings, redis, clock,
                                                     twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    first, second = callers(app, twilio_api, 2)
    assert [query(str(r.data["Url"]))["leg"] for r in first.legs()] == ["0", "1"]

    first.press(ALICE, "1")
    second.press(BILAL, "1")

    assert shifts.status("Alice").state is WorkerState.ON_CALL
    assert shifts.status("Bilal").state is WorkerState.ON_CALL
    third = callers(app, twilio_api, 1)[0]
    assert [query(str(r.data["Url"]))["leg"] for r in third.legs()] == ["0", "1", "2"]


def test_after_a_call_the_worker_wraps_up_before_the_next_offer(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential",
                                                                   wrap_up=60))
    for name in ("Bilal", "Chris"):
        shifts.end(name)
    (first,) = callers(app, twilio_api, 1)
    first.press(ALICE, "1")
    first.leg_status(ALICE, "completed")  # the call is over
    assert shifts.status("Alice").state is WorkerState.WRAP_UP

    (second,) = callers(app, twilio_api, 1)
    assert len(second.legs()) == 1  # only the first offer: Alice is wrapping up
    clock.now += timedelta(seconds=59)
    second.hold()
    assert len(second.legs()) == 1
    clock.now += timedelta(seconds=1)
    second.hold()

    assert len(second.legs()) == 2
    assert shifts.status("Alice").state is WorkerState.OFFERED


def test_a_paused_worker_is_not_rung_until_resumed(tmp_path, bridge_settings, redis, clock,
                                                   twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential",
                                                                   autopause_after=1))
    for name in ("Bilal", "Chris"):
        shifts.end(name)
    (caller,) = callers(app, twilio_api, 1)
    caller.leg_status(ALICE, "no-answer")
    status = shifts.status("Alice")
    assert (status.state, status.reason) == (WorkerState.PAUSED, "missed 1 offers in a row")

    clock.now += timedelta(seconds=MISSED_REST_SECONDS)
    caller.hold()
    assert len(caller.legs()) == 1
    assert shifts.resume("Alice")
    caller.hold()

    assert len(caller.legs()) == 2


def test_longest_idle_offers_the_worker_idle_longest_first(tmp_path, bridge_settings, redis,
                                                           clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="longest_idle",
                                                                   wrap_up=0))
    first, = callers(app, twilio_api, 1)
    assert [query(str(r.data["Url"]))["leg"] for r in first.legs()] == ["0"]
    first.press(ALICE, "1")
    clock.now += timedelta(seconds=30)
    first.leg_status(ALICE, "completed")  # Alice's call ends: she is now idle the shortest
    clock.now += timedelta(seconds=5)

    second, = callers(app, twilio_api, 1)

    assert query(str(second.legs()[-1].data["Url"]))["leg"] == str(BILAL)


def test_round_robin_goes_on_from_where_it_stopped(tmp_path, bridge_settings, redis, clock,
                                                   twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="round_robin",
                                                                   wrap_up=0))
    offered = []
    for _ in range(4):
        caller, = callers(app, twilio_api, 1)
        leg = int(query(str(caller.legs()[-1].data["Url"]))["leg"])
        offered.append(leg)
        caller.press(leg, "1")
        caller.leg_status(leg, "completed")
        caller.status("completed")

    assert offered == [ALICE, BILAL, CHRIS, ALICE]


def test_a_caller_who_leaves_in_the_queue_is_counted_out_of_it(tmp_path, bridge_settings,
                                                               redis, clock, twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    first, second, third = callers(app, twilio_api, 3)

    second.status("completed")  # hangs up while waiting

    assert said(third.hold())[0] == "You are number 2 in the queue."
    assert redis.zrange(keys.waiting_line(TEAM), 0, -1) == [first.call_id, third.call_id]


# -- twenty callers, three workers ---------------------------------------------------------


class Floor:
    """Drives one team's line as Twilio would: callers arriving, hold turns, workers' phones
    ringing, accepts, declines, unanswered offers, hang-ups, calls ending, a shift ending; and
    checks every promise as it goes."""

    def __init__(self, app, twilio_api, clock, shifts, max_wait: int, seed: int) -> None:
        self.app, self.rest, self.clock, self.shifts = app, twilio_api, clock, shifts
        self.sim = TwilioSim(app, extra_fields=CANARY_FIELDS)
        self.max_wait = max_wait
        self.random = random.Random(seed)
        self.arrived: list[Caller] = []  # in arrival order
        self.joined_at: dict[str, object] = {}
        self.waiting: list[Caller] = []  # still in the line, in arrival order
        self.outcome: dict[str, str] = {}
        self.connected_order: list[str] = []
        self.talking: dict[int, tuple[Caller, object]] = {}  # worker -> (caller, leg)
        self.ringing: dict[int, object] = {}  # worker -> the leg request ringing now
        self.seen_rings = 0
        self.off: set[int] = set()  # workers who ended their shift

    # -- what Twilio and people do ---------------------------------------------------------

    def arrive(self) -> None:
        caller = Caller(self.sim, self.rest, to=RESPECT, number=CANARY_NUMBER)
        caller.enter()
        assert caller.call_id
        self.arrived.append(caller)
        self.waiting.append(caller)
        self.joined_at[caller.call_id] = self.clock.now
        self.sync()

    def sync(self) -> None:
        """New REST requests: rings (each checked: never a worker already ringing or on a
        call), hang-ups of ringing legs (reported back as cancelled)."""
        while self.seen_rings < len(self.rest.requests):
            request = self.rest.requests[self.seen_rings]
            self.seen_rings += 1
            if request.kind == "ring":
                worker = int(query(str(request.data["Url"]))["leg"])
                assert worker not in self.ringing, f"worker {worker} offered twice at once"
                assert worker not in self.talking, f"worker {worker} offered while on a call"
                assert worker not in self.off, f"worker {worker} offered off shift"
                self.ringing[worker] = request
            elif request.kind == "hang_up":
                for worker, leg in list(self.ringing.items()):
                    if leg.sid == request.sid:
                        del self.ringing[worker]
                        self.post_leg(leg, "canceled")

    def post_leg(self, leg, status: str) -> None:
        self.arrived[0].post(str(leg.data["StatusCallback"]),
                             self.leg_fields(leg, CallStatus=status))

    @staticmethod
    def leg_fields(leg, **extra):
        return {"CallSid": leg.sid, "AccountSid": "AC" + "1" * 32, "From": str(leg.data["From"]),
                "To": str(leg.data["To"]), "CallStatus": "in-progress",
                "Direction": "outbound-api", "ApiVersion": "2010-04-01", **extra}

    def answer(self, worker: int) -> None:
        leg = self.ringing.pop(worker)
        body = self.arrived[0].post(str(leg.data["Url"]), self.leg_fields(leg))
        gather = ET.fromstring(body).find("Gather")
        choice = self.random.random()
        if gather is None:
            assert said(body) == [TAKEN]
            self.post_leg(leg, "completed")
        elif choice < 0.7:
            answer = self.arrived[0].post(gather.get("action"), self.leg_fields(leg, Digits="1"))
            room = ET.fromstring(answer).find("Dial/Conference")
            if room is None:
                assert said(answer) == [TAKEN]
                self.post_leg(leg, "completed")
            else:
                self.accepted(worker, leg, room.text.removeprefix("room-"))
        elif choice < 0.85:
            self.arrived[0].post(gather.get("action"), self.leg_fields(leg, Digits="2"))
            self.post_leg(leg, "completed")
        else:
            self.post_leg(leg, "no-answer")
        self.sync()

    def accepted(self, worker: int, leg, call_id: str) -> None:
        """FCFS: the caller given to the worker is the one who has waited longest."""
        assert self.waiting, "a worker was given a caller nobody was waiting as"
        assert call_id == self.waiting[0].call_id, "not the caller who waited longest"
        caller = self.waiting.pop(0)
        self.connected_order.append(call_id)
        self.outcome[call_id] = "connected"
        self.talking[worker] = (caller, leg)
        self.sync()
        caller.moved()

    def hold_all(self) -> None:
        for caller in list(self.waiting):
            body = caller.hold()
            ahead = self.waiting.index(caller)
            waited = (self.clock.now - self.joined_at[caller.call_id]).total_seconds()
            if [v.tag for v in verbs(body)] == ["Leave"]:
                assert waited >= self.max_wait or not self.on_shift(), "left the line early"
                self.waiting.remove(caller)
                after = caller.leave()
                assert said(after)[0].startswith(BUSY)
                self.outcome[caller.call_id] = "left the line"
            else:
                assert waited < self.max_wait, "waited past max_wait"
                place = [t for t in said(body) if "in the queue" in t]
                if place:
                    assert place[0] == spoken_position(ahead + 1)
        self.sync()

    def on_shift(self) -> bool:
        return any(s.on_shift for s in self.shifts.statuses(["Alice", "Bilal", "Chris"]))

    def abandon(self) -> None:
        caller = self.random.choice(self.waiting)
        self.waiting.remove(caller)
        caller.status("completed")
        self.outcome[caller.call_id] = "abandoned"
        self.sync()

    def end_call(self) -> None:
        worker = self.random.choice(sorted(self.talking))
        caller, leg = self.talking.pop(worker)
        caller.conference("conference-end")
        self.post_leg(leg, "completed")
        caller.status("completed")
        self.sync()


def test_twenty_callers_and_three_workers_are_served_in_order_and_nobody_is_lost(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    max_wait = 240
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(
        ring="simultaneous", max_wait=max_wait, position_every=20, wrap_up=15))
    floor = Floor(app, twilio_api, clock, shifts, max_wait, seed=14)
    shift_ended = False
    for step in range(400):
        if len(floor.arrived) < 20 and floor.random.random() < 0.3:
            floor.arrive()
        roll = floor.random.random()
        if floor.ringing and roll < 0.5:
            floor.answer(floor.random.choice(sorted(floor.ringing)))
        elif floor.waiting and roll < 0.55:
            floor.abandon()
        elif floor.talking and roll < 0.75:
            floor.end_call()
        if len(floor.arrived) >= 10 and floor.waiting and not shift_ended:
            before = shifts.end("Chris")  # Chris ends his shift mid-queue
            floor.off.add(CHRIS)
            if before.state is WorkerState.OFFERED:
                app.extensions["callflow"]["runtime"].enqueue(Job.WITHDRAW_OFFER, "Chris",
                                                              job_id="withdraw-chris")
                floor.sync()
            shift_ended = True
        clock.now += timedelta(seconds=3)
        if step % 4 == 0:
            floor.hold_all()
        if len(floor.arrived) == 20 and not floor.waiting and not floor.talking:
            break
    for _ in range(2 * max_wait // 10):  # those still waiting: held until max_wait at most
        if not floor.waiting:
            break
        clock.now += timedelta(seconds=10)
        floor.hold_all()
        while floor.ringing:
            floor.answer(sorted(floor.ringing)[0])
    while floor.talking:
        floor.end_call()

    print("OUTCOMES", sorted(__import__("collections").Counter(floor.outcome.values()).items()))
    assert len(floor.arrived) == 20
    assert not floor.waiting
    # Nobody lost: every caller ended one way, and the line and the rooms are empty.
    assert sorted(floor.outcome) == sorted(c.call_id for c in floor.arrived)
    arrival = [c.call_id for c in floor.arrived]
    assert floor.connected_order == sorted(floor.connected_order, key=arrival.index)
    assert floor.connected_order, "nobody was connected"
    live = app.extensions["callflow"]["runtime"].live
    assert {live.get(c.call_id).state for c in floor.arrived} <= {LiveState.ENDED,
                                                                  LiveState.FALLBACK}
    assert redis.zcard(keys.waiting_line(TEAM)) == 0
    assert shift_ended and shifts.status("Chris").state is WorkerState.OFF
    assert_no_canary(*(f"{s.url} {s.body}" for s in twilio_api.sent))


# -- faults at the edges of a call -------------------------------------------------------------


def only_alice(app, shifts) -> None:
    for name in ("Bilal", "Chris"):
        shifts.end(name)


def test_a_caller_hanging_up_just_after_the_accept_frees_the_worker(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    only_alice(app, shifts)
    (caller,) = callers(app, twilio_api, 1)
    assert ET.fromstring(caller.press(ALICE, "1")).find("Dial/Conference") is not None

    caller.status("completed")  # gone before being moved into Alice's room

    assert [r.sid for r in twilio_api.requests if r.kind == "hang_up"] == [
        caller.leg(ALICE).sid]  # Alice is not left alone in a silent room
    assert shifts.status("Alice").state is WorkerState.WRAP_UP


def test_a_worker_whose_own_leg_callback_is_lost_is_freed_by_the_callers_side(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    only_alice(app, shifts)
    (caller,) = callers(app, twilio_api, 1)
    caller.press(ALICE, "1")
    caller.moved()
    caller.conference("participant-join", caller.leg(ALICE).sid)
    caller.conference("participant-join")
    clock.now += timedelta(minutes=4)
    caller.conference("conference-end")
    caller.status("completed")

    assert shifts.status("Alice").state is WorkerState.WRAP_UP  # no leg callback needed
    assert not [r for r in twilio_api.requests if r.kind == "hang_up"]  # the room ended it
    caller.leg_status(ALICE, "completed")  # late: changes nothing
    assert shifts.status("Alice").state is WorkerState.WRAP_UP


def test_a_worker_signed_off_and_on_during_a_call_is_still_on_that_call(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    only_alice(app, shifts)
    (first,) = callers(app, twilio_api, 1)
    first.press(ALICE, "1")

    shifts.end("Alice")  # a manager ends a "forgotten" shift; Alice, still talking, signs on
    assert shifts.start("Alice")
    rung = len(first.legs())
    callers(app, twilio_api, 1)

    assert shifts.status("Alice").state is WorkerState.ON_CALL
    assert len(first.legs()) == rung  # never rung for a second caller while on a call


def test_a_call_that_outlives_the_shift_still_counts_its_talk_time(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    only_alice(app, shifts)
    (caller,) = callers(app, twilio_api, 1)
    caller.press(ALICE, "1")
    shifts.end("Alice")

    caller.post(str(caller.leg(ALICE).data["StatusCallback"]),
                caller.worker_fields(ALICE, CallStatus="completed", CallDuration="240"))

    counts = app.extensions["callflow"]["runtime"].counts
    assert counts.flush()
    talk = [redis.hget(key, "talk:sum") for key in redis.scan_iter(f"{keys.PREFIX}:counts:*")
            if ":worker:Alice:" in key and redis.type(key) == "hash"]
    assert talk == ["240"]
    assert shifts.status("Alice").state is WorkerState.OFF


def test_a_caller_who_hangs_up_in_the_queue_leaves_it_even_without_the_status_callback(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    first, second = callers(app, twilio_api, 2)

    first.leave("hangup")  # the <Enqueue> action says so; the status callback is lost
    # One offer is withdrawn (one caller waits now); the worker still rung takes the call.
    ringing = [i for i, name in enumerate(("Alice", "Bilal"))
               if shifts.status(name).state is WorkerState.OFFERED]
    assert len(ringing) == 1
    second.press(ringing[0], "1")

    assert redis.zrange(keys.waiting_line(TEAM), 0, -1) == []
    live = app.extensions["callflow"]["runtime"].live
    assert live.get(second.call_id).state is LiveState.CONNECTED  # not a ghost of the first
    assert live.get(first.call_id).state is LiveState.ENDED


def test_a_worker_leaving_before_the_caller_reaches_them_sends_the_caller_on(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    (caller,) = callers(app, twilio_api, 1)
    caller.press(ALICE, "1")
    worker = caller.leg(ALICE).sid
    caller.conference("participant-join", worker)
    caller.conference("participant-leave", worker)
    caller.conference("conference-end", worker)

    moved = caller.moved()  # Twilio carries out the move a moment later

    redirect = ET.fromstring(moved).find("Redirect")
    assert redirect is not None and query(redirect.text)["step"] == "busy"
    assert said(caller.turn(redirect.text))[0].startswith(BUSY)  # never hung up on in silence


def test_a_lost_answer_to_a_ring_never_rings_the_same_worker_twice(
        tmp_path, bridge_settings, redis, clock, twilio_api, shifts):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    only_alice(app, shifts)
    twilio_api.fail("ring", LostAnswer())  # Twilio rang Alice; its answer never came back
    (caller,) = callers(app, twilio_api, 1)
    redis.delete(keys.rest_trouble())
    clock.now += timedelta(seconds=5)

    caller.hold()

    assert len([r for r in twilio_api.requests if r.kind == "ring"]) == 1
    clock.now += timedelta(seconds=60)  # the offer has run out: Alice may be offered again
    caller.hold()
    assert len([r for r in twilio_api.requests if r.kind == "ring"]) == 2


def test_a_retried_connect_webhook_puts_the_caller_in_the_line_and_counts_them_once(
        tmp_path, bridge_settings, redis, clock, twilio_api):
    app = team_app(tmp_path, bridge_settings, redis, clock, roster(ring="sequential"))
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)
    body = caller.turn("/voice/incoming")
    body = caller.turn(ET.fromstring(body).find("Gather").get("action"))
    menu = ET.fromstring(body).find("Gather").get("action")
    first = caller.turn(menu, Digits="1")

    again = caller.turn(menu, Digits="1")  # Twilio retries: its answer was lost

    assert again == first
    assert redis.zcard(keys.waiting_line(TEAM)) == 1
    assert len(caller.legs()) == 1
    counts = app.extensions["callflow"]["runtime"].counts
    assert counts.flush()
    queued = [int(redis.hget(key, "queued") or 0) for key in
              redis.scan_iter(f"{keys.PREFIX}:counts:respect-phoneline:all:*")
              if redis.type(key) == "hash"]
    assert sum(queued) == 1


def test_a_caller_who_chooses_to_try_again_joins_the_back_of_the_line(
        tmp_path, bridge_settings, redis, clock, twilio_api):
    """A menu after the longest wait ("press 1 to keep waiting") puts the caller through
    anew: a new wait, at the back of the line, offered to the workers again."""
    def keep_waiting(text: str) -> str:
        return text.replace("    on_no_answer: busy\n", "    on_no_answer: busy\n"
                            "    on_max_wait: again\n").replace(
            "  busy:\n", "  again:\n    kind: menu\n    prompt: Press 1 to keep waiting.\n"
            "    options:\n      1: connect\n    on_no_input: busy\n  busy:\n", 1)

    app = team_app(tmp_path, bridge_settings, redis, clock, roster(max_wait=60),
                   respect_flow=keep_waiting)
    caller, other = callers(app, twilio_api, 2)
    clock.now += timedelta(seconds=30)
    other.hold()
    clock.now += timedelta(seconds=30)
    assert [v.tag for v in verbs(caller.hold())] == ["Leave"]
    menu = caller.leave()
    assert said(menu) == ["Press 1 to keep waiting."]

    again = caller.turn(ET.fromstring(menu).find("Gather").get("action"), Digits="1")

    assert ET.fromstring(again).find("Enqueue") is not None
    assert redis.zrange(keys.waiting_line(TEAM), 0, -1) == [other.call_id, caller.call_id]
    assert said(caller.hold())[0] == "You are number 2 in the queue."
    live = app.extensions["callflow"]["runtime"].live
    assert live.get(caller.call_id).state is LiveState.WAITING
