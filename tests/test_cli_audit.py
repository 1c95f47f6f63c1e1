"""``callflow audit``: verify, export and purge from the command line, with their exit codes."""

from __future__ import annotations

import importlib
import json
import logging
import stat
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow.cli import cli
from callflow.platform import keys
from callflow.platform.logs import JsonFormatter
from callflow.records.audit import AuditKind, AuditLog, canonical
from tests.audit_keys import KEYS
from tests.conftest import free_port

# The module, not the ``audit`` group that ``callflow.cli`` exports under the same name.
audit_cli = importlib.import_module("callflow.cli.audit")
SECRET = "test-secret"
# Old enough that the default retention (183 days) has long passed, whenever the tests run.
OLD = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def env(redis_url, redis) -> dict[str, str]:
    """The environment of the commands, on an emptied Redis."""
    return {"REDIS_URL": redis_url, "SECRET_KEY": SECRET, "CALLFLOW_AUDIT_RETENTION_DAYS": "183"}


def seed(redis, old: int = 3, new: int = 2) -> None:
    """``old`` entries a day apart from 2020, then ``new`` written now."""
    moments = iter([OLD + timedelta(days=n) for n in range(old)])
    past = AuditLog(redis, KEYS, clock=lambda: next(moments))
    for n in range(old):
        past.append(AuditKind.LOGIN, actor=f"m{n}")
    present = AuditLog(redis, KEYS)
    for n in range(new):
        present.append(AuditKind.MONITOR_REQUESTED, actor="alice", purpose="quality", n=n)


def test_the_group_is_registered(runner):
    result = runner.invoke(cli, ["audit", "--help"])
    assert result.exit_code == 0
    for command in ("verify", "export", "purge"):
        assert command in result.output


def test_verify_an_intact_log(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["verify"], env=env)
    assert result.exit_code == 0, result.output
    assert "ok: 5 entries verified" in result.output


def edit(redis) -> None:
    entry = json.loads(redis.lindex(keys.audit_entries(), 1))
    entry["actor"] = "mallory"
    redis.lset(keys.audit_entries(), 1, canonical(entry))


def remove(redis) -> None:
    redis.lrem(keys.audit_entries(), 1, redis.lindex(keys.audit_entries(), 2))


def reorder(redis) -> None:
    first, second = redis.lrange(keys.audit_entries(), 0, 1)
    redis.lset(keys.audit_entries(), 0, second)
    redis.lset(keys.audit_entries(), 1, first)


def truncate(redis) -> None:
    redis.rpop(keys.audit_entries())


@pytest.mark.parametrize("tamper, message", [
    (edit, "entry 2: edited"),
    (remove, "entry 3: removed"),
    (reorder, "entry 2: reordered"),
    (truncate, "entry 5: truncated"),
])
def test_verify_names_the_first_bad_entry(runner, redis, env, tamper, message):
    seed(redis)
    tamper(redis)
    result = runner.invoke(audit_cli.audit, ["verify"], env=env)
    assert result.exit_code == 1
    assert message in result.output


def test_export_since_a_date_to_stdout(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["export", "--since", "2020-01-02"], env=env)
    assert result.exit_code == 0, result.output
    start, *entries, head = [json.loads(line) for line in result.output.splitlines()]
    assert [e["seq"] for e in entries] == [2, 3, 4, 5]
    assert all(e["hash"] for e in entries)
    assert (start["start"]["seq"], start["start"]["from"]) == (1, "since")
    assert head["head"]["seq"] == 5


def test_export_to_a_private_file(runner, redis, env, tmp_path):
    seed(redis)
    target = tmp_path / "audit.jsonl"
    result = runner.invoke(audit_cli.audit, ["export", "--since", "2020-01-03T00:00:00",
                                 "--output", str(target)], env=env)
    assert result.exit_code == 0, result.output
    assert "exported 3 entries" in result.output
    lines = target.read_text(encoding="utf-8").splitlines()[1:-1]
    assert [json.loads(line)["seq"] for line in lines] == [3, 4, 5]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_export_without_a_date_exports_everything(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["export"], env=env)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert [e["seq"] for e in lines[1:-1]] == [1, 2, 3, 4, 5]
    assert lines[0]["start"]["from"] == "genesis" and lines[-1]["head"]["seq"] == 5


def test_export_refuses_a_date_it_cannot_read(runner, env):
    result = runner.invoke(audit_cli.audit, ["export", "--since", "yesterday"], env=env)
    assert result.exit_code == 2
    assert "--since" in result.output


def test_purge_dry_run_removes_nothing(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["purge", "--dry-run"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 entries older than 183 days" in result.output
    assert redis.llen(keys.audit_entries()) == 5


def test_purge_removes_old_entries_and_verify_still_passes(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["purge"], env=env)
    assert result.exit_code == 0, result.output
    assert "removed 3 entries older than 183 days" in result.output
    assert [e.seq for e in AuditLog(redis, KEYS).entries()] == [4, 5, 6]
    result = runner.invoke(audit_cli.audit, ["verify"], env=env)
    assert result.exit_code == 0, result.output


def test_purge_respects_the_configured_retention(runner, redis, env):
    seed(redis)
    result = runner.invoke(audit_cli.audit, ["purge", "--dry-run"],
                           env={**env, "CALLFLOW_AUDIT_RETENTION_DAYS": "100000"})
    assert result.exit_code == 0, result.output
    assert "0 entries older than 100000 days" in result.output


def test_purge_refuses_a_tampered_log(runner, redis, env):
    seed(redis)
    edit(redis)
    result = runner.invoke(audit_cli.audit, ["purge"], env=env)
    assert result.exit_code == 1
    assert "nothing was removed" in result.output
    assert redis.llen(keys.audit_entries()) == 5


@pytest.mark.parametrize("command", [["verify"], ["export"], ["purge"], ["public-key"]])
def test_without_a_signing_key_nothing_runs(runner, env, command):
    result = runner.invoke(audit_cli.audit, [*command],
                           env={**env, "CALLFLOW_AUDIT_SIGNING_KEY": ""})
    assert result.exit_code == 2
    assert "CALLFLOW_AUDIT_SIGNING_KEY is not set" in result.output


@pytest.mark.parametrize("command", [["verify"], ["export", "--since", "2020-01-01"], ["purge"]])
def test_an_unreachable_store_exits_2(runner, env, monkeypatch, command):
    def dead(settings):
        return redis_lib.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                               decode_responses=True, retry=Retry(NoBackoff(), 0))

    monkeypatch.setattr(audit_cli, "connect", dead)
    result = runner.invoke(audit_cli.audit, [*command], env=env)
    assert result.exit_code == 2
    assert "could not be" in result.output


# -- the witness: a rollback, a cut or a wipe of Redis shows -----------------------------------

AUDIT_KEYS = (keys.audit_entries(), keys.audit_head(), keys.audit_checkpoint())


def record(runner, env, count: int) -> None:
    """``count`` entries written by the service's own command (each exception is one)."""
    for _ in range(count):
        result = runner.invoke(cli, ["exception", "record", "--by", "helen", "--call",
                                     "c0123456789abcdef0123", "--ground", "perpetrator_risk",
                                     "--agency", "police", "--caller-informed"], env=env)
        assert result.exit_code == 0, result.output


def saved(redis_url) -> dict[str, bytes]:
    """The audit keys as an attacker with access to Redis would save them (DUMP)."""
    raw = redis_lib.Redis.from_url(redis_url)
    try:
        return {key: raw.dump(key) for key in AUDIT_KEYS if raw.exists(key)}
    finally:
        raw.close()


def put_back(redis_url, keys_saved: dict[str, bytes]) -> None:
    raw = redis_lib.Redis.from_url(redis_url)
    try:
        raw.delete(*AUDIT_KEYS)
        for key, value in keys_saved.items():
            raw.restore(key, 0, value)
    finally:
        raw.close()


def verify_fails(runner, env, *words: str) -> str:
    result = runner.invoke(cli, ["audit", "verify"], env=env)
    assert result.exit_code == 1, result.output
    for word in words:
        assert word in result.output
    return result.output


def test_restoring_saved_keys_after_more_entries_is_a_rollback(runner, redis_url, env):
    record(runner, env, 3)
    earlier = saved(redis_url)
    record(runner, env, 3)
    put_back(redis_url, earlier)

    verify_fails(runner, env, "entry 4: rolled_back", "entries 4 to 6 are missing",
                 "stops at entry 3")


def test_a_rollback_written_over_again_is_caught(runner, redis_url, env):
    record(runner, env, 3)
    earlier = saved(redis_url)
    record(runner, env, 2)
    put_back(redis_url, earlier)
    record(runner, env, 4)  # the chain now runs to 7 again, through other entries

    verify_fails(runner, env, "entry 4: rolled_back", "entry 4 is not the entry the witness saw")


def test_a_tail_cut_under_an_older_signed_head_is_caught(runner, redis, redis_url, env):
    record(runner, env, 3)
    older_head = redis.get(keys.audit_head())
    record(runner, env, 2)
    redis.ltrim(keys.audit_entries(), 0, 2)
    redis.set(keys.audit_head(), older_head)

    verify_fails(runner, env, "entry 4: rolled_back", "entries 4 to 5 are missing")


def test_deleting_every_audit_key_is_a_wipe_not_an_empty_log(runner, redis, env):
    record(runner, env, 2)
    redis.delete(*AUDIT_KEYS)

    output = verify_fails(runner, env, "wiped", "witness saw entries up to 2")
    assert "ok" not in output


def test_the_structured_log_is_a_second_witness(runner, redis_url, env, tmp_path, caplog,
                                                audit_environment):
    record(runner, env, 2)
    earlier = saved(redis_url)
    with caplog.at_level(logging.INFO):
        record(runner, env, 2)
    service_log = tmp_path / "service.log"  # the service's JSON log, as a shipper collects it
    formatter = JsonFormatter()
    service_log.write_text("".join(formatter.format(r) + "\n" for r in caplog.records))
    audit_environment.unlink()  # the witness file is gone with the machine
    put_back(redis_url, earlier)

    assert runner.invoke(cli, ["audit", "verify"], env=env).exit_code == 0
    result = runner.invoke(cli, ["audit", "verify", "--witness", str(service_log)], env=env)
    assert result.exit_code == 1, result.output
    assert "entries 3 to 4 are missing" in result.output


# -- the public key and offline verification ----------------------------------------------------

OFFLINE = {"REDIS_URL": None, "SECRET_KEY": None, "CALLFLOW_AUDIT_SIGNING_KEY": None,
           "CALLFLOW_AUDIT_WITNESS": None}


def test_an_export_is_verified_offline_with_the_public_key_alone(runner, redis, env, tmp_path):
    seed(redis)
    target, key = tmp_path / "audit.jsonl", tmp_path / "audit-public.pem"
    assert runner.invoke(cli, ["audit", "export", "-o", str(target)], env=env).exit_code == 0
    result = runner.invoke(cli, ["audit", "public-key", "-o", str(key)], env=env)
    assert result.exit_code == 0, result.output
    assert key.read_text().startswith("-----BEGIN PUBLIC KEY-----")

    offline = runner.invoke(cli, ["audit", "verify", "--file", str(target), "--public-key",
                                  str(key)], env=OFFLINE)
    assert offline.exit_code == 0, offline.output
    assert "ok: 5 entries verified from the start of the log to entry 5" in offline.output

    lines = target.read_text().splitlines(keepends=True)
    del lines[3]
    target.write_text("".join(lines))
    offline = runner.invoke(cli, ["audit", "verify", "--file", str(target), "--public-key",
                                  str(key)], env=OFFLINE)
    assert offline.exit_code == 1
    assert "entry 3: removed" in offline.output


def test_verify_in_place_with_the_public_key_alone(runner, redis, env, tmp_path):
    seed(redis)
    key = tmp_path / "audit-public.pem"
    key.write_text(KEYS.public_pem())
    result = runner.invoke(cli, ["audit", "verify", "--public-key", str(key)],
                           env={**env, "CALLFLOW_AUDIT_SIGNING_KEY": None})
    assert result.exit_code == 0, result.output


def test_a_key_that_is_not_ed25519_is_refused(runner, env, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    result = runner.invoke(cli, ["audit", "verify"],
                           env={**env, "CALLFLOW_AUDIT_SIGNING_KEY": pem})
    assert result.exit_code == 2
    assert "not an Ed25519 key" in result.output
    result = runner.invoke(cli, ["audit", "verify"], env={
        **env, "CALLFLOW_AUDIT_SIGNING_KEY": str(tmp_path / "missing.pem")})
    assert result.exit_code == 2
    assert "cannot be read" in result.output


def test_local_mode_keeps_its_signing_key_and_witness_beside_the_embedded_store(runner,
                                                                                 tmp_path):
    data = tmp_path / "callflow-data"
    local = {**OFFLINE, "CALLFLOW_EMBEDDED_DB": str(data / "callflow.db")}
    first = runner.invoke(cli, ["audit", "public-key"], env=local)
    assert first.exit_code == 0, first.output
    key_file = data / "audit-signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert runner.invoke(cli, ["audit", "public-key"], env=local).output == first.output

    record(runner, local, 1)
    assert (data / "audit-witness.jsonl").read_text().count('"head"') == 1
    result = runner.invoke(cli, ["audit", "verify"], env=local)
    assert result.exit_code == 0, result.output
    assert "its witness agrees" in result.output
