"""Web sign-in (name and password), throttled so that guessing is slow and nobody else can keep
an account's owner out; and the tallies of refused attempts, audited once per window.

The limits (``callflow.staff.lockout``):

- one address trying one account is locked after :data:`PAIR_FAILURES` failures in 15 minutes,
  and one address trying many after :data:`ADDRESS_FAILURES`;
- an account tried from browsers it has never signed in from is slowed down after
  :data:`ACCOUNT_FREE_FAILURES` failures, each further one doubling the wait (up to 10
  minutes), from every address alike: rotating addresses buys no speed;
- a browser the account has signed in from before carries a device token (a cookie), and is
  never slowed by strangers' failures, so an outsider cannot keep the owner out. A token that
  fails :data:`DEVICE_FAILURES` times is forgotten. And an admin's ``callflow manager unlock``
  clears every limit on the account (audited).

Attempts refused by a lock or a wait are refused before the password is hashed, and counted in
a tally that is audited once per window (:func:`audit_tallies`), not one entry per request.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from typing import NoReturn

import redis

from callflow.platform import keys
from callflow.platform.errors import LockedOut, SignInRefusal, SignInRefused, UnknownStaff
from callflow.platform.store import store_guard
from callflow.records.audit import AuditKind
from callflow.staff import lockout
from callflow.staff.accounts import (
    MAX_PASSWORD,
    NAME,
    UNKNOWN_ACTOR,
    StaffMember,
    StaffStore,
    check_name,
)
from callflow.staff.lockout import Clock, Lockout, Slowdown, Tally, scope_of

log = logging.getLogger(__name__)
PAIR_FAILURES = 5
ADDRESS_FAILURES = 10
ACCOUNT_FREE_FAILURES = 5
ACCOUNT_WAIT_BASE, ACCOUNT_WAIT_CAP = 2, 10 * 60
DEVICE_FAILURES = 5
DEVICE_SECONDS = 90 * 24 * 60 * 60
DEVICE_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class SignedIn:
    member: StaffMember
    device: str  # the token this browser keeps (the one it had, or a new one)


class Devices:
    """Browsers an account has signed in from: a random token each, kept as its hash."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @staticmethod
    def _key(token: str) -> str:
        return keys.sign_in_device(hashlib.sha256(token.encode("ascii")).hexdigest())

    def known(self, token: str, name: str) -> bool:
        if not token or not DEVICE_TOKEN.fullmatch(token):
            return False
        return self.client.hget(self._key(token), "account") == name

    def issue(self, name: str) -> str:
        token = secrets.token_urlsafe(32)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(self._key(token), mapping={"account": name, "failures": 0})
            pipe.expire(self._key(token), DEVICE_SECONDS)
            pipe.execute()
        return token

    def fail(self, token: str) -> int:
        failures = int(self.client.hincrby(self._key(token), "failures", 1))
        if failures >= DEVICE_FAILURES:
            self.client.delete(self._key(token))
        return failures


class WebSignIn:
    """Signing in on the dashboard; ``staff.audit`` records every sign-in, failure and lock."""

    def __init__(self, staff: StaffStore, *, clock: Clock | None = None) -> None:
        client = staff.client
        extra = {"clock": clock} if clock else {}
        self.staff = staff
        self.pairs = Lockout(client, PAIR_FAILURES)
        self.addresses = Lockout(client, ADDRESS_FAILURES)
        self.accounts = Slowdown(client, free=ACCOUNT_FREE_FAILURES, base=ACCOUNT_WAIT_BASE,
                                 cap=ACCOUNT_WAIT_CAP, **extra)
        self.tally = Tally(client, **extra)
        self.devices = Devices(client)

    @store_guard
    def attempt(self, name: str, password: str, client_address: str,
                device: str = "") -> SignedIn:
        """The account and this browser's device token, or ``SignInRefused`` (``LockedOut``
        when locked or slowed). Limits are checked before the password, so a refused attempt
        costs no hashing; an unknown name costs the same verification as a known one and gets
        the same answer, so neither the words nor the timing say which names exist."""
        # Typed on a sign-in form, "Alice " means alice; account names are lowercase.
        name = name.strip().lower() if isinstance(name, str) else ""
        valid = bool(NAME.match(name))
        record = self.staff.record(name) if valid else {}
        # An unknown "name" may be a password typed in the wrong box: it is never recorded.
        actor = name if record else UNKNOWN_ACTOR
        where = {"channel": "web", "address": client_address}
        here = lockout.address(client_address)
        pair = lockout.pair(name, client_address) if valid else None
        account = lockout.account(name) if valid else None
        locked = self.pairs.locked_subject(here, *([pair] if pair else []))
        if locked:  # an address's tally names no account: it tries many
            self.tally.note(locked[0], UNKNOWN_ACTOR if locked[0] == here else actor, **where)
            raise LockedOut(locked[1])
        known = bool(record) and self.devices.known(device, name)
        wait = self.accounts.wait(account) if account and not known else 0
        if wait:
            self.tally.note(account, actor, **where)
            raise LockedOut(wait)
        ok = (isinstance(password, str) and len(password) <= MAX_PASSWORD
              and self.staff.verify(record.get("password"), password))
        if not (record and ok):
            self._refuse(actor, name, here, pair, account, device if known else "", where)
        member = self.staff.get(name)
        if member.disabled:
            self.staff.audit_entry("login_failed", actor, reason=SignInRefusal.DISABLED.value,
                                   **where)
            raise SignInRefused(SignInRefusal.DISABLED)
        self.pairs.succeed(pair)
        if not known:  # a stranger who knew the password: the account's count starts again
            self.accounts.succeed(account)
        self.staff.after_sign_in(name, record, password=password)
        self.staff.audit_entry("login", name, **where)
        return SignedIn(member, device if known else self.devices.issue(name))

    def _refuse(self, actor: str, name: str, here: str, pair: str | None, account: str | None,
                device: str, where: dict[str, str]) -> NoReturn:
        """Count the failure (before auditing, so an audit outage cannot hide guesses), then
        audit it and any lock it caused, and raise."""
        newly_locked = (self.pairs.fail(pair) if pair else []) + self.addresses.fail(here)
        if device:
            failures, pause = self.devices.fail(device), 0
        elif account:
            failures, pause = self.accounts.fail(account)
        else:
            failures, pause = self.addresses.failures(here), 0
        self.staff.audit_entry("login_failed", actor, reason=SignInRefusal.BAD_CREDENTIALS.value,
                               **where, failures=failures,
                               **({"pause_seconds": pause} if pause else {}))
        for subject in newly_locked:
            scope, _ = scope_of(subject)
            shown = {"scope": scope}
            if scope == "pair" and actor != UNKNOWN_ACTOR:
                shown["account"] = name
            self.staff.audit_entry("lockout", actor, **shown, seconds=self.pairs.lock_seconds,
                              **where)
        if newly_locked:  # the guess that locked the door says so
            raise LockedOut(self.pairs.lock_seconds)
        raise SignInRefused(SignInRefusal.BAD_CREDENTIALS)

    def unlock(self, name: str, *, actor: str | None = None) -> None:
        unlock(self.staff, name, actor=actor)


@store_guard
def unlock(staff: StaffStore, name: str, *, actor: str | None = None) -> None:
    """Lift every limit on an account (its locks from any address, its slow-down, and its
    staff number's on the phone lines): the owner's way back in. Audited first: no audit
    entry, nothing lifted."""
    member = staff.get(check_name(name))
    if member is None:
        raise UnknownStaff(name)
    staff.audit_entry("staff_changed", actor, name=name, change="unlocked")
    subjects = [lockout.account(name)]
    if member.staff_number:
        subjects.append(lockout.staff_number(member.staff_number))
    found = set()
    for pattern in (keys.lockout_failures(f"pair:{name}@*"), keys.lockout_locked(f"pair:{name}@*"),
                    keys.lockout_wait(f"pair:{name}@*")):
        found.update(staff.client.scan_iter(match=pattern))
    for subject in subjects:
        found.update((keys.lockout_failures(subject), keys.lockout_locked(subject),
                      keys.lockout_wait(subject)))
    staff.client.delete(*found)
    log.info("sign-in limits lifted", extra={"event": "unlocked"})


def audit_tallies(tally: Tally, audit) -> int:
    """Audit each closed window of refused attempts as one entry with its count; a window
    whose entry cannot be written is kept for the next pass. Returns how many were audited."""
    written = 0
    for tallied in tally.due():
        scope, value = scope_of(tallied.subject)
        shown: dict[str, object] = {"scope": scope}
        if scope == "staff-number":
            shown["staff_number"] = value
        elif scope in ("account", "pair") and tallied.actor != UNKNOWN_ACTOR:
            shown["account"] = tallied.actor
        audit(AuditKind.LOGIN_THROTTLED, tallied.actor, **shown, **tallied.where,
              reason=SignInRefusal.LOCKED_OUT.value, count=tallied.count,
              first_at=tallied.first_at, last_at=tallied.last_at)
        tally.done(tallied)
        written += 1
    return written
