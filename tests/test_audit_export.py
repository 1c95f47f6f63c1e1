"""Exports of the audit log, verified offline with the public key alone: whole, partial, after a
purge, from a log still signed the old way, and each way an export can be tampered with."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from callflow.platform.errors import AuditChainBroken
from callflow.records.audit import AuditKind, AuditLog, Problem, canonical, sha256
from callflow.records.audit_export import export_lines, verify_export
from callflow.records.audit_keys import AuditKeys
from callflow.records.audit_witness import Witness
from tests.audit_keys import KEYS, other_keys

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PUBLIC_ONLY = AuditKeys(KEYS.public)  # what an auditor holds


@pytest.fixture
def audit(redis, tmp_path) -> AuditLog:
    moments = iter(START + timedelta(days=n) for n in range(1000))
    return AuditLog(redis, KEYS, retention_days=30, witness=Witness(tmp_path / "witness"),
                    clock=lambda: next(moments))


def fill(audit: AuditLog, count: int) -> None:
    for n in range(count):
        audit.append(AuditKind.LOGIN, actor=f"manager{n}", via="web")


def rows(lines: list[str]) -> list[dict]:
    return [json.loads(line) for line in lines]


def lines_of(records: list[dict]) -> list[str]:
    return [canonical(record) + "\n" for record in records]


def rehash(entry: dict) -> None:
    entry["hash"] = sha256(canonical({k: v for k, v in entry.items() if k != "hash"}))


def test_a_whole_export_verifies_with_the_public_key_alone(audit):
    fill(audit, 5)
    lines = export_lines(audit)
    start, *entries, head = rows(lines)
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert start["start"]["from"] == "genesis" and start["start"]["through"] == 5
    assert head["head"]["seq"] == 5 and head["head"]["hash"] == entries[-1]["hash"]

    result = verify_export(lines, PUBLIC_ONLY)
    assert result.ok, result.reason
    assert result.count == 5
    assert "5 entries verified from the start of the log to entry 5" in result.reason


def test_a_partial_export_verifies_from_its_signed_start(audit):
    fill(audit, 6)
    lines = export_lines(audit, since=START + timedelta(days=3))
    start, *entries, _ = rows(lines)
    assert [e["seq"] for e in entries] == [4, 5, 6]
    assert (start["start"]["seq"], start["start"]["from"]) == (3, "since")
    assert verify_export(lines, PUBLIC_ONLY).ok

    assert verify_export(lines[1:], PUBLIC_ONLY).problem is Problem.FORGED_START


def test_an_export_after_a_purge_starts_at_the_checkpoint(audit):
    fill(audit, 8)
    assert audit.purge(now=START + timedelta(days=34)) == 4
    lines = export_lines(audit)
    start, *entries, _ = rows(lines)
    assert start["start"]["from"] == "checkpoint" and start["start"]["seq"] == 4
    assert [e["seq"] for e in entries] == [5, 6, 7, 8, 9]
    assert verify_export(lines, PUBLIC_ONLY).ok


def test_an_export_since_after_every_entry_holds_none_and_still_verifies(audit):
    fill(audit, 2)
    lines = export_lines(audit, since=START + timedelta(days=50))
    assert len(lines) == 2  # the start and the head
    result = verify_export(lines, PUBLIC_ONLY)
    assert result.ok and result.count == 0


def test_an_empty_log_exports_and_verifies(audit):
    lines = export_lines(audit)
    assert verify_export(lines, PUBLIC_ONLY).ok


def edit(records):
    records[3]["actor"] = "mallory"


def edit_and_rehash(records):
    records[3]["actor"] = "mallory"
    rehash(records[3])


def recompute_every_hash(records):
    """Edit entry 3 and rebuild the chain after it: every link holds, but not the signed head."""
    records[3]["actor"] = "mallory"
    for index in range(3, 6):
        if index > 3:
            records[index]["prev"] = records[index - 1]["hash"]
        rehash(records[index])


def remove(records):
    del records[3]


def reorder(records):
    records[2], records[3] = records[3], records[2]


def cut_the_tail(records):
    del records[-3:-1]


def cut_the_tail_and_its_head(records):
    del records[-3:]


def change_the_start(records):
    records[0]["start"]["through"] = 3


def change_the_head(records):
    records[-1]["head"]["seq"] = 4


TAMPERING = [
    (edit, Problem.EDITED),
    (edit_and_rehash, Problem.EDITED),
    (recompute_every_hash, Problem.EDITED),
    (remove, Problem.REMOVED),
    (reorder, Problem.REORDERED),
    (cut_the_tail, Problem.TRUNCATED),
    (cut_the_tail_and_its_head, Problem.TRUNCATED),
    (change_the_start, Problem.FORGED_START),
    (change_the_head, Problem.FORGED_HEAD),
]


@pytest.mark.parametrize("tamper, problem", TAMPERING, ids=[t[0].__name__ for t in TAMPERING])
def test_a_tampered_export_fails(audit, tamper, problem):
    fill(audit, 5)
    records = rows(export_lines(audit))
    tamper(records)
    result = verify_export(lines_of(records), PUBLIC_ONLY)
    assert not result.ok
    assert result.problem is problem, result.reason


def test_a_tail_cut_under_an_older_exports_head_fails(audit):
    fill(audit, 3)
    older = rows(export_lines(audit))
    fill(audit, 2)
    newer = rows(export_lines(audit))
    spliced = [newer[0], *newer[1:4], older[-1]]  # entries 1 to 3 and the head of entry 3
    result = verify_export(lines_of(spliced), PUBLIC_ONLY)
    assert result.problem is Problem.TRUNCATED, result.reason
    assert "made through entry 5" in result.reason


def test_another_key_cannot_vouch_for_an_export(audit):
    fill(audit, 2)
    result = verify_export(export_lines(audit), AuditKeys(other_keys().public))
    assert result.problem is Problem.FORGED_START


@pytest.mark.parametrize("text", ["", "not json\n", '{"seq": 1}\n'])
def test_something_that_is_not_an_export_fails_clearly(text):
    result = verify_export([text], PUBLIC_ONLY)
    assert result.problem is Problem.FORGED_START
    assert "not an export" in result.reason


def test_a_log_that_fails_verification_is_not_exported(audit, redis):
    from callflow.platform import keys

    fill(audit, 3)
    redis.delete(*[keys.audit_entries(), keys.audit_head()])
    with pytest.raises(AuditChainBroken, match="wiped"):
        export_lines(audit)
