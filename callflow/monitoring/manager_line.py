"""The manager line: the Helplines Manager signs in with a staff number and a PIN, and listens
to a live call.

"Respect Phoneline, call 1, connected 4 minutes. ..." The manager picks a call by key, then a
purpose (1 quality, 2 training); the monitoring gate decides, and a granted listen joins this
very call to the conference, muted. Signing in is ``callflow.staff.pin_sign_in`` (its limits are the
ones any phone line uses); a wrong staff number or PIN is answered the same way, after a pause
that grows with each failure. Digits gathered are never logged; a PIN is never stored.

The line keeps its own small state per call in Redis (the manager is not a caller: nothing here
is a caller's menu).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from twilio.twiml.voice_response import VoiceResponse

from callflow.language.dialling import DO_NOT_RECORD
from callflow.language.flow import ManagerLine
from callflow.monitoring.gate import MonitoringGate, Purpose
from callflow.platform import keys
from callflow.records.live import LiveState
from callflow.runtime import Runtime
from callflow.staff.accounts import Role, StaffMember, StaffStore
from callflow.staff.pin_line import PinLine
from callflow.staff.pin_sign_in import PinSignIn

log = logging.getLogger(__name__)
LINE = "manager-line"
PURPOSES = {"1": Purpose.QUALITY, "2": Purpose.TRAINING}


@dataclass
class LineState:
    staff_number: str = ""  # as typed, kept only when it is one (4-6 digits)
    tries: int = 0
    manager: str = ""  # who signed in
    choices: str = ""  # the call ids offered, by key, space-separated


def may_use_manager_line(member: StaffMember) -> bool:
    return member.role is Role.MANAGER


class ManagerLineCalls(PinLine):
    state_type = LineState
    signed_in_fields = ("manager",)

    def __init__(self, rt: Runtime, staff: StaffStore) -> None:
        super().__init__(rt.store, PinSignIn(staff, line=LINE, allowed=may_use_manager_line,
                                             clock=rt.clock),
                         state_key=keys.manager_line_call, link=rt.links.manager_line)
        self.rt = rt
        self.staff = staff

    @property
    def line(self) -> ManagerLine:
        return self.rt.registry.current.manager_line

    def _say(self, response, text: str) -> None:
        response.say(text, voice=self.line.voice, language=self.line.language)

    def unavailable(self) -> VoiceResponse:
        """Fail closed: no store or no audit log, no sign-in and no listening."""
        response = VoiceResponse()
        self._say(response, "Listening to calls is unavailable right now. Goodbye.")
        response.hangup()
        return response

    def incoming(self, call_sid: str) -> VoiceResponse:
        return self.greet(call_sid, "Helplines manager line")

    def pin(self, call_sid: str, digits: str) -> VoiceResponse:
        state, member, response = self.attempt(call_sid, digits)
        if member is None:
            return response
        if not member.may_listen or not member.phone_monitoring:
            self._say(response, "This account cannot listen to calls by phone. Goodbye.")
            response.hangup()
            return response
        state.manager, state.tries = member.name, 0
        return self._list(call_sid, state, response)

    def listing(self, call_sid: str, digits: str) -> VoiceResponse:
        state = self._signed_in(call_sid)
        if state is None:
            return self._goodbye()
        response = VoiceResponse()
        offered = state.choices.split()
        if digits.isascii() and digits.isdigit() and 1 <= int(digits) <= len(offered):
            call_id = offered[int(digits) - 1]
            self._gather(response, "purpose", "For quality, press 1. For training, press 2.",
                         call=call_id)
            return response
        return self._list(call_sid, state, response)

    def purpose(self, call_sid: str, call_id: str, digits: str) -> VoiceResponse:
        state = self._signed_in(call_sid)
        if state is None:
            return self._goodbye()
        response = VoiceResponse()
        if digits not in PURPOSES:
            self._gather(response, "purpose", "Calls may be listened to for quality or "
                         "training only. For quality, press 1. For training, press 2.",
                         call=call_id)
            return response
        member = self.staff.get(state.manager)
        decision = MonitoringGate(self.rt, self.rt.audit).request(
            member, call_id, PURPOSES[digits].value, channel="phone", own_call_sid=call_sid)
        if not decision.granted:
            self._say(response, decision.message)
            return self._list(call_sid, state, response)
        self._say(response, "You are listening, muted. Hang up to stop.")
        dial = response.dial(record=DO_NOT_RECORD)
        dial.conference(keys.conference_room(call_id), muted=True, beep=False,
                        record=DO_NOT_RECORD, start_conference_on_enter=False,
                        end_conference_on_exit=False,
                        status_callback=self.rt.links.conference(call_id),
                        status_callback_method="POST",
                        status_callback_event="start end join leave mute")
        return response

    def _list(self, call_sid: str, state: LineState, response: VoiceResponse) -> VoiceResponse:
        now = self.rt.clock()
        flows = self.rt.registry.current.flows
        calls = [c for c in self.rt.live.listing()
                 if c.state == LiveState.CONNECTED and c.monitorable
                 and not c.raw.get("monitor_session")][:9]
        state.choices = " ".join(c.id for c in calls)
        self.save_state(call_sid, state)
        if not calls:
            self._gather(response, "list", "There are no calls you can listen to right now. "
                         "Press 1 to hear the list again, or hang up.")
            return response
        lines = []
        for number, call in enumerate(calls, start=1):
            helpline = flows[call.flow].helpline if call.flow in flows else "A helpline"
            minutes = _minutes_since(call.connected_at, now)
            lines.append(f"{helpline}, call {number}, connected {minutes} "
                         f"minute{'s' if minutes != 1 else ''}: press {number}.")
        self._gather(response, "list", " ".join(lines))
        return response

    def _signed_in(self, call_sid: str) -> LineState | None:
        state = self.load_state(call_sid)
        return state if state.manager else None

    def _goodbye(self) -> VoiceResponse:
        response = VoiceResponse()
        self._say(response, "Please sign in again. Goodbye.")
        response.hangup()
        return response


def _minutes_since(stamp: str, now: datetime) -> int:
    try:
        return max(0, int((now - datetime.fromisoformat(stamp)).total_seconds() // 60))
    except ValueError:
        return 0
