"""Signing in on a phone line with a staff number and a PIN: the one place every line does it.

The manager line uses it today; a staff line for helpline workers can use it as it is, with
its own ``line`` name and its own ``allowed`` rule, under the same limits:

- the staff number comes first, so a PIN is only ever checked against that one account and
  failures count per account, never against a whole line;
- each failure makes the staff number wait longer before it may be tried again, from any call
  (2 seconds, doubling, up to 15 minutes): a line is slowed down, never locked for everyone.
  The line plays the wait as a pause before it asks again; an attempt made during the wait (a
  second call, say) is refused without its PIN being checked, and tallied, not audited singly;
- every failure is audited from the first, with how many there have been in a row and the wait
  it set. An unknown staff number is counted and answered exactly like a known one, and a
  caller who types their phone number in its place has it kept nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from callflow.platform.errors import SignInRefusal
from callflow.platform.store import store_guard
from callflow.staff import lockout
from callflow.staff.accounts import PIN, STAFF_NUMBER, UNKNOWN_ACTOR, StaffMember, StaffStore
from callflow.staff.lockout import Clock, Slowdown, Tally

log = logging.getLogger(__name__)
PIN_WAIT_BASE, PIN_WAIT_CAP = 2, 15 * 60
# A call gets so many tries before the line says goodbye.
MAX_TRIES = 3
# Longer than this, the line says when to ring again rather than hold the call in silence.
LONGEST_PAUSE = 60
NOT_ACCEPTED = "That staff number and PIN were not accepted."


@dataclass(frozen=True)
class PinResult:
    """Who signed in (None if nobody), and how long the line waits before asking again."""

    member: StaffMember | None
    pause: int = 0


@dataclass(frozen=True)
class Refusal:
    """What a line says to a refused sign-in: its words, the pause before it asks for the staff
    number again, or that it hangs up. The same on every line, whatever the line is for."""

    text: str
    pause: int = 0
    hang_up: bool = False

    def speak(self, response, say: Callable, ask_again: Callable) -> None:
        """Add it to ``response``: ``say(response, text)`` in the line's voice, then hang up,
        or pause and ``ask_again(response)`` for the staff number."""
        say(response, self.text)
        if self.hang_up:
            response.hangup()
            return
        if self.pause:
            response.pause(length=self.pause)
        ask_again(response)


def refusal(result: PinResult, tries: int) -> Refusal:
    """The answer to the ``tries``-th refused sign-in of a call (counting this one)."""
    if tries >= MAX_TRIES:
        return Refusal(f"{NOT_ACCEPTED} Goodbye.", hang_up=True)
    if result.pause > LONGEST_PAUSE:
        minutes = -(-result.pause // 60)
        return Refusal(f"{NOT_ACCEPTED} Please try again in {minutes} minutes, or ask an "
                       "admin to unlock your account. Goodbye.", hang_up=True)
    return Refusal(NOT_ACCEPTED, pause=result.pause)


class PinSignIn:
    """``line`` names the line in the audit log; ``allowed`` says which accounts may sign in
    on it (any other is refused as if its staff number were unknown)."""

    def __init__(self, staff: StaffStore, *, line: str,
                 allowed: Callable[[StaffMember], bool], clock: Clock | None = None) -> None:
        extra = {"clock": clock} if clock else {}
        self.staff, self.line, self.allowed = staff, line, allowed
        self.waits = Slowdown(staff.client, free=0, base=PIN_WAIT_BASE, cap=PIN_WAIT_CAP,
                              **extra)
        self.tally = Tally(staff.client, **extra)

    @store_guard
    def attempt(self, staff_number: str, pin: str, call_sid: str) -> PinResult:
        number = staff_number if isinstance(staff_number, str) and \
            STAFF_NUMBER.match(staff_number) else ""
        subject = lockout.staff_number(number)
        name = self.staff.by_staff_number(number) if number else None
        record = self.staff.record(name) if name else {}
        if record and not self.allowed(StaffStore.member_from(name, record)):
            record = {}  # not an account of this line: as good as unknown
        actor = name if record else UNKNOWN_ACTOR
        where = {"channel": "phone", "line": self.line, "call_sid": call_sid}
        wait = self.waits.wait(subject)
        if wait:  # not even checked: redialling buys no guesses
            self.tally.note(subject, actor, channel="phone", line=self.line)
            return PinResult(None, wait)
        ok = isinstance(pin, str) and bool(PIN.match(pin)) and self.staff.verify(
            record.get("pin"), pin)
        if not (record and ok):
            failures, pause = self.waits.fail(subject)  # counted before it is audited
            self.staff.audit_entry("login_failed", actor,
                                   reason=SignInRefusal.BAD_CREDENTIALS.value, **where,
                                   **({"staff_number": number} if number else {}),
                                   failures=failures, pause_seconds=pause)
            return PinResult(None, pause)
        member = StaffStore.member_from(name, record)
        if member.disabled:
            self.staff.audit_entry("login_failed", actor, reason=SignInRefusal.DISABLED.value,
                                   **where)
            return PinResult(None, 0)
        self.waits.succeed(subject)
        self.staff.after_sign_in(name, record, pin_proved=True)
        self.staff.audit_entry("login", name, **where)
        return PinResult(member, 0)
