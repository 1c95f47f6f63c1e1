"""Twilio's conference callbacks for a call's room: who joined, who left, when it ended.

A room holds the caller, the worker who accepted, and a granted listen: the room guard admits
only those (promise 4); a listen's leg joining or leaving starts or ends its session in the
audit log; the caller leaving (or the room closing) ends the call on the bridge, and with it
any listen. This sits above the bridge and the monitoring gate, which each know their part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from callflow.bridge.bridge import Bridge
from callflow.monitoring.gate import MonitoringGate
from callflow.monitoring.room_guard import RoomGuard

if TYPE_CHECKING:
    from callflow.runtime import Runtime


class ConferenceCallbacks:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.bridge = Bridge(rt)
        self.gate = MonitoringGate(rt, rt.audit)

    def event(self, call_id: str, event: str, conference_sid: str, participant_sid: str,
              label: str = "") -> None:
        call = self.rt.live.get(call_id)
        if call is None:
            return
        if conference_sid:
            self.rt.live.note(call_id, conference_sid=conference_sid)
        if event == "participant-join" and participant_sid == call.caller_sid:
            self.rt.live.note(call_id, in_room="1")
        if event == "participant-join":
            # Only the legs the service created may be in the room (promise 4).
            if not RoomGuard(self.rt, self.gate).admit(call, participant_sid, label,
                                                       conference_sid):
                return
            call = self.rt.live.get(call_id) or call  # a listen's leg may just have been named
        listening = self.gate.session_for_leg(call, participant_sid)
        if listening and event == "participant-join":
            self.gate.leg_joined(listening)
        elif listening and event == "participant-leave":
            self.gate.leg_left(listening)
        caller_left = event == "participant-leave" and participant_sid == call.caller_sid
        if event == "conference-end" or caller_left:
            session = call.raw.get("monitor_session")
            if session:
                self.gate.leg_left(session, reason="call_ended")
            self.bridge.left_room(call, event, caller_gone=caller_left)
