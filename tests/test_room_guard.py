"""Every participant who joins a call's room is one the service put there: the caller, a worker
who accepted, or a granted listen. Anyone else is removed at once over Twilio's REST API and an
alarm entry is audited (promise 4)."""

from __future__ import annotations

from callflow.records.audit import AuditKind
from tests.monitoring_support import (
    LineCall,
    connected_caller,
    entries_after,
    last_seq,
    manager_leg,
    signed_in,
    waiting_caller,
)
from webhooks.simulator import new_call_sid

pytest_plugins = ("tests.monitoring_fixtures",)


def test_a_participant_the_service_did_not_create_is_removed_at_once_and_alarmed(sim, rest, rt):
    """The attack: someone joins the room of a live call (a leg the service never made)."""
    call = connected_caller(sim, rest)
    stranger = new_call_sid()
    seq = last_seq(rt)

    call.conference("participant-join", stranger)

    [removed] = rest.of("remove")
    assert removed.sid == stranger
    assert removed.url.endswith(f"/Conferences/{call.conference_sid}/Participants/{stranger}.json")
    [alarm] = entries_after(rt, seq, prefix="alarm")
    assert (alarm.kind, alarm.actor) == (AuditKind.ALARM, "system")
    assert alarm.data == {"problem": "unknown_participant", "call": call.call_id,
                          "participant": stranger, "removed": True}
    assert stranger not in rest.rooms[call.conference_sid]
    assert rest.problems == []


def test_a_stranger_labelled_as_a_listen_is_still_a_stranger(monitor_app, sim, rest, rt):
    """A label is matched only for a session of this call still waiting for its leg."""
    call = connected_caller(sim, rest)
    signed_in(monitor_app).listen(call.call_id)
    stranger = new_call_sid()

    call.conference("participant-join", stranger, label="monitor-s0123456789abcdef0123")

    assert [s.sid for s in rest.of("remove")] == [stranger]
    assert rt.audit.entries(kind=AuditKind.ALARM)[-1].data["participant"] == stranger


def test_the_legs_the_service_created_stay(monitor_app, sim, rest, rt):
    call = connected_caller(sim, rest)  # the caller and the accepted worker have joined
    signed_in(monitor_app).listen(call.call_id)
    call.conference("participant-join", manager_leg(rest))
    line_call = waiting_caller(sim, rest)  # another caller, in their own room
    line = LineCall(sim)
    line.ring()

    for joined in (call.sid, call.leg(0).sid, manager_leg(rest)):
        call.conference("participant-join", joined)
    line_call.conference("participant-join")

    assert rest.of("remove") == []
    assert rt.audit.entries(kind=AuditKind.ALARM) == []


def test_a_worker_whose_ring_was_never_confirmed_may_still_take_the_call(sim, rest, rt, redis):
    """A worker's leg is known from the moment its keypress is accepted, even if the REST
    answer that would have named it was lost."""
    from callflow.platform import keys

    caller = waiting_caller(sim, rest)
    redis.hdel(keys.live_call(caller.call_id), "leg:0")  # as if Twilio's answer never came

    caller.press(0, "1")
    caller.conference("participant-join", caller.leg(0).sid)

    assert rest.of("remove") == []


def test_a_removal_twilio_refuses_is_still_alarmed_and_tried_again(sim, rest, rt):
    call = connected_caller(sim, rest)
    stranger = new_call_sid()
    rest.fail("remove", 500)

    call.conference("participant-join", stranger)

    alarm = rt.audit.entries(kind=AuditKind.ALARM)[-1]
    assert alarm.data["participant"] == stranger
    assert [s.sid for s in rest.of("remove")] == [stranger, stranger]  # the job's retry
    assert stranger not in rest.rooms[call.conference_sid]
