"""Signing workers on and off: the one place every way of doing it (the staff line, the web,
the command line, a manager's dashboard) goes through.

:class:`callflow.staff.shifts.Shifts` keeps the live state; this adds what each change means
for the rest of the service, so no channel can forget a part of it:

- the worker must be on the roster (the team file), and active on at least one team to sign on;
  a name typed in any case finds them (staff accounts are lowercase, the roster's names need
  not be);
- every change is audited before it is made (who did it, whose shift, and how), and one whose
  audit entry cannot be written is not made: no audit, no change;
- a worker who signs off or is paused while their phone rings for a waiting caller has that
  offer withdrawn (``Job.WITHDRAW_OFFER``), and one who comes free (signs on, is resumed) has
  each of their teams' waiting callers offered again (``Job.DISPATCH``). Both are the queue
  engine's jobs; this only queues them.

It lives in ``staff`` and takes what it needs (the roster, the audit log, a way to queue a
job) as plain callables, so the web app, the job runner and the command line each hand it
their own, and nothing here reaches above the staff layer.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from callflow.language.flow import Team
from callflow.platform.errors import StaffError
from callflow.platform.jobspec import Job
from callflow.staff.shifts import Shifts, WorkerState, WorkerStatus

log = logging.getLogger(__name__)
# ``audit(kind, actor, **data)``: records an entry, raises if it could not.
Audit = Callable[..., object]
# ``enqueue(job, *args, job_id=...)``, as ``Runtime.enqueue``.
Enqueue = Callable[..., None]
JOB_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_REASON = 80


class Channel(StrEnum):
    """How a change was made, as the audit log says it."""

    PHONE = "phone"
    WEB = "web"
    CLI = "cli"


class NotOnRoster(StaffError):
    """The name is no worker's in the team file (or, to sign on, no active worker's)."""


@dataclass(frozen=True)
class RosterWorker:
    """One person on the roster: a name, the teams they are on (in the file's order) and the
    teams where they are active. Never their number: nothing shown to staff needs it."""

    name: str
    teams: tuple[str, ...]
    active_teams: tuple[str, ...]


@dataclass(frozen=True)
class WorkerRow:
    """A worker as a manager's dashboard and the workers API show them."""

    worker: RosterWorker
    status: WorkerStatus

    def to_dict(self) -> dict:
        row = {"name": self.worker.name, "teams": list(self.worker.teams),
               "state": self.status.state.value, "since": self.status.since or None}
        if self.status.state is WorkerState.PAUSED:
            row["reason"] = self.status.reason
        return row


def roster(teams: Mapping[str, Team]) -> list[RosterWorker]:
    """Every worker once (a name on two teams is one person), in the file's order."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for team in teams.values():
        for worker in team.workers:
            on, active = found.setdefault(worker.name, ([], []))
            on.append(team.name)
            if worker.active:
                active.append(team.name)
    return [RosterWorker(name, tuple(on), tuple(active)) for name, (on, active) in found.items()]


class ShiftDesk:
    """``teams`` gives the roster as it is now (the flow set's teams: it changes on reload)."""

    def __init__(self, shifts: Shifts, teams: Callable[[], Mapping[str, Team]], audit: Audit,
                 enqueue: Enqueue) -> None:
        self.shifts, self.teams, self.audit, self.enqueue = shifts, teams, audit, enqueue

    # -- who is on the roster --------------------------------------------------------------

    def roster(self) -> list[RosterWorker]:
        return roster(self.teams())

    def find(self, name: str) -> RosterWorker | None:
        """The roster's worker of this name, in any case (an account ``alice`` is ``Alice``)."""
        if not isinstance(name, str) or not name.strip():
            return None
        wanted = name.strip().casefold()
        return next((w for w in self.roster() if w.name.casefold() == wanted), None)

    def require(self, name: str) -> RosterWorker:
        worker = self.find(name)
        if worker is None:
            raise NotOnRoster(f"there is no worker '{name}' in the team file; see "
                              "`callflow shift list` for the names there are")
        return worker

    def rows(self) -> list[WorkerRow]:
        """Every worker on the roster and their state now, in one round trip."""
        workers = self.roster()
        return [WorkerRow(w, s) for w, s in
                zip(workers, self.shifts.statuses(w.name for w in workers), strict=True)]

    def row(self, name: str) -> WorkerRow:
        worker = self.require(name)
        return WorkerRow(worker, self.shifts.status(worker.name))

    def status(self, name: str) -> WorkerStatus:
        return self.shifts.status(self.require(name).name)

    # -- changes -------------------------------------------------------------------------

    def start(self, name: str, *, actor: str, channel: Channel) -> bool:
        """Sign ``name`` on; False if they were on shift already (nothing audited then)."""
        worker = self.require(name)
        if not worker.active_teams:
            raise NotOnRoster(f"'{worker.name}' is not active on any team in the team file, "
                              "so cannot sign on; set 'active: true' for them first")
        if self.shifts.status(worker.name).on_shift:
            return False
        self._audit("shift_started", actor, worker, channel)
        if not self.shifts.start(worker.name):
            return False
        self._dispatch(worker)
        return True

    def end(self, name: str, *, actor: str, channel: Channel) -> WorkerStatus:
        """Sign ``name`` off, whatever they were doing (a call in progress goes on); returns
        them as they were. Off already: nothing is audited or changed."""
        worker = self.require(name)
        before = self.shifts.status(worker.name)
        if not before.on_shift:
            return before
        self._audit("shift_ended", actor, worker, channel, was=before.state.value)
        before = self.shifts.end(worker.name)
        self._withdraw(worker, before)
        return before

    def pause(self, name: str, reason: str, *, actor: str, channel: Channel) -> bool:
        """Stop offering ``name`` callers until resumed; False if they are off shift."""
        worker = self.require(name)
        reason = " ".join(str(reason or "").split())[:MAX_REASON] or "paused"
        before = self.shifts.status(worker.name)
        if not before.on_shift or before.state is WorkerState.PAUSED:
            return False
        self._audit("worker_paused", actor, worker, channel, reason=reason,
                    was=before.state.value)
        paused = self.shifts.pause(worker.name, reason)
        if paused:
            self._withdraw(worker, before)
        return paused

    def resume(self, name: str, *, actor: str, channel: Channel) -> bool:
        """A paused worker is offered callers again; False if they were not paused."""
        worker = self.require(name)
        before = self.shifts.status(worker.name)
        if before.state is not WorkerState.PAUSED:
            return False
        self._audit("worker_resumed", actor, worker, channel, reason=before.reason)
        if not self.shifts.resume(worker.name):
            return False
        self._dispatch(worker)
        return True

    # -- internals -----------------------------------------------------------------------

    def _audit(self, kind: str, actor: str, worker: RosterWorker, channel: Channel,
               **data: object) -> None:
        self.audit(kind, actor, worker=worker.name, channel=channel.value, **data)
        log.info("shift changed", extra={"event": kind, "kind": channel.value})

    def _withdraw(self, worker: RosterWorker, before: WorkerStatus) -> None:
        if before.state is WorkerState.OFFERED:
            self.enqueue(Job.WITHDRAW_OFFER, worker.name,
                         job_id=_job_id("withdraw", worker.name))

    def _dispatch(self, worker: RosterWorker) -> None:
        for team in worker.active_teams:
            self.enqueue(Job.DISPATCH, team, job_id=_job_id("dispatch", team))


def _job_id(what: str, name: str) -> str:
    """A job id RQ accepts (letters, digits, '-', '_'), new each time: every change asks."""
    return f"{what}-{JOB_ID_UNSAFE.sub('_', name)[:40]}-{secrets.token_hex(6)}"
