"""The live-call registry: one small hash per call, states that only move forward, the first
acceptance decided atomically, and an entry that leaves the index and expires once the call
is over."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from callflow.platform import keys
from callflow.platform.errors import StoreUnavailable
from callflow.records.live import (
    ENDED_TTL_SECONDS,
    LIVE_TTL_SECONDS,
    LiveCall,
    LiveCalls,
    LiveState,
)
from tests.bridge_support import dead_store
from tests.conftest import OPEN_TIME, RESPECT
from webhooks.simulator import new_call_sid

CALLER_SID = "CA" + "0a" * 16
SECRET = "test-secret"
STATES = list(LiveState)
RANK = {"waiting": 0, "ringing": 1, "connected": 2, "fallback": 2, "ended": 3}


@pytest.fixture
def live(redis) -> LiveCalls:
    return LiveCalls(redis, SECRET)


def open_call(live: LiveCalls, **kwargs) -> LiveCall:
    values = {"flow": "respect-phoneline", "step": "connect", "team": "respect-workers",
              "helpline_number": RESPECT, "caller_sid": new_call_sid(), "now": OPEN_TIME}
    return live.open(**{**values, **kwargs})


def in_state(live: LiveCalls, state: LiveState) -> LiveCall:
    call = open_call(live)
    if state is not LiveState.WAITING:
        live.client.hset(keys.live_call(call.id), "state", state.value)
    return call


def test_open_writes_one_hash_with_a_ttl_and_indexes_it(live, redis):
    call = open_call(live, caller_sid=CALLER_SID)

    key = keys.live_call(call.id)
    assert redis.hgetall(key) == {
        "flow": "respect-phoneline", "step": "connect", "team": "respect-workers",
        "helpline_number": RESPECT, "caller_sid": CALLER_SID, "state": "waiting",
        "started_at": OPEN_TIME.isoformat(timespec="seconds"), "monitorable": "1"}
    assert 0 < redis.ttl(key) <= LIVE_TTL_SECONDS
    assert redis.zrange(keys.live_index(), 0, -1) == [call.id]
    assert [c.id for c in live.listing()] == [call.id]
    assert live.get(call.id) == call


def test_ids_and_rooms_are_one_per_caller_and_say_nothing_about_the_call(live):
    calls = [open_call(live) for _ in range(50)]

    assert len({call.id for call in calls}) == 50
    for call in calls:
        assert len(call.id) >= 16
        assert call.id == live.id_for(call.caller_sid)
        room = keys.conference_room(call.id)
        assert room == f"room-{call.id}"
        for known in (call.caller_sid, call.caller_sid[2:], RESPECT, RESPECT.lstrip("+"),
                      "respect"):
            assert known not in call.id and known not in room


def test_an_id_needs_the_secret_key_to_be_worked_out(redis):
    assert LiveCalls(redis, SECRET).id_for(CALLER_SID) != LiveCalls(redis, "other").id_for(
        CALLER_SID)


def test_opening_a_call_twice_keeps_the_first(live, redis):
    """Twilio retrying the webhook that put the caller through must not reopen the call."""
    first = open_call(live, caller_sid=CALLER_SID)
    live.advance(first.id, LiveState.RINGING, OPEN_TIME)

    again = open_call(live, caller_sid=CALLER_SID, step="other")

    assert again.id == first.id
    assert again.state is LiveState.RINGING and again.step == "connect"
    assert redis.zrange(keys.live_index(), 0, -1) == [first.id]


def test_a_call_nobody_opened_is_none(live):
    assert live.get("nope") is None
    assert live.get("") is None


@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("target", STATES)
def test_the_state_only_moves_forward(live, start, target):
    call = in_state(live, start)

    moved = live.advance(call.id, target, OPEN_TIME)

    assert moved is (RANK[target] > RANK[start])
    assert live.get(call.id).state == (target if moved else start)


def test_a_state_timestamp_is_set_once(live):
    call = open_call(live)
    first, later = OPEN_TIME + timedelta(seconds=5), OPEN_TIME + timedelta(seconds=50)

    assert live.advance(call.id, LiveState.RINGING, first)
    assert not live.advance(call.id, LiveState.RINGING, later)

    assert live.get(call.id).raw["ringing_at"] == first.isoformat(timespec="seconds")


def test_advancing_a_call_that_expired_does_not_bring_it_back(live, redis):
    assert not live.advance("gone", LiveState.ENDED, OPEN_TIME)
    assert not redis.exists(keys.live_call("gone"))


def test_the_first_worker_to_accept_wins(live):
    call = open_call(live)
    live.advance(call.id, LiveState.RINGING, OPEN_TIME)
    when = OPEN_TIME + timedelta(seconds=12)

    assert live.accept(call.id, 1, when)
    assert not live.accept(call.id, 0, when)

    now = live.get(call.id)
    assert (now.state, now.accepted) == (LiveState.CONNECTED, 1)
    assert now.connected_at == when.isoformat(timespec="seconds")


@pytest.mark.parametrize("state", [LiveState.FALLBACK, LiveState.ENDED])
def test_nobody_can_accept_a_call_that_is_over(live, state):
    call = in_state(live, state)

    assert not live.accept(call.id, 0, OPEN_TIME)
    assert live.get(call.id).accepted is None


def test_accepting_a_call_that_expired_does_not_create_it(live, redis):
    assert not live.accept("gone", 0, OPEN_TIME)
    assert not redis.exists(keys.live_call("gone"))


def test_the_same_worker_accepting_twice_is_still_accepted(live):
    call = open_call(live)

    assert live.accept(call.id, 1, OPEN_TIME)
    assert live.accept(call.id, 1, OPEN_TIME)
    assert not live.accept(call.id, 0, OPEN_TIME)


def test_note_sets_each_field_once(live):
    call = open_call(live)

    live.note(call.id, conference_sid="CF1")
    live.note(call.id, conference_sid="CF2")
    live.set_leg(call.id, 0, "CA-first")
    live.set_leg(call.id, 0, "CA-second")

    now = live.get(call.id)
    assert now.conference_sid == "CF1"
    assert now.legs == {0: "CA-first"}


@pytest.mark.parametrize("state", [LiveState.ENDED, LiveState.FALLBACK])
def test_a_call_that_is_over_leaves_the_index_and_expires_within_ten_minutes(live, redis,
                                                                            state):
    call = open_call(live)
    other = open_call(live)

    assert live.advance(call.id, state, OPEN_TIME)
    if state == LiveState.FALLBACK:  # kept whole until the caller has really been moved
        assert redis.ttl(keys.live_call(call.id)) > ENDED_TTL_SECONDS
        live.retire(call.id)
    live.note(call.id, conference_sid="CF1")  # a late callback keeps the short TTL

    assert 0 < redis.ttl(keys.live_call(call.id)) <= ENDED_TTL_SECONDS <= 600
    assert redis.zrange(keys.live_index(), 0, -1) == [other.id]
    assert [c.id for c in live.listing()] == [other.id]


def test_listing_drops_expired_entries_from_the_index(live, redis):
    gone, kept = open_call(live), open_call(live)
    redis.delete(keys.live_call(gone.id))

    assert [c.id for c in live.listing()] == [kept.id]
    assert redis.zrange(keys.live_index(), 0, -1) == [kept.id]


def test_listing_is_oldest_first(live):
    later = open_call(live, now=OPEN_TIME + timedelta(minutes=2))
    earlier = open_call(live)

    assert [c.id for c in live.listing()] == [earlier.id, later.id]


def test_monitorable_is_kept(live):
    call = open_call(live, monitorable=False)
    assert not live.get(call.id).monitorable

    live.set_monitorable(call.id, True)
    assert live.get(call.id).monitorable


def test_one_live_call_takes_under_a_kibibyte_of_redis(live, redis):
    """A call at its largest: told its place and the team's messages while waiting, the
    conference known, a worker connected, moved into the room, then the call ended."""
    call = open_call(live)
    live.mark(call.id, said_place="3600", said_message="3600", message_turn="40")
    live.note(call.id, conference_sid="CF" + "e" * 32, joined="1")
    live.accept(call.id, 1, OPEN_TIME + timedelta(seconds=30))
    live.set_leg(call.id, 1, "CA" + "1" * 32)
    live.advance(call.id, LiveState.ENDED, OPEN_TIME + timedelta(minutes=40))

    assert redis.memory_usage(keys.live_call(call.id)) < 1024


def test_from_hash_reads_what_open_wrote(live):
    call = open_call(live, monitorable=False)
    live.set_leg(call.id, 3, "CA3")

    again = LiveCall.from_hash(call.id, live.client.hgetall(keys.live_call(call.id)))

    assert (again.flow, again.team, again.helpline_number) == (
        "respect-phoneline", "respect-workers", RESPECT)
    assert (again.legs, again.monitorable) == ({3: "CA3"}, False)
    assert again.live
    assert not dataclasses.replace(again, state=LiveState.FALLBACK).live
    assert not dataclasses.replace(again, state=LiveState.ENDED).live


# -- Redis down ------------------------------------------------------------------------------


@pytest.fixture
def down() -> LiveCalls:
    client = dead_store()
    yield LiveCalls(client, SECRET)
    client.close()


@pytest.mark.parametrize("operation", [
    lambda live: open_call(live),
    lambda live: live.get("x"),
    lambda live: live.advance("x", LiveState.ENDED, OPEN_TIME),
    lambda live: live.accept("x", 0, OPEN_TIME),
    lambda live: live.note("x", conference_sid="CF1"),
    lambda live: live.mark("x", said_place="0"),
    lambda live: live.set_monitorable("x", False),
    lambda live: live.listing(),
], ids=["open", "get", "advance", "accept", "note", "mark", "set_monitorable", "listing"])
def test_redis_down_is_store_unavailable(down, operation):
    with pytest.raises(StoreUnavailable):
        operation(down)
