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
from dataclasses import asdict, dataclass
from datetime import datetime

import redis
from twilio.twiml.voice_response import VoiceResponse

from callflow.language.dialling import DO_NOT_RECORD
from callflow.language.flow import ManagerLine
from callflow.monitoring.gate import MonitoringGate, Purpose
from callflow.platform import keys
from callflow.platform.errors import StoreUnavailable
from callflow.records.live import LiveState
from callflow.runtime import Runtime
from callflow.staff.accounts import MAX_PIN, STAFF_NUMBER, Role, StaffMember, StaffStore
from callflow.staff.pin_sign_in import PinSignIn, refusal

log = logging.getLogger(__name__)
LINE = "manager-line"
STATE_SECONDS = 60 * 60
PURPOSES = {"1": Purpose.QUALITY, "2": Purpose.TRAINING}
STAFF_PROMPT = "Please enter your staff number, then press hash."
PIN_PROMPT = "Please enter your PIN, then press hash."


@dataclass
class LineState:
    staff_number: str = ""  # as typed, kept only when it is one (4-6 digits)
    tries: int = 0
    manager: str = ""  # who signed in
    choices: str = ""  # the call ids offered, by key, space-separated


def may_use_manager_line(member: StaffMember) -> bool:
    return member.role is Role.MANAGER


class ManagerLineCalls:
    def __init__(self, rt: Runtime, staff: StaffStore) -> None:
        self.rt = rt
        self.staff = staff
        self.sign_in = PinSignIn(staff, line=LINE, allowed=may_use_manager_line,
                                 clock=rt.clock)

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
        self.save_state(call_sid, LineState())
        response = VoiceResponse()
        self._gather(response, "staff", f"Helplines manager line. {STAFF_PROMPT}", digits=6)
        return response

    def staff_number(self, call_sid: str, digits: str) -> VoiceResponse:
        state = self.load_state(call_sid)
        state.staff_number = digits if STAFF_NUMBER.match(digits or "") else ""
        state.manager = ""
        self.save_state(call_sid, state)
        response = VoiceResponse()
        self._gather(response, "pin", PIN_PROMPT, digits=MAX_PIN)
        return response

    def pin(self, call_sid: str, digits: str) -> VoiceResponse:
        state = self.load_state(call_sid)
        result = self.sign_in.attempt(state.staff_number, digits, call_sid)
        response = VoiceResponse()
        member = result.member
        if member is None:
            state.tries, state.staff_number = state.tries + 1, ""
            self.save_state(call_sid, state)
            refusal(result, state.tries).speak(
                response, self._say,
                lambda again: self._gather(again, "staff", STAFF_PROMPT, digits=6))
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

    def load_state(self, call_sid: str) -> LineState:
        try:
            data = self.rt.store.hgetall(keys.manager_line_call(call_sid))
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return LineState(staff_number=data.get("staff_number", ""),
                         tries=int(data.get("tries") or 0), manager=data.get("manager", ""),
                         choices=data.get("choices", ""))

    def save_state(self, call_sid: str, state: LineState) -> None:
        key = keys.manager_line_call(call_sid)
        try:
            with self.rt.store.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping={k: str(v) for k, v in asdict(state).items()})
                pipe.expire(key, STATE_SECONDS)
                pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc

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
