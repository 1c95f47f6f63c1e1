"""The RQ jobs: module-level functions that take opaque ids or Twilio sids, never caller data.

This module sits on top of what the jobs use (the bridge, the monitoring gate, the audit log);
nothing imports it. Code on the request path queues a job by name (:class:`callflow.jobspec.Job`)
and RQ finds the function here by its dotted path. Each job works with the runtime bound while
it runs (:func:`callflow.runtime.bound`): the job runner's, or the caller's when jobs run at once.
Every Twilio REST request runs here, off the request path, retried with backoff.
"""

from __future__ import annotations

import logging

from callflow.bridge import Bridge
from callflow.monitoring import MonitoringGate
from callflow.runtime import bound

log = logging.getLogger(__name__)


def ring_team(call_id: str) -> None:
    Bridge(bound()).ring_team(call_id)


def ring_leg(call_id: str, leg: int) -> None:
    Bridge(bound()).ring_next(call_id, leg)


def cancel_legs(call_id: str) -> None:
    Bridge(bound()).cancel_legs(call_id)


def give_up(call_id: str) -> None:
    Bridge(bound()).give_up(call_id)


def purge_call_records(call_sids: list[str]) -> None:
    """Delete finished calls from Twilio's logs, so the caller's number is not kept there."""
    api = bound().twilio
    if api is None:
        return
    for sid in call_sids:
        api.delete_record(sid)
    log.info("call records deleted from Twilio", extra={"event": "purged_twilio",
                                                        "kind": str(len(call_sids))})


# -- timed jobs (registered with RQ's cron scheduler in callflow.cron) ----------------------------

def purge_audit() -> int:
    """Daily: remove audit entries older than the retention, keeping the chain verifiable."""
    removed = bound().audit.purge()
    log.info("audit log purged", extra={"event": "audit_purged", "kind": str(removed)})
    return removed


def close_stale_monitoring() -> int:
    """Every few minutes: close listen-in sessions that no Twilio callback closed."""
    rt = bound()
    closed = MonitoringGate(rt, rt.audit).close_stale()
    if closed:
        log.warning("stale listening sessions closed", extra={"event": "monitor_timer",
                                                               "kind": str(closed)})
    return closed
