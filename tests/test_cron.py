"""The timed jobs on RQ's cron scheduler: the daily audit purge, the sweep of Twilio's call log
and the job that closes listen-ins no callback closed, registered by name, enqueued on their own
queue, and run in-process on the runtime the way the worker's timed-job thread runs them."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from rq import Queue

from callflow import runtime
from callflow.jobs import cron
from callflow.jobs import tasks as jobs
from callflow.jobs.runner import ThreadRunner
from callflow.platform import keys
from callflow.platform.errors import AuditChainBroken
from callflow.records.audit import AuditKind, AuditLog
from callflow.runtime import Runtime
from tests.monitoring_support import connected_caller, later, signed_in

pytest_plugins = ("tests.monitoring_fixtures",)

JOB_NAMES = {"purge-audit": jobs.purge_audit,
             "close-stale-monitoring": jobs.close_stale_monitoring,
             "sweep-twilio-records": jobs.sweep_twilio_records,
             "audit-refused-sign-ins": jobs.audit_refused_sign_ins,
             "apply-counts-retention": jobs.apply_counts_retention}
EVERY_MINUTE = ["close-stale-monitoring", "audit-refused-sign-ins"]


@pytest.fixture
def app_rt(app) -> Runtime:
    """The plain app's runtime, bound for the test as the job runner binds it for each job."""
    with runtime.binding(app.extensions["callflow"]["runtime"]) as rt:
        yield rt


def timed_queue(rt: Runtime) -> Queue:
    return Queue(cron.TIMED_QUEUE, connection=rt.queue.connection)


def run_timed_jobs(rt: Runtime) -> None:
    """What the worker's timed-job thread does: work the timed queue."""
    ThreadRunner([timed_queue(rt)], connection=rt.queue.connection, runtime=rt).work(
        burst=True, logging_level="WARNING")


def old_entries(rt: Runtime, days: int, count: int) -> None:
    """``count`` audit entries written ``days`` ago, on the runtime's own log."""
    then = datetime.now(UTC) - timedelta(days=days)
    past = AuditLog(rt.store, rt.audit.keys, rt.settings.retention_days,
                    clock=lambda: then)
    for n in range(count):
        past.append(AuditKind.STAFF_CHANGED, "cli:test", name=f"old-{n}", change="added")


# -- registration --------------------------------------------------------------------------------


def test_the_timed_jobs_are_named_and_point_at_the_jobs():
    assert {job["name"]: job["func"] for job in cron.TIMED_JOBS} == JOB_NAMES


def test_the_purge_runs_daily_and_stale_listens_are_closed_every_few_minutes(settings):
    schedules = {job["name"]: job for job in cron.TIMED_JOBS}

    minute, hour, *every = schedules["purge-audit"]["cron"].split()
    assert every == ["*", "*", "*"]
    assert minute.isdigit() and hour.isdigit()
    assert "interval" not in schedules["purge-audit"]
    interval = schedules["close-stale-monitoring"]["interval"]
    assert 60 <= interval <= settings.monitor_max_minutes * 60 // 4
    # Refused sign-ins are audited soon after their window closes.
    assert schedules["audit-refused-sign-ins"]["interval"] <= 60


def test_the_scheduler_registers_every_one_on_the_timed_queue(app_rt):
    before = signal.getsignal(signal.SIGINT)

    registered = cron.scheduler(app_rt.queue.connection).get_jobs()

    assert {(j.name, j.func_name, j.queue_name) for j in registered} == {
        ("purge-audit", "callflow.jobs.tasks.purge_audit", cron.TIMED_QUEUE),
        ("close-stale-monitoring", "callflow.jobs.tasks.close_stale_monitoring", cron.TIMED_QUEUE),
        ("sweep-twilio-records", "callflow.jobs.tasks.sweep_twilio_records", cron.TIMED_QUEUE),
        ("audit-refused-sign-ins", "callflow.jobs.tasks.audit_refused_sign_ins", cron.TIMED_QUEUE),
        ("apply-counts-retention", "callflow.jobs.tasks.apply_counts_retention",
         cron.TIMED_QUEUE)}
    assert signal.getsignal(signal.SIGINT) is before


def test_the_scheduler_enqueues_what_is_due_and_the_worker_runs_it(app_rt):
    scheduler = cron.scheduler(app_rt.queue.connection)

    due = scheduler.enqueue_jobs()

    # The interval jobs run at once; the daily purge waits for its hour.
    interval_jobs = sorted([*EVERY_MINUTE, "sweep-twilio-records"])
    assert sorted(job.name for job in due) == interval_jobs
    assert timed_queue(app_rt).count == len(interval_jobs)
    run_timed_jobs(app_rt)
    assert timed_queue(app_rt).count == 0
    done = timed_queue(app_rt).finished_job_registry.get_job_ids()
    assert [timed_queue(app_rt).fetch_job(job_id).return_value() for job_id in done] == [
        0] * len(interval_jobs)


# -- the purge ---------------------------------------------------------------------------------


def test_purge_audit_removes_what_is_past_retention_and_keeps_the_chain(app_rt):
    old_entries(app_rt, days=app_rt.settings.retention_days + 10, count=3)
    app_rt.audit.append(AuditKind.STAFF_CHANGED, "cli:test", name="recent", change="added")

    assert jobs.purge_audit() == 3

    entries = app_rt.audit.entries()
    assert [e.kind for e in entries] == ["staff_changed", "purged"]
    assert entries[0].data["name"] == "recent"
    assert entries[1].data == {"count": 3, "through_seq": 3,
                               "retention_days": app_rt.settings.retention_days}
    assert app_rt.audit.verify().ok
    assert jobs.purge_audit() == 0
    assert app_rt.audit.verify().ok


def test_purge_audit_keeps_entries_inside_the_retention(app_rt):
    old_entries(app_rt, days=app_rt.settings.retention_days - 1, count=2)

    assert jobs.purge_audit() == 0
    assert len(app_rt.audit.entries()) == 2


def test_purge_audit_refuses_a_tampered_log_so_the_failure_shows(app_rt, redis):
    old_entries(app_rt, days=app_rt.settings.retention_days + 10, count=3)
    redis.lrem(keys.audit_entries(), 1, redis.lindex(keys.audit_entries(), 1))

    with pytest.raises(AuditChainBroken):
        jobs.purge_audit()
    assert redis.llen(keys.audit_entries()) == 2


# -- closing stale listen-ins ------------------------------------------------------------------


def test_close_stale_monitoring_runs_on_the_runtime(monitor_app, sim, rest, rt, clock):
    call = connected_caller(sim, rest)
    manager = signed_in(monitor_app)
    assert manager.listen(call.call_id).status_code == 202
    assert jobs.close_stale_monitoring() == 0

    later(clock, minutes=rt.settings.monitor_max_minutes + 1)

    assert jobs.close_stale_monitoring() == 1
    [ended] = rt.audit.entries(kind=AuditKind.MONITOR_ENDED)
    assert (ended.actor, ended.data["reason"]) == ("maria", "closed_by_timer")


def test_close_stale_monitoring_with_nothing_open_closes_nothing(app_rt):
    assert jobs.close_stale_monitoring() == 0
    assert app_rt.audit.entries(kind=AuditKind.MONITOR_ENDED) == []
