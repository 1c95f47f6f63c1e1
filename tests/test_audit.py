"""The audit log: the chain, tamper detection, concurrency, purge, fail-closed, no caller data."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow.platform import keys
from callflow.platform.config import Settings
from callflow.platform.errors import AuditChainBroken, AuditUnavailable, CallflowError, ConfigError
from callflow.records.audit import (
    GENESIS,
    AuditKind,
    AuditLog,
    Entry,
    Problem,
    canonical,
    sha256,
)
from callflow.records.audit_export import export_lines
from tests.audit_keys import KEYS, other_keys
from tests.conftest import CANARY_NUMBER, assert_no_canary, free_port, store_dump

SECRET = "test-secret"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class Ticker:
    """A clock that moves on a fixed step at every read, so each entry has its own time."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(days=1)) -> None:
        self.now = start
        self.step = step
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            now = self.now
            self.now += self.step
            return now


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def audit(redis, ticker) -> AuditLog:
    return AuditLog(redis, KEYS, retention_days=30, clock=ticker)


def fill(audit: AuditLog, count: int) -> list[Entry]:
    return [audit.append(AuditKind.LOGIN, actor=f"manager{n}", via="web") for n in range(count)]


def stored(redis) -> list[str]:
    return redis.lrange(keys.audit_entries(), 0, -1)


def rewrite(redis, position: int, change) -> None:
    """Change the stored entry at ``position`` (0-based) with ``change(dict)``."""
    entry = json.loads(stored(redis)[position])
    change(entry)
    redis.lset(keys.audit_entries(), position, canonical(entry))


def rehash(entry: dict) -> None:
    entry["hash"] = sha256(canonical({k: v for k, v in entry.items() if k != "hash"}))


def dead_client() -> redis_lib.Redis:
    """A client of a Redis that is not there: nothing listens on the port."""
    return redis_lib.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                           decode_responses=True, retry=Retry(NoBackoff(), 0))


# The chain


def test_an_empty_log_verifies(audit):
    result = audit.verify()
    assert result.ok and result.count == 0


def test_the_chain_grows_and_verifies(audit):
    entries = fill(audit, 5)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev == GENESIS
    for before, after in zip(entries, entries[1:], strict=False):
        assert after.prev == before.hash
    for entry in entries:
        assert entry.hash == sha256(canonical({k: v for k, v in entry.to_dict().items()
                                               if k != "hash"}))
    result = audit.verify()
    assert result.ok, result.reason
    assert result.count == 5 and result.first_bad_seq is None


def test_an_entry_is_stored_as_it_is_returned(audit, redis):
    entry = audit.append("monitor_requested", actor="alice", call="CA" + "0" * 32,
                         purpose="quality", files=("a.yaml",))
    assert json.loads(stored(redis)[0]) == entry.to_dict()
    assert entry.data == {"call": "CA" + "0" * 32, "purpose": "quality", "files": ["a.yaml"]}
    assert entry.kind == "monitor_requested" and entry.actor == "alice"
    assert datetime.fromisoformat(entry.at) == START


def test_entries_filter_by_time_kind_and_limit(audit):
    fill(audit, 3)
    audit.append(AuditKind.LOCKOUT, subject="account")
    audit.append(AuditKind.LOGIN, actor="bob")
    assert [e.seq for e in audit.entries(since=START + timedelta(days=2))] == [3, 4, 5]
    assert [e.seq for e in audit.entries(kind="login")] == [1, 2, 3, 5]
    assert [e.seq for e in audit.entries(kind=AuditKind.LOCKOUT)] == [4]
    assert [e.seq for e in audit.entries(limit=2)] == [1, 2]
    naive = datetime(2026, 1, 8, 9, 0)  # taken as UTC
    assert [e.seq for e in audit.entries(since=naive)] == [4, 5]


def test_export_writes_json_lines_with_hashes(audit):
    entries = fill(audit, 3)
    lines = export_lines(audit, since=START + timedelta(days=1))
    assert all(line.endswith("\n") for line in lines)
    assert [json.loads(line) for line in lines[1:-1]] == [e.to_dict() for e in entries[1:]]


@pytest.mark.parametrize("kind", ["monitor_granted", "nonsense", ""])
def test_only_known_kinds_are_written(audit, kind):
    if kind == "monitor_granted":
        assert audit.append(kind).kind == kind
    else:
        with pytest.raises(ValueError, match="unknown audit kind"):
            audit.append(kind)


def test_every_kind_in_the_brief_exists():
    assert {k.value for k in AuditKind} >= {
        "monitor_requested", "monitor_granted", "monitor_refused", "monitor_started",
        "monitor_ended", "login", "login_failed", "lockout", "staff_changed", "flow_reloaded",
        "flow_reload_refused", "exception_recorded", "purged"}


def test_a_listen_of_unknown_outcome_and_an_alarm_are_kinds_of_their_own():
    assert {AuditKind.MONITOR_UNKNOWN.value, AuditKind.ALARM.value} == {
        "monitor_outcome_unknown", "alarm"}


@pytest.mark.parametrize("signing, days", [(SECRET, 183), (KEYS, 0), (KEYS, -1)])
def test_misconfiguration_is_refused(redis, signing, days):
    with pytest.raises(ConfigError):
        AuditLog(redis, signing, retention_days=days)


def test_settings_carry_the_retention(redis, tmp_path):
    assert Settings.from_env({}).retention_days == 183
    settings = Settings.from_env({"CALLFLOW_AUDIT_RETENTION_DAYS": "30", "SECRET_KEY": "k",
                                  "CALLFLOW_EMBEDDED_DB": str(tmp_path / "callflow.db")})
    assert AuditLog.from_settings(redis, settings).retention_days == 30


# Tampering


def edit_field(redis) -> None:
    rewrite(redis, 2, lambda e: e["data"].update(via="phone"))


def edit_and_rehash(redis) -> None:
    rewrite(redis, 2, lambda e: (e.update(actor="mallory"), rehash(e)))


def edit_seq(redis) -> None:
    rewrite(redis, 2, lambda e: e.update(seq=9))


def delete_middle(redis) -> None:
    redis.lrem(keys.audit_entries(), 1, stored(redis)[2])


def delete_two(redis) -> None:
    for text in stored(redis)[2:4]:
        redis.lrem(keys.audit_entries(), 1, text)


def delete_first(redis) -> None:
    redis.lpop(keys.audit_entries())


def swap_adjacent(redis) -> None:
    texts = stored(redis)
    redis.lset(keys.audit_entries(), 2, texts[3])
    redis.lset(keys.audit_entries(), 3, texts[2])


def swap_apart(redis) -> None:
    texts = stored(redis)
    redis.lset(keys.audit_entries(), 1, texts[4])
    redis.lset(keys.audit_entries(), 4, texts[1])


def truncate_tail(redis) -> None:
    redis.rpop(keys.audit_entries(), 2)


def truncate_last(redis) -> None:
    redis.rpop(keys.audit_entries())


def replace_last(redis) -> None:
    rewrite(redis, 5, lambda e: (e.update(actor="mallory"), rehash(e)))


def unreadable(redis) -> None:
    redis.lset(keys.audit_entries(), 2, "not json")


def forge_head(redis) -> None:
    head = json.loads(redis.get(keys.audit_head()))
    redis.set(keys.audit_head(), canonical({**head, "seq": 4}))


def delete_head(redis) -> None:
    redis.delete(keys.audit_head())


def add_outside(redis) -> None:
    last = json.loads(stored(redis)[-1])
    extra = {**last, "seq": last["seq"] + 1, "prev": last["hash"], "actor": "mallory"}
    rehash(extra)
    redis.rpush(keys.audit_entries(), canonical(extra))


def rebuild_without_the_key(redis) -> None:
    """Drop entry 3, renumber and rehash everything after it, and write a matching head."""
    texts = stored(redis)
    redis.delete(keys.audit_entries())
    prev = GENESIS
    kept = [json.loads(t) for i, t in enumerate(texts) if i != 2]
    for seq, entry in enumerate(kept, start=1):
        entry.update(seq=seq, prev=prev)
        rehash(entry)
        prev = entry["hash"]
        redis.rpush(keys.audit_entries(), canonical(entry))
    redis.set(keys.audit_head(), canonical({"seq": len(kept), "hash": prev, "mac": "0" * 64}))


TAMPERING = [
    # (how, problem found, first bad seq)
    (edit_field, Problem.EDITED, 3),
    (edit_and_rehash, Problem.EDITED, 3),
    (edit_seq, Problem.EDITED, 3),
    (delete_middle, Problem.REMOVED, 3),
    (delete_two, Problem.REMOVED, 3),
    (delete_first, Problem.REMOVED, 1),
    (swap_adjacent, Problem.REORDERED, 4),
    (swap_apart, Problem.REORDERED, 5),
    (truncate_tail, Problem.TRUNCATED, 5),
    (truncate_last, Problem.TRUNCATED, 6),
    (replace_last, Problem.EDITED, 6),
    (unreadable, Problem.UNREADABLE, 3),
    (forge_head, Problem.FORGED_HEAD, None),
    (delete_head, Problem.TRUNCATED, 7),
    (add_outside, Problem.ADDED, 7),
    (rebuild_without_the_key, Problem.FORGED_HEAD, None),
]


@pytest.mark.parametrize("tamper, problem, first_bad", TAMPERING,
                         ids=[t[0].__name__ for t in TAMPERING])
def test_tampering_is_detected(audit, redis, tamper, problem, first_bad):
    fill(audit, 6)
    assert audit.verify().ok
    tamper(redis)
    result = audit.verify()
    assert not result.ok
    assert result.problem is problem, result.reason
    assert result.first_bad_seq == first_bad, result.reason
    assert result.reason


@pytest.mark.parametrize("tamper", [forge_head, delete_head],
                         ids=["forged head", "missing head"])
def test_nothing_is_appended_to_a_log_with_a_broken_head(audit, redis, tamper):
    fill(audit, 2)
    tamper(redis)
    with pytest.raises(AuditChainBroken):
        audit.append(AuditKind.LOGIN)


def test_a_different_key_cannot_vouch_for_the_log(audit, redis):
    fill(audit, 2)
    result = AuditLog(redis, other_keys()).verify()
    assert result.problem is Problem.FORGED_HEAD


# Concurrency


def test_concurrent_appends_keep_one_chain(redis_url, redis):
    writers, each = 6, 15

    def write(n: int) -> list[int]:
        client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        try:
            log = AuditLog(client, KEYS)
            return [log.append(AuditKind.MONITOR_REQUESTED, actor=f"m{n}", i=i).seq
                    for i in range(each)]
        finally:
            client.close()

    with ThreadPoolExecutor(max_workers=writers) as pool:
        seqs = [seq for result in pool.map(write, range(writers)) for seq in result]
    assert sorted(seqs) == list(range(1, writers * each + 1))
    result = AuditLog(redis, KEYS).verify()
    assert result.ok, result.reason
    assert result.count == writers * each


# Retention


def test_purge_removes_only_old_entries_and_keeps_the_chain(audit, redis):
    entries = fill(audit, 10)  # one a day from START
    now = START + timedelta(days=36)  # cutoff: START + 6 days
    assert audit.purge(now=now, dry_run=True) == 6
    assert len(stored(redis)) == 10
    assert audit.purge(now=now) == 6
    left = audit.entries()
    assert [e.seq for e in left] == [7, 8, 9, 10, 11]
    assert all(e.when >= START + timedelta(days=6) for e in left[:4])
    purged = left[-1]
    assert purged.kind == "purged"
    assert purged.data == {"count": 6, "through_seq": 6, "retention_days": 30}
    checkpoint = json.loads(redis.get(keys.audit_checkpoint()))
    assert (checkpoint["seq"], checkpoint["hash"], checkpoint["count"]) == (6, entries[5].hash, 6)
    result = audit.verify()
    assert result.ok, result.reason
    assert result.count == 5
    fill(audit, 1)
    assert audit.verify().ok


def test_purge_twice_and_when_nothing_is_due(audit, redis):
    fill(audit, 10)
    assert audit.purge(now=START + timedelta(days=32)) == 2
    assert audit.purge(now=START + timedelta(days=32)) == 0
    assert audit.purge(now=START + timedelta(days=35)) == 3
    assert [e.seq for e in audit.entries()][:2] == [6, 7]
    assert audit.verify().ok


def test_purge_of_everything_old_leaves_a_verifiable_log(audit):
    fill(audit, 3)
    assert audit.purge(now=START + timedelta(days=400)) == 3
    result = audit.verify()
    assert result.ok and result.count == 1


def forge_checkpoint_count(redis) -> None:
    checkpoint = json.loads(redis.get(keys.audit_checkpoint()))
    redis.set(keys.audit_checkpoint(), canonical({**checkpoint, "count": 1}))


def forge_a_deeper_cut(redis) -> None:
    """Drop two more entries and claim a purge did it, without the key."""
    texts = stored(redis)
    second = json.loads(texts[1])
    redis.ltrim(keys.audit_entries(), 2, -1)
    redis.set(keys.audit_checkpoint(), canonical({"seq": second["seq"], "hash": second["hash"],
                                                  "at": "2026-03-01T00:00:00+00:00",
                                                  "count": 2, "mac": "f" * 64}))


def delete_checkpoint(redis) -> None:
    redis.delete(keys.audit_checkpoint())


def cut_after_checkpoint(redis) -> None:
    redis.lpop(keys.audit_entries())


CHECKPOINT_TAMPERING = [
    (forge_checkpoint_count, Problem.FORGED_CHECKPOINT, None),
    (forge_a_deeper_cut, Problem.FORGED_CHECKPOINT, None),
    (delete_checkpoint, Problem.REMOVED, 1),
    (cut_after_checkpoint, Problem.REMOVED, 5),
]


@pytest.mark.parametrize("tamper, problem, first_bad", CHECKPOINT_TAMPERING,
                         ids=[t[0].__name__ for t in CHECKPOINT_TAMPERING])
def test_tampering_with_the_checkpoint_is_detected(audit, redis, tamper, problem, first_bad):
    fill(audit, 8)
    assert audit.purge(now=START + timedelta(days=34)) == 4
    assert audit.verify().ok
    tamper(redis)
    result = audit.verify()
    assert result.problem is problem, result.reason
    assert result.first_bad_seq == first_bad


def test_a_tampered_log_is_not_purged(audit, redis):
    fill(audit, 6)
    edit_field(redis)
    before = stored(redis)
    with pytest.raises(AuditChainBroken, match="entry 3 was edited"):
        audit.purge(now=START + timedelta(days=100))
    assert stored(redis) == before
    assert redis.get(keys.audit_checkpoint()) is None


def test_a_purge_job_can_build_the_log_from_settings(redis, tmp_path):
    settings = Settings(secret_key=SECRET, retention_days=1,
                        embedded_db=str(tmp_path / "callflow.db"))
    audit = AuditLog.from_settings(redis, settings)
    audit.append(AuditKind.LOGIN)
    assert audit.purge(now=datetime.now(UTC) + timedelta(days=2)) == 1
    assert audit.verify().ok


# Failing closed


@pytest.mark.parametrize("action", [
    lambda log: log.append(AuditKind.MONITOR_REQUESTED, actor="alice", purpose="quality"),
    lambda log: log.verify(),
    lambda log: log.entries(),
    lambda log: export_lines(log),
    lambda log: log.purge(),
], ids=["append", "verify", "entries", "export", "purge"])
def test_an_unreachable_store_raises_audit_unavailable(action):
    client = dead_client()
    with pytest.raises(AuditUnavailable) as caught:
        action(AuditLog(client, KEYS))
    assert isinstance(caught.value, CallflowError)
    client.close()


# No caller data


CALLER_DATA = [
    {"From": "anonymous"},
    {"Caller": "x"},
    {"CallerName": "someone"},
    {"ForwardedFrom": "x"},
    {"FromCity": "x"},
    {"CallerCountry": "GB"},
    {"caller_name": "x"},
    {"from_": "x"},
    {"StirVerstat": "TN-Validation-Passed-A"},
    {"number": CANARY_NUMBER},
    {"note": f"rang from {CANARY_NUMBER} twice"},
    {"note": "07700 900666"},
    {"note": "+44 (0)7700-900-666"},
    {"note": "+44 2026-11-25"},
    {"nested": {"deeper": [CANARY_NUMBER]}},
    {"nested": {"CallerName": "x"}},
    {CANARY_NUMBER: "key"},
    {"count": 447700900666},
    {"when": datetime(2026, 1, 1, tzinfo=UTC)},
    {"ratio": float("nan")},
]


@pytest.mark.parametrize("data", CALLER_DATA, ids=[str(i) for i in range(len(CALLER_DATA))])
def test_caller_data_is_refused_and_nothing_written(audit, redis, data):
    with pytest.raises(ValueError) as caught:
        audit.append(AuditKind.EXCEPTION_RECORDED, actor="alice", **data)
    assert_no_canary(str(caught.value))
    assert "900666" not in str(caught.value)
    assert redis.llen(keys.audit_entries()) == 0


@pytest.mark.parametrize("actor", [CANARY_NUMBER, "", "  "])
def test_actor_must_be_a_name(audit, actor):
    with pytest.raises(ValueError):
        audit.append(AuditKind.LOGIN, actor=actor)


ALLOWED_DATA = [
    {"call": "CA" + "0123456789abcdef" * 2},
    {"files": {"flows/respect.yaml": sha256("steps: []")}},
    {"since": "2026-11-25T12:00:00.123456+00:00"},
    {"note": "shared on 2026-11-25 with the police"},
    {"count": 4, "ok": True, "nothing": None, "ratio": 0.5},
    {"reason": "rate_limited", "purpose": "training"},
]


@pytest.mark.parametrize("data", ALLOWED_DATA, ids=[str(i) for i in range(len(ALLOWED_DATA))])
def test_ordinary_data_is_written(audit, data):
    assert audit.append(AuditKind.MONITOR_REFUSED, actor="alice", **data).data == data


def test_the_canary_number_is_never_stored(audit, redis, caplog):
    for attempt in ({"From": CANARY_NUMBER}, {"note": CANARY_NUMBER},
                    {"call": CANARY_NUMBER.lstrip("+")}):
        with pytest.raises(ValueError):
            audit.append(AuditKind.MONITOR_REQUESTED, actor="alice", **attempt)
    audit.append(AuditKind.MONITOR_REQUESTED, actor="alice", purpose="quality")
    audit.purge(now=START + timedelta(days=100))
    export_lines(audit)
    assert_no_canary(store_dump(redis), caplog.text)
