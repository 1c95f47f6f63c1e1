"""What every staff phone line shares: a staff number, then a PIN, with a little state per call.

The manager line (:mod:`callflow.monitoring.manager_line`) and the staff line
(:mod:`callflow.bridge.staff_line`) each ask for a staff number and a PIN, answer a refusal the
same way (:mod:`callflow.staff.pin_sign_in`), and keep their call's progress in one Redis hash
with a TTL: that is this class. What a line does once somebody has signed in is its own.
The person on such a line is staff, never a caller; digits gathered are never logged, and a
PIN is never stored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import redis
from twilio.twiml.voice_response import VoiceResponse

from callflow.platform.store import store_guard
from callflow.staff.accounts import MAX_PIN, STAFF_NUMBER, StaffMember
from callflow.staff.pin_sign_in import PinSignIn, refusal

STATE_SECONDS = 60 * 60
STAFF_PROMPT = "Please enter your staff number, then press hash."
PIN_PROMPT = "Please enter your PIN, then press hash."
STAFF_DIGITS = 6


class PinLine:
    """A staff phone line. ``state_type`` is its per-call state: a dataclass with a
    ``staff_number`` and ``tries`` and the line's own fields, of which ``signed_in_fields``
    say who signed in (cleared whenever a staff number is entered). ``state_key`` names a
    call's hash; ``link(stage, **query)`` is the URL of one of the line's webhooks."""

    state_type: ClassVar[type]
    signed_in_fields: ClassVar[tuple[str, ...]]

    def __init__(self, store: redis.Redis, sign_in: PinSignIn, *,
                 state_key: Callable[[str], str], link: Callable[..., str]) -> None:
        self.store, self.sign_in = store, sign_in
        self._state_key, self._link = state_key, link

    def _say(self, response, text: str) -> None:
        raise NotImplementedError  # each line speaks in its own voice

    def _gather(self, response, stage: str, text: str, *, digits: int = 1, **query: str):
        gather = response.gather(num_digits=digits, timeout=10, finish_on_key="#",
                                 action=self._link(stage, **query),
                                 action_on_empty_result=True)
        self._say(gather, text)
        return gather

    def _ask_staff_number(self, response, text: str = STAFF_PROMPT) -> None:
        self._gather(response, "staff", text, digits=STAFF_DIGITS)

    def greet(self, call_sid: str, line_name: str) -> VoiceResponse:
        """A new call to the line: a fresh state, and the staff number asked for."""
        self.save_state(call_sid, self.state_type())
        response = VoiceResponse()
        self._ask_staff_number(response, f"{line_name}. {STAFF_PROMPT}")
        return response

    def staff_number(self, call_sid: str, digits: str) -> VoiceResponse:
        """The staff number typed (kept only when it is one); the PIN asked for."""
        state = self.load_state(call_sid)
        state.staff_number = digits if STAFF_NUMBER.match(digits or "") else ""
        for name in self.signed_in_fields:
            setattr(state, name, "")
        self.save_state(call_sid, state)
        response = VoiceResponse()
        self._gather(response, "pin", PIN_PROMPT, digits=MAX_PIN)
        return response

    def attempt(self, call_sid: str, digits: str) -> tuple[Any, StaffMember | None,
                                                           VoiceResponse]:
        """The PIN typed: (the call's state, who signed in or None, the answer so far). A
        refusal is answered here, in full: counted, spoken, the staff number asked again
        (after a pause that grows) or the call ended."""
        state = self.load_state(call_sid)
        result = self.sign_in.attempt(state.staff_number, digits, call_sid)
        response = VoiceResponse()
        if result.member is None:
            state.tries, state.staff_number = state.tries + 1, ""
            self.save_state(call_sid, state)
            refusal(result, state.tries).speak(response, self._say, self._ask_staff_number)
        return state, result.member, response

    # -- the call's state --------------------------------------------------------------------

    @store_guard
    def load_state(self, call_sid: str):
        data = self.store.hgetall(self._state_key(call_sid))
        blank = self.state_type()
        values = {}
        for field in dataclasses.fields(blank):
            default = getattr(blank, field.name)
            kept = data.get(field.name)
            values[field.name] = type(default)(kept) if kept else default
        return self.state_type(**values)

    @store_guard
    def save_state(self, call_sid: str, state) -> None:
        key = self._state_key(call_sid)
        with self.store.pipeline(transaction=False) as pipe:
            pipe.hset(key, mapping={k: str(v) for k, v in dataclasses.asdict(state).items()})
            pipe.expire(key, STATE_SECONDS)
            pipe.execute()
