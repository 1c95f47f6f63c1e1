"""The monitoring gate: the only way anyone can listen to a call (promise 4).

A listen is granted only when, in this order: the person is a signed-in manager whose account
is not disabled; the purpose is quality or training; the call is live, connected to a worker,
monitorable and not already being listened to; the manager is within the limit that keeps it
"occasional" (a few a day, never two at once); and the audit entry of the request has been
written. Every refusal is audited with its reason. If the audit log cannot be written, the
listen is refused: no audit write, no listen.

Web and phone share this gate. On the web the phone registered on the manager's account is rung
(a muted, beepless, unrecorded conference participant), never a number given with the request;
on the manager line the manager's own call joins the room. From the request on, every entry of a
listen names the device: the registered phone's label, or the manager line.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import redis

from callflow.language.fields import E164
from callflow.platform import keys, metrics
from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from callflow.platform.logs import PHONE_LIKE
from callflow.platform.store import store_guard
from callflow.platform.twilio_api import may_have_happened
from callflow.records.audit import AuditKind, AuditLog
from callflow.records.live import LEG_ENDED, LiveCall, LiveState
from callflow.records.register import CALL_ID
from callflow.runtime import Runtime
from callflow.staff.accounts import Role, StaffMember

log = logging.getLogger(__name__)
SESSION_TTL_SECONDS = 24 * 60 * 60


class Purpose(StrEnum):
    QUALITY = "quality"
    TRAINING = "training"


class ListenRefusal(StrEnum):
    NOT_SIGNED_IN = "not_signed_in"
    DISABLED = "account_disabled"
    NOT_A_MANAGER = "not_a_manager"
    BAD_PURPOSE = "purpose_not_allowed"
    NOT_LIVE = "call_not_live"
    NOT_CONNECTED = "call_not_connected"
    NOT_MONITORABLE = "call_not_monitorable"
    ALREADY_MONITORED = "call_already_monitored"
    ALREADY_LISTENING = "already_listening"
    DAILY_LIMIT = "daily_limit_reached"
    NO_PHONE = "no_phone_to_ring"
    AUDIT_UNAVAILABLE = "audit_unavailable"
    CANNOT_RING = "cannot_ring_manager"
    NOT_YOURS = "not_your_session"
    NO_SUCH_SESSION = "no_such_session"
    PHONE_GIVEN = "phone_not_accepted"
    UNKNOWN_FIELD = "unknown_field"


HTTP_STATUS = {
    ListenRefusal.NOT_SIGNED_IN: 401, ListenRefusal.DISABLED: 403, ListenRefusal.NOT_A_MANAGER: 403,
    ListenRefusal.BAD_PURPOSE: 403, ListenRefusal.NOT_LIVE: 409, ListenRefusal.NOT_CONNECTED: 409,
    ListenRefusal.NOT_MONITORABLE: 409, ListenRefusal.ALREADY_MONITORED: 409,
    ListenRefusal.ALREADY_LISTENING: 429, ListenRefusal.DAILY_LIMIT: 429,
    ListenRefusal.NO_PHONE: 409, ListenRefusal.AUDIT_UNAVAILABLE: 503,
    ListenRefusal.CANNOT_RING: 503, ListenRefusal.NOT_YOURS: 403,
    ListenRefusal.NO_SUCH_SESSION: 404, ListenRefusal.PHONE_GIVEN: 400,
    ListenRefusal.UNKNOWN_FIELD: 400,
}
# What a listen request may say: only why. Who is rung is the account's registered phone.
REQUEST_FIELDS = frozenset({"purpose"})
PHONE_LINE_DEVICE = "manager line"


@dataclass(frozen=True)
class Decision:
    granted: bool
    message: str
    refusal: ListenRefusal | None = None
    session: str | None = None
    call: LiveCall | None = None
    # Granted, but Twilio never said whether the leg was made (see ``MonitoringGate._unknown``).
    unknown: bool = False

    @property
    def status(self) -> int:
        return 202 if self.granted else HTTP_STATUS[self.refusal]


class MonitoringGate:
    def __init__(self, rt: Runtime, audit: AuditLog) -> None:
        self.rt = rt
        self.audit = audit
        self.limit = rt.settings.monitor_daily_limit

    # -- asking ------------------------------------------------------------------------------

    @metrics.counts_monitoring
    def request(self, member: StaffMember | None, call_id: str, purpose: str, *,
                channel: str = "web", own_call_sid: str = "") -> Decision:
        """Decide a listen-in and, if granted, start it. ``own_call_sid`` is the manager's
        call on the manager line (it joins the room); on the web the phone registered on the
        manager's account is rung."""
        actor = member.name if member else "anonymous"
        asked = _asked(call_id, purpose, channel)

        def refuse(refusal: ListenRefusal, message: str) -> Decision:
            return self._refused(actor, asked, refusal, message)

        if member is None:
            return refuse(ListenRefusal.NOT_SIGNED_IN, "Sign in as a manager to listen to calls.")
        if member.disabled:
            return refuse(ListenRefusal.DISABLED, "This account is disabled.")
        if member.role != Role.MANAGER:
            return refuse(ListenRefusal.NOT_A_MANAGER, "Only the Helplines Manager may listen to "
                          "calls.")
        if purpose not in tuple(Purpose):
            return refuse(ListenRefusal.BAD_PURPOSE, "Calls may be listened to for quality or "
                          "training only: choose one.")
        try:
            call = self.rt.live.get(call_id)
        except StoreUnavailable:
            return refuse(ListenRefusal.AUDIT_UNAVAILABLE, "The service's store is unavailable, so "
                          "listening is switched off.")
        problem = self._call_problem(call)
        if problem:
            return refuse(*problem)
        phone = member.phone if channel == "web" else None
        if channel == "web" and not (phone and E164.match(phone)):
            return refuse(ListenRefusal.NO_PHONE, "No phone is registered on your account, so "
                          "there is nothing to ring: ask an admin to register yours with "
                          "`callflow manager set-phone`.")
        session = "s" + secrets.token_hex(10)  # letters and digits: never phone-like
        held = self._reserve(member.name, session, call)
        if held is not None:
            return refuse(*held)
        asked["device"] = member.phone_label if channel == "web" else PHONE_LINE_DEVICE
        try:
            self.audit.append(AuditKind.MONITOR_REQUESTED, member.name, session=session, **asked)
        except AuditUnavailable:
            self._release(member.name, call, refund=True, session=session)
            return Decision(False, "The audit log cannot be written, so listening is refused.",
                            ListenRefusal.AUDIT_UNAVAILABLE)
        return self._start(member, call, session, purpose, channel, phone, own_call_sid, asked)

    @metrics.counts_monitoring
    def refuse_request(self, member: StaffMember | None, call_id: str, purpose: str,
                       fields: set[str]) -> Decision:
        """A listen request that said more than why: refused and audited, before any check.

        Naming a phone is how a stolen session would send a caller's voice elsewhere, so it is
        refused outright; the fields' names are never recorded (one could be a number)."""
        unknown = set(fields) - REQUEST_FIELDS
        refusal = ListenRefusal.PHONE_GIVEN if "phone" in unknown else ListenRefusal.UNKNOWN_FIELD
        if refusal is ListenRefusal.PHONE_GIVEN:
            message = ("A listen rings only the phone registered on your account; a request "
                       "cannot name one. Send {\"purpose\"} only.")
        else:
            message = "A listen request takes \"purpose\" and nothing else."
        return self._refused(member.name if member else "anonymous",
                             _asked(call_id, purpose, "web"), refusal, message)

    def _refused(self, actor: str, asked: dict, refusal: ListenRefusal, message: str) -> Decision:
        """Every refusal is audited with its reason (and still refused if it cannot be)."""
        try:
            self.audit.append(AuditKind.MONITOR_REFUSED, actor, reason=refusal.value, **asked)
        except AuditUnavailable:
            log.error("a refused listen could not be audited", extra={"event": "audit_down"})
        log.info("listen refused", extra={"event": refusal.value})
        return Decision(False, message, refusal)

    def _call_problem(self, call: LiveCall | None) -> tuple[ListenRefusal, str] | None:
        if call is None or call.state in (LiveState.ENDED, LiveState.FALLBACK):
            return ListenRefusal.NOT_LIVE, "That call has ended."
        if call.state != LiveState.CONNECTED or not call.conference_sid:
            return ListenRefusal.NOT_CONNECTED, "That call is not connected to a worker yet."
        if not call.monitorable:
            return (ListenRefusal.NOT_MONITORABLE,
                    "The caller asked for this call not to be monitored.")
        if call.raw.get("monitor_session"):
            return ListenRefusal.ALREADY_MONITORED, "Someone is already listening to that call."
        return None

    def _reserve(self, manager: str, session: str, call: LiveCall
                 ) -> tuple[ListenRefusal, str] | None:
        """Hold the manager's one listening slot and count today's listen, atomically enough:
        the slot is SET NX, the count is INCR, and both are undone on any refusal after."""
        day = self.rt.clock().astimezone(self._zone(call)).date().isoformat()
        try:
            if not self.rt.store.set(keys.monitor_active(manager), session, nx=True,
                                     ex=self.rt.settings.monitor_max_minutes * 60):
                return ListenRefusal.ALREADY_LISTENING, "You are already listening to a call."
            count_key = keys.monitor_count(manager, day)
            with self.rt.store.pipeline() as pipe:
                pipe.incr(count_key)
                pipe.expire(count_key, 2 * 24 * 3600)
                count, _ = pipe.execute()
            if count > self.limit:
                self._release(manager, call, refund=True, day=day)
                return (ListenRefusal.DAILY_LIMIT, f"You have listened to {count - 1} calls today; "
                        f"the limit is {self.limit}.")
            if not self.rt.store.hsetnx(keys.live_call(call.id), "monitor_session", session):
                self._release(manager, call, refund=True, day=day)
                return ListenRefusal.ALREADY_MONITORED, "Someone is already listening to that call."
        except redis.RedisError:
            return (ListenRefusal.AUDIT_UNAVAILABLE, "The service's store is unavailable, so "
                    "listening is switched off.")
        return None

    def _release(self, manager: str, call: LiveCall, *, refund: bool, day: str = "",
                 session: str = "") -> None:
        """Undo a reservation: the manager's slot, today's count if asked, and the call's
        mark if this session still holds it."""
        day = day or self.rt.clock().astimezone(self._zone(call)).date().isoformat()
        live_key = keys.live_call(call.id)
        try:
            with self.rt.store.pipeline() as pipe:
                pipe.delete(keys.monitor_active(manager))
                if refund:
                    pipe.decr(keys.monitor_count(manager, day))
                pipe.execute()
            if session and self.rt.store.hget(live_key, "monitor_session") == session:
                self.rt.store.hdel(live_key, "monitor_session", "monitor_leg")
        except redis.RedisError:
            log.error("could not release a listening slot", extra={"event": "monitor_release"})

    def _start(self, member, call, session, purpose, channel, phone, own_call_sid, asked
               ) -> Decision:
        now = self.rt.clock()
        record = {"manager": member.name, "call": call.id, "purpose": purpose,
                  "channel": channel, "device": asked["device"], "state": "requested",
                  "requested_at": now.isoformat()}
        key = keys.monitor_session(session)
        try:
            with self.rt.store.pipeline() as pipe:
                pipe.hset(key, mapping=record)
                pipe.expire(key, SESSION_TTL_SECONDS)
                pipe.zadd(keys.monitor_sessions(), {session: now.timestamp()})
                pipe.execute()
        except redis.RedisError as exc:
            return self._not_started(member, call, session, asked, exc)
        leg = own_call_sid
        if channel == "web" and self.rt.twilio is None:  # no REST account: nothing can ring
            return self._not_started(member, call, session, asked, None)
        if channel == "web":
            try:
                leg = self.rt.twilio.listen(conference_sid=call.conference_sid, to=phone,
                                            helpline_number=call.helpline_number,
                                            status_callback=self.rt.links.monitor_status(session),
                                            label=monitor_label(session))
            except Exception as exc:
                if may_have_happened(exc):
                    return self._unknown(member, call, session, asked, exc)
                return self._not_started(member, call, session, asked, exc)
        try:
            self.rt.store.hset(key, mapping={"leg": leg, "state": "rung"})
            self.rt.store.hset(keys.live_call(call.id), "monitor_leg", leg)
        except redis.RedisError:  # a leg nobody can match: end it at once
            log.error("could not record a listening leg", extra={"event": "monitor_failed"})
            self._hang_up(leg)
            return self._not_started(member, call, session, asked, None)
        try:
            self.audit.append(AuditKind.MONITOR_GRANTED, member.name, session=session, **asked)
        except AuditUnavailable:
            self._finish(session, reason=ListenRefusal.AUDIT_UNAVAILABLE.value, hang_up=True)
            return Decision(False, "The audit log cannot be written, so listening is refused.",
                            ListenRefusal.AUDIT_UNAVAILABLE)
        log.info("listen granted", extra={"event": "monitor_granted"})
        how = "Your phone will ring" if channel == "web" else "You are joining the call"
        return Decision(True, f"{how}: you will hear the call, muted.", session=session,
                        call=call)

    def _not_started(self, member, call, session, asked, exc: Exception | None) -> Decision:
        """Twilio certainly made no leg (or the store failed first): nobody listens, and the
        reservation and the day's count are given back."""
        log.error("could not start a listen", extra={"event": "monitor_failed",
                                                     "error": type(exc).__name__})
        try:
            self.rt.store.delete(keys.monitor_session(session))
            self.rt.store.zrem(keys.monitor_sessions(), session)
        except redis.RedisError:
            log.error("could not remove a session never started", extra={"event": "monitor"})
        self._release(member.name, call, refund=True, session=session)
        return self._refused(member.name, {**asked, "session": session}, ListenRefusal.CANNOT_RING,
                             "Your phone could not be rung; nothing was started.")

    def _unknown(self, member, call, session, asked, exc: Exception) -> Decision:
        """Twilio's answer never came: the leg may be ringing. Audited as unknown (not as a
        refusal), nothing is given back, and the session waits for Twilio's own state to say
        which it was: the leg's status callback, its joining the room, or the room's
        participants (``RoomGuard.resolve``)."""
        log.error("Twilio did not say whether a listening leg was made",
                  extra={"event": "monitor_unknown", "error": type(exc).__name__})
        try:
            self.rt.store.hset(keys.monitor_session(session),
                               mapping={"state": "unknown",
                                        "unknown_at": self.rt.clock().isoformat()})
        except redis.RedisError:
            log.error("could not mark a listen as unknown", extra={"event": "monitor_unknown"})
        try:
            self.audit.append(AuditKind.MONITOR_UNKNOWN, member.name, session=session,
                              problem="no_answer_from_twilio", **asked)
        except AuditUnavailable:  # ended now: a leg that turns up later is ended on sight
            self._finish(session, reason=ListenRefusal.AUDIT_UNAVAILABLE.value, hang_up=False)
            return Decision(False, "The audit log cannot be written, so listening is refused.",
                            ListenRefusal.AUDIT_UNAVAILABLE)
        return Decision(True, "Twilio did not confirm in time that your phone is being rung. "
                        "It may ring: if it does, this listen is logged as usual. Stop "
                        "listening to cancel it.", session=session, call=call, unknown=True)

    # -- what happens after ------------------------------------------------------------------

    @store_guard
    def stop(self, member: StaffMember | None, session: str) -> Decision:
        data = self._session(session)
        if not data:
            return Decision(False, "There is no such listening session.",
                            ListenRefusal.NO_SUCH_SESSION)
        if member is None or (member.name != data.get("manager") and member.role != Role.ADMIN):
            return Decision(False, "That listening session is not yours.", ListenRefusal.NOT_YOURS)
        self._finish(session, reason="stopped", hang_up=True)
        return Decision(True, "You have stopped listening.", session=session)

    @store_guard
    def leg_joined(self, session: str) -> None:
        """The manager's leg is in the room (a conference callback): the listen has started."""
        if not self.rt.store.hsetnx(keys.monitor_session(session), "started_at",
                                    self.rt.clock().isoformat()):
            return
        data = self._session(session)
        self.rt.store.hset(keys.monitor_session(session), "state", "listening")
        try:
            self.audit.append(AuditKind.MONITOR_STARTED, data.get("manager", "system"),
                              session=session, call=data.get("call", ""), **_device(data))
        except AuditUnavailable:  # no audit write, no listen
            self._finish(session, reason=ListenRefusal.AUDIT_UNAVAILABLE.value, hang_up=True)

    @store_guard
    def leg_left(self, session: str, reason: str = "left") -> None:
        self._finish(session, reason=reason, hang_up=False)

    @store_guard
    def leg_reported(self, session: str, leg_sid: str, status: str) -> None:
        """The status callback of a web-rung leg: Twilio saying which leg it made for the
        session (so a lost answer is resolved here) and, once it ends, ending the session."""
        data = self._session(session)
        if not data or not leg_sid:
            return
        if data.get("leg") != leg_sid and not self.adopt(session, leg_sid, "leg_status"):
            return  # a leg this session no longer wants: adopt has hung it up
        if status in LEG_ENDED:
            self.leg_left(session, status)

    def awaits_leg(self, session: str) -> bool:
        """Whether a session is still waiting to learn its leg (Twilio's answer was lost)."""
        data = self._session(session)
        return bool(data) and not data.get("leg") and not data.get("ended_at")

    @store_guard
    def adopt(self, session: str, leg_sid: str, resolved_by: str) -> bool:
        """Take ``leg_sid`` as the session's leg, learnt from Twilio's own state after its
        answer to the request was lost. False if the session has its leg already (another
        one), or has ended: then the leg is hung up, since nobody may be listening on it."""
        key = keys.monitor_session(session)
        data = self._session(session)
        if not data:
            return False
        if data.get("ended_at") or not self.rt.store.hsetnx(key, "leg", leg_sid):
            ours = self.rt.store.hget(key, "leg") == leg_sid
            if not ours:
                self._hang_up(leg_sid)
            return ours and not data.get("ended_at")
        call_id = data.get("call", "")
        self.rt.store.hset(key, "state", "rung")
        if self.rt.store.hget(keys.live_call(call_id), "monitor_session") == session:
            self.rt.store.hset(keys.live_call(call_id), "monitor_leg", leg_sid)
        if data.get("state") != "unknown":
            return True  # the request itself is still on its way to recording it
        try:
            self.audit.append(AuditKind.MONITOR_GRANTED, data.get("manager", "system"),
                              session=session, call=call_id, purpose=data.get("purpose", ""),
                              channel=data.get("channel", ""), resolved_by=resolved_by,
                              **_device(data))
        except AuditUnavailable:  # no audit write, no listen
            self._finish(session, reason=ListenRefusal.AUDIT_UNAVAILABLE.value, hang_up=True)
            return False
        log.info("a listen Twilio had not confirmed was found", extra={"event": resolved_by})
        return True

    def unknown_sessions(self) -> list[tuple[str, dict[str, str]]]:
        """Open sessions still waiting to learn their leg, with their records."""
        found = []
        for session in self.rt.store.zrange(keys.monitor_sessions(), 0, -1):
            data = self._session(session)
            if data.get("state") == "unknown" and not data.get("leg"):
                found.append((session, data))
        return found

    @store_guard
    def close_stale(self) -> int:
        """Close sessions no callback closed: over the time limit, or their call is gone."""
        cutoff = self.rt.clock() - timedelta(minutes=self.rt.settings.monitor_max_minutes)
        closed = 0
        for session, score in self.rt.store.zrange(keys.monitor_sessions(), 0, -1,
                                                   withscores=True):
            data = self._session(session)
            call = self.rt.live.get(data.get("call", "")) if data else None
            too_old = datetime.fromtimestamp(score, cutoff.tzinfo) < cutoff
            if not data or too_old or call is None or not call.live:
                self._finish(session, reason="closed_by_timer", hang_up=True)
                closed += 1
        return closed

    def session_for_leg(self, call: LiveCall, leg_sid: str) -> str | None:
        if leg_sid and call.raw.get("monitor_leg") == leg_sid:
            return call.raw.get("monitor_session")
        return None

    def _finish(self, session: str, *, reason: str, hang_up: bool) -> None:
        """End a session once: hang up its leg if asked, free the slot, audit the end."""
        key = keys.monitor_session(session)
        data = self._session(session)
        if not data or not self.rt.store.hsetnx(key, "ended_at", self.rt.clock().isoformat()):
            self.rt.store.zrem(keys.monitor_sessions(), session)
            return
        self.rt.store.hset(key, mapping={"state": "ended", "end_reason": reason})
        self.rt.store.zrem(keys.monitor_sessions(), session)
        manager, call_id, leg = data.get("manager", ""), data.get("call", ""), data.get("leg")
        live_key = keys.live_call(call_id)
        if self.rt.store.hget(live_key, "monitor_session") == session:
            self.rt.store.hdel(live_key, "monitor_session", "monitor_leg")
        if self.rt.store.get(keys.monitor_active(manager)) == session:
            self.rt.store.delete(keys.monitor_active(manager))
        # The manager's leg: rung on the web, or their own call on the manager line.
        if hang_up and leg:
            self._hang_up(leg)
        try:
            self.audit.append(AuditKind.MONITOR_ENDED, manager or "system", session=session,
                              call=call_id, reason=reason, **_device(data))
        except AuditUnavailable:
            log.error("the end of a listen could not be audited", extra={"event": "audit_down"})

    def _hang_up(self, leg: str) -> None:
        if self.rt.twilio is None:
            return
        try:
            self.rt.twilio.hang_up(leg)
        except Exception:
            log.exception("could not hang up a listening leg", extra={"event": "hang_up"})

    def _session(self, session: str) -> dict[str, str]:
        return self.rt.store.hgetall(keys.monitor_session(session)) if session else {}

    def _zone(self, call: LiveCall):
        flow = self.rt.registry.current.flows.get(call.flow)
        return flow.hours.zone if flow else None


def monitor_label(session: str) -> str:
    """The label a web listen's leg is created with, by which Twilio's own records of the room
    name it (so a leg whose creation Twilio never confirmed can still be recognised)."""
    return f"monitor-{session}"


def _asked(call_id: str, purpose: str, channel: str) -> dict[str, str]:
    """What a request named, made safe to record: never a number typed into a field."""
    recordable = CALL_ID.match(call_id or "") and not PHONE_LIKE.search(call_id)
    return {"call": call_id if recordable else "(not a call id)",
            "purpose": purpose if purpose in tuple(Purpose) else "(other)", "channel": channel}


def _device(session: dict[str, str]) -> dict[str, str]:
    """The device a session's entries name (sessions begun before devices were recorded name
    none)."""
    return {"device": session["device"]} if session.get("device") else {}
