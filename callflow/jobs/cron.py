"""The timed jobs and RQ's cron scheduler that enqueues them.

``callflow runner`` runs the scheduler beside the worker (and ``callflow serve`` does, on the
embedded store). RQ's cron scheduler enqueues with RQ's default serializer, so the timed jobs
have a queue of their own, worked by a thread of the same process; they take no arguments.
"""

from __future__ import annotations

from typing import Any

import redis
from rq.cron import CronScheduler

from callflow.jobs import tasks as jobs

TIMED_QUEUE = "callflow-timed"

TIMED_JOBS: list[dict[str, Any]] = [
    # The audit log keeps the policy's retention (six months by default), no more.
    {"func": jobs.purge_audit, "cron": "17 3 * * *", "name": "purge-audit"},
    # The reports' hourly counts become daily after a while; the oldest go after years.
    {"func": jobs.apply_counts_retention, "cron": "41 3 * * *",
     "name": "apply-counts-retention"},
    # A listen-in that no Twilio callback closed is closed and audited; one whose REST answer
    # was lost is settled from the room's participants.
    {"func": jobs.close_stale_monitoring, "interval": 60, "name": "close-stale-monitoring"},
    # Sign-in attempts refused unchecked are audited once per window, with their count.
    {"func": jobs.audit_refused_sign_ins, "interval": 60, "name": "audit-refused-sign-ins"},
    # Twilio's log keeps each caller's number: any finished call the fast path missed goes.
    {"func": jobs.sweep_twilio_records, "interval": 900, "name": "sweep-twilio-records",
     "job_timeout": 600},
]


class ThreadCron(CronScheduler):
    """RQ's cron scheduler, run in a thread of the job runner."""

    def _install_signal_handlers(self) -> None:
        """Signals belong to the process that hosts this thread."""


def scheduler(connection: redis.Redis) -> CronScheduler:
    cron = ThreadCron(connection=connection, logging_level="WARNING")
    for job in TIMED_JOBS:
        cron.register(queue_name=TIMED_QUEUE, **job)
    return cron
