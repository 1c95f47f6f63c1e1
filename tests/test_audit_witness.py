"""The audit log's witness and its Ed25519 signatures: what is written where, how a rollback
or a wipe shows, the dashboard's quick check from the newest witnessed head, and logs signed
the old way (HMAC) still verifying until they are signed again."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest

from callflow.platform import keys
from callflow.platform.logs import JsonFormatter
from callflow.records.audit import AuditKind, AuditLog, Entry, Problem, canonical
from callflow.records.audit_keys import AuditKeys
from callflow.records.audit_witness import Witness
from tests.audit_keys import KEYS, LEGACY_SECRET

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PUBLIC_ONLY = AuditKeys(KEYS.public)


@pytest.fixture
def witness(tmp_path) -> Witness:
    return Witness(tmp_path / "data" / "audit-witness.jsonl")


@pytest.fixture
def audit(redis, witness) -> AuditLog:
    moments = iter(START + timedelta(days=n) for n in range(1000))
    return AuditLog(redis, KEYS, retention_days=30, witness=witness,
                    clock=lambda: next(moments))


def fill(audit: AuditLog, count: int) -> None:
    for n in range(count):
        audit.append(AuditKind.LOGIN, actor=f"manager{n}", via="web")


def witness_lines(witness: Witness) -> list[dict]:
    return [json.loads(line)["head"] for line in witness.path.read_text().splitlines()]


# -- what is written ------------------------------------------------------------------------

def test_every_append_writes_its_signed_head_to_the_witness(audit, witness, redis):
    fill(audit, 3)
    heads = witness_lines(witness)
    assert [h["seq"] for h in heads] == [1, 2, 3]
    assert stat.S_IMODE(witness.path.stat().st_mode) == 0o600
    assert canonical(heads[-1]) == redis.get(keys.audit_head())
    newest = Entry.from_json(redis.lindex(keys.audit_entries(), -1))
    assert (heads[-1]["hash"], heads[-1]["at"]) == (newest.hash, newest.at)
    # Each line is checked with the public key alone.
    assert all(PUBLIC_ONLY.open("head", h, ("seq", "hash", "at")) for h in heads)


def test_the_log_carries_each_head_in_a_form_redaction_cannot_touch(audit, witness, caplog,
                                                                     tmp_path):
    with caplog.at_level(logging.INFO):
        fill(audit, 2)
    formatted = [JsonFormatter().format(r) for r in caplog.records]
    copies = [line for line in formatted if "audit witness" in line]
    assert len(copies) == 2
    assert "[redacted]" not in "".join(copies)
    second = tmp_path / "service.log"
    second.write_text("\n".join(formatted) + "\n")
    from_log = Witness(second).read()
    assert [(h.seq, h.hash) for h in from_log.heads] == [
        (h.seq, h.hash) for h in witness.read().heads]
    assert from_log.malformed == [] and all(h.signed_by(KEYS) for h in from_log.heads)


def test_the_log_copy_is_written_whatever_the_log_level(audit, capsys):
    from callflow.platform import logs

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("WARNING")
        fill(audit, 1)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.getLogger("callflow.records.audit_witness").setLevel(logging.NOTSET)
    lines = capsys.readouterr().err.splitlines()
    assert sum("audit witness" in line for line in lines) == 1
    assert not any("audit entry 1 written" in line for line in lines)  # INFO, below WARNING


def test_an_unwritable_witness_does_not_lose_the_entry_and_is_logged(redis, tmp_path, caplog):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    audit = AuditLog(redis, KEYS, witness=Witness(blocked / "witness.jsonl"))
    with caplog.at_level(logging.INFO):
        entry = audit.append(AuditKind.LOGIN, actor="maria")
    assert audit.entries() == [entry]
    assert any(getattr(r, "event", "") == "witness_failed" for r in caplog.records)
    assert any("audit witness" in r.getMessage() for r in caplog.records)  # the second copy


# -- what verify finds ----------------------------------------------------------------------

def test_an_intact_log_agrees_with_its_witness(audit):
    fill(audit, 4)
    result = audit.verify()
    assert result.ok, result.reason
    assert "its witness agrees (it saw entries up to 4)" in result.reason


def test_a_rollback_names_the_missing_entries(audit, redis):
    fill(audit, 3)
    saved = (redis.lrange(keys.audit_entries(), 0, -1), redis.get(keys.audit_head()))
    fill(audit, 2)
    redis.delete(keys.audit_entries())
    redis.rpush(keys.audit_entries(), *saved[0])
    redis.set(keys.audit_head(), saved[1])

    result = audit.verify()
    assert result.problem is Problem.ROLLED_BACK
    assert result.first_bad_seq == 4
    assert "entries 4 to 5 are missing" in result.reason


def test_a_wipe_is_not_an_empty_log(audit, redis):
    fill(audit, 2)
    redis.delete(keys.audit_entries(), keys.audit_head())
    result = audit.verify()
    assert result.problem is Problem.WIPED
    assert "witness saw entries up to 2" in result.reason


def test_a_line_written_into_the_witness_by_someone_else_fails(audit, witness):
    fill(audit, 2)
    forged = json.loads(witness.path.read_text().splitlines()[-1])
    forged["head"]["seq"] = 9
    with witness.path.open("a") as handle:
        handle.write(canonical(forged) + "\n")
    result = audit.verify()
    assert result.problem is Problem.FORGED_WITNESS
    assert ":3" in result.reason  # the line it is on


def test_a_half_written_line_is_skipped(audit, witness):
    fill(audit, 2)
    with witness.path.open("a") as handle:
        handle.write('{"head": {"seq": 3, "ha')
    assert audit.verify().ok


def test_purged_entries_the_witness_saw_are_vouched_for_by_the_checkpoint(audit):
    fill(audit, 8)
    assert audit.purge(now=START + timedelta(days=34)) == 4
    result = audit.verify()
    assert result.ok, result.reason


def test_more_witnesses_can_be_given(audit, redis, tmp_path):
    fill(audit, 2)
    other = Witness(tmp_path / "other.jsonl")
    other.path.write_text(audit.witness.path.read_text())
    audit.witness.path.unlink()
    redis.delete(keys.audit_entries(), keys.audit_head())
    assert audit.verify().ok  # its own witness is gone
    assert audit.verify([other]).problem is Problem.WIPED


# -- the dashboard's quick check ------------------------------------------------------------

@pytest.fixture
def hashes(monkeypatch) -> list[int]:
    """How many entries are hashed: the work a verification does."""
    counted: list[int] = []
    original = Entry.computed_hash

    def counting(entry: Entry) -> str:
        counted.append(entry.seq)
        return original(entry)

    monkeypatch.setattr(Entry, "computed_hash", counting)
    return counted


def test_the_quick_check_hashes_only_what_came_after_the_newest_witnessed_head(
        audit, redis, hashes):
    fill(audit, 40)
    AuditLog(redis, KEYS).append(AuditKind.LOGIN, actor="unwitnessed")  # seen by no witness
    hashes.clear()

    result = audit.verify_recent()
    assert result.ok, result.reason
    assert result.checked_from == 40
    assert sorted(hashes) == [40, 41]
    assert "entries 40 to 41" in result.reason

    hashes.clear()
    assert audit.verify().ok
    assert len(hashes) == 41


@pytest.mark.parametrize("damage, problem", [
    (lambda r: r.delete(keys.audit_entries(), keys.audit_head()), Problem.WIPED),
    (lambda r: (r.rpop(keys.audit_entries())), Problem.TRUNCATED),
    (lambda r: r.lset(keys.audit_entries(), -1, "not json"), Problem.UNREADABLE),
], ids=["wiped", "cut", "edited"])
def test_the_quick_check_hands_anything_amiss_to_the_whole_check(audit, redis, damage,
                                                                problem):
    fill(audit, 5)
    damage(redis)
    result = audit.verify_recent()
    assert result.problem is problem, result.reason
    assert result.checked_from is None


def test_without_a_witnessed_head_the_quick_check_walks_everything(redis, hashes):
    audit = AuditLog(redis, KEYS)
    fill(audit, 3)
    hashes.clear()
    assert audit.verify_recent().ok
    assert len(hashes) == 3


# -- logs signed the old way ----------------------------------------------------------------

def legacy(purpose: str, record: dict) -> str:
    message = f"callflow-audit-{purpose}\n{canonical(record)}".encode()
    mac = hmac.new(LEGACY_SECRET.encode(), message, hashlib.sha256).hexdigest()
    return canonical({**record, "mac": mac})


def sign_the_old_way(redis) -> None:
    """Sign the log's head and checkpoint as the service did before Ed25519."""
    head = json.loads(redis.get(keys.audit_head()))
    redis.set(keys.audit_head(), legacy("head", {"seq": head["seq"], "hash": head["hash"]}))
    checkpoint = redis.get(keys.audit_checkpoint())
    if checkpoint:
        record = {k: v for k, v in json.loads(checkpoint).items() if k != "sig"}
        redis.set(keys.audit_checkpoint(), legacy("checkpoint", record))


def test_a_log_signed_the_old_way_verifies_with_the_secret_and_is_signed_again(redis):
    audit = AuditLog(redis, KEYS, retention_days=30, clock=lambda: START)
    fill(audit, 4)
    later = AuditLog(redis, KEYS, retention_days=30, clock=lambda: START + timedelta(days=40))
    assert later.purge() == 4
    sign_the_old_way(redis)

    assert later.verify().ok
    assert AuditLog(redis, PUBLIC_ONLY).verify().problem is Problem.FORGED_CHECKPOINT

    later.append(AuditKind.LOGIN, actor="maria")  # the head is signed again at once
    assert "sig" in json.loads(redis.get(keys.audit_head()))
    later.purge()  # and the checkpoint by the next purge
    assert "sig" in json.loads(redis.get(keys.audit_checkpoint()))
    result = AuditLog(redis, PUBLIC_ONLY).verify()
    assert result.ok, result.reason


def test_an_old_head_without_the_secret_is_not_trusted(redis):
    audit = AuditLog(redis, KEYS)
    fill(audit, 2)
    sign_the_old_way(redis)
    result = AuditLog(redis, AuditKeys.signing(KEYS.private)).verify()
    assert result.problem is Problem.FORGED_HEAD
    assert "signed the old way, with SECRET_KEY" in result.reason


def test_the_service_will_not_start_on_a_shared_redis_without_a_signing_key(settings, redis):
    from callflow.platform.errors import ConfigError
    from webhooks import create_app

    with pytest.raises(ConfigError, match="CALLFLOW_AUDIT_SIGNING_KEY is not set"):
        create_app({"TESTING": True, "STORE": redis,
                    "SETTINGS": dataclasses.replace(settings, audit_signing_key="")})


def test_a_public_key_reads_but_cannot_write(redis):
    from callflow.platform.errors import ConfigError

    with pytest.raises(ConfigError, match="only the public key"):
        AuditLog(redis, PUBLIC_ONLY).append(AuditKind.LOGIN, actor="maria")
