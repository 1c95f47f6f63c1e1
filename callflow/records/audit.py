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
- **A head record** (seq, hash and time of the newest entry). A chain alone cannot show that
  its newest entries were cut off; the head can. Both the head and the purge **checkpoint** are
  signed with Ed25519 (:mod:`callflow.records.audit_keys`), so someone who can write to Redis but
  does not hold the private key cannot rebuild the chain and a matching head, nor invent a cut, and
  anyone with the public key alone can check them.
- **A witness outside Redis** (:mod:`callflow.records.audit_witness`). Every head is also appended
to
  a file and the structured log as it is written, so restoring saved keys (a rollback) or
  deleting them all (a wipe) leaves the log behind its witness, and ``verify`` says so.
- **Appends are atomic across processes by compare-and-set.** Python reads the head and hashes
  the next entry (Redis's Lua has no SHA-256); a Lua script then pushes the entry and moves the
  head only if the head is still the one that was read, in one step on the server. If another
  process appended first, the append is rebuilt on the new head and tried again. Two appends
  can therefore never both chain onto the same entry.
- **Exports verify offline** (:mod:`callflow.records.audit_export`): the entries come with a signed
  start and the signed head, so an export is checked with the public key alone.
- **Durable before it returns.** ``append`` returns only after Redis has acknowledged the
  script; any Redis error becomes ``AuditUnavailable`` so callers fail closed (no audit write,
  no listen). Surviving a Redis restart is Redis's persistence (``appendonly yes``), which the
  deployment must turn on.

Nothing about callers is ever stored: ``append`` refuses caller-identifying Twilio fields and
anything that looks like a phone number, and says so without repeating the value.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import redis

from callflow.platform import keys
from callflow.platform.config import Settings
from callflow.platform.errors import AuditChainBroken, AuditUnavailable, ConfigError
from callflow.platform.local_keys import default_witness
from callflow.platform.logs import PHONE_LIKE
from callflow.records.audit_chain import (
    GENESIS,
    Chain,
    Entry,
    Problem,
    Verification,
    against_witness,
    check_head,
    entries_count,
    now_utc,
    sha256,
    utc,
    walk,
)
from callflow.records.audit_keys import LEGACY_MAC, AuditKeys, canonical
from callflow.records.audit_witness import HEAD_FIELDS, Reading, Witness

log = logging.getLogger(__name__)
# Re-exported: the chain's own names, for code that reads entries through this module.
__all__ = ["GENESIS", "AuditKind", "AuditLog", "Chain", "Entry", "Problem", "Verification",
           "canonical", "check_head", "entries_count", "now_utc", "refuse_caller_data",
           "sha256", "utc", "walk"]

# Compare-and-set attempts before an append gives up under contention (each retry is cheap).
MAX_ATTEMPTS = 100
DEFAULT_RETENTION_DAYS = 183
# Heads signed before Ed25519 (an HMAC ``mac``) had no time.
LEGACY_HEAD_FIELDS = ("seq", "hash")
CHECKPOINT_FIELDS = ("seq", "hash", "at", "count")


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
    # A helpline worker's shift: who changed it (the worker, a manager, ``cli:<user>``), whose
    # it was (their roster name) and how (phone, web, cli). Never a number, never a caller.
    SHIFT_STARTED = "shift_started"
    SHIFT_ENDED = "shift_ended"
    WORKER_PAUSED = "worker_paused"
    WORKER_RESUMED = "worker_resumed"


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

# Replace a key's value only if it is still the one read.
SWAP_SCRIPT = """
if redis.call("GET", KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2])
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

    ``keys`` sign and check the head and checkpoint; ``witness`` keeps every head outside
    Redis. ``clock`` is there so tests can write entries in the past.
    """

    def __init__(self, client: redis.Redis, keys: AuditKeys,
                 retention_days: int = DEFAULT_RETENTION_DAYS, *,
                 witness: Witness | None = None,
                 clock: Callable[[], datetime] = now_utc) -> None:
        if not isinstance(keys, AuditKeys):
            raise ConfigError("the audit log needs its signing keys (an AuditKeys)")
        if retention_days < 1:
            raise ConfigError("CALLFLOW_AUDIT_RETENTION_DAYS must be at least 1 day")
        self.client = client
        self.keys = keys
        self.witness = witness
        self.retention_days = retention_days
        self._clock = clock
        self._append = client.register_script(APPEND_SCRIPT)
        self._cut = client.register_script(PURGE_SCRIPT)
        self._swap = client.register_script(SWAP_SCRIPT)

    @classmethod
    def from_settings(cls, client: redis.Redis, settings: Settings, *,
                      keys: AuditKeys | None = None) -> AuditLog:
        """The log as configured, so the CLI, the app and the jobs build it the same way
        (``keys`` in place of the configured ones: an auditor's public key)."""
        return cls(client, keys or AuditKeys.from_settings(settings), settings.retention_days,
                   witness=Witness(settings.audit_witness or default_witness(settings)))

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
                head = self.keys.sign("head", {"seq": entry.seq, "hash": entry.hash,
                                               "at": entry.at})
                if self._append(keys=[keys.audit_entries(), keys.audit_head()],
                                args=[head_raw or "", entry.to_json(), head]):
                    log.info(f"audit entry {entry.seq} written", extra={"kind": kind.value})
                    if self.witness is not None:
                        self.witness.record(head)
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
        head = self._head(head_raw)
        if head is None:
            raise AuditChainBroken("the audit log's head record is not signed with this "
                                   "key; run `callflow audit verify`")
        return head_raw, head["seq"] + 1, head["hash"]

    def _head(self, raw: str) -> dict[str, Any] | None:
        return self.keys.open("head", raw, HEAD_FIELDS, LEGACY_HEAD_FIELDS)

    def _checkpoint(self, raw: str) -> dict[str, Any] | None:
        return self.keys.open("checkpoint", raw, CHECKPOINT_FIELDS, CHECKPOINT_FIELDS)

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

    def verify(self, witnesses: Iterable[Witness] = ()) -> Verification:
        """Walk the chain from the checkpoint (or the start) to the head, then hold it up to
        every head its witness (and any other ``witnesses``) saw."""
        return self.verified_chain(witnesses)[0]

    def verified_chain(self, witnesses: Iterable[Witness] = ()
                       ) -> tuple[Verification, Chain, dict[str, Any] | None]:
        """What ``verify`` found, the chain it walked, and the log's head (opened)."""
        # The witness is read first: every head in it was written after Redis had its entry,
        # so whatever it holds is in the snapshot taken next unless the log went back.
        sources = [w for w in (self.witness, *witnesses) if w is not None]
        readings = [w.read() for w in sources]
        reading = Reading([h for r in readings for h in r.heads],
                          [m for r in readings for m in r.malformed])
        raw, head_raw, checkpoint_raw = self._snapshot()
        result, chain, head = self._check(raw, head_raw, checkpoint_raw)
        if result.ok:
            empty = not raw and head_raw is None and checkpoint_raw is None
            result = against_witness(result, chain, reading, self.keys, empty)
        return result, chain, head

    def verify_recent(self) -> Verification:
        """The entries from the newest witnessed head on: what changed since the witness last
        saw the log, without hashing the whole chain. Anything amiss is handed to ``verify``,
        which walks everything and names what is wrong."""
        newest = self.witness.newest(self.keys) if self.witness is not None else None
        if newest is None:
            return self.verify()
        try:
            for _ in range(MAX_ATTEMPTS):
                checkpoint_raw = self.client.get(keys.audit_checkpoint())
                checkpoint = self._checkpoint(checkpoint_raw) if checkpoint_raw else None
                start = checkpoint["seq"] if checkpoint else 0
                if (checkpoint_raw and checkpoint is None) or newest.seq <= start:
                    return self.verify()
                with self.client.pipeline(transaction=True) as pipe:
                    pipe.get(keys.audit_checkpoint())
                    pipe.get(keys.audit_head())
                    pipe.lrange(keys.audit_entries(), newest.seq - start - 1, -1)
                    again, head_raw, raw = pipe.execute()
                if again == checkpoint_raw:
                    break
            else:
                return self.verify()
        except redis.RedisError as exc:
            raise AuditUnavailable(f"the audit log could not be read: {exc}") from exc
        head = self._head(head_raw) if head_raw else None
        try:
            witnessed = Entry.from_json(raw[0]) if raw else None
        except ValueError:
            witnessed = None
        if (head is None or witnessed is None or witnessed.seq != newest.seq
                or witnessed.hash != newest.hash or witnessed.computed_hash() != newest.hash):
            return self.verify()
        problem, chain = walk(raw[1:], newest.seq, newest.hash, f"witnessed entry {newest.seq}")
        if problem is not None or check_head(head, chain, len(raw)) is not None:
            return self.verify()
        return Verification(True, len(raw), checked_from=newest.seq,
                            reason=f"entries {newest.seq} to {chain.last_seq} verified from the "
                                   "newest head its witness saw")

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
        return self._check(raw, head_raw, checkpoint_raw)[0]

    def _check(self, raw: list[str], head_raw: str | None, checkpoint_raw: str | None
               ) -> tuple[Verification, Chain, dict[str, Any] | None]:
        count = len(raw)
        nothing = Chain(0, GENESIS, [])

        def bad(problem: Problem, seq: int | None, reason: str):
            return Verification(False, count, seq, reason, problem), nothing, None

        seq, prev, start = 0, GENESIS, "the start of the log"
        if checkpoint_raw is not None:
            checkpoint = self._checkpoint(checkpoint_raw)
            if checkpoint is None:
                return bad(Problem.FORGED_CHECKPOINT, None, "the purge checkpoint was forged or "
                           "changed: its signature is wrong" + self._legacy_hint(checkpoint_raw))
            seq, prev = checkpoint["seq"], checkpoint["hash"]
            start = f"the purge checkpoint (entries up to {seq} were purged)"

        problem, chain = walk(raw, seq, prev, start)
        if problem is not None:
            return problem, nothing, None
        if head_raw is None:
            if checkpoint_raw is None and not chain.entries:
                return Verification(True, 0, reason="the audit log is empty"), chain, None
            return bad(Problem.TRUNCATED, chain.last_seq + 1,
                       "the log's head record is missing, so a cut at the end cannot be ruled "
                       "out")
        head = self._head(head_raw)
        if head is None:
            return bad(Problem.FORGED_HEAD, None, "the log's head record was forged or changed: "
                       "its signature is wrong" + self._legacy_hint(head_raw))
        problem = check_head(head, chain, count)
        if problem is not None:
            return problem, nothing, None
        return (Verification(True, count, reason=f"{entries_count(count)} verified from "
                                                 f"{start} to entry {chain.last_seq}"),
                chain, head)

    def _legacy_hint(self, raw: str) -> str:
        """What to do about a record signed the old way that these keys cannot check."""
        try:
            old = LEGACY_MAC in json.loads(raw)
        except (ValueError, TypeError):
            return ""
        if not old:
            return ""
        if not self.keys.legacy_secret:
            return (" (it is signed the old way, with SECRET_KEY: verify with SECRET_KEY set, "
                    "or let the service write one entry so that it is signed with Ed25519)")
        return " (it is signed the old way, and not with this SECRET_KEY)"

    def _resign_checkpoint(self, raw: str) -> None:
        """A checkpoint signed the old way (HMAC, already checked) signed again with Ed25519."""
        record = {name: value for name, value in json.loads(raw).items() if name != LEGACY_MAC}
        try:
            if self._swap(keys=[keys.audit_checkpoint()],
                          args=[raw, self.keys.sign("checkpoint", record)]):
                log.info("the audit checkpoint is now signed with Ed25519",
                         extra={"event": "audit_migrated"})
        except redis.RedisError as exc:
            raise AuditUnavailable(f"the audit log could not be purged: {exc}") from exc

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
            if not dry_run and checkpoint_raw and LEGACY_MAC in json.loads(checkpoint_raw):
                self._resign_checkpoint(checkpoint_raw)
                continue
            if dry_run or not due:
                return due
            last = Entry.from_json(raw[due - 1])
            checkpoint = self.keys.sign("checkpoint", {
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
