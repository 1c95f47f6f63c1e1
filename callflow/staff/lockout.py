"""Sign-in throttling: locks, a growing slow-down, and a tally of the attempts they refused.

Promise 4 gates listening on an authorised manager "with lockout"; without one, a password or a
PIN falls to patient guessing. With the wrong one, the lockout itself is the attack: failures
from anywhere that lock an account (or a whole phone line) let an outsider keep its owner out.
So three kinds of limit, each counted in Redis (every web process shares them) and each key
with a TTL:

- a **lock** (:class:`Lockout`): so many failures of one subject in a window lock that subject
  for a while. It is used for subjects an outsider cannot make the owner's: one address trying
  one account (``pair``), or one address trying many (``address``);
- a **slow-down** (:class:`Slowdown`): each failure of a subject (an account, a staff number)
  makes it wait longer before it may be tried again, from anywhere. It never locks: it bounds
  how fast anyone can guess, however many addresses or calls they use;
- a **tally** (:class:`Tally`): attempts refused by a lock or a slow-down are refused before any
  secret is checked, and counted rather than audited one by one; the count is audited once per
  window (``callflow.jobs.tasks.audit_refused_sign_ins``).

A subject names what is being guessed from or at: ``account(name)``, ``address(ip)``,
``pair(name, ip)``, ``staff_number(digits)``. A caller's number is never a subject: it is
dropped at the edge (promise 1), and a store of numbers that tried to sign in would be exactly
the kind of number list the service refuses to keep. ``subject()`` refuses anything like one.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from callflow.platform import keys
from callflow.platform.errors import LockedOut

log = logging.getLogger(__name__)

MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60
# A value that is only a phone number, with or without "+" and spacing: never a subject.
# (Dots are left alone, so an IPv4 address is not mistaken for one.)
NUMBER_ONLY = re.compile(r"^\+?[0-9]{7,15}$")
SPACING = re.compile(r"[\s()-]")
NO_STAFF_NUMBER = "none"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def subject(kind: str, value: str) -> str:
    """``kind:value``, refusing a value that is (or looks like) a phone number."""
    value = str(value).strip()
    if not value:
        raise ValueError(f"a {kind} lockout subject needs a value")
    if NUMBER_ONLY.match(SPACING.sub("", value)):
        raise ValueError(f"a {kind} lockout subject must never be a phone number")
    return f"{kind}:{value}"


def account(name: str) -> str:
    """Guesses at one account's password, from anywhere."""
    return subject("account", name)


def address(client_address: str) -> str:
    """Guesses from one client (IP) address, at any account."""
    return subject("address", client_address)


def pair(name: str, client_address: str) -> str:
    """Guesses from one address at one account."""
    subject("account", name), address(client_address)  # neither part may be a number
    return subject("pair", f"{name}@{client_address}")


def staff_number(digits: str) -> str:
    """PIN guesses at the account with this staff number (or at none, when it is not one: a
    caller who types their phone number there has it kept nowhere)."""
    return subject("staff-number", digits or NO_STAFF_NUMBER)


def scope_of(name: str) -> tuple[str, str]:
    """A subject's kind and value apart: "address:198.51.100.5" as one string reads like the
    digits of a phone number to the audit log's caller-data check."""
    scope, _, value = name.partition(":")
    return scope, value


class Lockout:
    """Counts failures per subject in a fixed window; ``max_failures`` of them lock it out.

    The lock lasts ``lock_seconds`` (default: the window, 15 minutes) from the failure that
    tripped it; a success clears the subject's count but never lifts a lock, so a correct
    password cannot be used to probe whether a locked subject's guesses were right.
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

    def locked_subject(self, *subjects: str) -> tuple[str, int] | None:
        """The first locked subject of these and its remaining seconds, or None."""
        for name in subjects:
            remaining = self.locked(name)
            if remaining:
                return name, remaining
        return None

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
                            extra={"event": "lockout", "kind": scope_of(name)[0]})
        return newly_locked

    def failures(self, name: str) -> int:
        """Failures counted for a subject in its current window."""
        return int(self.client.get(keys.lockout_failures(name)) or 0)

    def succeed(self, *subjects: str) -> None:
        """Forget the failures counted for these subjects (what just signed in)."""
        if subjects:
            self.client.delete(*(keys.lockout_failures(name) for name in subjects))

    def clear(self, *subjects: str) -> None:
        """Forget the failures and lift the locks (an admin's ``manager unlock``)."""
        if subjects:
            self.client.delete(*(keys.lockout_failures(name) for name in subjects),
                               *(keys.lockout_locked(name) for name in subjects))


class Slowdown:
    """A growing wait per subject: after ``free`` failures, each one makes the subject wait
    ``base`` seconds, doubling with every further failure, up to ``cap``. Failures are
    remembered for ``memory`` seconds after the last one. The wait is kept as a moment (so
    every process, and a test's clock, agrees on it), never as a lock.
    """

    def __init__(self, client: redis.Redis, *, free: int, base: int, cap: int,
                 memory: int = 24 * 60 * 60, clock: Clock = _utc_now) -> None:
        self.client, self.free, self.base, self.cap = client, free, base, cap
        self.memory, self.clock = memory, clock

    def delay(self, failures: int) -> int:
        """The wait after the ``failures``-th failure in a row."""
        if failures <= self.free:
            return 0
        return min(self.cap, self.base * 2 ** min(failures - self.free - 1, 30))

    def wait(self, name: str) -> int:
        """Seconds until the subject may be tried again; 0 when it may now."""
        until = self.client.get(keys.lockout_wait(name))
        remaining = float(until) - self.clock().timestamp() if until else 0.0
        return math.ceil(remaining) if remaining > 0 else 0

    def fail(self, name: str) -> tuple[int, int]:
        """Count a failure; return how many there have been in a row and the wait it set."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(keys.lockout_failures(name))
            pipe.expire(keys.lockout_failures(name), self.memory)
            count = pipe.execute()[0]
        delay = self.delay(count)
        if delay:
            until = self.clock().timestamp() + delay
            self.client.set(keys.lockout_wait(name), f"{until:.3f}", ex=self.memory)
        return count, delay

    def succeed(self, name: str) -> None:
        self.client.delete(keys.lockout_failures(name), keys.lockout_wait(name))

    clear = succeed


@dataclass(frozen=True)
class Tallied:
    """The attempts one subject had refused unchecked in one window, to be audited."""

    subject: str
    count: int
    actor: str
    where: dict[str, str]
    first_at: str
    last_at: str


class Tally:
    """Counts attempts refused before any secret was checked, per subject and window, so that
    a flood of them costs one audit entry with a count, written when the window closes."""

    def __init__(self, client: redis.Redis, *, window_seconds: int = WINDOW_SECONDS,
                 clock: Clock = _utc_now) -> None:
        self.client, self.window_seconds, self.clock = client, window_seconds, clock

    def note(self, name: str, actor: str, **where: str) -> None:
        now = self.clock()
        key = keys.lockout_tally(name)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "first_at", now.isoformat(timespec="seconds"))
            pipe.hsetnx(key, "context", json.dumps({"actor": actor, "where": where}))
            pipe.hset(key, "last_at", now.isoformat(timespec="seconds"))
            pipe.hincrby(key, "count", 1)
            # Kept until well after the window closes, so the pass that audits it finds it.
            pipe.expire(key, self.window_seconds + 24 * 60 * 60)
            pipe.zadd(keys.lockout_tallies(), {name: now.timestamp() + self.window_seconds},
                      nx=True)
            pipe.execute()

    def due(self) -> list[Tallied]:
        """Windows that have closed, oldest first (read, not yet forgotten: see ``done``)."""
        found = []
        for name in self.client.zrangebyscore(keys.lockout_tallies(), "-inf",
                                              self.clock().timestamp()):
            record = self.client.hgetall(keys.lockout_tally(name))
            if not record:
                self.client.zrem(keys.lockout_tallies(), name)
                continue
            context = json.loads(record.get("context") or "{}")
            found.append(Tallied(name, int(record.get("count") or 0),
                                 context.get("actor", "unknown"), context.get("where", {}),
                                 record.get("first_at", ""), record.get("last_at", "")))
        return found

    def done(self, tallied: Tallied) -> None:
        """Forget a window once it is audited."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(keys.lockout_tally(tallied.subject))
            pipe.zrem(keys.lockout_tallies(), tallied.subject)
            pipe.execute()
