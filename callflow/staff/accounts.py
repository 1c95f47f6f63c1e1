"""Staff accounts: who may sign in to manage the service, and who may listen in.

Promise 4 lets only an authorised manager listen, signed in on the web (name and password) or on the
manager phone line (staff number and PIN). This module keeps the accounts: in Redis (one hash each,
see ``callflow.platform.keys``), secrets only as argon2id hashes. Every change is audited, and a
change whose audit entry cannot be written is undone: no audit, no change. Signing in is
``callflow.staff.sign_in`` (the web) and ``callflow.staff.pin_sign_in`` (phone lines); nothing here
imports Flask.

Every account has a staff number (given out in order, shown by ``manager list``, settable),
typed on a phone line before the PIN so that a PIN is only ever checked against one account.

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

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from callflow.language.fields import E164
from callflow.platform import keys
from callflow.platform.errors import ConfigError, DuplicateStaff, StaffError, UnknownStaff
from callflow.platform.logs import PHONE_LIKE
from callflow.platform.store import store_guard

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# What a manager's registered phone is called in the audit log and on the dashboard ("helen's
# mobile"): a few plain words, never the number.
LABEL = re.compile(r"^\w[\w .,'’()&/-]{0,39}$")
MIN_PIN, MAX_PIN = 6, 12
PIN = re.compile(rf"^[0-9]{{{MIN_PIN},{MAX_PIN}}}$")
# Typed on a keypad before the PIN; short enough never to look like a phone number.
STAFF_NUMBER = re.compile(r"^[0-9]{4,6}$")
FIRST_STAFF_NUMBER = 1001
# A PIN set since PINs needed six digits; one without this mark may be shorter (``doctor``).
PIN_RULES = "6"
MIN_PASSWORD = 12
# Hashing is deliberately slow; a megabyte "password" would make it a denial of service.
MAX_PASSWORD = 1024
UNKNOWN_ACTOR = "unknown"

# audit(kind, actor, **data): records one audit entry; raises if it could not.
Audit = Callable[..., object]


class Role(StrEnum):
    """What an account may do: only a manager may listen; an admin manages flows and staff; a
    worker (a helpline worker, the account named as they are in the team file) only signs on
    and off for their shift, on the web or by PIN on the staff line, and sees nothing else.

    A ``str`` enum, so a role is stored, compared and printed as its plain name.
    """

    MANAGER = "manager"
    ADMIN = "admin"
    WORKER = "worker"


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
    staff_number: str = ""
    # The PIN was set (or proved on the line) under the six-digit rule.
    pin_current: bool = False

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
    """6-12 digits, and not one a guesser tries first (one digit repeated, or a straight run)."""
    if not isinstance(pin, str) or not PIN.match(pin):
        raise StaffError(f"a PIN is {MIN_PIN} to {MAX_PIN} digits (0-9), typed on the phone "
                         "keypad")
    steps = {(int(b) - int(a)) % 10 for a, b in zip(pin, pin[1:], strict=False)}
    if steps in ({0}, {1}, {9}) or len(set(pin)) <= 2:
        raise StaffError("that PIN is too easy to guess (one or two digits repeated, or a "
                         "straight run like 123456); choose one without a pattern")
    return pin


def check_staff_number(number: str) -> str:
    if not isinstance(number, str) or not STAFF_NUMBER.match(number):
        raise StaffError(f"'{number}' is not a staff number: use 4 to 6 digits")
    return number


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

    ``audit(kind, actor, **data)`` records an audit entry and raises if it cannot; a change is
    then undone and the exception propagates. ``hasher`` is injectable so tests can use cheap
    argon2 parameters; production uses argon2-cffi's defaults (argon2id, RFC 9106 low-memory).
    """

    def __init__(self, client: redis.Redis, audit: Audit | None = None, *,
                 hasher: PasswordHasher | None = None) -> None:
        pool_kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if not pool_kwargs.get("decode_responses", False):
            raise ConfigError("StaffStore needs a Redis client made with decode_responses=True")
        self.client = client
        self.audit = audit
        self.hasher = hasher or PasswordHasher()

    # -- reading -------------------------------------------------------------------------------

    @store_guard
    def get(self, name: str) -> StaffMember | None:
        """The account called ``name``, or None (also for a name that could never exist)."""
        record = self.record(name)
        return self.member_from(name, record) if record else None

    @store_guard
    def record(self, name: str) -> dict[str, str]:
        """The account's stored fields (hashes included: for signing in only), or {}."""
        if not isinstance(name, str) or not NAME.match(name):
            return {}
        return self.client.hgetall(keys.staff(name))

    @store_guard
    def list(self) -> list[StaffMember]:
        """Every account, by name."""
        names = sorted(self.client.smembers(keys.staff_names()))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.staff(name))
        return [self.member_from(n, r) for n, r in zip(names, pipe.execute(), strict=True) if r]

    @store_guard
    def by_staff_number(self, number: str) -> str | None:
        """The name of the account with this staff number, or None."""
        if not isinstance(number, str) or not STAFF_NUMBER.match(number):
            return None
        return self.client.hget(keys.staff_numbers(), number)

    # -- changing ------------------------------------------------------------------------------

    @store_guard
    def add(self, name: str, password: str, role: Role | str = Role.MANAGER, *,
            actor: str | None = None) -> StaffMember:
        """Create an account, with the next free staff number; refuses a taken name rather
        than overwrite someone's account."""
        check_name(name)
        role = self._role(role)
        password_hash = self.hasher.hash(check_password(password))
        key = keys.staff(name)
        number = self._claim_number(name)
        record = {"role": role.value, "password": password_hash, "disabled": "0",
                  "phone_monitoring": "0", "staff_number": number,
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
            except (redis.WatchError, DuplicateStaff):
                self.client.hdel(keys.staff_numbers(), number)
                raise DuplicateStaff(name) from None
        log.info("staff account added", extra={"event": "staff_changed", "kind": role.value})
        try:
            self.audit_entry("staff_changed", actor, name=name, change="added", role=role.value,
                        staff_number=number)
        except Exception:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.srem(keys.staff_names(), name)
                pipe.hdel(keys.staff_numbers(), number)
                pipe.execute()
            raise
        return self.member_from(name, record)

    def disable(self, name: str, *, actor: str | None = None) -> StaffMember:
        """Refuse every future sign-in of the account; it stays listed and audited."""
        return self._change(name, {"disabled": "1"}, actor=actor, change="disabled")

    def enable(self, name: str, *, actor: str | None = None) -> StaffMember:
        """Let a disabled account sign in again."""
        return self._change(name, {"disabled": "0"}, actor=actor, change="enabled")

    def set_password(self, name: str, password: str, *, actor: str | None = None) -> StaffMember:
        self._require(name)
        return self._change(name, {"password": self.hasher.hash(check_password(password))},
                            actor=actor, change="password_set")

    def set_pin(self, name: str, pin: str, *, actor: str | None = None) -> StaffMember:
        """Give a manager a PIN for the manager phone line, which enables phone monitoring; or
        a worker one for the staff line, where they sign on and off.

        Whether another account has the same PIN is neither checked nor said: a PIN is only
        ever tried against the account whose staff number was typed before it.
        """
        member = self._require(name)
        if member.role is Role.ADMIN:
            raise StaffError(f"'{name}' is an admin; only managers (the manager line) and "
                             "workers (the staff line) sign in by phone, so only they have "
                             "a PIN")
        check_pin(pin)
        values = {"pin": self.hasher.hash(pin), "pin_rules": PIN_RULES}
        if member.role is Role.MANAGER:
            values["phone_monitoring"] = "1"
        return self._change(name, values, actor=actor, change="pin_set")

    def remove_pin(self, name: str, *, actor: str | None = None) -> StaffMember:
        """Take away the account's PIN (and with it phone monitoring)."""
        self._require(name)
        return self._change(name, {"phone_monitoring": "0"}, remove=("pin", "pin_rules"),
                            actor=actor, change="pin_removed")

    def set_phone_monitoring(self, name: str, on: bool, *,
                             actor: str | None = None) -> StaffMember:
        """Let the manager listen by phone (needs a PIN), or not."""
        member = self._manager_only(name, "phone monitoring")
        if on and not member.has_pin:
            raise StaffError(f"'{name}' has no PIN; set one with `callflow manager set-pin "
                             f"{name}`, which turns phone monitoring on")
        return self._change(name, {"phone_monitoring": "1" if on else "0"}, actor=actor,
                            change="phone_monitoring_on" if on else "phone_monitoring_off")

    def set_phone(self, name: str, number: str, *, label: str | None = None,
                  actor: str | None = None) -> StaffMember:
        """Register the manager's own phone, the only one a listen-in leg ever rings (never a
        number given with a request). ``label`` names it in the audit log and on the dashboard;
        the number itself is never audited."""
        member = self._manager_only(name, "a phone")
        check_phone(number)
        label = check_label(label) if label is not None else (member.phone_label
                                                               or default_label(name))
        return self._change(name, {"phone": number, "phone_label": label}, actor=actor,
                            change="phone_set", label=label)

    @store_guard
    def set_staff_number(self, name: str, number: str | None = None, *,
                         actor: str | None = None) -> StaffMember:
        """Give the account this staff number (or the next free one when none is given)."""
        member = self._require(name)
        if number is None:
            number = self._claim_number(name)
        else:
            check_staff_number(number)
            if not self.client.hsetnx(keys.staff_numbers(), number, name) and \
                    self.client.hget(keys.staff_numbers(), number) != name:
                raise StaffError(f"staff number {number} belongs to another account; choose "
                                 "another, or leave it out for the next free one")
        old = member.staff_number
        try:
            changed = self._change(name, {"staff_number": number}, actor=actor,
                                   change="staff_number_set", staff_number=number)
        except Exception:
            if number != old:
                self.client.hdel(keys.staff_numbers(), number)
            raise
        if old and old != number:
            self.client.hdel(keys.staff_numbers(), old)
        return changed

    # -- what signing in needs -------------------------------------------------------------------

    @functools.cached_property
    def dummy_hash(self) -> str:
        """A hash of nothing anyone knows, verified against for unknown names (equal timing)."""
        return self.hasher.hash(secrets.token_urlsafe(32))

    def verify(self, stored: str | None, secret: str) -> bool:
        """Whether ``secret`` matches the hash (an absent hash costs the same, and fails)."""
        try:
            return self.hasher.verify(stored or self.dummy_hash, secret) and bool(stored)
        except (VerificationError, InvalidHashError):
            return False

    @store_guard
    def after_sign_in(self, name: str, record: dict[str, str], *, password: str = "",
                      pin_proved: bool = False) -> None:
        """Upgrade what a sign-in proved: a password hash made with weaker parameters, and a
        PIN from before the six-digit rule that turns out to have six digits."""
        values = {}
        if password and self.hasher.check_needs_rehash(record.get("password", "")):
            values["password"] = self.hasher.hash(password)
        if pin_proved and record.get("pin_rules") != PIN_RULES:
            values["pin_rules"] = PIN_RULES
        if values:
            self.client.hset(keys.staff(name), mapping=values)

    # -- internals -----------------------------------------------------------------------------

    def audit_entry(self, kind: str, actor: str | None, **data: object) -> None:
        if self.audit is not None:
            self.audit(kind, actor or default_actor(), **data)

    def _require(self, name: str) -> StaffMember:
        member = self.get(check_name(name))
        if member is None:
            raise UnknownStaff(name)
        return member

    def _manager_only(self, name: str, what: str) -> StaffMember:
        member = self._require(name)
        if member.role is not Role.MANAGER:
            raise StaffError(f"'{name}' is an {member.role.value}; only managers listen in, "
                             f"so only managers have {what}")
        return member

    @store_guard
    def _change(self, name: str, values: dict[str, str], *, remove: tuple[str, ...] = (),
                actor: str | None, change: str, **shown: object) -> StaffMember:
        """Change fields of an existing account, audit it, and undo it if the audit fails.

        Never creates an account by accident. The account is written back exactly as it was
        when the audit entry cannot be written (its exception then propagates)."""
        key = keys.staff(check_name(name))
        with self.client.pipeline() as pipe:
            try:
                pipe.watch(key)
                before = pipe.hgetall(key)
                if not before:
                    raise UnknownStaff(name)
                pipe.multi()
                pipe.hset(key, mapping=values)
                if remove:
                    pipe.hdel(key, *remove)
                pipe.execute()
            except redis.WatchError:
                raise StaffError(f"'{name}' was changed by someone else at the same time; "
                                 "try again") from None
        log.info("staff account changed", extra={"event": "staff_changed", "kind": change})
        try:
            self.audit_entry("staff_changed", actor, name=name, change=change, **shown)
        except Exception:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.hset(key, mapping=before)
                pipe.execute()
            log.error("a staff change was undone: it could not be audited",
                      extra={"event": "staff_changed", "kind": change})
            raise
        return self._require(name)

    def _claim_number(self, name: str) -> str:
        """The next staff number nobody has, now the account's in the index."""
        self.client.set(keys.staff_number_next(), FIRST_STAFF_NUMBER - 1, nx=True)
        while True:
            number = str(self.client.incr(keys.staff_number_next()))
            if len(number) > 6:
                raise StaffError("every staff number is taken")
            if self.client.hsetnx(keys.staff_numbers(), number, name):
                return number

    @staticmethod
    def _role(role: Role | str) -> Role:
        try:
            return Role(role)
        except ValueError:
            raise StaffError(f"'{role}' is not a role; use one of: "
                             f"{', '.join(r.value for r in Role)}") from None

    @staticmethod
    def member_from(name: str, record: dict[str, str]) -> StaffMember:
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
            staff_number=record.get("staff_number", ""),
            pin_current=bool(record.get("pin")) and record.get("pin_rules") == PIN_RULES,
        )
