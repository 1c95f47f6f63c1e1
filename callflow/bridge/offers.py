"""Offering a team's waiting callers to its free workers: the REST side of the waiting line.

Runs in RQ jobs, off the request path. ``dispatch`` asks the waiting line which free workers
to offer (as many as the team's ring strategy wants, in its order) and rings each from the
helpline's number; ``cancel_surplus`` withdraws offers nobody needs any more (the caller was
taken, or left); ``join_caller`` moves a caller whose worker accepted from the line into the
room. Every leg is screened, shows the helpline's number and is never recorded.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC

import requests
from twilio.base.exceptions import TwilioRestException

from callflow.bridge.waiting_line import Offer, WaitingLine
from callflow.language.flow import Team
from callflow.platform import keys
from callflow.records.live import LiveCall, LiveState
from callflow.runtime import Runtime
from callflow.staff.shifts import Shifts, WorkerState, WorkerStatus

log = logging.getLogger(__name__)
REST_TROUBLE_SECONDS = 60
# An offer lasts its ring time and this long besides (picking up, the screening, pressing 1);
# after that the worker is free again even if no callback ever said how the offer ended.
OFFER_GRACE_SECONDS = 40


class Offers:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.line = WaitingLine(rt.store)
        self.shifts = Shifts(rt.store, rt.clock)

    def _team(self, name: str) -> Team | None:
        return self.rt.registry.current.teams.get(name)

    def _now(self) -> tuple[float, str]:
        moment = self.rt.clock().astimezone(UTC)
        return moment.timestamp(), moment.isoformat(timespec="seconds")

    # -- offering -----------------------------------------------------------------------------

    def dispatch(self, team_name: str) -> list[Offer]:
        """Offer the team's next caller to as many free workers as its strategy says."""
        self.rt.store.delete(keys.dispatch_pending(team_name))  # a trigger from now on queues
        team = self._team(team_name)                             # another dispatch
        head = self.line.head(team_name) if team else None
        call = self.rt.live.get(head) if head else None
        if team is None or call is None:
            return []
        roster = [(i, w.name) for i, w in enumerate(team.workers) if w.active]
        offers = self.line.offer(team_name, self.order(team, roster),
                                 offer_prefix=secrets.token_hex(4),
                                 every_free=team.ring == "simultaneous", now=self._now(),
                                 lasts=team.ring_timeout + OFFER_GRACE_SECONDS)
        failures = []
        for offer in offers:
            try:
                self._ring(team, offer, call)
            except Exception as exc:  # one worker's failure must not stop the others
                failures.append(exc)
        if failures:
            raise failures[0]
        return offers

    def order(self, team: Team, roster: list[tuple[int, str]]) -> list[tuple[int, str]]:
        """The team's workers in the order its ring strategy offers them."""
        if team.ring == "longest_idle":
            idle = {s.name: s.idle_since for s in self.shifts.statuses(n for _, n in roster)}
            return sorted(roster, key=lambda worker: (idle.get(worker[1], 0.0), worker[0]))
        if team.ring == "round_robin":
            last = int(self.rt.store.get(keys.round_robin(team.name)) or -1)
            return ([w for w in roster if w[0] > last] + [w for w in roster if w[0] <= last])
        return roster

    def _ring(self, team: Team, offer: Offer, call: LiveCall) -> None:
        worker = team.workers[offer.index]
        try:
            sid = self.rt.twilio.ring(
                to=worker.number, helpline_number=call.helpline_number,
                url=self.rt.links.worker(team.name, offer.index, offer.id, call.flow),
                status_callback=self.rt.links.worker_status(team.name, offer.index, offer.id,
                                                            call.flow),
                timeout=team.ring_timeout)
        except TwilioRestException as exc:
            if exc.status >= 500:
                self._rest_failed(offer)
                raise
            # Twilio refused this one worker (a bad number, say): the offer is missed, and
            # the API is not in trouble for everyone else.
            log.error("Twilio refused a worker's leg", extra={"event": "leg_refused",
                                                              "error": str(exc.code)})
            if self.shifts.settle(offer.worker, offer.id, missed=True,
                                  autopause_after=team.autopause_after):
                self.rt.counts.missed(call.flow, team.name, offer.worker)
            return
        except requests.Timeout:
            # Twilio may have made the leg and its answer was lost: the offer stands until it
            # runs out (the worker's phone may be ringing), so nobody is rung twice for it.
            self.rt.store.set(keys.rest_trouble(), "1", ex=REST_TROUBLE_SECONDS)
            raise
        except Exception:
            self._rest_failed(offer)
            raise
        self.line.note_leg(offer.worker, offer.id, sid)
        self.rt.counts.offer(call.flow, team.name, offer.worker)
        if team.ring == "round_robin":
            self.rt.store.set(keys.round_robin(team.name), offer.index)
        log.info("worker offered a caller", extra={"event": "offered", "kind": team.name})

    def _rest_failed(self, offer: Offer) -> None:
        """Twilio was unreachable: the leg was not created, so the offer ends unmissed (a
        retry offers again), and new callers are dialled directly for a while."""
        self.shifts.settle(offer.worker, offer.id, missed=False, autopause_after=0)
        self.rt.store.set(keys.rest_trouble(), "1", ex=REST_TROUBLE_SECONDS)

    # -- withdrawing ----------------------------------------------------------------------------

    def outstanding(self, team: Team) -> list[WorkerStatus]:
        names = [w.name for w in team.workers if w.active]
        return [s for s in self.shifts.statuses(names)
                if s.state is WorkerState.OFFERED and s.team == team.name]

    def cancel_surplus(self, team_name: str) -> int:
        """Withdraw the offers the line no longer needs, newest first; returns how many."""
        team = self._team(team_name)
        if team is None:
            return 0
        ringing = self.outstanding(team)
        waiting = self.line.waiting(team_name)
        needed = (len(ringing) if waiting else 0) if team.ring == "simultaneous" else waiting
        surplus = sorted(ringing, key=lambda s: s.since, reverse=True)[:max(0, len(ringing)
                                                                         - needed)]
        for status in surplus:
            self.withdraw(status.name, status.offer)
        return len(surplus)

    def withdraw(self, name: str, offer: str) -> None:
        """End an offer without counting it as missed, and stop the worker's phone ringing."""
        sid = self.line.leg_of(name)
        if self.shifts.settle(name, offer, missed=False, autopause_after=0) and sid:
            self.rt.twilio.hang_up(sid)

    def withdraw_offer(self, name: str) -> None:
        """A worker signed off or was paused while their phone rang: stop it ringing."""
        status = self.shifts.status(name)
        sid = self.line.leg_of(name)
        if status.state in (WorkerState.OFF, WorkerState.PAUSED) and sid:
            self.rt.twilio.hang_up(sid)
            self.rt.store.hdel(keys.worker(name), "leg")

    # -- a caller whose worker accepted --------------------------------------------------------

    def join_caller(self, call_id: str) -> None:
        """Move the caller from the line into the room where their worker is (the fast way,
        a REST redirect; should it fail, their next hold turn takes them there)."""
        call = self.rt.live.get(call_id)
        if call is None or call.state != LiveState.CONNECTED or call.raw.get("joined"):
            return
        self.rt.twilio.redirect(call.caller_sid, self.rt.links.join(call_id))
        self.rt.live.note(call_id, joined="1")
