"""The jobs the service queues, by name, and how they are queued.

Code on the request path queues a job by its name (``Job.DISPATCH``); the functions that do
the work live in :mod:`callflow.jobs.tasks`, on top of everything they use, and RQ finds them by
their dotted path. So nothing below ``callflow.jobs.tasks`` imports it, and a test checks that every
name here is a function there. Jobs carry opaque ids and Twilio sids, never caller data; a job
id per call (and per worker leg) makes queueing idempotent: a retried webhook never rings twice.
"""

from __future__ import annotations

import logging
from enum import StrEnum

import redis
from rq import Callback, Queue, Retry
from rq.exceptions import DuplicateJobError

from callflow.platform.errors import StoreUnavailable

log = logging.getLogger(__name__)
QUEUE_NAME = "callflow"
JOBS_MODULE = "callflow.jobs.tasks"
REST_RETRY = Retry(max=3, interval=[1, 4, 10])
# A few REST requests of at most 5 s each. Short, because a job a killed job runner left
# started is only retried once RQ's record of it (this timeout plus a minute) has lapsed.
JOB_TIMEOUT_SECONDS = 30
PURGE_RETRY = Retry(max=5, interval=[30, 60, 300, 900, 3600])


class Job(StrEnum):
    """A job's name: the name of its function in :mod:`callflow.jobs.tasks`."""

    DISPATCH = "dispatch"
    CANCEL_SURPLUS = "cancel_surplus"
    JOIN_CALLER = "join_caller"
    WITHDRAW_OFFER = "withdraw_offer"
    END_LEG = "end_leg"
    PURGE_CALL_RECORDS = "purge_call_records"
    REMOVE_PARTICIPANT = "remove_participant"
    APPLY_COUNTS_RETENTION = "apply_counts_retention"  # timed (callflow.jobs.cron)

    @property
    def path(self) -> str:
        return f"{JOBS_MODULE}.{self.value}"

    @property
    def urgent(self) -> bool:
        """Queued at the front: a caller whose worker accepted is moved to them before any
        other work (what the caller and the worker wait for in silence)."""
        return self is Job.JOIN_CALLER


def enqueue(queue: Queue, job: Job, *args, job_id: str, retry: Retry = REST_RETRY) -> None:
    """Queue ``job(*args)`` once per ``job_id``; raise ``StoreUnavailable`` if Redis is down."""
    try:
        queue.enqueue(job.path, *args, job_id=job_id, unique=True, retry=retry,
                      job_timeout=JOB_TIMEOUT_SECONDS, failure_ttl=7 * 24 * 3600,
                      result_ttl=600, on_failure=Callback(log_failure), at_front=job.urgent)
    except DuplicateJobError:
        log.info("job already queued", extra={"event": "duplicate_job", "kind": job_id})
    except redis.RedisError as exc:
        raise StoreUnavailable(str(exc)) from exc


def log_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """A job that failed is logged loudly (and stays in RQ's failed registry)."""
    log.error("job failed", extra={"event": "job_failed", "kind": job.id,
                                   "error": exc_type.__name__})
