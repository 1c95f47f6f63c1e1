"""RQ jobs: module-level functions that take opaque ids or Twilio sids, never caller data.

Every Twilio REST request runs here, off the request path, retried with backoff. A job id per
call (and per worker leg) makes enqueueing idempotent: a retried webhook never rings twice.
"""

from __future__ import annotations

import logging

import redis
from rq import Callback, Retry
from rq.exceptions import DuplicateJobError

from callflow import runtime
from callflow.errors import StoreUnavailable

log = logging.getLogger(__name__)
REST_RETRY = Retry(max=3, interval=[1, 4, 10])
# A few REST requests of at most 5 s each. Short, because a job a killed worker left started
# is only retried once RQ's record of it (this timeout plus a minute) has lapsed.
JOB_TIMEOUT_SECONDS = 30
PURGE_RETRY = Retry(max=5, interval=[30, 60, 300, 900, 3600])


def enqueue(func, *args, job_id: str, retry: Retry = REST_RETRY) -> None:
    """Queue ``func(*args)`` once per ``job_id``; raise ``StoreUnavailable`` if Redis is down."""
    rt = runtime.current()
    try:
        rt.queue.enqueue(func, *args, job_id=job_id, unique=True, retry=retry,
                         job_timeout=JOB_TIMEOUT_SECONDS, failure_ttl=7 * 24 * 3600,
                         result_ttl=600,
                         on_failure=Callback(log_failure))
    except DuplicateJobError:
        log.info("job already queued", extra={"event": "duplicate_job", "kind": job_id})
    except redis.RedisError as exc:
        raise StoreUnavailable(str(exc)) from exc


def log_failure(job, connection, exc_type, exc_value, traceback) -> None:
    """A job that failed is logged loudly (and stays in RQ's failed registry)."""
    log.error("job failed", extra={"event": "job_failed", "kind": job.id,
                                   "error": exc_type.__name__})


def _bridge():
    from callflow.bridge import Bridge

    return Bridge(runtime.current())


def ring_team(call_id: str) -> None:
    _bridge().ring_team(call_id)


def ring_leg(call_id: str, leg: int) -> None:
    _bridge().ring_next(call_id, leg)


def cancel_legs(call_id: str) -> None:
    _bridge().cancel_legs(call_id)


def give_up(call_id: str) -> None:
    _bridge().give_up(call_id)


def remove_participant(conference_sid: str, call_sid: str) -> None:
    """Take from a call's room a participant the service did not put there (retried)."""
    api = runtime.current().twilio
    if api is not None:
        api.remove(conference_sid, call_sid)


def purge_call_records(call_sids: list[str]) -> None:
    """Delete finished calls from Twilio's logs, so the caller's number is not kept there."""
    api = runtime.current().twilio
    if api is None:
        return
    for sid in call_sids:
        api.delete_record(sid)
    log.info("call records deleted from Twilio", extra={"event": "purged_twilio",
                                                        "kind": str(len(call_sids))})


# -- timed jobs (registered with RQ's cron scheduler in callflow.cron) ----------------------------

def audit_refused_sign_ins() -> int:
    """Every minute: audit each closed window of sign-in attempts refused unchecked (by a
    lock or a wait) as one entry with its count."""
    from callflow.lockout import Tally
    from callflow.sign_in import audit_tallies

    rt = runtime.current()
    return audit_tallies(Tally(rt.store, clock=rt.clock), rt.audit.append)


def purge_audit() -> int:
    """Daily: remove audit entries older than the retention, keeping the chain verifiable."""
    removed = runtime.current().audit.purge()
    log.info("audit log purged", extra={"event": "audit_purged", "kind": str(removed)})
    return removed


def close_stale_monitoring() -> int:
    """Every minute: settle listens whose REST answer was lost, from the rooms' participants,
    and close listen-in sessions that no Twilio callback closed."""
    from callflow.monitoring import MonitoringGate
    from callflow.room_guard import RoomGuard

    rt = runtime.current()
    gate = MonitoringGate(rt, rt.audit)
    RoomGuard(rt, gate).resolve()
    closed = gate.close_stale()
    if closed:
        log.warning("stale listening sessions closed", extra={"event": "monitor_timer",
                                                               "kind": str(closed)})
    return closed
