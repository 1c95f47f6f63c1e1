"""`callflow exception record|list`: the exceptions register from a terminal, in the chain."""

from __future__ import annotations

import json

import pytest

from callflow.records.audit import AuditLog
from tests.audit_keys import KEYS
from webhooks.cli import cli

SECRET = "a-test-secret-key-for-the-audit-log-0123456789"


@pytest.fixture
def env(redis_url, redis, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SECRET_KEY", SECRET)
    return redis


def run(runner, *args):
    return runner.invoke(cli, ["exception", *args])


def test_a_recorded_exception_is_an_audit_entry_that_verifies(runner, env):
    result = run(runner, "record", "--by", "helen", "--call", "c0123456789abcdef0123",
                 "--ground", "safeguarding_child_or_vulnerable_adult", "--agency",
                 "social_services", "--caller-not-informed", "--why-not", "not_safe",
                 "--detail", "telling the caller would have put the child at risk")
    assert result.exit_code == 0, result.output
    assert "recorded as audit entry 1" in result.output

    log = AuditLog(env, KEYS)
    [entry] = log.entries()
    assert entry.kind == "exception_recorded" and entry.actor == "helen"
    assert entry.data == {"call": "c0123456789abcdef0123", "agency": "social_services",
                          "grounds": ["safeguarding_child_or_vulnerable_adult"],
                          "caller_informed": False, "why_not": "not_safe",
                          "detail": "telling the caller would have put the child at risk"}
    assert log.verify().ok

    listed = run(runner, "list")
    assert listed.exit_code == 0
    assert [json.loads(line)["seq"] for line in listed.output.splitlines()] == [1]


@pytest.mark.parametrize("args, message", [
    (["--caller-not-informed"], "why_not: say why"),
    (["--caller-not-informed", "--why-not", "it was late"], "'it was late' is not one of"),
    (["--caller-informed", "--why-not", "not_safe"], "only for when the caller was not informed"),
    (["--caller-not-informed", "--why-not", "not_safe", "--detail", "lives at 14 Acacia Avenue"],
     "never who or where"),
], ids=["no reason", "free text as the reason", "reason though informed", "an address"])
def test_an_entry_that_says_too_little_is_refused_and_nothing_written(runner, env, args,
                                                                     message):
    result = run(runner, "record", "--by", "helen", "--call", "c0123456789abcdef0123",
                 "--ground", "perpetrator_risk", "--agency", "police", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Acacia" not in result.output
    assert AuditLog(env, KEYS).entries() == []


def test_a_phone_number_given_as_the_call_is_refused(runner, env):
    result = run(runner, "record", "--by", "helen", "--call", "+447700900666", "--ground",
                 "caller_consent", "--agency", "partner", "--caller-informed")
    assert result.exit_code == 2
    assert "447700900666" not in result.output  # not even echoed back
    assert AuditLog(env, KEYS).entries() == []
