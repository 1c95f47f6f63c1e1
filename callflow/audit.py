"""The tamper-evident audit log (promise 5): append-only, hash-chained, kept in Redis.

Every monitoring request and its outcome, session start and end, sign-in, staff change, flow
reload and confidentiality exception is one entry. Each entry holds the SHA-256 hash of the one
before it, so editing, removing or reordering any entry breaks the chain, and
``callflow audit verify`` names the first entry where it breaks.

Why it is stored the way it is:

- **A list of canonical JSON entries, oldest first**, not a Stream. The order that matters is
  the chain's own (``seq`` and ``prev``), not the server clock's stream ids; a list keeps
  exactly the order of appends, reads by position and drops the oldest prefix (a purge) with
  one ``LTRIM``. A Stream would add ids and consumer machinery the log never uses.
- **A head record** (seq and hash of the newest entry). A chain alone cannot show that its
  newest entries were cut off; the head can. Both the head and the purge **checkpoint** are
  signed with HMAC-SHA256 under ``SECRET_KEY``, so someone who can write to Redis but does not
  hold the key cannot rebuild the chain and a matching head, nor invent a cut.
- **Appends are atomic across processes by compare-and-set.** Python reads the head and hashes
  the next entry (Redis's Lua has no SHA-256); a Lua script then pushes the entry and moves the
  head only if the head is still the one that was read, in one step on the server. If another
  process appended first, the append is rebuilt on the new head and tried again. Two appends
  can therefore never both chain onto the same entry.
- **Durable before it returns.** ``append`` returns only after Redis has acknowledged the
  script; any Redis error becomes ``AuditUnavailable`` so callers fail closed (no audit write,
  no listen). Surviving a Redis restart is Redis's persistence (``appendonly yes``), which the
  deployment must turn on.

Nothing about callers is ever stored: ``append`` refuses caller-identifying Twilio fields and
anything that looks like a phone number, and says so without repeating the value.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis

from callflow import keys
from callflow.config import Settings
from callflow.errors import AuditChainBroken, AuditUnavailable, ConfigError
from callflow.logs import PHONE_LIKE

log = logging.getLogger(__name__)

# The ``prev`` of the very first entry: no entry hashes to this.
GENESIS = "0" * 64
# Compare-and-set attempts before an append gives up under contention (each retry is cheap).
MAX_ATTEMPTS = 100
DEFAULT_RETENTION_DAYS = 183


class AuditKind(StrEnum):
    """What an entry records. A ``StrEnum`` so entries hold plain, readable names."""

    MONITOR_REQUESTED = "monitor_requested"
    MONITOR_GRANTED = "monitor_granted"
    MONITOR_REFUSED = "monitor_refused"
    MONITOR_STARTED = "monitor_started"
    MONITOR_ENDED = "monitor_ended"
    # Twilio never said whether the manager's leg was made (its answer was lost): resolved
    # from Twilio's own state afterwards, never counted as a refusal.
    MONITOR_UNKNOWN = "monitor_outcome_unknown"
    # Something that must not happen did, and was acted on (a stranger in a call's room).
    ALARM = "alarm"
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOCKOUT = "lockout"
    # Sign-in attempts refused by a lock or a wait before any secret was checked: one entry
    # per subject and window, with their count.
    LOGIN_THROTTLED = "login_throttled"
    STAFF_CHANGED = "staff_changed"
    FLOW_RELOADED = "flow_reloaded"
    FLOW_RELOAD_REFUSED = "flow_reload_refused"
    EXCEPTION_RECORDED = "exception_recorded"
    PURGED = "purged"


class Problem(StrEnum):
    """What ``verify`` found wrong, for code that must tell tampering apart."""

    EDITED = "edited"
    REMOVED = "removed"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    ADDED = "added"
    UNREADABLE = "unreadable"
    FORGED_CHECKPOINT = "forged_checkpoint"
    FORGED_HEAD = "forged_head"


# Twilio's webhook fields that name or locate the caller (promise 1). Matched after lowercasing
# and dropping ``_``/``-``, so ``caller_name`` or ``from_`` are refused as well as ``CallerName``.
CALLER_FIELDS = frozenset({
    "from", "caller", "callername", "callerid", "forwardedfrom",
    "fromcity", "fromstate", "fromzip", "fromcountry",
    "callercity", "callerstate", "callerzip", "callercountry",
    "stirverstat", "stirpassporttoken", "calltoken",
})
# An ISO 8601 date or time is not a phone number, though its digits and dashes look like one to
# PHONE_LIKE; such substrings are blanked before the phone check so entries may carry times.
# Not when digits come just before ("+44 2026-11-25"): that may be a number in groups.
ISO_TIME = re.compile(r"(?<![\d+])(?<![\d+][\s().-])(?:19|20)\d\d-[01]\d-[0-3]\d"
                      r"(?:[T ][0-2]\d:[0-5]\d(?::[0-5]\d(?:\.\d{1,6})?)?"
                      r"(?:Z|[+-][0-2]\d:[0-5]\d)?)?(?!\d)")


def canonical(value: Any) -> str:
    """The one encoding hashes and signatures are computed over; any change to it breaks them."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def utc(moment: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already (as the CLI's dates are)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def now_utc() -> datetime:
    return datetime.now(UTC)


def entries_count(count: int) -> str:
    """``1 entry``, ``3 entries``: messages an admin reads should read right."""
    return f"{count} {'entry' if count == 1 else 'entries'}"


@dataclass(frozen=True)
class Entry:
    """One audit entry. ``hash`` is SHA-256 over the canonical encoding of every other field."""

    seq: int
    at: str
    kind: str
    actor: str
    data: dict[str, Any]
    prev: str
    hash: str = field(default="")

    FIELDS = ("seq", "at", "kind", "actor", "data", "prev", "hash")

    def body(self) -> dict[str, Any]:
        """Everything the hash covers: the entry without its own hash."""
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "actor": self.actor,
                "data": self.data, "prev": self.prev}

    def computed_hash(self) -> str:
        return sha256(canonical(self.body()))

    def to_dict(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def to_json(self) -> str:
        return canonical(self.to_dict())

    @property
    def when(self) -> datetime:
        return utc(datetime.fromisoformat(self.at))

    @classmethod
    def make(cls, seq: int, at: datetime, kind: str, actor: str, data: dict[str, Any],
             prev: str) -> Entry:
        """A new entry, hashed."""
        entry = cls(seq=seq, at=utc(at).isoformat(timespec="microseconds"), kind=kind,
                    actor=actor, data=data, prev=prev)
        return cls(**{**entry.body(), "hash": entry.computed_hash()})

    @classmethod
    def from_json(cls, text: str) -> Entry:
        """Parse a stored entry strictly: a missing, extra or mistyped field is a ValueError."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or set(raw) != set(cls.FIELDS):
            raise ValueError("not an audit entry: wrong fields")
        types = {"seq": int, "at": str, "kind": str, "actor": str, "data": dict, "prev": str,
                 "hash": str}
        for name, kind in types.items():
            if not isinstance(raw[name], kind) or isinstance(raw[name], bool):
                raise ValueError(f"not an audit entry: {name} is not a {kind.__name__}")
        return cls(**raw)


@dataclass(frozen=True)
class Verification:
    """The result of walking the chain: ``ok``, or the first bad entry and what is wrong."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str = ""
    problem: Problem | None = None

    def __bool__(self) -> bool:
        return self.ok


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _looks_like_phone(text: str) -> bool:
    """Phone-like, once times and IP addresses (a manager's sign-in address) are set aside."""
    try:
        ipaddress.ip_address(text.strip())
        return False
    except ValueError:
        return bool(PHONE_LIKE.search(ISO_TIME.sub(" ", text)))


def refuse_caller_data(value: Any, where: str = "data") -> None:
    """Raise ValueError if ``value`` holds a caller-identifying field or anything phone-like.

    The message names the place, never the value: the value may be the very number that must
    not be written anywhere, error logs included.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a key that is not a string")
            if _normal(key) in CALLER_FIELDS:
                raise ValueError(f"{where}.{key} is a caller-identifying field; the audit log "
                                 "never holds caller data")
            if _looks_like_phone(key):
                raise ValueError(f"a key in {where} looks like a phone number; the audit log "
                                 "never holds caller data")
            refuse_caller_data(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            refuse_caller_data(item, f"{where}[{index}]")
    elif value is None or isinstance(value, bool):
        return
    elif isinstance(value, int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} is not a finite number")
        if _looks_like_phone(str(value)):
            raise ValueError(f"{where} looks like a phone number; the audit log never holds "
                             "caller data")
    else:
        raise ValueError(f"{where} is a {type(value).__name__}; audit data must be JSON "
                         "(strings, numbers, booleans, null, lists and objects)")


def audit_kind(kind: AuditKind | str) -> AuditKind:
    """The kind named, or a ValueError that lists the kinds there are."""
    try:
        return AuditKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in AuditKind)
        raise ValueError(f"unknown audit kind {kind!r}; one of: {known}") from None


# Push the entry and move the head, only if the head is still the one the entry was built on.
APPEND_SCRIPT = """
local head = redis.call("GET", KEYS[2])
if (head or "") ~= ARGV[1] then
  return 0
end
redis.call("RPUSH", KEYS[1], ARGV[2])
redis.call("SET", KEYS[2], ARGV[3])
return 1
"""

# Cut the oldest N entries and store the new checkpoint, only if the log's oldest entry, the Nth
# entry and the checkpoint are still the ones the cut was computed from.
PURGE_SCRIPT = """
if (redis.call("GET", KEYS[2]) or "") ~= ARGV[4] then
  return 0
end
local n = tonumber(ARGV[1])
if redis.call("LINDEX", KEYS[1], 0) ~= ARGV[2] then
  return 0
end
if redis.call("LINDEX", KEYS[1], n - 1) ~= ARGV[3] then
  return 0
end
redis.call("LTRIM", KEYS[1], n, -1)
redis.call("SET", KEYS[2], ARGV[5])
return 1
"""


class AuditLog:
    """The audit log in one Redis (a client made with ``decode_responses=True``).

    ``clock`` is there so tests can write entries in the past; production uses the real time.
    """

    def __init__(self, client: redis.Redis, secret_key: str,
                 retention_days: int = DEFAULT_RETENTION_DAYS, *,
                 clock: Callable[[], datetime] = now_utc) -> None:
        if not secret_key:
            raise ConfigError("SECRET_KEY is not set: the audit log signs its head and purge "
                              "checkpoints with it")
        if retention_days < 1:
            raise ConfigError("CALLFLOW_AUDIT_RETENTION_DAYS must be at least 1 day")
        self.client = client
        self.retention_days = retention_days
        self._key = secret_key.encode("utf-8")
        self._clock = clock
        self._append = client.register_script(APPEND_SCRIPT)
        self._cut = client.register_script(PURGE_SCRIPT)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings) -> AuditLog:
        """The log as configured, so the CLI and a purge job build it the same way."""
        return cls(client, settings.secret_key, settings.retention_days)

    # Writing

    def append(self, kind: AuditKind | str, actor: str = "system", **data: Any) -> Entry:
        """Write one entry and return it once Redis has it; raise AuditUnavailable if it cannot.

        ``actor`` is a staff username or ``"system"``. ``data`` is refused (ValueError) if it
        holds caller data: check before acting, since nothing is written then.
        """
        kind = audit_kind(kind)
        if not isinstance(actor, str) or not actor.strip():
            raise ValueError("actor must be a staff username or 'system'")
        refuse_caller_data(actor, "actor")
        refuse_caller_data(data)
        data = json.loads(canonical(data))  # what is stored is what is returned
        try:
            for attempt in range(MAX_ATTEMPTS):
                head_raw, seq, prev = self._tip()
                entry = Entry.make(seq, self._clock(), kind.value, actor, data, prev)
                head = self._signed("head", {"seq": entry.seq, "hash": entry.hash})
                if self._append(keys=[keys.audit_entries(), keys.audit_head()],
                                args=[head_raw or "", entry.to_json(), head]):
                    log.info(f"audit entry {entry.seq} written", extra={"kind": kind.value})
                    return entry
                time.sleep(random.uniform(0, 0.0005 * (attempt + 1)))
        except redis.RedisError as exc:
            log.error("the audit log is unavailable", extra={"kind": kind.value,
                                                             "error": type(exc).__name__})
            raise AuditUnavailable(f"the audit log could not be written: {exc}") from exc
        raise AuditUnavailable("the audit log could not be written: too many concurrent writers")

    def _tip(self) -> tuple[str | None, int, str]:
        """The raw head, and the seq and prev the next entry takes; refuse a broken head."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.get(keys.audit_head())
            pipe.exists(keys.audit_entries(), keys.audit_checkpoint())
            head_raw, others = pipe.execute()
        if head_raw is None:
            if others:
                raise AuditChainBroken("the audit log has entries but no head record; "
                                       "run `callflow audit verify`")
            return None, 1, GENESIS
        head = self._opened("head", head_raw, ("seq", "hash"))
        if head is None:
            raise AuditChainBroken("the audit log's head record is not signed with this "
                                   "SECRET_KEY; run `callflow audit verify`")
        return head_raw, head["seq"] + 1, head["hash"]

    # Reading

    def entries(self, since: datetime | None = None, kind: AuditKind | str | None = None,
                limit: int | None = None) -> list[Entry]:
        """Entries oldest first, at or after ``since``, of one kind, at most ``limit`` of them."""
        wanted = audit_kind(kind).value if kind is not None else None
        since = utc(since) if since is not None else None
        raw, _, _ = self._snapshot()
        found: list[Entry] = []
        for text in raw:
            if limit is not None and len(found) >= limit:
                break
            try:
                entry = Entry.from_json(text)
            except ValueError:
                log.warning("an unreadable audit entry was skipped; run `callflow audit verify`")
                continue
            if since is not None and entry.when < since:
                continue
            if wanted is not None and entry.kind != wanted:
                continue
            found.append(entry)
        return found

    def export(self, since: datetime | None = None) -> Iterator[str]:
        """Entries as JSON lines (each ending in a newline), read now so errors raise here."""
        entries = self.entries(since=since)
        return (entry.to_json() + "\n" for entry in entries)

    def verify(self) -> Verification:
        """Walk the chain from the checkpoint (or the start) to the head."""
        return self._verify(*self._snapshot())

    def _snapshot(self) -> tuple[list[str], str | None, str | None]:
        """Entries, head and checkpoint read in one transaction, so they agree with each other."""
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.lrange(keys.audit_entries(), 0, -1)
                pipe.get(keys.audit_head())
                pipe.get(keys.audit_checkpoint())
                raw, head, checkpoint = pipe.execute()
        except redis.RedisError as exc:
            raise AuditUnavailable(f"the audit log could not be read: {exc}") from exc
        return raw, head, checkpoint

    def _verify(self, raw: list[str], head_raw: str | None,
                checkpoint_raw: str | None) -> Verification:
        count = len(raw)

        def bad(problem: Problem, seq: int | None, reason: str) -> Verification:
            return Verification(False, count, seq, reason, problem)

        seq, prev, start = 0, GENESIS, "the start of the log"
        if checkpoint_raw is not None:
            checkpoint = self._opened("checkpoint", checkpoint_raw, ("seq", "hash", "at", "count"))
            if checkpoint is None:
                return bad(Problem.FORGED_CHECKPOINT, None,
                           "the purge checkpoint was forged or changed: its signature is wrong")
            seq, prev = checkpoint["seq"], checkpoint["hash"]
            start = f"the purge checkpoint (entries up to {seq} were purged)"

        entries: list[Entry] = []
        for position, text in enumerate(raw, start=1):
            try:
                entries.append(Entry.from_json(text))
            except ValueError:
                after = entries[-1].seq if entries else seq
                return bad(Problem.UNREADABLE, after + 1,
                           f"the entry at position {position} (after entry {after}) is not a "
                           "readable audit entry: it was edited")
        where = {entry.seq: index for index, entry in enumerate(entries)}

        for index, entry in enumerate(entries):
            expected = seq + 1
            if entry.computed_hash() != entry.hash:
                # An edited entry's own seq cannot be trusted: name the place it stands in.
                claims = "" if entry.seq == expected else f" (it now claims to be {entry.seq})"
                return bad(Problem.EDITED, expected,
                           f"entry {expected} was edited{claims}: its contents no longer match "
                           "its hash")
            if entry.seq != expected:
                if where.get(expected, -1) > index or entry.seq < expected:
                    return bad(Problem.REORDERED, entry.seq,
                               f"entry {entry.seq} is out of order: it stands where entry "
                               f"{expected} belongs")
                missing = (f"entry {expected} was" if entry.seq == expected + 1
                           else f"entries {expected} to {entry.seq - 1} were")
                return bad(Problem.REMOVED, expected,
                           f"{missing} removed: entry {entry.seq} follows "
                           f"{f'entry {seq}' if index else start}")
            if entry.prev != prev:
                if index == 0:
                    return bad(Problem.REMOVED, entry.seq,
                               f"entry {entry.seq} does not follow {start}: entries before it "
                               "were removed or replaced")
                return bad(Problem.EDITED, seq,
                           f"entry {seq} was edited (and its hash recomputed): it no longer "
                           f"matches the hash entry {entry.seq} recorded for it")
            seq, prev = entry.seq, entry.hash

        if head_raw is None:
            if checkpoint_raw is None and not entries:
                return Verification(True, 0, reason="the audit log is empty")
            return bad(Problem.TRUNCATED, seq + 1,
                       "the log's head record is missing, so a cut at the end cannot be ruled "
                       "out")
        head = self._opened("head", head_raw, ("seq", "hash"))
        if head is None:
            return bad(Problem.FORGED_HEAD, None,
                       "the log's head record was forged or changed: its signature is wrong")
        if head["seq"] > seq:
            missing = (f"entry {seq + 1} was" if head["seq"] == seq + 1
                       else f"entries {seq + 1} to {head['seq']} were")
            return bad(Problem.TRUNCATED, seq + 1,
                       f"{missing} removed from the end: the log stops at entry {seq} but its "
                       f"head records entry {head['seq']}")
        if head["seq"] < seq:
            return bad(Problem.ADDED, head["seq"] + 1,
                       f"entries after {head['seq']} were added outside the audit log")
        if head["hash"] != prev:
            return bad(Problem.EDITED, seq,
                       f"entry {seq} was replaced: its hash is not the one the head records")
        return Verification(True, count, reason=f"{entries_count(count)} verified from {start} "
                                                f"to entry {seq}")

    # Retention

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Entries written before this moment are due for purging."""
        return utc(now or self._clock()) - timedelta(days=self.retention_days)

    def purge(self, now: datetime | None = None, *, dry_run: bool = False) -> int:
        """Remove entries older than the retention; return how many (or would be, if dry).

        The oldest entries are cut as one prefix and replaced by a signed checkpoint (the seq
        and hash of the last one removed), so the rest still verifies. A log that fails
        ``verify`` is never purged (AuditChainBroken): a cut must not hide tampering. The purge
        itself is recorded as a ``purged`` entry.
        """
        moment = utc(now or self._clock())
        cutoff = self.cutoff(moment)
        for _ in range(MAX_ATTEMPTS):
            raw, head_raw, checkpoint_raw = self._snapshot()
            result = self._verify(raw, head_raw, checkpoint_raw)
            if not result.ok:
                raise AuditChainBroken(f"not purging a log that fails verification: "
                                       f"{result.reason}")
            due = 0
            for text in raw:
                if Entry.from_json(text).when >= cutoff:
                    break
                due += 1
            if dry_run or not due:
                return due
            last = Entry.from_json(raw[due - 1])
            checkpoint = self._signed("checkpoint", {
                "seq": last.seq, "hash": last.hash,
                "at": moment.isoformat(timespec="microseconds"), "count": due})
            try:
                done = self._cut(keys=[keys.audit_entries(), keys.audit_checkpoint()],
                                 args=[due, raw[0], raw[due - 1], checkpoint_raw or "",
                                       checkpoint])
            except redis.RedisError as exc:
                raise AuditUnavailable(f"the audit log could not be purged: {exc}") from exc
            if done:
                break
        else:
            raise AuditUnavailable("the audit log could not be purged: it kept changing")
        log.info(f"audit log purged of {entries_count(due)} up to entry {last.seq}",
                 extra={"kind": AuditKind.PURGED.value})
        self.append(AuditKind.PURGED, count=due, through_seq=last.seq,
                    retention_days=self.retention_days)
        return due

    # Signed records (head and checkpoint)

    def _mac(self, purpose: str, record: dict[str, Any]) -> str:
        # The purpose is part of the message, so a head's signature is no checkpoint's.
        message = f"callflow-audit-{purpose}\n{canonical(record)}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def _signed(self, purpose: str, record: dict[str, Any]) -> str:
        return canonical({**record, "mac": self._mac(purpose, record)})

    def _opened(self, purpose: str, raw: str, names: tuple[str, ...]) -> dict[str, Any] | None:
        """The record if it is well formed and its signature is right, else None."""
        try:
            record = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(record, dict) or set(record) != {*names, "mac"}:
            return None
        mac = record.pop("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, self._mac(purpose, record)):
            return None
        if not isinstance(record["seq"], int) or not isinstance(record["hash"], str):
            return None
        return record
