"""Staff accounts: who may sign in to manage the service, and who may listen in.

Promise 4 lets only an authorised manager listen, signed in on the web (name and password) or on
the manager phone line (a PIN), with lockout. This module is that authority: accounts live in
Redis (one hash each, see ``callflow.keys``), secrets only as argon2id hashes, and every change,
sign-in, refusal and lockout goes to the audit callable. Nothing here imports Flask; the web and
phone adapters call ``authenticate`` / ``authenticate_pin`` and act on the ``Refusal``.

Neither a password, a PIN nor a phone number is ever passed to the audit callable or a log line.
"""

from __future__ import annotations

import functools
import getpass
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NoReturn

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from callflow import keys, lockout
from callflow.errors import (
    ConfigError,
    DuplicateStaff,
    LockedOut,
    Refusal,
    SignInRefused,
    StaffError,
    UnknownStaff,
)
from callflow.fields import E164
from callflow.lockout import Lockout
from callflow.logs import PHONE_LIKE
from callflow.store import store_guard

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# What a manager's registered phone is called in the audit log and on the dashboard ("helen's
# mobile"): a few plain words, never the number.
LABEL = re.compile(r"^\w[\w .,'’()&/-]{0,39}$")
PIN = re.compile(r"^[0-9]{4,8}$")
MIN_PASSWORD = 12
# Hashing is deliberately slow; a megabyte "password" would make it a denial of service.
MAX_PASSWORD = 1024
UNKNOWN_ACTOR = "unknown"
PIN_REFUSED = "that PIN was not accepted"

# audit(kind, actor, **data): records one audit entry; raises if it could not.
Audit = Callable[..., object]


class Role(StrEnum):
    """What an account may do: only a manager may listen; an admin manages flows and staff.

    A ``str`` enum, so a role is stored, compared and printed as its plain name.
    """

    MANAGER = "manager"
    ADMIN = "admin"


@dataclass(frozen=True)
class StaffMember:
    """An account as the rest of the service sees it: flags, never hashes."""

    name: str
    role: Role
    disabled: bool
    has_pin: bool
    # The manager's own phone, rung for a listen-in leg. Kept out of repr so it stays out of logs.
    phone: str | None = field(repr=False)
    phone_monitoring: bool
    created_at: datetime
    # What the registered phone is called ("helen's mobile"): the audit log names the device
    # rung by this, never by its number.
    phone_label: str = ""

    @property
    def may_listen(self) -> bool:
        """The first test of the monitoring gate: an enabled account with the manager role."""
        return self.role is Role.MANAGER and not self.disabled


def check_name(name: str) -> str:
    """Names appear in Redis keys, URLs and the audit log, so they are kept plain."""
    if not isinstance(name, str) or not NAME.match(name):
        raise StaffError(f"'{name}' is not a usable staff name: use lowercase letters, digits, "
                         "'.', '-' and '_', starting with a letter or digit, at most 64 long")
    return name


def check_password(password: str) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise StaffError(f"a password needs at least {MIN_PASSWORD} characters; "
                         "a few unrelated words make a strong one")
    if len(password) > MAX_PASSWORD:
        raise StaffError(f"a password can be at most {MAX_PASSWORD} characters")
    if not password.strip():
        raise StaffError("a password cannot be only spaces")
    return password


def check_pin(pin: str) -> str:
    """4-8 digits, and not one a guesser tries first (one digit repeated, or a straight run)."""
    if not isinstance(pin, str) or not PIN.match(pin):
        raise StaffError("a PIN is 4 to 8 digits (0-9), typed on the phone keypad")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({0}, {1}, {9}):
        raise StaffError("that PIN is too easy to guess (one digit repeated, or a straight run "
                         "like 1234); choose one without a pattern")
    return pin


def check_phone(number: str) -> str:
    if not isinstance(number, str) or not E164.match(number):
        raise StaffError(f"'{number}' is not a phone number in international form; "
                         "write it as +447700900123")
    return number


def check_label(label: str) -> str:
    """A registered phone's name: a few plain words, and never anything like a number."""
    label = label.strip() if isinstance(label, str) else ""
    if not LABEL.match(label) or PHONE_LIKE.search(label):
        raise StaffError("a phone's label is a few words (at most 40 characters) such as "
                         "\"helen's mobile\", never a number")
    return label


def default_label(name: str) -> str:
    return f"{name}'s phone"


def _flag(value: str | None) -> bool:
    return value == "1"


def default_actor() -> str:
    """Who changed an account from the command line: the operating-system user, if known."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


class StaffStore:
    """Staff accounts in Redis (a client made with ``decode_responses=True``).

    ``audit(kind, actor, **data)`` records an audit entry ("staff_changed", "login",
    "login_failed", "lockout") and raises if it cannot; that exception propagates, so a sign-in
    that could not be audited is not granted. ``hasher`` is injectable so tests can use cheap
    argon2 parameters; production uses argon2-cffi's defaults (argon2id, RFC 9106 low-memory).
    """

    def __init__(self, client: redis.Redis, audit: Audit | None = None, *,
                 lockout: Lockout | None = None, hasher: PasswordHasher | None = None) -> None:
        pool_kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if not pool_kwargs.get("decode_responses", False):
            raise ConfigError("StaffStore needs a Redis client made with decode_responses=True")
        self.client = client
        self.audit = audit
        self.lockout = lockout or Lockout(client)
        self.hasher = hasher or PasswordHasher()

    # -- reading -------------------------------------------------------------------------------

    @store_guard
    def get(self, name: str) -> StaffMember | None:
        """The account called ``name``, or None (also for a name that could never exist)."""
        if not isinstance(name, str) or not NAME.match(name):
            return None
        record = self.client.hgetall(keys.staff(name))
        return self._member(name, record) if record else None

    @store_guard
    def list(self) -> list[StaffMember]:
        """Every account, by name."""
        names = sorted(self.client.smembers(keys.staff_names()))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.staff(name))
        return [self._member(n, r) for n, r in zip(names, pipe.execute(), strict=True) if r]

    # -- changing ------------------------------------------------------------------------------

    def add(self, name: str, password: str, role: Role | str = Role.MANAGER, *,
            actor: str | None = None) -> StaffMember:
        """Create an account; refuses a taken name rather than overwrite someone's account."""
        check_name(name)
        role = self._role(role)
        password_hash = self.hasher.hash(check_password(password))
        key = keys.staff(name)
        record = {"role": role.value, "password": password_hash, "disabled": "0",
                  "phone_monitoring": "0",
                  "created_at": datetime.now(UTC).isoformat(timespec="seconds")}
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    raise DuplicateStaff(name)
                pipe.multi()
                pipe.hset(key, mapping=record)
                pipe.sadd(keys.staff_names(), name)
                pipe.execute()
            except redis.WatchError:
                raise DuplicateStaff(name) from None
        log.info("staff account added", extra={"event": "staff_changed", "kind": role.value})
        self._audit("staff_changed", actor, name=name, change="added", role=role.value)
        return self._member(name, record)

    def disable(self, name: str, *, actor: str | None = None) -> StaffMember:
        """Refuse every future sign-in of the account; it stays listed and audited."""
        self._update(name, {"disabled": "1"})
        self._audit("staff_changed", actor, name=name, change="disabled")
        return self._require(name)

    def set_password(self, name: str, password: str, *, actor: str | None = None) -> StaffMember:
        self._require(name)
        self._update(name, {"password": self.hasher.hash(check_password(password))})
        self._audit("staff_changed", actor, name=name, change="password_set")
        return self._require(name)

    def set_pin(self, name: str, pin: str, *, actor: str | None = None) -> StaffMember:
        """Give a manager a PIN for the manager phone line, which enables phone monitoring.

        PINs are unique among managers: the phone line knows a manager only by PIN, so two
        managers sharing one could not be told apart in the audit log.
        """
        member = self._require(name)
        if member.role is not Role.MANAGER:
            raise StaffError(f"'{name}' is an {member.role.value}; only managers listen in, "
                             "so only managers have a PIN")
        check_pin(pin)
        if any(other != name for other in self._pin_matches(pin)):
            raise StaffError("another manager has that PIN; choose another")
        self._update(name, {"pin": self.hasher.hash(pin), "phone_monitoring": "1"})
        self._audit("staff_changed", actor, name=name, change="pin_set")
        return self._require(name)

    def set_phone(self, name: str, number: str, *, label: str | None = None,
                  actor: str | None = None) -> StaffMember:
        """Register the manager's own phone, the only one a listen-in leg ever rings (never a
        number given with a request). ``label`` names it in the audit log and on the dashboard;
        the number itself is never audited."""
        member = self._require(name)
        if member.role is not Role.MANAGER:
            raise StaffError(f"'{name}' is an {member.role.value}; only managers listen in, "
                             "so only managers have a phone")
        check_phone(number)
        label = check_label(label) if label is not None else (member.phone_label
                                                               or default_label(name))
        self._update(name, {"phone": number, "phone_label": label})
        self._audit("staff_changed", actor, name=name, change="phone_set", label=label)
        return self._require(name)

    # -- signing in ----------------------------------------------------------------------------

    @store_guard
    def authenticate(self, name: str, password: str, client_address: str) -> StaffMember:
        """Web sign-in: the account, or ``SignInRefused`` (``LockedOut`` when locked).

        Locks are checked before the password, so a locked account's password is never tested.
        An unknown name costs the same hash verification as a known one and gets the same
        message, so neither the words nor the timing say which names exist.
        """
        # Typed on a sign-in form, "Alice " means alice; account names are lowercase.
        name = name.strip().lower() if isinstance(name, str) else ""
        valid = bool(NAME.match(name))
        subjects = ([lockout.account(name)] if valid else []) + [lockout.address(client_address)]
        record = self.client.hgetall(keys.staff(name)) if valid else {}
        # An unknown "name" may be a password typed in the wrong box: it is never recorded.
        actor = name if record else UNKNOWN_ACTOR
        where = {"channel": "web", "address": client_address}
        try:
            self.lockout.check(*subjects)
        except LockedOut:
            self._audit("login_failed", actor, reason=Refusal.LOCKED_OUT.value, **where)
            raise
        stored = record.get("password") or self._dummy_hash
        ok = (isinstance(password, str) and len(password) <= MAX_PASSWORD
              and self._verify(stored, password))
        if not (record and ok):
            self._refuse(subjects, actor, Refusal.BAD_CREDENTIALS, **where)
        member = self._member(name, record)
        if member.disabled:
            self._audit("login_failed", actor, reason=Refusal.DISABLED.value, **where)
            raise SignInRefused(Refusal.DISABLED)
        self.lockout.succeed(lockout.account(name))
        if self.hasher.check_needs_rehash(stored):
            self._update(name, {"password": self.hasher.hash(password)})
        self._audit("login", name, **where)
        return member

    @store_guard
    def authenticate_pin(self, pin: str, call_sid: str) -> StaffMember:
        """Phone sign-in on the manager line: the manager whose PIN this is, or ``SignInRefused``.

        ``call_sid`` is the CallSid of the manager's call, never its From: the caller's number is
        dropped at the edge and is never a lockout subject. Failures count against the whole
        phone line as well as the call, so redialling does not buy more guesses.

        PINs are salted hashes, so there is no index from PIN to manager: each attempt verifies
        the PIN against every manager with phone monitoring on. There are a handful of managers,
        so that is a handful of argon2 verifications, well inside Twilio's webhook time limit.
        """
        subjects = [lockout.PHONE_LINE, lockout.phone_call(call_sid)]
        where = {"channel": "phone", "call_sid": call_sid}
        try:
            self.lockout.check(*subjects)
        except LockedOut:
            self._audit("login_failed", UNKNOWN_ACTOR, reason=Refusal.LOCKED_OUT.value, **where)
            raise
        matches = self._pin_matches(pin) if isinstance(pin, str) and PIN.match(pin) else []
        if len(matches) > 1:
            log.error("two managers share a PIN; neither can sign in by phone until one is reset",
                      extra={"event": "login_failed"})
        if len(matches) != 1:
            self._refuse(subjects, UNKNOWN_ACTOR, Refusal.BAD_CREDENTIALS, PIN_REFUSED, **where)
        name = matches[0]
        member = self._require(name)
        if member.disabled:
            self._audit("login_failed", name, reason=Refusal.DISABLED.value, **where)
            raise SignInRefused(Refusal.DISABLED)
        try:
            # A manager locked out on the web (someone guessing their password) stays locked out.
            self.lockout.check(lockout.account(name))
        except LockedOut:
            self._audit("login_failed", name, reason=Refusal.LOCKED_OUT.value, **where)
            raise
        self._audit("login", name, **where)
        return member

    # -- internals -----------------------------------------------------------------------------

    @functools.cached_property
    def _dummy_hash(self) -> str:
        """A hash of nothing anyone knows, verified against for unknown names (equal timing)."""
        return self.hasher.hash(secrets.token_urlsafe(32))

    def _verify(self, stored: str, secret: str) -> bool:
        try:
            return self.hasher.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return False

    def _pin_matches(self, pin: str) -> list[str]:
        """Names of the managers with phone monitoring on whose PIN is ``pin``."""
        names = sorted(self.client.smembers(keys.staff_names()))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hmget(keys.staff(name), "role", "phone_monitoring", "pin")
        matches = []
        for name, (role, monitoring, pin_hash) in zip(names, pipe.execute(), strict=True):
            # Every candidate is verified (no early exit), so timing says nothing about order.
            candidate = role == Role.MANAGER.value and _flag(monitoring) and bool(pin_hash)
            if candidate and self._verify(pin_hash, pin):
                matches.append(name)
        return matches

    def _refuse(self, subjects: list[str], actor: str, reason: Refusal, message: str = "",
                **where: str) -> NoReturn:
        """Count the failure (before auditing, so an audit outage cannot hide guesses), then
        audit it and any lockout it caused, and raise."""
        newly_locked = self.lockout.fail(*subjects)
        self._audit("login_failed", actor, reason=reason.value, **where)
        for subject in newly_locked:
            # Scope and value apart: "address:198.51.100.5" as one string reads like digits
            # of a phone number to the audit log's caller-data check.
            scope, _, value = subject.partition(":")
            shown = {"scope": scope}
            if scope == "account" and actor != UNKNOWN_ACTOR:
                shown["account"] = value
            self._audit("lockout", actor, **shown, seconds=self.lockout.lock_seconds, **where)
        if newly_locked:  # the guess that locked the door says so
            raise LockedOut(self.lockout.lock_seconds)
        raise SignInRefused(reason, message)

    def _audit(self, kind: str, actor: str | None, **data: object) -> None:
        if self.audit is not None:
            self.audit(kind, actor or default_actor(), **data)

    def _require(self, name: str) -> StaffMember:
        member = self.get(check_name(name))
        if member is None:
            raise UnknownStaff(name)
        return member

    def _update(self, name: str, values: dict[str, str]) -> None:
        """Change fields of an existing account, never creating one by accident."""
        key = keys.staff(check_name(name))
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)
                if not pipe.exists(key):
                    raise UnknownStaff(name)
                pipe.multi()
                pipe.hset(key, mapping=values)
                pipe.execute()
            except redis.WatchError:
                # Changed under us (another field was written): apply ours on top.
                self.client.hset(key, mapping=values)
        log.info("staff account changed", extra={"event": "staff_changed"})

    @staticmethod
    def _role(role: Role | str) -> Role:
        try:
            return Role(role)
        except ValueError:
            raise StaffError(f"'{role}' is not a role; use one of: "
                             f"{', '.join(r.value for r in Role)}") from None

    @staticmethod
    def _member(name: str, record: dict[str, str]) -> StaffMember:
        return StaffMember(
            name=name,
            role=Role(record["role"]),
            disabled=_flag(record.get("disabled")),
            has_pin=bool(record.get("pin")),
            phone=record.get("phone") or None,
            phone_monitoring=_flag(record.get("phone_monitoring")),
            created_at=datetime.fromisoformat(record["created_at"]),
            phone_label=(record.get("phone_label") or default_label(name)
                         if record.get("phone") else ""),
        )
