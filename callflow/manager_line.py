"""The manager line: the Helplines Manager signs in by PIN and listens to a live call.

"Respect Phoneline, call 1, connected 4 minutes. ..." The manager picks a call by key, then a
purpose (1 quality, 2 training); the monitoring gate decides, and a granted listen joins this
very call to the conference, muted. PINs are gathered digits that are never logged or stored.
"""

from __future__ import annotations

import logging
from datetime import datetime

from twilio.twiml.voice_response import VoiceResponse

from callflow import keys
from callflow.dialling import DO_NOT_RECORD
from callflow.errors import LockedOut, SignInRefused
from callflow.flow import ManagerLine
from callflow.live import LiveState
from callflow.monitoring import MonitoringGate, Purpose
from callflow.runtime import Runtime
from callflow.staff import StaffStore
from callflow.state import CallState

log = logging.getLogger(__name__)
MAX_PIN_TRIES = 3
PURPOSES = {"1": Purpose.QUALITY, "2": Purpose.TRAINING}


class ManagerLineCalls:
    def __init__(self, rt: Runtime, staff: StaffStore) -> None:
        self.rt = rt
        self.staff = staff

    @property
    def line(self) -> ManagerLine:
        return self.rt.registry.current.manager_line

    def _say(self, response, text: str) -> None:
        response.say(text, voice=self.line.voice, language=self.line.language)

    def _gather(self, response, stage: str, text: str, *, digits: int = 1, **query: str):
        gather = response.gather(num_digits=digits, timeout=10, finish_on_key="#",
                                 action=self.rt.links.manager_line(stage, **query),
                                 action_on_empty_result=True)
        self._say(gather, text)
        return gather

    def unavailable(self) -> VoiceResponse:
        """Fail closed: no store or no audit log, no sign-in and no listening."""
        response = VoiceResponse()
        self._say(response, "Listening to calls is unavailable right now. Goodbye.")
        response.hangup()
        return response

    def incoming(self, call_sid: str) -> VoiceResponse:
        self.rt.calls.save(call_sid, CallState(flow="manager-line", step="pin"))
        response = VoiceResponse()
        self._gather(response, "pin", "Helplines manager line. Please enter your PIN, then "
                     "press hash.", digits=8)
        return response

    def pin(self, call_sid: str, digits: str) -> VoiceResponse:
        state = self.rt.calls.load(call_sid)
        response = VoiceResponse()
        try:
            member = self.staff.authenticate_pin(digits, call_sid)
        except LockedOut:
            self._say(response, "Phone sign-in is locked after too many wrong PINs. Please "
                      "try again later.")
            response.hangup()
            return response
        except SignInRefused:
            state.attempts += 1
            self.rt.calls.save(call_sid, state)
            if state.attempts >= MAX_PIN_TRIES:
                self._say(response, "That PIN was not accepted. Goodbye.")
                response.hangup()
                return response
            self._gather(response, "pin", "That PIN was not accepted. Please enter your PIN, "
                         "then press hash.", digits=8)
            return response
        if not member.may_listen or not member.phone_monitoring:
            self._say(response, "This account cannot listen to calls by phone. Goodbye.")
            response.hangup()
            return response
        state.manager, state.step, state.attempts = member.name, "list", 0
        self.rt.calls.save(call_sid, state)
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

    def _list(self, call_sid: str, state: CallState, response: VoiceResponse) -> VoiceResponse:
        now = self.rt.clock()
        flows = self.rt.registry.current.flows
        calls = [c for c in self.rt.live.listing()
                 if c.state == LiveState.CONNECTED and c.monitorable
                 and not c.raw.get("monitor_session")][:9]
        state.choices = " ".join(c.id for c in calls)
        self.rt.calls.save(call_sid, state)
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

    def _signed_in(self, call_sid: str) -> CallState | None:
        state = self.rt.calls.load(call_sid)
        return state if state.flow == "manager-line" and state.manager else None

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
