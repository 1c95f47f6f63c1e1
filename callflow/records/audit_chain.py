"""The hash chain itself: entries, how a run of them is walked, and what a walk finds.

Shared by the log in Redis (:mod:`callflow.records.audit`) and by exports checked offline
(:mod:`callflow.records.audit_export`), so both find an edit, a removal or a reorder the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from callflow.records.audit_keys import AuditKeys, canonical
from callflow.records.audit_witness import Reading

# The ``prev`` of the very first entry: no entry hashes to this.
GENESIS = "0" * 64


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
    # Found by the witness: the log is behind what it saw, or was deleted.
    ROLLED_BACK = "rolled_back"
    WIPED = "wiped"
    FORGED_WITNESS = "forged_witness"
    # An export's signed start is missing or was changed.
    FORGED_START = "forged_start"


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
    # Set when only the entries from this seq on were walked (the dashboard's quick check).
    checked_from: int | None = None

    def __bool__(self) -> bool:
        return self.ok


def entries_span(first: int, last: int) -> str:
    """``entry 4`` or ``entries 4 to 9``, for messages that name a gap."""
    return f"entry {first}" if first == last else f"entries {first} to {last}"


@dataclass(frozen=True)
class Chain:
    """Entries that were walked, and the seq and hash they follow on from."""

    start_seq: int
    start_hash: str
    entries: list[Entry]

    @property
    def last_seq(self) -> int:
        return self.entries[-1].seq if self.entries else self.start_seq

    @property
    def last_hash(self) -> str:
        return self.entries[-1].hash if self.entries else self.start_hash


def walk(raw: list[str], seq: int, prev: str, start: str) -> tuple[Verification | None, Chain]:
    """Check that the stored entries ``raw`` follow on from ``seq``/``prev`` (``start`` says
    what that is, for messages), one by one. The first problem found, or None, and the chain
    of the entries read."""
    count = len(raw)
    first_seq, first_prev = seq, prev

    def bad(problem: Problem, at: int | None, reason: str) -> tuple[Verification, Chain]:
        return Verification(False, count, at, reason, problem), Chain(first_seq, first_prev, [])

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
            return bad(Problem.REMOVED, expected,
                       f"{entries_span(expected, entry.seq - 1)} "
                       f"{'was' if entry.seq == expected + 1 else 'were'} removed: entry "
                       f"{entry.seq} follows {f'entry {seq}' if index else start}")
        if entry.prev != prev:
            if index == 0:
                return bad(Problem.REMOVED, entry.seq,
                           f"entry {entry.seq} does not follow {start}: entries before it "
                           "were removed or replaced")
            return bad(Problem.EDITED, seq,
                       f"entry {seq} was edited (and its hash recomputed): it no longer "
                       f"matches the hash entry {entry.seq} recorded for it")
        seq, prev = entry.seq, entry.hash
    return None, Chain(first_seq, first_prev, entries)


def check_head(head: dict[str, Any], chain: Chain, count: int) -> Verification | None:
    """The problem, if the walked chain does not end where the signed head says it does."""
    seq, prev = chain.last_seq, chain.last_hash
    if head["seq"] > seq:
        return Verification(False, count, seq + 1,
                            f"{entries_span(seq + 1, head['seq'])} "
                            f"{'was' if head['seq'] == seq + 1 else 'were'} removed from the "
                            f"end: the log stops at entry {seq} but its head records entry "
                            f"{head['seq']}", Problem.TRUNCATED)
    if head["seq"] < seq:
        return Verification(False, count, head["seq"] + 1,
                            f"entries after {head['seq']} were added outside the audit log",
                            Problem.ADDED)
    if head["hash"] != prev:
        return Verification(False, count, seq, f"entry {seq} was replaced: its hash is not "
                            "the one the head records", Problem.EDITED)
    return None


def against_witness(result: Verification, chain: Chain, reading: Reading, keys: AuditKeys,
                    empty: bool) -> Verification:
    """``result`` (a chain that verified), held up to the heads its witness saw. A head that
    disagrees with the chain, or lies beyond it, counts only if it is rightly signed."""
    def bad(problem: Problem, at: int | None, reason: str) -> Verification:
        return Verification(False, result.count, at, reason, problem)

    known = {entry.seq: entry.hash for entry in chain.entries}
    if chain.start_seq:
        known[chain.start_seq] = chain.start_hash
    beyond, differing, forged = None, None, list(reading.malformed)
    for head in sorted(reading.heads, key=lambda h: h.seq):
        agrees = known.get(head.seq, head.hash) == head.hash and head.seq <= chain.last_seq
        if agrees:
            continue
        if not head.signed_by(keys):
            forged.append(head.where)
        elif head.seq > chain.last_seq:
            beyond = head
        elif differing is None:
            differing = head
    if forged:
        return bad(Problem.FORGED_WITNESS, None,
                   f"the witness has {len(forged)} line(s) that are not heads signed with this "
                   f"key ({', '.join(forged[:3])}): someone wrote to it")
    if beyond is not None:
        if empty:
            return bad(Problem.WIPED, 1, f"the audit log is empty, but its witness saw "
                       f"entries up to {beyond.seq} (the last written at {beyond.at}): the "
                       "log was wiped")
        gap = entries_span(chain.last_seq + 1, beyond.seq)
        return bad(Problem.ROLLED_BACK, chain.last_seq + 1,
                   f"{gap} {'is' if chain.last_seq + 1 == beyond.seq else 'are'} missing: "
                   f"the log stops at entry {chain.last_seq}, but its witness saw entry "
                   f"{beyond.seq} (written at {beyond.at}); the log was rolled back or cut")
    if differing is not None:
        return bad(Problem.ROLLED_BACK, differing.seq,
                   f"entry {differing.seq} is not the entry the witness saw "
                   f"({differing.where}): the log was rolled back and written again from "
                   f"entry {differing.seq} or before")
    if not reading.heads:
        return result
    newest = max(head.seq for head in reading.heads)
    return Verification(True, result.count, reason=f"{result.reason}; its witness agrees "
                                                   f"(it saw entries up to {newest})")
