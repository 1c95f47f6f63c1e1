"""The RQ jobs: module-level functions that take opaque ids or Twilio sids, never caller data.

This module sits on top of what the jobs use (the bridge, the monitoring gate, the audit log);
nothing imports it. Code on the request path queues a job by name
(:class:`callflow.platform.jobspec.Job`) and RQ finds the function here by its dotted path. Each job
works with the runtime bound while it runs (:func:`callflow.runtime.bound`): the job runner's, or
the caller's when jobs run at once. Every Twilio REST request runs here, off the request path,
retried with backoff.
"""

from __future__ import annotations

import logging

from twilio.base.exceptions import TwilioRestException

from callflow.bridge.offers import Offers
from callflow.monitoring.gate import MonitoringGate
from callflow.monitoring.room_guard import RoomGuard
from callflow.runtime import bound
from callflow.staff.lockout import Tally
from callflow.staff.sign_in import audit_tallies

log = logging.getLogger(__name__)
# The sweep asks Twilio for its largest pages, and deletes at most so many calls a run (the next
# run, minutes later, goes on): each run stays well inside its job timeout.
SWEEP_PAGE_SIZE = 1000
SWEEP_LIMIT = 2000


def dispatch(team: str) -> None:
    """Offer the team's next waiting caller to its free workers."""
    Offers(bound()).dispatch(team)


def cancel_surplus(team: str) -> None:
    """Withdraw the offers the team's line no longer needs."""
    Offers(bound()).cancel_surplus(team)


def join_caller(call_id: str) -> None:
    """Move a caller whose worker accepted from the line into the room."""
    Offers(bound()).join_caller(call_id)


def withdraw_offer(name: str) -> None:
    """A worker signed off or was paused while their phone rang: stop it ringing."""
    Offers(bound()).withdraw_offer(name)


def end_leg(call_sid: str) -> None:
    """End a worker's leg the caller will never reach (they hung up after the accept)."""
    api = bound().twilio
    if api is not None:
        api.hang_up(call_sid)


def remove_participant(conference_sid: str, call_sid: str) -> None:
    """Take from a call's room a participant the service did not put there (retried)."""
    api = bound().twilio
    if api is not None:
        api.remove(conference_sid, call_sid)


def purge_call_records(call_sids: list[str]) -> None:
    """Delete finished calls from Twilio's logs, so the caller's number is not kept there."""
    api = bound().twilio
    if api is None:
        return
    for sid in call_sids:
        api.delete_record(sid)
    log.info("call records deleted from Twilio", extra={"event": "purged_twilio",
                                                        "kind": str(len(call_sids))})


# -- timed jobs (registered with RQ's cron scheduler in callflow.jobs.cron)
# ----------------------------

def sweep_twilio_records() -> int:
    """Every few minutes: delete from Twilio's log every finished call to a helpline number
    (a caller's) and from one (a worker's or a manager's leg), whatever Redis remembers, so a
    fast-path purge that failed, or state that was lost, leaves no caller's number behind.

    Twilio is asked by the helplines' own numbers only. A delete Twilio refuses is logged and
    left for the next run. Returns how many records were deleted."""
    rt = bound()
    if rt.twilio is None or not rt.settings.purge_twilio_logs:
        return 0
    numbers = [number for number, _ in rt.registry.current.answered_numbers()]
    found: list[str] = []
    for number in numbers:
        for direction in ({"to": number}, {"from_": number}):
            if len(found) < SWEEP_LIMIT:
                found += rt.twilio.finished_calls(**direction, page_size=SWEEP_PAGE_SIZE,
                                                  limit=SWEEP_LIMIT - len(found))
    deleted = refused = 0
    for sid in dict.fromkeys(found):
        try:
            rt.twilio.delete_record(sid)
            deleted += 1
        except TwilioRestException as exc:
            refused += 1
            log.warning("a call record could not be deleted; the next sweep tries again",
                        extra={"event": "sweep_refused", "status": exc.status})
    log.info("Twilio's call log swept", extra={"event": "swept_twilio", "kind": str(deleted)})
    if refused:
        log.error(f"{refused} call record(s) could not be deleted from Twilio",
                  extra={"event": "sweep_refused", "kind": str(refused)})
    return deleted


def audit_refused_sign_ins() -> int:
    """Every minute: audit each closed window of sign-in attempts refused unchecked (by a
    lock or a wait) as one entry with its count."""
    rt = bound()
    return audit_tallies(Tally(rt.store, clock=rt.clock), rt.audit.append)


def purge_audit() -> int:
    """Daily: remove audit entries older than the retention, keeping the chain verifiable."""
    removed = bound().audit.purge()
    log.info("audit log purged", extra={"event": "audit_purged", "kind": str(removed)})
    return removed


def apply_counts_retention() -> int:
    """Daily: fold the reports' hourly counts older than ``CALLFLOW_COUNTS_HOURLY_DAYS`` into
    daily ones, and delete counts older than ``CALLFLOW_COUNTS_KEEP_DAYS``. Returns how many
    hours were folded."""
    rt = bound()
    folded, removed = rt.counts.apply_retention(rt.settings.counts_hourly_days,
                                                rt.settings.counts_keep_days)
    log.info("report counts rolled up", extra={"event": "counts_retention",
                                               "kind": f"{folded}/{removed}"})
    return folded


def close_stale_monitoring() -> int:
    """Every minute: settle listens whose REST answer was lost, from the rooms' participants,
    and close listen-in sessions that no Twilio callback closed."""
    rt = bound()
    gate = MonitoringGate(rt, rt.audit)
    RoomGuard(rt, gate).resolve()
    closed = gate.close_stale()
    if closed:
        log.warning("stale listening sessions closed", extra={"event": "monitor_timer",
                                                               "kind": str(closed)})
    return closed
