"""Sign-in lockout: too many failures for an account, an address or the phone line lock it out.

Promise 4 gates listening on an authorised manager "with lockout"; without one, a password or a
4-digit PIN falls to patient guessing. Failures are counted per *subject* in Redis, so every web
process shares the count, and every counter and lock carries a TTL, so nothing needs cleaning up.

A subject names what is being guessed from: ``account(name)``, ``address(ip)`` for the web
form, and for the phone line ``PHONE_LINE`` (every PIN attempt on the manager line, whoever
rings) plus ``phone_call(call_sid)``. A caller's number is never a subject: it is dropped at the
edge (promise 1), and a store of numbers that tried to sign in would be exactly the kind of
number list the service refuses to keep. ``subject()`` refuses anything that looks like one.
"""

from __future__ import annotations

import logging
import re

import redis

from callflow import keys
from callflow.errors import LockedOut

log = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
PHONE_LINE = "phone-line"
# A value that is only a phone number, with or without "+" and spacing: never a subject.
# (Dots are left alone, so an IPv4 address is not mistaken for one.)
NUMBER_ONLY = re.compile(r"^\+?[0-9]{7,15}$")
SPACING = re.compile(r"[\s()-]")


def subject(kind: str, value: str) -> str:
    """``kind:value``, refusing a value that is (or looks like) a phone number."""
    value = str(value).strip()
    if not value:
        raise ValueError(f"a {kind} lockout subject needs a value")
    if NUMBER_ONLY.match(SPACING.sub("", value)):
        raise ValueError(f"a {kind} lockout subject must never be a phone number")
    return f"{kind}:{value}"


def account(name: str) -> str:
    """The subject for guesses at one account's password, from anywhere."""
    return subject("account", name)


def address(client_address: str) -> str:
    """The subject for guesses from one client (IP) address, at any account."""
    return subject("address", client_address)


def phone_call(call_sid: str) -> str:
    """The subject for PIN guesses within one call to the manager line (its CallSid, never From)."""
    return subject(PHONE_LINE, call_sid)


class Lockout:
    """Counts failures per subject in a fixed window; ``max_failures`` of them lock it out.

    The lock lasts ``lock_seconds`` (default: the window, 15 minutes) from the failure that
    tripped it; a success clears the account's count but never lifts a lock, so a correct
    password cannot be used to probe whether a locked account's guesses were right.
    """

    def __init__(self, client: redis.Redis, max_failures: int = MAX_FAILURES,
                 window_seconds: int = WINDOW_SECONDS, lock_seconds: int | None = None) -> None:
        if max_failures < 1 or window_seconds < 1:
            raise ValueError("max_failures and window_seconds must be at least 1")
        self.client = client
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.lock_seconds = lock_seconds or window_seconds

    def locked(self, *subjects: str) -> int:
        """Seconds until every given subject is free again; 0 when none is locked."""
        if not subjects:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for name in subjects:
            pipe.ttl(keys.lockout_locked(name))
        # TTL is -2 for a missing key and -1 for one without expiry (which we never write).
        return max((ttl if ttl >= 0 else 0) for ttl in pipe.execute())

    def check(self, *subjects: str) -> None:
        """Raise ``LockedOut`` when any subject is locked; called before a secret is checked."""
        remaining = self.locked(*subjects)
        if remaining:
            raise LockedOut(remaining)

    def fail(self, *subjects: str) -> list[str]:
        """Count one failure for each subject; return the subjects this failure locked out.

        The window starts at a subject's first failure (``SET NX EX`` then ``INCR`` in one
        transaction keeps the TTL), so failures spread over longer than the window never add up.
        """
        pipe = self.client.pipeline(transaction=True)
        for name in subjects:
            counter = keys.lockout_failures(name)
            pipe.set(counter, 0, ex=self.window_seconds, nx=True)
            pipe.incr(counter)
        replies = pipe.execute()
        counts = replies[1::2]
        newly_locked = []
        for name, count in zip(subjects, counts, strict=True):
            if count < self.max_failures:
                continue
            lock = self.client.pipeline(transaction=True)
            lock.set(keys.lockout_locked(name), 1, ex=self.lock_seconds, nx=True)
            lock.delete(keys.lockout_failures(name))
            if lock.execute()[0]:
                newly_locked.append(name)
                log.warning("sign-in locked out after repeated failures",
                            extra={"event": "lockout", "kind": name.split(":", 1)[0]})
        return newly_locked

    def succeed(self, *subjects: str) -> None:
        """Forget the failures counted for these subjects (the account that just signed in).

        Only the account's count is cleared by the sign-in code, never the address's: one good
        password of an attacker's own must not reset the count of their guesses at others.
        """
        if subjects:
            self.client.delete(*(keys.lockout_failures(name) for name in subjects))
