"""``callflow shift``: sign workers on and off from the command line, audited as who ran it."""

from __future__ import annotations

import getpass

import pytest
from rq import Queue
from rq.serializers import JSONSerializer

from callflow.cli import cli
from callflow.platform.jobspec import QUEUE_NAME
from callflow.records.audit import AuditKind, AuditLog
from callflow.runtime import raw_client
from callflow.staff.shifts import Shifts, WorkerState
from tests.audit_keys import KEYS
from tests.conftest import FLOWS, OPEN_TIME

ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def shift(runner, redis_url, redis):
    env = {"REDIS_URL": redis_url, "SECRET_KEY": "test-secret", "CALLFLOW_FLOWS": str(FLOWS)}

    def run(*args: str):
        return runner.invoke(cli, ["shift", *args], env=env)

    return run


def state(redis, name: str) -> WorkerState:
    return Shifts(redis, lambda: OPEN_TIME).status(name).state


def entries(redis) -> list[tuple[str, str, dict]]:
    return [(e.kind, e.actor, e.data) for e in AuditLog(redis, KEYS).entries()
            if e.kind in (AuditKind.SHIFT_STARTED, AuditKind.SHIFT_ENDED,
                          AuditKind.WORKER_RESUMED)]


def queued(redis) -> list[tuple[str, list]]:
    queue = Queue(QUEUE_NAME, connection=raw_client(redis), serializer=JSONSerializer)
    return [(job.func_name.rsplit(".", 1)[-1], list(job.args)) for job in queue.jobs]


def test_start_and_end_a_shift(shift, redis):
    started = shift("start", "dan")
    assert started.exit_code == 0, started.output
    assert started.output == "Dan is on shift (mal-workers)\n"
    assert state(redis, "Dan") is WorkerState.AVAILABLE
    assert queued(redis) == [("dispatch", ["mal-workers"])]
    again = shift("start", "Dan")
    assert again.exit_code == 0 and "was on shift already" in again.output

    ended = shift("end", "Dan")
    assert ended.exit_code == 0 and ended.output == "Dan's shift ended (they were available)\n"
    assert state(redis, "Dan") is WorkerState.OFF
    assert entries(redis) == [
        ("shift_started", ACTOR, {"worker": "Dan", "channel": "cli"}),
        ("shift_ended", ACTOR, {"worker": "Dan", "channel": "cli", "was": "available"})]
    assert shift("end", "Dan").output == "Dan was not on shift\n"


def test_list_shows_every_worker_and_no_number(shift, redis):
    Shifts(redis, lambda: OPEN_TIME).start("Erin")
    Shifts(redis, lambda: OPEN_TIME).pause("Erin", "missed 3 offers in a row")
    result = shift("list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["name", "teams", "state", "since", "reason"]
    assert [line.split()[0] for line in lines[1:]] == ["Alice", "Bilal", "Chris", "Dan", "Erin"]
    assert "paused" in lines[5] and "missed 3 offers in a row" in lines[5]
    assert "447700900" not in result.output


def test_resume_a_paused_worker(shift, redis):
    Shifts(redis, lambda: OPEN_TIME).start("Erin")
    Shifts(redis, lambda: OPEN_TIME).pause("Erin", "a break")
    result = shift("resume", "Erin")
    assert result.exit_code == 0 and result.output == "Erin is available again\n"
    assert state(redis, "Erin") is WorkerState.AVAILABLE
    refused = shift("resume", "Erin")
    assert refused.exit_code == 1 and "Erin is not paused (available)" in refused.output


@pytest.mark.parametrize("command", ["start", "end", "resume"])
def test_an_unknown_name_exits_non_zero_with_a_clear_message(shift, redis, command):
    result = shift(command, "Zed")
    assert result.exit_code == 1
    assert "there is no worker 'Zed' in the team file; see `callflow shift list`" in \
        result.output
    assert entries(redis) == [] and queued(redis) == []


def test_an_inactive_worker_cannot_start(shift, redis):
    result = shift("start", "Chris")
    assert result.exit_code == 1 and "not active on any team" in result.output
    assert state(redis, "Chris") is WorkerState.OFF


def test_broken_flows_are_named_not_a_traceback(runner, redis_url, redis, tmp_path):
    (tmp_path / "teams.yaml").write_text("teams: [\n", encoding="utf-8")
    result = runner.invoke(cli, ["shift", "list"], env={
        "REDIS_URL": redis_url, "SECRET_KEY": "test-secret", "CALLFLOW_FLOWS": str(tmp_path)})
    assert result.exit_code == 1 and "do not load" in result.output
    assert "callflow validate" in result.output
