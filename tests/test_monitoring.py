"""The monitoring gate (promise 4) end to end: a caller connected through signed webhooks, a
manager signed in on the web, Twilio's REST API on ``responses`` (each request checked against
Twilio's OpenAPI description), and the audit log read back after each step.

A listen is granted only when, in this order: a signed-in manager, not disabled; a purpose of
quality or training; a live, connected, monitorable call nobody is listening to; the manager not
already listening and under the day's limit; and the request durably audited. Every refusal is
audited with its reason and makes no REST request."""

from __future__ import annotations

import dataclasses
import logging
from urllib.parse import urlsplit

import pytest
import requests
import urllib3

from callflow.jobs import tasks as jobs
from callflow.monitoring.gate import HTTP_STATUS, ListenRefusal, MonitoringGate
from callflow.platform import keys
from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from callflow.records.audit import AuditKind, AuditLog
from callflow.staff.accounts import Role
from tests import twilio_openapi
from tests.bridge_support import LostAnswer, dead_store, raw_dump, sign_on
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    MENS_ADVICE,
    PUBLIC_URL,
    RESPECT,
    assert_no_canary,
)
from tests.monitoring_support import (
    ADMIN,
    DEVICE,
    MANAGER,
    MANAGER_PHONE,
    OTHER_MANAGER,
    OTHER_PHONE,
    PASSWORD,
    WORKERS,
    WebManager,
    add_staff,
    build_app,
    connect,
    connected_caller,
    entries_after,
    last_seq,
    later,
    leg_status,
    manager_leg,
    signed_in,
    waiting_caller,
)
from webhooks.simulator import TwilioSim

pytest_plugins = ("tests.monitoring_fixtures",)

NO_PHONE_MANAGER = "mona"
LIMIT_MESSAGE = "You have listened to 4 calls today; the limit is 4"


@pytest.fixture
def maria(monitor_app) -> WebManager:
    return signed_in(monitor_app, MANAGER)


@pytest.fixture
def call(sim, rest):
    """A live call, connected to a worker; the caller did not decline monitoring."""
    return connected_caller(sim, rest)


def kinds(entries) -> list[str]:
    return [e.kind for e in entries]


def refused(rt, seq: int) -> list[dict]:
    """The data of each monitor_refused entry after ``seq``."""
    return [e.data for e in entries_after(rt, seq) if e.kind == AuditKind.MONITOR_REFUSED]


def assert_refused(response, refusal: ListenRefusal, rt, seq: int, rest, *, actor: str = MANAGER):
    """The response names the refusal with its status; the refusal alone is audited; nothing
    was asked of Twilio."""
    assert response.status_code == HTTP_STATUS[refusal], response.get_json()
    assert response.get_json()["reason"] == refusal.value
    assert response.get_json()["message"]
    entries = entries_after(rt, seq)
    assert kinds(entries) == [AuditKind.MONITOR_REFUSED]
    assert entries[0].actor == actor
    assert entries[0].data["reason"] == refusal.value
    assert rest.of("listen") == []


def listen_ok(manager: WebManager, call_id: str, **kwargs) -> str:
    response = manager.listen(call_id, **kwargs)
    assert response.status_code == 202, response.get_json()
    return response.get_json()["session"]


# -- each refusal, in the gate's order --------------------------------------------------------


def test_not_signed_in_is_401_and_nothing_is_asked_of_twilio(monitor_app, call, rest, rt):
    browser = WebManager(monitor_app)
    browser.csrf = browser.form_token()  # a real session's token, but nobody signed in
    seq = last_seq(rt)

    response = browser.listen(call.call_id)

    assert response.status_code == 401
    assert response.get_json()["reason"] == ListenRefusal.NOT_SIGNED_IN.value
    # Refused before the gate: a request nobody signed in makes cannot write to the audit log.
    assert entries_after(rt, seq) == []
    assert rest.of("listen") == []


def test_the_gate_itself_refuses_and_audits_a_request_from_nobody(rt, call, rest):
    seq = last_seq(rt)

    decision = MonitoringGate(rt, rt.audit).request(None, call.call_id, "quality")

    assert (decision.granted, decision.refusal, decision.status) == (
        False, ListenRefusal.NOT_SIGNED_IN, 401)
    [entry] = entries_after(rt, seq)
    assert (entry.kind, entry.actor, entry.data["reason"]) == (
        AuditKind.MONITOR_REFUSED, "anonymous", ListenRefusal.NOT_SIGNED_IN.value)
    assert rest.of("listen") == []


def test_a_disabled_manager_is_refused_by_the_gate(rt, staff, call, rest):
    staff.disable(MANAGER, actor="cli:test")
    seq = last_seq(rt)

    decision = MonitoringGate(rt, rt.audit).request(staff.get(MANAGER), call.call_id, "quality")

    assert (decision.refusal, decision.status) == (ListenRefusal.DISABLED, 403)
    assert refused(rt, seq)[0]["reason"] == ListenRefusal.DISABLED.value
    assert rest.of("listen") == []


def test_a_manager_disabled_while_signed_in_is_signed_out(maria, staff, call, rest, rt):
    staff.disable(MANAGER, actor="cli:test")
    seq = last_seq(rt)

    response = maria.listen(call.call_id)

    assert response.status_code == 401
    assert response.get_json()["reason"] == "not_signed_in"
    assert entries_after(rt, seq) == []
    assert rest.of("listen") == []


def test_an_admin_may_not_listen(monitor_app, call, rest, rt):
    admin = signed_in(monitor_app, ADMIN)
    seq = last_seq(rt)

    response = admin.listen(call.call_id)

    assert_refused(response, ListenRefusal.NOT_A_MANAGER, rt, seq, rest, actor=ADMIN)


@pytest.mark.parametrize("purpose", ["", "curiosity", "Quality", "quality ", "training,quality",
                                     "+447700900666"])
def test_only_quality_or_training_is_a_purpose(maria, call, rest, rt, purpose):
    seq = last_seq(rt)

    response = maria.listen(call.call_id, purpose=purpose)

    assert_refused(response, ListenRefusal.BAD_PURPOSE, rt, seq, rest)
    assert refused(rt, seq)[0]["purpose"] == "(other)"  # never what was typed


def test_a_call_without_a_purpose_is_refused(maria, call, rest, rt):
    seq = last_seq(rt)

    response = maria.post(f"/manager/api/calls/{call.call_id}/listen", {})

    assert_refused(response, ListenRefusal.BAD_PURPOSE, rt, seq, rest)


def test_a_call_that_has_ended_is_refused(maria, call, rest, rt):
    call.conference("participant-leave")
    call.conference("conference-end")
    seq = last_seq(rt)

    response = maria.listen(call.call_id)

    assert_refused(response, ListenRefusal.NOT_LIVE, rt, seq, rest)
    assert "ended" in response.get_json()["message"]


@pytest.mark.parametrize("call_id", ["no-such-call", "CA" + "0" * 32])
def test_a_call_nobody_knows_is_refused_as_ended(maria, rest, rt, call_id):
    seq = last_seq(rt)

    response = maria.listen(call_id)

    assert_refused(response, ListenRefusal.NOT_LIVE, rt, seq, rest)


def test_a_number_in_place_of_a_call_id_is_never_recorded(maria, rest, rt):
    seq = last_seq(rt)

    response = maria.listen(CANARY_NUMBER)

    assert_refused(response, ListenRefusal.NOT_LIVE, rt, seq, rest)
    assert refused(rt, seq)[0]["call"] == "(not a call id)"
    assert_no_canary(str([e.to_json() for e in rt.audit.entries()]))


def test_every_live_call_id_is_one_the_audit_records(maria, sim, rest, rt):
    call = connected_caller(sim, rest)
    assert call.call_id[0].isalpha() and call.call_id.isalnum()
    seq = last_seq(rt)

    listen_ok(maria, call.call_id)

    assert [e.data["call"] for e in entries_after(rt, seq)] == [call.call_id] * 2
    exception = {"call": call.call_id, "grounds": ["caller_consent"], "agency": "partner",
                 "caller_informed": True}
    assert maria.post("/manager/api/exceptions", exception).status_code == 201


def test_a_call_still_waiting_for_a_worker_is_refused(maria, sim, rest, rt):
    caller = waiting_caller(sim, rest)
    seq = last_seq(rt)

    response = maria.listen(caller.call_id)

    assert response.status_code == 409
    assert response.get_json()["reason"] == ListenRefusal.NOT_CONNECTED.value
    assert refused(rt, seq)[0]["reason"] == ListenRefusal.NOT_CONNECTED.value
    assert rest.of("listen") == []


def test_a_caller_who_pressed_the_opt_out_key_is_never_monitorable(maria, sim, rest, rt):
    caller = connected_caller(sim, rest, declined=True)
    assert "Thank you. This call will not be monitored." in caller.heard
    seq = last_seq(rt)

    listed = maria.get("/manager/api/calls").get_json()["calls"]
    response = maria.listen(caller.call_id)

    assert [(c["id"], c["state"], c["monitorable"]) for c in listed] == [
        (caller.call_id, "connected", False)]
    assert_refused(response, ListenRefusal.NOT_MONITORABLE, rt, seq, rest)


def test_the_notice_offers_the_opt_out_key(sim, rest):
    caller = waiting_caller(sim, rest)

    assert "If you would rather this call is not monitored, press 8." in caller.heard[1]
    assert caller.call_id


def test_a_call_someone_is_listening_to_is_refused(monitor_app, maria, call, rest, rt):
    listen_ok(maria, call.call_id)
    martin = signed_in(monitor_app, OTHER_MANAGER)
    seq = last_seq(rt)

    response = martin.listen(call.call_id)

    assert response.status_code == 409
    assert response.get_json()["reason"] == ListenRefusal.ALREADY_MONITORED.value
    assert refused(rt, seq) == [{"call": call.call_id, "channel": "web", "purpose": "quality",
                                 "reason": ListenRefusal.ALREADY_MONITORED.value}]
    assert len(rest.of("listen")) == 1  # maria's only


def test_two_managers_racing_for_one_call_cannot_both_listen(monitor_app, maria, call, rest,
                                                             rt, redis, monkeypatch):
    """The second request read the call before the first was granted: the atomic claim on the
    call refuses it, and gives back the slot and the count it had taken."""
    stale = rt.live.get(call.call_id)
    listen_ok(maria, call.call_id)
    martin = signed_in(monitor_app, OTHER_MANAGER)
    monkeypatch.setattr(rt.live, "get", lambda call_id: stale)

    response = martin.listen(call.call_id)

    assert response.status_code == 409
    assert response.get_json()["reason"] == ListenRefusal.ALREADY_MONITORED.value
    assert len(rest.of("listen")) == 1
    assert not redis.exists(keys.monitor_active(OTHER_MANAGER))
    day = rt.clock().date().isoformat()
    assert int(redis.get(keys.monitor_count(OTHER_MANAGER, day)) or 0) == 0


def test_a_manager_never_listens_to_two_calls_at_once(maria, sim, rest, rt):
    first, second = connected_caller(sim, rest), connected_caller(sim, rest)
    listen_ok(maria, first.call_id)
    seq = last_seq(rt)

    response = maria.listen(second.call_id)

    assert response.status_code == 429
    assert response.get_json()["reason"] == ListenRefusal.ALREADY_LISTENING.value
    assert refused(rt, seq)[0]["reason"] == ListenRefusal.ALREADY_LISTENING.value
    assert len(rest.of("listen")) == 1


def test_the_fifth_listen_of_the_day_is_refused(maria, call, rest, rt):
    for _ in range(4):
        assert maria.stop(listen_ok(maria, call.call_id)).status_code == 200
    seq = last_seq(rt)

    response = maria.listen(call.call_id)

    assert response.status_code == 429
    assert response.get_json()["reason"] == ListenRefusal.DAILY_LIMIT.value
    assert LIMIT_MESSAGE in response.get_json()["message"]
    assert refused(rt, seq)[0]["reason"] == ListenRefusal.DAILY_LIMIT.value
    assert len(rest.of("listen")) == 4


def test_the_limit_starts_again_the_next_day_in_the_helplines_time(monitor_app, maria, call,
                                                                   clock):
    for _ in range(4):
        maria.stop(listen_ok(maria, call.call_id))
    assert maria.listen(call.call_id).status_code == 429

    # 23:59 UTC on 25 November is still the 25th in London (GMT): still refused.
    clock.now = clock.now.replace(hour=23, minute=59)
    maria = signed_in(monitor_app)  # the earlier web session has timed out
    assert maria.listen(call.call_id).status_code == 429
    later(clock, minutes=1)  # midnight in London

    assert maria.listen(call.call_id).status_code == 202


def test_refused_listens_do_not_count_toward_the_limit(monitor_app, maria, sim, rest):
    call = connected_caller(sim, rest)
    for _ in range(6):
        assert maria.listen(call.call_id, purpose="curiosity").status_code == 403
        assert maria.listen("no-such-call").status_code == 409
    for _ in range(4):
        maria.stop(listen_ok(maria, call.call_id))

    assert maria.listen(call.call_id).status_code == 429


def test_the_limit_is_configurable(monitor_settings, redis, clock, rest):
    app = build_app(dataclasses.replace(monitor_settings, monitor_daily_limit=1), redis, clock)
    add_staff(app.extensions["callflow"]["staff"])
    sign_on(app)  # the workers on shift, as monitor_app has them
    call = connected_caller(TwilioSim(app, extra_fields=CANARY_FIELDS, rest=rest), rest)
    maria = signed_in(app)
    maria.stop(listen_ok(maria, call.call_id))

    response = maria.listen(call.call_id)

    assert response.status_code == 429
    assert "You have listened to 1 calls today; the limit is 1" in response.get_json()["message"]


def test_limits_are_per_manager(monitor_app, maria, call, rest):
    for _ in range(4):
        maria.stop(listen_ok(maria, call.call_id))

    martin = signed_in(monitor_app, OTHER_MANAGER)

    assert martin.listen(call.call_id).status_code == 202


def test_a_manager_with_no_registered_phone_is_told_to_have_one_registered(
        monitor_app, staff, call, rest, rt):
    staff.add(NO_PHONE_MANAGER, PASSWORD, Role.MANAGER, actor="cli:test")
    mona = signed_in(monitor_app, NO_PHONE_MANAGER)
    seq = last_seq(rt)

    response = mona.listen(call.call_id)

    assert_refused(response, ListenRefusal.NO_PHONE, rt, seq, rest, actor=NO_PHONE_MANAGER)
    assert "callflow manager set-phone" in response.get_json()["message"]


def test_refusals_come_in_the_gates_order(rt, staff, sim, rest):
    """Each request fails every check from one point on; the first failing check is named."""
    staff.add(NO_PHONE_MANAGER, PASSWORD, Role.MANAGER, actor="cli:test")
    staff.add("dora", PASSWORD, Role.MANAGER, actor="cli:test")
    staff.disable("dora", actor="cli:test")
    # Respect has two workers and Men's Advice Line two, and a worker on a call is never
    # offered another: two live calls on each line. The waiting caller comes last, since a
    # caller already waiting is the one the next worker to accept is given.
    declined = connected_caller(sim, rest, declined=True)
    taken = connected_caller(sim, rest)
    free, marias = (connect(waiting_caller(sim, rest, to=MENS_ADVICE)) for _ in range(2))
    waiting = waiting_caller(sim, rest)  # both Respect workers are on a call: it waits
    gate = MonitoringGate(rt, rt.audit)
    assert gate.request(staff.get(OTHER_MANAGER), taken.call_id, "quality").granted
    mona, admin, maria = (staff.get(name) for name in (NO_PHONE_MANAGER, ADMIN, MANAGER))
    for _ in range(3):
        gate.stop(maria, gate.request(maria, marias.call_id, "quality").session)
    fourth = gate.request(maria, marias.call_id, "quality")  # maria listens, at her limit
    assert fourth.granted

    cases = [
        (None, "curiosity", "gone", ListenRefusal.NOT_SIGNED_IN),
        (staff.get("dora"), "curiosity", "gone", ListenRefusal.DISABLED),
        (admin, "curiosity", "gone", ListenRefusal.NOT_A_MANAGER),
        (mona, "curiosity", "gone", ListenRefusal.BAD_PURPOSE),
        (mona, "training", "gone", ListenRefusal.NOT_LIVE),
        (mona, "training", waiting.call_id, ListenRefusal.NOT_CONNECTED),
        (mona, "training", declined.call_id, ListenRefusal.NOT_MONITORABLE),
        (mona, "training", taken.call_id, ListenRefusal.ALREADY_MONITORED),
        (mona, "training", free.call_id, ListenRefusal.NO_PHONE),
        (maria, "training", free.call_id, ListenRefusal.ALREADY_LISTENING),
    ]
    assert [gate.request(member, call_id, purpose).refusal
            for member, purpose, call_id, _ in cases] == [case[-1] for case in cases]
    gate.stop(maria, fourth.session)
    assert gate.request(maria, free.call_id, "training").refusal == ListenRefusal.DAILY_LIMIT
    assert len(rest.of("listen")) == 5  # martin's one and maria's four


def test_every_refusal_has_an_http_status():
    assert set(HTTP_STATUS) == set(ListenRefusal)
    assert all(400 <= status < 600 for status in HTTP_STATUS.values())


# -- a granted listen ------------------------------------------------------------------------------


def test_a_granted_listen_makes_exactly_one_rest_request(maria, call, rest, rt):
    before = len(rest.sent)
    conference_sid = call.conference_sid

    response = maria.listen(call.call_id, purpose="training")

    assert response.status_code == 202
    session = response.get_json()["session"]
    assert "muted" in response.get_json()["message"]
    [sent] = rest.sent[before:]
    assert sent.kind == "listen"
    assert sent.method == "POST"
    assert urlsplit(sent.url).path.endswith(
        f"/Conferences/{conference_sid}/Participants.json")
    assert sent.one("Muted") == "true"
    assert sent.one("Beep") == "false"
    assert sent.one("From") == RESPECT
    assert sent.one("To") == MANAGER_PHONE
    assert sent.one("Record") == "false"
    assert sent.one("ConferenceRecord") == "do-not-record"
    assert sent.one("EndConferenceOnExit") == "false"
    assert sent.one("StatusCallback") == f"{PUBLIC_URL}/voice/monitor/status?session={session}"
    assert twilio_openapi.check(sent.method, sent.url, sent.body) == sent.form
    assert rest.problems == [] and rest.strays == []


# -- the phone that is rung (a stolen session must not send a caller's voice anywhere) ----------

ANY_PHONE = "+447700900999"  # a phone that is on nobody's account


def test_a_listen_that_names_a_phone_is_refused_and_nothing_is_rung(maria, call, rest, rt):
    """The attack: a stolen session cookie asks for the call to be rung to a phone of its
    choosing. The leg only ever rings the phone registered on the manager's account."""
    seq = last_seq(rt)

    response = maria.post(f"/manager/api/calls/{call.call_id}/listen",
                          {"purpose": "training", "phone": ANY_PHONE})

    assert response.status_code == 400
    assert response.get_json()["reason"] == ListenRefusal.PHONE_GIVEN.value
    assert "registered on your account" in response.get_json()["message"]
    assert rest.of("listen") == []
    assert refused(rt, seq) == [{"call": call.call_id, "channel": "web", "purpose": "training",
                                 "reason": ListenRefusal.PHONE_GIVEN.value}]
    assert ANY_PHONE.lstrip("+") not in " ".join(e.to_json() for e in rt.audit.entries())
    assert maria.listen(call.call_id).status_code == 202  # nothing was held or counted


@pytest.mark.parametrize("body", [{"purpose": "quality", "phone": None},
                                  {"purpose": "quality", "phone": ""},
                                  {"purpose": "quality", "Phone": ANY_PHONE},
                                  {"purpose": "quality", "to": ANY_PHONE},
                                  {"purpose": "quality", ANY_PHONE: "ring"}])
def test_a_listen_takes_a_purpose_and_nothing_else(maria, call, rest, rt, body):
    seq = last_seq(rt)

    response = maria.post(f"/manager/api/calls/{call.call_id}/listen", body)

    assert response.status_code == 400
    assert response.get_json()["reason"] in (ListenRefusal.PHONE_GIVEN.value,
                                             ListenRefusal.UNKNOWN_FIELD.value)
    assert '"purpose"' in response.get_json()["message"]
    assert rest.of("listen") == []
    assert [r["reason"] for r in refused(rt, seq)] == [response.get_json()["reason"]]
    assert_no_canary(str(refused(rt, seq)))
    assert "7700" not in str(refused(rt, seq))


def test_the_leg_rings_the_phone_registered_on_the_account(maria, staff, call, rest):
    staff.set_phone(MANAGER, OTHER_PHONE, label="maria's desk phone", actor="cli:test")

    assert maria.listen(call.call_id).status_code == 202

    assert rest.of("listen")[0].one("To") == OTHER_PHONE


def test_every_entry_of_a_listen_names_the_device_rung(maria, staff, call, rest, rt, sim):
    staff.set_phone(MANAGER, MANAGER_PHONE, label="maria's mobile", actor="cli:test")
    seq = last_seq(rt)

    session = listen_ok(maria, call.call_id)
    call.conference("participant-join", manager_leg(rest))
    leg_status(sim, rest, "completed")

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_granted", "monitor_started",
                              "monitor_ended"]
    assert {e.data["device"] for e in entries} == {"maria's mobile"}
    assert {e.data["session"] for e in entries} == {session}


def test_a_granted_listen_is_audited_before_and_after_the_leg(maria, call, rest, rt):
    seq = last_seq(rt)

    session = listen_ok(maria, call.call_id, purpose="training")

    entries = entries_after(rt, seq)
    asked = {"call": call.call_id, "channel": "web", "purpose": "training", "session": session,
             "device": DEVICE}
    assert [(e.kind, e.actor, e.data) for e in entries] == [
        (AuditKind.MONITOR_REQUESTED, MANAGER, asked),
        (AuditKind.MONITOR_GRANTED, MANAGER, asked)]
    assert rt.audit.verify().ok


def test_the_call_shows_as_monitored_while_a_manager_listens(maria, call):
    listen_ok(maria, call.call_id)

    [listed] = maria.get("/manager/api/calls").get_json()["calls"]

    assert (listed["being_monitored"], listed["monitorable"]) == (True, True)


def test_requested_granted_started_ended_come_in_order_from_the_callbacks(maria, call, rest, rt,
                                                                          sim):
    seq = last_seq(rt)
    session = listen_ok(maria, call.call_id)
    leg = manager_leg(rest)
    assert kinds(entries_after(rt, seq)) == ["monitor_requested", "monitor_granted"]

    leg_status(sim, rest, "ringing")
    leg_status(sim, rest, "in-progress")
    assert kinds(entries_after(rt, seq)) == ["monitor_requested", "monitor_granted"]
    call.conference("participant-join", leg)
    call.conference("participant-mute", leg)
    assert kinds(entries_after(rt, seq))[-1] == "monitor_started"
    call.conference("participant-leave", leg)

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_granted", "monitor_started",
                              "monitor_ended"]
    assert entries[2].data == {"call": call.call_id, "session": session, "device": DEVICE}
    assert entries[3].data == {"call": call.call_id, "session": session, "reason": "left",
                               "device": DEVICE}
    assert {e.actor for e in entries} == {MANAGER}
    assert rt.audit.verify().ok


def test_other_participants_joining_start_no_listen(maria, call, rest, rt):
    seq = last_seq(rt)
    listen_ok(maria, call.call_id)

    call.conference("participant-join", call.leg(0).sid)
    call.conference("participant-join")
    call.conference("participant-leave", call.leg(1).sid)

    assert kinds(entries_after(rt, seq)) == ["monitor_requested", "monitor_granted"]


def test_a_repeated_join_callback_starts_the_listen_once(maria, call, rest, rt):
    seq = last_seq(rt)
    listen_ok(maria, call.call_id)

    for _ in range(3):
        call.conference("participant-join", manager_leg(rest))

    assert kinds(entries_after(rt, seq)).count("monitor_started") == 1


def test_a_leg_the_manager_never_answers_ends_the_session(maria, call, rest, rt, sim):
    seq = last_seq(rt)
    session = listen_ok(maria, call.call_id)

    leg_status(sim, rest, "no-answer")

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_granted", "monitor_ended"]
    assert entries[-1].data == {"call": call.call_id, "session": session, "reason": "no-answer",
                                "device": DEVICE}
    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False


def test_the_call_ending_ends_the_listen(maria, call, rest, rt):
    seq = last_seq(rt)
    listen_ok(maria, call.call_id)
    call.conference("participant-join", manager_leg(rest))

    call.conference("participant-leave")
    call.conference("conference-end")

    ended = [e for e in entries_after(rt, seq) if e.kind == "monitor_ended"]
    assert [e.data["reason"] for e in ended] == ["call_ended"]


# -- stopping ----------------------------------------------------------------------------------


def test_stop_hangs_up_the_leg_and_ends_the_session_once(maria, call, rest, rt, sim):
    seq = last_seq(rt)
    session = listen_ok(maria, call.call_id)
    leg = manager_leg(rest)
    call.conference("participant-join", leg)

    response = maria.stop(session)

    assert response.status_code == 200
    assert response.get_json()["session"] == session
    hang_ups = [s for s in rest.of("hang_up") if s.sid == leg]
    assert len(hang_ups) == 1
    assert twilio_openapi.check(hang_ups[0].method, hang_ups[0].url, hang_ups[0].body)
    # Twilio's callbacks for the leg that was hung up, each sent twice, and a second stop.
    for _ in range(2):
        call.conference("participant-leave", leg)
        leg_status(sim, rest, "completed")
        assert maria.stop(session).status_code == 200

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_granted", "monitor_started",
                              "monitor_ended"]
    assert entries[-1].data["reason"] == "stopped"
    assert len([s for s in rest.of("hang_up") if s.sid == leg]) == 1
    assert rest.problems == []


def test_after_stopping_the_call_and_the_manager_are_free_again(monitor_app, maria, call, rest):
    maria.stop(listen_ok(maria, call.call_id))

    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False
    martin = signed_in(monitor_app, OTHER_MANAGER)
    martin.stop(listen_ok(martin, call.call_id))
    assert maria.listen(call.call_id).status_code == 202


def test_a_hang_up_twilio_refuses_still_ends_the_session_once(maria, call, rest, rt, caplog):
    session = listen_ok(maria, call.call_id)
    rest.fail("hang_up", 500)

    assert maria.stop(session).status_code == 200
    assert maria.stop(session).status_code == 200

    assert [e.data["reason"] for e in rt.audit.entries(kind=AuditKind.MONITOR_ENDED)] == [
        "stopped"]
    assert "could not hang up a listening leg" in caplog.text
    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False


def test_a_manager_cannot_stop_another_managers_session(monitor_app, maria, call, rest):
    session = listen_ok(maria, call.call_id)
    martin = signed_in(monitor_app, OTHER_MANAGER)

    response = martin.stop(session)

    assert response.status_code == 403
    assert response.get_json()["reason"] == ListenRefusal.NOT_YOURS.value
    assert manager_leg(rest) not in [s.sid for s in rest.of("hang_up")]


def test_an_admin_can_stop_any_session(monitor_app, maria, call, rest, rt):
    session = listen_ok(maria, call.call_id)

    response = signed_in(monitor_app, ADMIN).stop(session)

    assert response.status_code == 200
    assert rest.of("hang_up")[-1].sid == manager_leg(rest)
    assert rt.audit.entries(kind=AuditKind.MONITOR_ENDED)[-1].data["reason"] == "stopped"


def test_stopping_a_session_that_does_not_exist_is_404(maria):
    response = maria.stop("no-such-session")

    assert response.status_code == 404
    assert response.get_json()["reason"] == ListenRefusal.NO_SUCH_SESSION.value


# -- fail closed ---------------------------------------------------------------------------------


def _append_raises(rt, monkeypatch, *only: AuditKind) -> None:
    original = rt.audit.append

    def append(kind, actor="system", **data):
        if not only or kind in only:
            raise AuditUnavailable("the audit log could not be written: test")
        return original(kind, actor, **data)

    monkeypatch.setattr(rt.audit, "append", append)


def _dead_audit(rt, monkeypatch) -> None:
    monkeypatch.setattr(rt, "audit", AuditLog(dead_store(), rt.audit.keys))


@pytest.mark.parametrize("break_audit", [_append_raises, _dead_audit],
                         ids=["append-raises", "audit-redis-down"])
def test_no_audit_write_no_listen(maria, call, rest, rt, monkeypatch, redis, break_audit):
    before = len(rest.sent)
    break_audit(rt, monkeypatch)

    response = maria.listen(call.call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == ListenRefusal.AUDIT_UNAVAILABLE.value
    assert "audit" in response.get_json()["message"]
    assert rest.sent[before:] == []
    assert not redis.exists(keys.monitor_active(MANAGER))
    assert redis.zcard(keys.monitor_sessions()) == 0


def test_once_the_audit_log_is_back_the_refused_listens_cost_the_manager_nothing(
        maria, sim, rest, rt, monkeypatch):
    refused_call, later_call = connected_caller(sim, rest), connected_caller(sim, rest)
    with monkeypatch.context() as patch:
        _append_raises(rt, patch)
        assert maria.listen(refused_call.call_id).status_code == 503

    for _ in range(4):
        maria.stop(listen_ok(maria, later_call.call_id))
    assert maria.listen(later_call.call_id).status_code == 429


def test_a_call_refused_for_want_of_an_audit_is_not_left_marked_as_monitored(
        monitor_app, maria, call, rest, rt, monkeypatch, redis):
    with monkeypatch.context() as patch:
        _append_raises(rt, patch)
        assert maria.listen(call.call_id).status_code == 503

    assert not redis.hget(keys.live_call(call.call_id), "monitor_session")
    martin = signed_in(monitor_app, OTHER_MANAGER)
    assert martin.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False
    assert martin.listen(call.call_id).status_code == 202


def test_a_refusal_that_cannot_be_audited_is_still_a_refusal(maria, call, rest, rt,
                                                             monkeypatch, caplog):
    _append_raises(rt, monkeypatch)

    response = maria.listen(call.call_id, purpose="curiosity")

    assert response.status_code == 403
    assert response.get_json()["reason"] == ListenRefusal.BAD_PURPOSE.value
    assert "a refused listen could not be audited" in caplog.text
    assert rest.of("listen") == []


def test_no_store_no_listen(maria, call, rest, rt, monkeypatch):
    def down(call_id):
        raise StoreUnavailable("the store is unavailable: test")

    monkeypatch.setattr(rt.live, "get", down)

    response = maria.listen(call.call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == ListenRefusal.AUDIT_UNAVAILABLE.value
    assert rest.of("listen") == []
    assert entries_after(rt, 0)[-1].data["reason"] == ListenRefusal.AUDIT_UNAVAILABLE.value


def test_a_grant_that_cannot_be_audited_hangs_the_leg_up(maria, call, rest, rt, monkeypatch):
    _append_raises(rt, monkeypatch, AuditKind.MONITOR_GRANTED)

    response = maria.listen(call.call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == ListenRefusal.AUDIT_UNAVAILABLE.value
    [listen] = rest.of("listen")
    assert rest.of("hang_up")[-1].sid == listen.sid
    assert kinds(rt.audit.entries())[-2:] == ["monitor_requested", "monitor_ended"]
    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False


def test_a_start_that_cannot_be_audited_hangs_the_leg_up(maria, call, rest, rt, monkeypatch):
    listen_ok(maria, call.call_id)
    leg = manager_leg(rest)
    _append_raises(rt, monkeypatch, AuditKind.MONITOR_STARTED)

    call.conference("participant-join", leg)

    assert rest.of("hang_up")[-1].sid == leg
    assert kinds(rt.audit.entries())[-1] == "monitor_ended"


def test_a_manager_twilio_cannot_ring_is_told_and_nothing_is_held(maria, call, rest, rt):
    rest.fail("listen", 500)

    response = maria.listen(call.call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == ListenRefusal.CANNOT_RING.value
    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is False
    assert maria.listen(call.call_id).status_code == 202


def test_a_listen_twilio_could_not_ring_is_audited_as_refused(maria, call, rest, rt, redis):
    rest.fail("listen", 500)
    seq, before = last_seq(rt), len(rest.sent)

    assert maria.listen(call.call_id).status_code == 503

    # Requested, then refused with the reason, naming the session the request made; never
    # granted, and never "ended", since it never began.
    entries = entries_after(rt, seq)
    assert kinds(entries) == [AuditKind.MONITOR_REQUESTED, AuditKind.MONITOR_REFUSED]
    requested, refusal = entries
    assert refusal.actor == MANAGER
    assert refusal.data == {"call": call.call_id, "channel": "web", "purpose": "quality",
                            "reason": ListenRefusal.CANNOT_RING.value, "device": DEVICE,
                            "session": requested.data["session"]}
    # The session the request created is gone, and nothing marks the call as monitored.
    session = requested.data["session"]
    assert not redis.exists(keys.monitor_session(session))
    assert redis.zscore(keys.monitor_sessions(), session) is None
    assert not redis.hexists(keys.live_call(call.call_id), "monitor_session")
    assert not redis.exists(keys.monitor_active(MANAGER))
    assert {s.kind for s in rest.sent[before:]} == {"listen"}  # no leg to hang up


def test_a_listen_twilio_could_not_ring_does_not_count_toward_the_limit(maria, call, rest,
                                                                         redis):
    rest.fail("listen", 500)
    assert maria.listen(call.call_id).status_code == 503
    # The day's count, taken when the listen was reserved, has been given back.
    [count_key] = redis.keys(keys.monitor_count(MANAGER, "*"))
    assert redis.get(count_key) == "0"

    for _ in range(4):
        maria.stop(listen_ok(maria, call.call_id))
    response = maria.listen(call.call_id)
    assert response.status_code == HTTP_STATUS[ListenRefusal.DAILY_LIMIT]
    assert response.get_json()["reason"] == ListenRefusal.DAILY_LIMIT.value
    assert LIMIT_MESSAGE in response.get_json()["message"]


# -- sessions no callback closed ---------------------------------------------------------------


def test_close_stale_closes_a_session_whose_callbacks_never_came(monitor_app, maria, call, rest,
                                                                  rt, clock):
    seq = last_seq(rt)
    session = listen_ok(maria, call.call_id)
    leg = manager_leg(rest)

    later(clock, minutes=rt.settings.monitor_max_minutes - 1)
    assert jobs.close_stale_monitoring() == 0
    later(clock, minutes=2)
    assert jobs.close_stale_monitoring() == 1
    assert jobs.close_stale_monitoring() == 0

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_granted", "monitor_ended"]
    assert entries[-1].data == {"call": call.call_id, "session": session,
                                "reason": "closed_by_timer", "device": DEVICE}
    assert [s.sid for s in rest.of("hang_up")].count(leg) == 1
    maria = signed_in(monitor_app)  # the earlier web session has timed out
    assert maria.listen(call.call_id).status_code == 202  # the slot is free again


def test_close_stale_closes_a_session_whose_call_is_over(maria, call, rest, rt):
    session = listen_ok(maria, call.call_id)
    call.status("completed")  # the caller's status callback; no conference callback came

    assert jobs.close_stale_monitoring() == 1

    ended = rt.audit.entries(kind=AuditKind.MONITOR_ENDED)
    assert [(e.data["session"], e.data["reason"]) for e in ended] == [
        (session, "closed_by_timer")]


def test_close_stale_leaves_live_sessions_alone(maria, call, rest, rt):
    listen_ok(maria, call.call_id)
    call.conference("participant-join", manager_leg(rest))

    assert jobs.close_stale_monitoring() == 0
    assert rt.audit.entries(kind=AuditKind.MONITOR_ENDED) == []


# -- no caller data anywhere ---------------------------------------------------------------------


def test_the_canary_caller_is_nowhere(monitor_app, maria, sim, rest, rt, redis_url, caplog,
                                      clock):
    caplog.set_level(logging.DEBUG)
    bodies = []
    call = connected_caller(sim, rest)
    later(clock, minutes=3)
    bodies.append(maria.get("/manager/api/calls").get_data(as_text=True))
    response = maria.listen(call.call_id, purpose="training")
    bodies.append(response.get_data(as_text=True))
    session = response.get_json()["session"]
    call.conference("participant-join", manager_leg(rest))
    bodies.append(maria.get("/manager/api/calls").get_data(as_text=True))
    bodies.append(maria.stop(session).get_data(as_text=True))
    leg_status(sim, rest)
    bodies.append(maria.listen(CANARY_NUMBER).get_data(as_text=True))
    bodies.append(maria.stop(CANARY_NUMBER).get_data(as_text=True))
    bodies.append(maria.get("/manager/api/audit").get_data(as_text=True))
    bodies.append(maria.get("/manager/api/audit/verify").get_data(as_text=True))
    call.conference("participant-leave")
    call.conference("conference-end")
    call.status("completed")
    jobs.close_stale_monitoring()

    entries = rt.audit.entries()
    assert {"monitor_requested", "monitor_granted", "monitor_started", "monitor_ended",
            "monitor_refused"} <= set(kinds(entries))
    logged = [record.getMessage() + " " + str(vars(record)) for record in caplog.records]
    assert logged
    assert_no_canary(*[e.to_json() for e in entries], *bodies, *sim.responses, *logged,
                     raw_dump(redis_url))
    # and neither the manager's nor any worker's number is in the audit log
    assert_no_canary(*(s.body for s in rest.sent if s.kind == "listen"))
    for number in (MANAGER_PHONE, *WORKERS):
        assert number.lstrip("+") not in " ".join(e.to_json() for e in entries)


def test_the_sessions_own_record_holds_no_phone_number(maria, call, redis):
    session = listen_ok(maria, call.call_id)

    record = redis.hgetall(keys.monitor_session(session))

    assert record["manager"] == MANAGER
    assert record["call"] == call.call_id
    assert OTHER_PHONE not in str(record) and MANAGER_PHONE not in str(record)


# -- a listen Twilio may have created though it never said so ------------------------------------


def _unknown_listen(maria, call, rest, rt) -> tuple[str, int]:
    """The attack of a slow answer: Twilio creates the manager's leg, but answers after the
    service has stopped waiting. Returns the session and the audit's seq before the request."""
    seq = last_seq(rt)
    rest.fail("listen", LostAnswer())

    response = maria.listen(call.call_id)

    assert response.status_code == 202, response.get_json()
    assert response.get_json()["outcome"] == "unknown"
    assert "may ring" in response.get_json()["message"]
    return response.get_json()["session"], seq


def test_a_listen_whose_answer_never_came_is_audited_as_unknown_not_refused(maria, call, rest,
                                                                           rt, redis):
    session, seq = _unknown_listen(maria, call, rest, rt)

    entries = entries_after(rt, seq)
    assert kinds(entries) == [AuditKind.MONITOR_REQUESTED, AuditKind.MONITOR_UNKNOWN]
    assert entries[1].data == {"call": call.call_id, "channel": "web", "purpose": "quality",
                               "device": DEVICE, "session": session,
                               "problem": "no_answer_from_twilio"}
    # No count is refunded for a leg that may exist, and nobody else may listen meanwhile.
    [count_key] = redis.keys(keys.monitor_count(MANAGER, "*"))
    assert redis.get(count_key) == "1"
    assert maria.get("/manager/api/calls").get_json()["calls"][0]["being_monitored"] is True
    assert redis.get(keys.monitor_active(MANAGER)) == session


def test_a_lost_answer_is_resolved_by_the_legs_own_status_callback(maria, call, rest, rt, sim):
    session, seq = _unknown_listen(maria, call, rest, rt)

    leg_status(sim, rest, "ringing")
    call.conference("participant-join", manager_leg(rest))
    leg_status(sim, rest, "completed")

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_outcome_unknown", "monitor_granted",
                              "monitor_started", "monitor_ended"]
    assert entries[2].data["resolved_by"] == "leg_status"
    assert {e.data["session"] for e in entries} == {session}
    assert rest.of("remove") == []  # the manager's own leg is never taken for an intruder
    assert rt.audit.entries(kind=AuditKind.ALARM) == []


@pytest.mark.parametrize("label", [None, ""], ids=["label-in-callback", "label-fetched"])
def test_a_lost_answer_is_resolved_when_the_leg_joins_the_room(maria, call, rest, rt, label):
    """The join is matched by the participant's label: from the callback, or (when the
    callback does not carry it) from Twilio's own record of the participant."""
    session, seq = _unknown_listen(maria, call, rest, rt)

    call.conference("participant-join", manager_leg(rest), label=label)
    call.conference("participant-leave", manager_leg(rest))

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_outcome_unknown", "monitor_granted",
                              "monitor_started", "monitor_ended"]
    assert entries[2].data["resolved_by"] == "conference"
    assert rest.of("remove") == []
    assert (len(rest.of("participant")) == 1) is (label == "")


def test_a_lost_answer_is_resolved_from_the_rooms_participants(maria, call, rest, rt, clock):
    session, seq = _unknown_listen(maria, call, rest, rt)
    leg = manager_leg(rest)

    later(clock, minutes=1)
    jobs.close_stale_monitoring()

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_outcome_unknown", "monitor_granted"]
    assert entries[2].data["resolved_by"] == "participants"
    assert len(rest.of("participants")) == 1
    call.conference("participant-join", leg)
    assert kinds(entries_after(rt, seq))[-1] == "monitor_started"


def test_a_leg_twilio_never_made_is_closed_once_the_room_shows_it_is_not_there(
        maria, call, rest, rt, clock, redis):
    seq = last_seq(rt)
    rest.fail("listen", requests.ReadTimeout("no answer, and nothing was created"))
    session = maria.listen(call.call_id).get_json()["session"]

    jobs.close_stale_monitoring()  # too soon to tell: Twilio may still be creating it
    assert kinds(entries_after(rt, seq))[-1] == "monitor_outcome_unknown"
    later(clock, minutes=1)
    jobs.close_stale_monitoring()

    entries = entries_after(rt, seq)
    assert kinds(entries) == ["monitor_requested", "monitor_outcome_unknown", "monitor_ended"]
    assert entries[-1].data["reason"] == "never_rang"
    assert entries[-1].data["session"] == session
    [count_key] = redis.keys(keys.monitor_count(MANAGER, "*"))
    assert redis.get(count_key) == "1"  # still counted: it could not be known at the time
    assert maria.listen(call.call_id).status_code == 202


def test_a_listen_stopped_while_unknown_hangs_up_the_leg_when_it_turns_up(maria, call, rest,
                                                                          rt, sim):
    session, seq = _unknown_listen(maria, call, rest, rt)
    assert maria.stop(session).status_code == 200
    assert manager_leg(rest) not in [s.sid for s in rest.of("hang_up")]  # not known yet

    leg_status(sim, rest, "ringing")

    assert [s.sid for s in rest.of("hang_up")].count(manager_leg(rest)) == 1
    assert kinds(entries_after(rt, seq)) == ["monitor_requested", "monitor_outcome_unknown",
                                             "monitor_ended"]


@pytest.mark.parametrize("failure", [
    500, 400, requests.ConnectTimeout("never connected"),
    requests.ConnectionError(urllib3.exceptions.NewConnectionError(None, "refused"))],
    ids=["twilio-500", "twilio-400", "connect-timeout", "connection-refused"])
def test_a_leg_twilio_certainly_did_not_make_is_refused_and_refunded(maria, call, rest, rt,
                                                                     redis, failure):
    rest.fail("listen", failure)

    response = maria.listen(call.call_id)

    assert response.status_code == 503
    assert response.get_json()["reason"] == ListenRefusal.CANNOT_RING.value
    [count_key] = redis.keys(keys.monitor_count(MANAGER, "*"))
    assert redis.get(count_key) == "0"
