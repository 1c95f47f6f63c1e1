"""``callflow audit``: verify, export and purge from the command line, with their exit codes."""

from __future__ import annotations

import importlib
import json
import stat
from datetime import UTC, datetime, timedelta

import pytest
import redis as redis_lib
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow import keys
from callflow.audit import AuditKind, AuditLog, canonical
from callflow.cli import cli
from tests.conftest import free_port

# The module, not the ``audit`` group that ``callflow.cli`` exports under the same name.
audit_cli = importlib.import_module("callflow.cli.audit")
SECRET = "test-secret"
# Old enough that the default retention (183 days) has long passed, whenever the tests run.
OLD = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture
def env(redis_url) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SECRET_KEY": SECRET, "CALLFLOW_AUDIT_RETENTION_DAYS": "183"}


def seed(redis, old: int = 3, new: int = 2) -> None:
    """``old`` entries a day apart from 2020, then ``new`` written now."""
    moments = iter([OLD + timedelta(days=n) for n in range(old)])
    past = AuditLog(redis, SECRET, clock=lambda: next(moments))
    for n in range(old):
        past.append(AuditKind.LOGIN, actor=f"m{n}")
    present = AuditLog(redis, SECRET)
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
    entries = [json.loads(line) for line in result.output.splitlines()]
    assert [e["seq"] for e in entries] == [2, 3, 4, 5]
    assert all(e["hash"] for e in entries)


def test_export_to_a_private_file(runner, redis, env, tmp_path):
    seed(redis)
    target = tmp_path / "audit.jsonl"
    result = runner.invoke(audit_cli.audit, ["export", "--since", "2020-01-03T00:00:00",
                                 "--output", str(target)], env=env)
    assert result.exit_code == 0, result.output
    assert "exported 3 entries" in result.output
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [3, 4, 5]
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


@pytest.mark.parametrize("arguments", [["export"], ["export", "--since", "yesterday"]])
def test_export_needs_a_date(runner, env, arguments):
    result = runner.invoke(audit_cli.audit, [*arguments], env=env)
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
    assert [e.seq for e in AuditLog(redis, SECRET).entries()] == [4, 5, 6]
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


@pytest.mark.parametrize("command", [["verify"], ["export", "--since", "2020-01-01"], ["purge"]])
def test_without_a_secret_key_nothing_runs(runner, env, command):
    result = runner.invoke(audit_cli.audit, [*command], env={**env, "SECRET_KEY": ""})
    assert result.exit_code == 2
    assert "SECRET_KEY is not set" in result.output


@pytest.mark.parametrize("command", [["verify"], ["export", "--since", "2020-01-01"], ["purge"]])
def test_an_unreachable_store_exits_2(runner, env, monkeypatch, command):
    def dead(settings):
        return redis_lib.Redis(port=free_port(), socket_timeout=0.2, socket_connect_timeout=0.2,
                               decode_responses=True, retry=Retry(NoBackoff(), 0))

    monkeypatch.setattr(audit_cli, "connect", dead)
    result = runner.invoke(audit_cli.audit, [*command], env=env)
    assert result.exit_code == 2
    assert "could not be" in result.output
