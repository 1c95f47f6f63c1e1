"""Who may be in a call's conference room: only the legs the service put there (promise 4).

The caller, a worker whose "press 1" was accepted, and a granted listen (the manager's rung leg,
or their own call on the manager line) are known by their call sids. Anyone else who joins is
removed at once over Twilio's REST API, and an alarm entry is audited. A listen whose REST
answer was lost is the one exception that is looked into first: its leg carries the session's
label, which Twilio reports in the join callback (or in its record of the participant), and a
leg so recognised is taken as that session's.

The same labels let a timed pass settle listens still unknown: Twilio's list of the room's
participants says whether the leg was made.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from callflow.monitoring.gate import MonitoringGate, monitor_label
from callflow.platform.errors import AuditUnavailable
from callflow.platform.jobspec import Job
from callflow.records.audit import AuditKind
from callflow.records.live import LiveCall
from callflow.runtime import Runtime

log = logging.getLogger(__name__)
# How long Twilio is given to finish creating a leg whose answer was lost before an absence
# from the room's participants is taken to mean it was never made.
UNKNOWN_GRACE = timedelta(seconds=60)


class RoomGuard:
    def __init__(self, rt: Runtime, gate: MonitoringGate) -> None:
        self.rt = rt
        self.gate = gate

    def admit(self, call: LiveCall, participant_sid: str, label: str,
              conference_sid: str) -> bool:
        """A participant joined the call's room: True if the service put them there (a leg
        recognised by its label now counts as known); otherwise they are removed, alarmed."""
        known = {call.caller_sid, *call.legs.values(), call.raw.get("monitor_leg", "")} - {""}
        if participant_sid in known:
            return True
        session = call.raw.get("monitor_session", "")
        if session and self.gate.awaits_leg(session):
            label = label or self._label(conference_sid, participant_sid)
            if label == monitor_label(session) and self.gate.adopt(session, participant_sid,
                                                                   "conference"):
                return True
        self._remove(call, conference_sid, participant_sid)
        return False

    def resolve(self) -> int:
        """Settle listens whose REST answer was lost, from the room's participants: the leg
        is there (taken as the session's), or, once Twilio has had time, it was never made
        (the session ends). Returns how many were settled; a REST failure leaves them for the
        next pass."""
        settled = 0
        now = self.rt.clock()
        for session, data in self.gate.unknown_sessions():
            call = self.rt.live.get(data.get("call", ""))
            if call is None or not call.live or not call.conference_sid or self.rt.twilio is None:
                continue  # the timed pass closes sessions whose call is over
            try:
                participants = self.rt.twilio.participants(call.conference_sid)
            except Exception:
                log.exception("could not list a room's participants", extra={"event": "room"})
                continue
            found = [p for p in participants if p.label == monitor_label(session)]
            if found:
                settled += self.gate.adopt(session, found[0].call_sid, "participants")
            elif now - _when(data.get("unknown_at"), now) >= UNKNOWN_GRACE:
                self.gate.leg_left(session, "never_rang")
                settled += 1
        return settled

    def _label(self, conference_sid: str, participant_sid: str) -> str:
        """The participant's label as Twilio has it ("" if it cannot be read: removed then)."""
        if self.rt.twilio is None or not conference_sid:
            return ""
        try:
            participant = self.rt.twilio.participant(conference_sid, participant_sid)
        except Exception:
            log.exception("could not read a participant", extra={"event": "room"})
            return ""
        return participant.label if participant else ""

    def _remove(self, call: LiveCall, conference_sid: str, participant_sid: str) -> None:
        removed = False
        conference_sid = conference_sid or call.conference_sid
        if self.rt.twilio is not None and conference_sid:
            try:
                self.rt.twilio.remove(conference_sid, participant_sid)
                removed = True
            except Exception as exc:
                log.error("could not remove an unknown participant; retrying in a job",
                          extra={"event": "room_alarm", "error": type(exc).__name__})
        log.warning("an unknown participant joined a call's room",
                    extra={"event": "room_alarm", "call": call.caller_sid})
        try:
            self.gate.audit.append(AuditKind.ALARM, "system", problem="unknown_participant",
                                   call=call.id, participant=participant_sid, removed=removed)
        except AuditUnavailable:
            log.error("an alarm could not be audited", extra={"event": "audit_down"})
        if not removed and conference_sid:
            self.rt.enqueue(Job.REMOVE_PARTICIPANT, conference_sid, participant_sid,
                            job_id=f"remove-{participant_sid}")


def _when(stamp: str | None, default: datetime) -> datetime:
    try:
        return datetime.fromisoformat(stamp) if stamp else default
    except ValueError:
        return default
