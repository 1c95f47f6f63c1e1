"""The staff line: a helpline worker rings it to start or end their shift by phone.

"Helpline staff line. Please enter your staff number, then press hash." Then the PIN, then
"You are off shift. To start your shift, press 1. To end it, press 2." Signing in is
``callflow.staff.pin_sign_in`` with this line's own name and rule (worker accounts only), so a
wrong staff number or PIN is answered, slowed down and audited exactly as on the manager line,
and failures count per staff number on both lines together. The change itself is the
:class:`callflow.staff.desk.ShiftDesk`'s, as on the web and the command line.

The line's numbers are ``CALLFLOW_STAFF_LINE_NUMBERS``. Like the manager line it keeps a little
state per call in Redis (the worker is not a caller: nothing here is a caller's menu). A call
that reaches this line on a helpline's number is a caller's, and is sent to the helpline.
Digits gathered are never logged; a PIN is never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from twilio.twiml.voice_response import VoiceResponse

from callflow.platform import keys
from callflow.platform.errors import StaffError
from callflow.runtime import Runtime
from callflow.staff.accounts import Role, StaffMember, StaffStore
from callflow.staff.desk import Channel, ShiftDesk
from callflow.staff.pin_line import PinLine
from callflow.staff.pin_sign_in import PinSignIn
from callflow.staff.shifts import WorkerState

log = logging.getLogger(__name__)
LINE = "staff-line"
VOICE, LANGUAGE = "Polly.Amy", "en-GB"
MAX_CHOICES = 3
CHOICE_PROMPT = "To start your shift, press 1. To end it, press 2."
STATE_WORDS = {
    WorkerState.OFF: "You are off shift.",
    WorkerState.AVAILABLE: "You are on shift.",
    WorkerState.OFFERED: "You are on shift.",
    WorkerState.ON_CALL: "You are on shift, on a call.",
    WorkerState.WRAP_UP: "You are on shift.",
    WorkerState.PAUSED: "You are on shift, paused.",
}


@dataclass
class LineState:
    staff_number: str = ""  # as typed, kept only when it is one (4-6 digits)
    tries: int = 0
    worker: str = ""  # the roster name of who signed in
    account: str = ""  # their account's name (the audit log's actor)
    choices: int = 0  # keys pressed that were neither 1 nor 2


def may_use_staff_line(member: StaffMember) -> bool:
    return member.role is Role.WORKER


class StaffLineCalls(PinLine):
    state_type = LineState
    signed_in_fields = ("worker", "account")

    def __init__(self, rt: Runtime, staff: StaffStore, desk: ShiftDesk) -> None:
        super().__init__(rt.store, PinSignIn(staff, line=LINE, allowed=may_use_staff_line,
                                             clock=rt.clock),
                         state_key=keys.staff_line_call, link=rt.links.staff_line)
        self.rt, self.staff, self.desk = rt, staff, desk
        self.numbers = rt.settings.staff_line  # a malformed setting stops the app starting

    def answers(self, number: str | None) -> bool:
        """Whether ``number`` is one of the staff line's (what ``/voice/incoming`` asks)."""
        return bool(number) and number in self.numbers

    def _say(self, response, text: str) -> None:
        line = self.rt.registry.current.manager_line  # one voice for the service's own lines
        response.say(text, voice=line.voice if line else VOICE,
                     language=line.language if line else LANGUAGE)

    def _goodbye(self, response: VoiceResponse, text: str) -> VoiceResponse:
        self._say(response, f"{text} Goodbye.")
        response.hangup()
        return response

    def unavailable(self) -> VoiceResponse:
        """No store or no audit log: no sign-in, and no shift changed."""
        return self._goodbye(VoiceResponse(), "Signing on and off by phone is unavailable "
                             "right now. Please use the My shift page, or tell the Helplines "
                             "Manager.")

    def incoming(self, call_sid: str, dialled: str | None) -> VoiceResponse:
        if self.rt.registry.current.flow_for(dialled) is not None:
            # A helpline's own number set to ring here by mistake: its callers go to the
            # helpline, never to a staff prompt.
            response = VoiceResponse()
            response.redirect(self.rt.links.url("voice.incoming"), method="POST")
            return response
        return self.greet(call_sid, "Helpline staff line")

    def pin(self, call_sid: str, digits: str) -> VoiceResponse:
        state, member, response = self.attempt(call_sid, digits)
        if member is None:
            return response
        worker = self.desk.find(member.name)
        if worker is None:
            return self._goodbye(response, "Your account is not on the team roster, so it "
                                 "has no shift. Please ask an admin.")
        state.worker, state.account, state.tries = worker.name, member.name, 0
        self.save_state(call_sid, state)
        words = STATE_WORDS[self.desk.status(worker.name).state]
        self._gather(response, "choice", f"{words} {CHOICE_PROMPT}")
        return response

    def choice(self, call_sid: str, digits: str) -> VoiceResponse:
        state = self.load_state(call_sid)
        response = VoiceResponse()
        if not state.worker:
            return self._goodbye(response, "Please sign in again.")
        try:
            if digits == "1":
                started = self.desk.start(state.worker, actor=state.account,
                                          channel=Channel.PHONE)
                return self._goodbye(response, "Your shift has started." if started else
                                     "You were already on shift.")
            if digits == "2":
                before = self.desk.end(state.worker, actor=state.account,
                                       channel=Channel.PHONE)
                return self._goodbye(response, "Your shift has ended." if before.on_shift
                                     else "You were not on shift.")
        except StaffError:  # off the roster since, or no longer active on any team
            return self._goodbye(response, "Your shift cannot be started: you are not "
                                 "active on any team. Please ask an admin.")
        state.choices += 1
        self.save_state(call_sid, state)
        if state.choices >= MAX_CHOICES:
            return self._goodbye(response, "Nothing was changed.")
        self._gather(response, "choice", CHOICE_PROMPT)
        return response
