"""Exports of the audit log that anyone with the public key can verify, offline.

An export is JSON lines: a signed **start**, the entries exactly as stored, and the log's
signed **head**::

    {"start": {"seq": 40, "hash": "…", "through": 97, "count": 57, "from": "since",
               "exported_at": "…", "sig": "…"}}
    {"seq": 41, "at": "…", "kind": "login", …, "prev": "…", "hash": "…"}
    …
    {"head": {"seq": 97, "hash": "…", "at": "…", "sig": "…"}}

The start says where the entries pick up the chain (the very start, a purge checkpoint, or the
entry before ``--since``) and where the export ends (``through``, ``count``), so a partial
export verifies as well as a whole one, and a tail cut off (even with an older signed head put
in its place) shows. The log is verified, against its witness too, before it is exported:
an export never vouches for a log that fails.
"""

from __future__ import annotations

import json
from datetime import datetime

from callflow.platform.errors import AuditChainBroken
from callflow.records.audit import AuditLog
from callflow.records.audit_chain import (
    GENESIS,
    Problem,
    Verification,
    check_head,
    entries_count,
    now_utc,
    utc,
    walk,
)
from callflow.records.audit_keys import AuditKeys, canonical
from callflow.records.audit_witness import HEAD_FIELDS

START_FIELDS = ("seq", "hash", "through", "count", "from", "exported_at")
BEGINNINGS = ("genesis", "checkpoint", "since")


def export_lines(audit_log: AuditLog, since: datetime | None = None) -> list[str]:
    """The export (each line ending in a newline) of every entry, or of those from the first
    written at or after ``since``; AuditChainBroken if the log fails verification."""
    result, chain, head = audit_log.verified_chain()
    if not result.ok:
        raise AuditChainBroken(f"not exporting a log that fails verification: {result.reason}")
    entries = chain.entries
    beginning = "checkpoint" if chain.start_seq else "genesis"
    if since is not None:
        # From the first entry at or after ``since``, then every one after it: a chain has no
        # holes, even where two machines' clocks disagreed by a moment.
        moment = utc(since)
        first = next((i for i, e in enumerate(entries) if e.when >= moment), len(entries))
        if first:
            entries, beginning = entries[first:], "since"
    if entries:
        seq, prev = entries[0].seq - 1, entries[0].prev
    else:
        seq, prev = chain.last_seq, chain.last_hash
    start = audit_log.keys.sign("export-start", {
        "seq": seq, "hash": prev, "through": chain.last_seq, "count": len(entries),
        "from": beginning, "exported_at": now_utc().isoformat(timespec="seconds")})
    lines = [canonical({"start": json.loads(start)})]
    lines += [entry.to_json() for entry in entries]
    if head is not None:
        # Signed afresh (Ed25519 signs the same record the same way), so a head still signed
        # the old way (HMAC, no time) is exported with an Ed25519 signature and its entry's time.
        newest = chain.entries[-1].at if chain.entries else head.get("at", "")
        signed = audit_log.keys.sign("head", {"seq": head["seq"], "hash": head["hash"],
                                              "at": head.get("at", newest)})
        lines.append(canonical({"head": json.loads(signed)}))
    return [line + "\n" for line in lines]


def verify_export(lines: list[str], keys: AuditKeys) -> Verification:
    """Check an export with the public key alone: its start and head signatures, and that the
    entries between them are the whole chain from one to the other, unedited and in order."""
    rows = [line for line in lines if line.strip()]
    body = rows[1:]

    def bad(problem: Problem, seq: int | None, reason: str) -> Verification:
        return Verification(False, len(body), seq, reason, problem)

    start = _record(rows[0] if rows else "", "start")
    start = keys.open("export-start", start, START_FIELDS) if start is not None else None
    if start is None or start["from"] not in BEGINNINGS:
        return bad(Problem.FORGED_START, None, "the export does not begin with a start record "
                   "signed with this key: it is not an export, or its start was changed")
    head = _record(body[-1], "head") if body else None
    if head is not None:
        body = body[:-1]
        head = keys.open("head", head, HEAD_FIELDS)
        if head is None:
            return bad(Problem.FORGED_HEAD, None, "the export's head record was forged or "
                       "changed: its signature is wrong")
    if start["seq"] == 0 and start["hash"] != GENESIS:
        return bad(Problem.FORGED_START, None, "the export's start is not the log's start")
    where = {"genesis": "the start of the log",
             "checkpoint": f"the purge checkpoint (entries up to {start['seq']} were purged)",
             "since": f"entry {start['seq']} (the export starts after it)"}[start["from"]]
    problem, chain = walk(body, start["seq"], start["hash"], where)
    if problem is not None:
        return problem
    through = start["through"]
    if chain.last_seq < through:
        return bad(Problem.TRUNCATED, chain.last_seq + 1,
                   f"the export stops at entry {chain.last_seq} but was made through entry "
                   f"{through}: its end was cut off")
    if head is None:
        if through == start["seq"] and not chain.entries and start["count"] == 0:
            return Verification(True, 0, reason="the export holds no entries")
        return bad(Problem.TRUNCATED, chain.last_seq + 1, "the export's signed head is "
                   "missing: its end was cut off")
    if head["seq"] != through:
        return bad(Problem.TRUNCATED, min(head["seq"], through) + 1,
                   f"the export's head is entry {head['seq']} but it was made through entry "
                   f"{through}: its end was replaced")
    problem = check_head(head, chain, len(body))
    if problem is not None:
        return problem
    if len(chain.entries) != start["count"]:
        return bad(Problem.REMOVED, None, f"the export was made with {start['count']} entries "
                   f"and holds {len(chain.entries)}")
    return Verification(True, len(chain.entries), reason=(
        f"{entries_count(len(chain.entries))} verified from {where} to entry {through} "
        f"(exported {start['exported_at']})"))


def _record(line: str, name: str) -> dict | None:
    """The record a line of the export wraps as ``{name: {...}}``, or None."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and set(value) == {name} and isinstance(value[name], dict):
        return value[name]
    return None

