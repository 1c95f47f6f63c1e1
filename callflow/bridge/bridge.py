"""The conference bridge: callers wait in their team's line, then talk in a private room.

The caller waits in a Twilio ``<Enqueue>`` whose hold turns this service serves: their place,
the team's messages and the hold music, first come, first served across every node
(:mod:`callflow.bridge.waiting_line`). Free workers are offered "the team's next caller" by
REST legs from RQ jobs (:mod:`callflow.bridge.offers`), screened with "press 1 to accept";
whoever accepts first is given the caller who has waited longest and joins a private room,
and the caller is moved there. A caller leaves the line without any REST request when they
have waited the team's ``max_wait``, when nobody of the team is on shift, or when the store is
down (each hold turn can say ``<Leave>``); the line's own action then takes them on. Every leg
shows the helpline's number and is never recorded.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime

import redis
from rq import Worker
from twilio.twiml.voice_response import VoiceResponse

from callflow.bridge.announcements import hold_texts
from callflow.bridge.waiting_line import WaitingLine
from callflow.language.dialling import DO_NOT_RECORD, screen_worker
from callflow.language.flow import Flow, Team
from callflow.language.steps import DEFAULT_WHISPER, Connect
from callflow.language.texts import fill
from callflow.platform import keys, metrics
from callflow.platform.errors import StoreUnavailable
from callflow.platform.jobspec import PURGE_RETRY, Job
from callflow.platform.links import CallState
from callflow.platform.store import store_guard
from callflow.records.live import LEG_ENDED, LiveCall, LiveState
from callflow.runtime import Runtime
from callflow.staff.shifts import Shifts, WorkerState

log = logging.getLogger(__name__)
CONFERENCE_EVENTS = "start end join leave mute"
# An idle worker heartbeats every 15 s (callflow.jobs.runner); a ring job takes seconds.
LIVE_RUNNER_SECONDS = 35
HOLDING = "Thank you for waiting. We are finding someone to talk to you."
TAKEN = "Thank you. This call has already been answered, or the caller has gone."
TAKEN_BY_NOBODY = "Sorry, we could not put you through. Please call again."
# A dispatch queued but not started for longer than this (a lost job) no longer holds back
# the next one.
DISPATCH_PENDING_SECONDS = 30
# Marks of what a waiting caller was told, kept in their live record (see announcements).
MARKS = ("said_place", "said_message", "message_turn")


def twilio_queue(team: str) -> str:
    """The name of the Twilio queue a team's callers wait in (Twilio's only; order is ours)."""
    return f"callflow-{team}"


class Bridge:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.line = WaitingLine(rt.store)
        self.shifts = Shifts(rt.store, rt.clock)

    # -- on the request path: the caller ---------------------------------------------------

    def available(self) -> bool:
        """Whether callers can be bridged now; if not, the flow dials the team directly."""
        if self.rt.twilio is None:
            return False
        try:
            if self.rt.store.exists(keys.rest_trouble()):
                return False
            # Nobody would ring the workers, or ever take the caller out of the line.
            return self.rt.sync_jobs or self._a_runner_is_alive()
        except redis.RedisError as exc:  # the store is down: the caller takes the degraded path
            raise StoreUnavailable(str(exc)) from exc

    def _a_runner_is_alive(self) -> bool:
        """A worker that heartbeat lately. RQ keeps a dead worker listed for minutes (its key
        outlives the worker by its TTL plus a minute, longer mid-job), so the listing alone
        would put callers in a line whose workers nobody will ring."""
        now = datetime.now(UTC)
        return any(worker.last_heartbeat is not None
                   and (now - worker.last_heartbeat).total_seconds() < LIVE_RUNNER_SECONDS
                   for worker in Worker.all(queue=self.rt.queue))

    def on_shift(self, team: Team) -> list[str]:
        """The names of the team's workers signed on now (whatever they are doing)."""
        names = [w.name for w in team.active_workers()]
        return [s.name for s in self.shifts.statuses(names) if s.on_shift]

    def put_through(self, response: VoiceResponse, flow: Flow, connect: Connect, *,
                    state: CallState, caller_sid: str, helpline_number: str) -> LiveCall | None:
        """Put the caller in the team's waiting line and offer them to its free workers; or,
        with nobody of the team on shift, take them on to the no-workers step at once.

        The first Redis write of a call is here; a retried webhook finds the call opened."""
        team = self.rt.registry.current.teams[connect.team]
        if not self.on_shift(team):
            metrics.call_outcome(flow.id, metrics.Outcome.NO_WORKERS)
            self.rt.counts.no_workers(flow.id, team.name)
            log.info("nobody on shift", extra={"call": caller_sid, "flow": flow.id,
                                               "event": "no_workers"})
            response.redirect(self.rt.links.step(flow.id, connect.no_workers_step, state),
                              method="POST")
            return None
        now = self.rt.clock()
        call = self.rt.live.open(flow=flow.id, step=connect.name,
                                 team=connect.team, helpline_number=helpline_number,
                                 caller_sid=caller_sid, now=now,
                                 monitorable=not state.declined)
        if call.fresh:  # a retried webhook finds the caller in the line already
            self.line.join(connect.team, call.id, now.timestamp())
            self._dispatch(connect.team)
        response.enqueue(twilio_queue(connect.team),
                         action=self.rt.links.waiting_left(call.id, flow.id, connect.name,
                                                           state),
                         method="POST", wait_url=self.rt.links.hold(call.id),
                         wait_url_method="POST")
        log.info("caller waiting for a worker", extra={"call": caller_sid, "flow": flow.id,
                                                       "event": "queued"})
        return call

    def _dispatch(self, team: str) -> None:
        """Queue a dispatch of the team's line, unless one is queued and not yet started: it
        will see this caller (or free worker) too."""
        if self._mark_dispatch_pending(team):
            self.rt.enqueue(Job.DISPATCH, team,
                            job_id=f"dispatch-{team}-{secrets.token_hex(4)}")

    def _cancel_surplus(self, team: str, *, quietly: bool = False) -> None:
        """Queue the withdrawal of the offers the team's line no longer needs."""
        queue = self._enqueue_quietly if quietly else self.rt.enqueue
        queue(Job.CANCEL_SURPLUS, team, job_id=f"surplus-{team}-{secrets.token_hex(4)}")

    @store_guard
    def _mark_dispatch_pending(self, team: str) -> bool:
        return bool(self.rt.store.set(keys.dispatch_pending(team), "1", nx=True,
                                      ex=DISPATCH_PENDING_SECONDS))

    def hold(self, call_id: str) -> VoiceResponse:
        """One hold turn of a waiting caller: their place, the team's messages, the music; or
        ``<Leave>`` when it is time to go (accepted, waited too long, nobody on shift, the
        store down), and the line's action takes them on."""
        response = VoiceResponse()
        call, answered = self._lookup(call_id)
        team = self._team(call)
        flow = self._flow(call)
        connect = flow.steps.get(call.step) if call else None
        if (not answered or call is None or team is None or call.state != LiveState.WAITING
                or not isinstance(connect, Connect)):
            response.leave()
            return response
        waited = _waited(self.rt, call)
        statuses = self.shifts.statuses(w.name for w in team.active_workers())
        if not any(s.on_shift for s in statuses):
            self._leave_line(call, connect.no_workers_step, metrics.Outcome.NO_WORKERS)
            response.leave()
            return response
        if waited >= team.max_wait:
            self._leave_line(call, connect.max_wait_step, metrics.Outcome.MAX_WAIT)
            response.leave()
            return response
        position = self.line.position(team.name, call.id)
        if position is None:  # taken off the line a moment ago (by a worker's accept)
            response.leave()
            return response
        if any(s.state is WorkerState.AVAILABLE for s in statuses):
            self._dispatch(team.name)  # a wrap-up ended, say: offer the line again
        texts, marks = hold_texts(team, helpline=flow.helpline, waited=waited,
                                  position=position,
                                  typical_wait=self.line.typical_wait(team.name),
                                  marks={k: call.raw[k] for k in MARKS if k in call.raw})
        if marks:
            self.rt.live.mark(call.id, **marks)
        for text in texts:
            response.say(text, voice=flow.voice, language=flow.language)
        if team.hold_music:
            response.play(team.hold_music)
        else:
            response.say(HOLDING, voice=flow.voice, language=flow.language)
            response.pause(length=8)
        return response

    def _leave_line(self, call: LiveCall, target: str, outcome: metrics.Outcome) -> None:
        """Take the caller out of the line, on to ``target`` (their next hold turn leaves)."""
        if self.rt.live.advance(call.id, LiveState.FALLBACK, self.rt.clock()):
            self.rt.live.note(call.id, next=target)
            metrics.call_outcome(call.flow, outcome)
            count = (self.rt.counts.max_wait if outcome is metrics.Outcome.MAX_WAIT
                     else self.rt.counts.no_workers)
            count(call.flow, call.team, _waited(self.rt, call), at=_queued(call))
            log.info("caller leaves the line", extra={"call": call.caller_sid, "step": target,
                                                      "event": outcome.value})
        self.line.leave(call.team, call.id)
        self._cancel_surplus(call.team)

    def left_line(self, call_id: str, result: str) -> tuple[LiveCall | None, str | None]:
        """The caller's ``<Enqueue>`` ended (``result`` is Twilio's QueueResult): the call as
        it is now and the step to go on to, if any. A caller still waiting (Twilio's queue
        was full, or failed) is taken out of the line and put through directly."""
        call = self.rt.live.get(call_id)
        if call is not None and result == "hangup":  # as if the caller's call had ended
            self.left_room(call, "queue_hangup", caller_gone=True)
        if call is None or result == "hangup":
            return call, None
        if call.state == LiveState.WAITING:
            self.rt.live.advance(call.id, LiveState.FALLBACK, self.rt.clock())
            self.line.leave(call.team, call.id)
            log.error("the caller left Twilio's queue unasked; dialling directly",
                      extra={"call": call.caller_sid, "event": "queue_" + result[:20]})
            return None, None
        return call, call.raw.get("next")

    def into_room(self, call: LiveCall | None) -> VoiceResponse:
        """Where a caller whose worker accepted is sent (``call`` as just read): into the
        room, where the worker is."""
        response = VoiceResponse()
        flow = self._flow(call)
        if call is not None and call.state == LiveState.FALLBACK and call.raw.get("next"):
            # Their worker left before they got there: on to the step chosen for them.
            state = CallState(notice_heard=True, declined=not call.monitorable)
            response.redirect(self.rt.links.step(flow.id, call.raw["next"], state),
                              method="POST")
            return response
        if call is None or call.state != LiveState.CONNECTED:
            response.say(TAKEN_BY_NOBODY, voice=flow.voice, language=flow.language)
            response.hangup()
            return response
        state = CallState(notice_heard=True, declined=not call.monitorable)
        action = self.rt.links.answer(Connect.callback, call.flow, call.step, state,
                                      call=call.id)
        self._room(response.dial(action=action, method="POST", record=DO_NOT_RECORD), call.id)
        return response

    def _room(self, dial, call_id: str) -> None:
        """The conference noun, the same for the caller and the worker."""
        dial.conference(keys.conference_room(call_id), beep=False, record=DO_NOT_RECORD,
                        start_conference_on_enter=True, end_conference_on_exit=True,
                        status_callback=self.rt.links.conference(call_id),
                        status_callback_method="POST",
                        status_callback_event=CONFERENCE_EVENTS)

    def connected(self, call_id: str) -> bool:
        call = self.rt.live.get(call_id)
        return bool(call and call.accepted is not None)

    def _lookup(self, call_id: str) -> tuple[LiveCall | None, bool]:
        """The live call and whether the store answered (a worker or waiting caller is still
        served when it does not)."""
        try:
            return self.rt.live.get(call_id), True
        except StoreUnavailable:
            log.error("store unavailable on the bridge", extra={"event": "degraded"})
            return None, False

    def left_room(self, call: LiveCall, event: str, *, caller_gone: bool = False) -> None:
        """The room closed, or the caller's call ended: the call is over, nobody is offered
        it any more, and the worker who had it is free (wrapping up) whether or not their own
        leg's callback ever comes. A worker who left the room before the caller reached it
        is no end of the caller's call: the caller goes on to the no-answer step."""
        in_room = call.raw.get("in_room") == "1"
        if call.state == LiveState.CONNECTED and not in_room and not caller_gone:
            self._worker_left_first(call)
            return
        if self.rt.live.advance(call.id, LiveState.ENDED, self.rt.clock()):
            _count_ended(self.rt, call)
            log.info("bridge ended", extra={"call": call.caller_sid, "event": event})
        if self.line.leave(call.team, call.id):
            self._cancel_surplus(call.team)
        self._release_worker(call, hang_up=not in_room)

    def _worker_left_first(self, call: LiveCall) -> None:
        flow = self._flow(call)
        connect = flow.steps.get(call.step)
        target = connect.on_no_answer if isinstance(connect, Connect) else flow.start
        self.rt.live.reroute(call.id, target)
        self._release_worker(call, hang_up=False)
        log.warning("the worker left before the caller reached them",
                    extra={"call": call.caller_sid, "step": target, "event": "worker_left"})

    def _release_worker(self, call: LiveCall, *, hang_up: bool) -> None:
        """Free the worker who had ``call`` (once), counting their time on it; and, when the
        caller never reached them, end their leg rather than leave them in a silent room."""
        team = self._team(call)
        if call.accepted is None or team is None or call.accepted >= len(team.workers):
            return
        name = team.workers[call.accepted].name
        if not self.shifts.call_over(name, call.id, wrap_up=team.wrap_up):
            return  # their own leg's callback came first
        if call.connected_at:
            talk = (self.rt.clock() - datetime.fromisoformat(call.connected_at)).total_seconds()
            self.rt.counts.talk(call.flow, team.name, name, max(0.0, talk))
        leg = call.legs.get(call.accepted)
        if hang_up and leg:
            self.rt.enqueue(Job.END_LEG, leg, job_id=f"end-leg-{leg}")

    def caller_ended(self, caller_sid: str) -> None:
        """The caller's call is over (status callback): if it reached the bridge, stop
        offering it; and forget it at Twilio when so configured (even if the live entry has
        expired, or the call never reached the bridge)."""
        call_id = self.rt.live.id_for(caller_sid)
        call = self.rt.live.get(call_id)
        legs = list(call.legs.values()) if call else []
        if call is not None:
            self.left_room(call, "caller_ended", caller_gone=True)
        if self.rt.settings.purge_twilio_logs:
            self.purge_records([caller_sid, *legs], job_id=f"purge-{call_id}")

    def purge_records(self, sids: list[str], *, job_id: str) -> None:
        """Queue the deletion of finished calls' records from Twilio's logs."""
        if self.rt.twilio is not None:
            self.rt.enqueue(Job.PURGE_CALL_RECORDS, sids, job_id=job_id, retry=PURGE_RETRY)

    # -- on the request path: the worker ---------------------------------------------------

    def _worker(self, team_name: str, leg: int) -> tuple[Team | None, str]:
        team = self.rt.registry.current.teams.get(team_name)
        if team is None or leg >= len(team.workers):
            return None, ""
        return team, team.workers[leg].name

    def worker_screen(self, team_name: str, leg: int, offer: str,
                      flow_id: str = "") -> VoiceResponse:
        """A worker picked up an offer: screen them, or tell them it is gone."""
        response = VoiceResponse()
        flow = self._flow(None, flow_id)
        team, name = self._worker(team_name, leg)
        try:
            current = bool(team) and self.shifts.status(name).offer == offer and bool(
                self.line.waiting(team_name))
        except StoreUnavailable:
            current = False
        if not current:
            response.say(TAKEN, voice=flow.voice, language=flow.language)
            response.hangup()
            return response
        connect = flow.steps.get(self._step_of(flow, team_name))
        whisper = connect.whisper if isinstance(connect, Connect) else DEFAULT_WHISPER
        screen_worker(response, whisper=fill(whisper, helpline=flow.helpline),
                      action=self.rt.links.worker_answer(team_name, leg, offer, flow.id),
                      voice=flow.voice, language=flow.language)
        return response

    @staticmethod
    def _step_of(flow: Flow, team_name: str) -> str:
        return next((s.name for s in flow.steps.values()
                     if isinstance(s, Connect) and s.team == team_name), "")

    def worker_answer(self, team_name: str, leg: int, offer: str, digits: str,
                      flow_id: str = "", leg_sid: str = "") -> VoiceResponse:
        """The worker's key: 1 takes the caller who has waited longest; anything else, or a
        caller already gone, ends the offer."""
        response = VoiceResponse()
        flow = self._flow(None, flow_id)
        team, name = self._worker(team_name, leg)
        if team is None:
            response.hangup()
            return response
        if digits != "1":
            self._settle(team, name, offer, missed=True, flow_id=flow.id)
            response.hangup()
            return response
        try:
            call_id, fresh = self.line.accept(team_name, name, offer, leg, leg_sid,
                                              self.rt.clock().isoformat(timespec="seconds"))
        except StoreUnavailable:  # callers are being dialled directly meanwhile
            call_id, fresh = None, False
        if call_id is None:
            response.say(TAKEN, voice=flow.voice, language=flow.language)
            response.hangup()
            self._cancel_surplus(team_name, quietly=True)
            return response
        call = self.rt.live.get(call_id) if fresh else None
        if call is not None:  # counted once, not again when Twilio retries the keypress
            metrics.call_outcome(call.flow, metrics.Outcome.CONNECTED)
            waited = _waited(self.rt, call)
            self.rt.counts.answered(call.flow, team_name, waited, worker=name,
                                    at=_queued(call))
            self.line.answered_after(team_name, waited)
            log.info("worker accepted", extra={"call": call.caller_sid, "event": "accepted"})
        self._enqueue_quietly(Job.JOIN_CALLER, call_id, job_id=f"join-{call_id}")
        self._cancel_surplus(team_name, quietly=True)
        response.say("Connecting you now.", voice=flow.voice, language=flow.language)
        self._room(response.dial(record=DO_NOT_RECORD), call_id)
        return response

    def worker_status(self, team_name: str, leg: int, offer: str, status: str,
                      duration: str = "", flow_id: str = "") -> None:
        """A worker's leg ended: an offer unanswered is missed (and the line offered again);
        a call over starts the worker's wrap-up."""
        if status not in LEG_ENDED:
            return
        team, name = self._worker(team_name, leg)
        if team is None:
            return
        if self.shifts.call_ended(name, offer, wrap_up=team.wrap_up):
            seconds = float(duration) if duration.isdigit() else 0.0
            self.rt.counts.talk(flow_id or self._flow_of(team), team.name, name, seconds)
            return
        self._settle(team, name, offer, missed=status != "canceled", flow_id=flow_id)

    def _flow_of(self, team: Team) -> str:
        """The helpline a team's counts go under when a callback does not say."""
        flowset = self.rt.registry.current
        return next((f.id for f in flowset.flows.values() if self._step_of(f, team.name)),
                    flowset.default_flow.id)

    def _settle(self, team: Team, name: str, offer: str, *, missed: bool,
                flow_id: str = "") -> None:
        after = self.shifts.settle(name, offer, missed=missed,
                                   autopause_after=team.autopause_after)
        if after and missed:
            self.rt.counts.missed(flow_id or self._flow_of(team), team.name, name)
        if after == WorkerState.PAUSED:
            log.warning("worker paused after missed offers", extra={"event": "autopaused",
                                                                    "kind": team.name})
        if after:
            self._dispatch(team.name)

    def _enqueue_quietly(self, job: Job, *args, job_id: str) -> None:
        try:
            self.rt.enqueue(job, *args, job_id=job_id)
        except Exception:  # the caller is served; the job's absence is logged
            log.exception("could not queue a job", extra={"event": "enqueue_failed"})

    # -- helpers -----------------------------------------------------------------------------

    def _flow(self, call: LiveCall | None, flow_id: str = "") -> Flow:
        flowset = self.rt.registry.current
        return flowset.flows.get(call.flow if call else flow_id) or flowset.default_flow

    def _team(self, call: LiveCall | None) -> Team | None:
        return self.rt.registry.current.teams.get(call.team) if call else None


def _count_ended(rt: Runtime, call: LiveCall) -> None:
    """The bridge ended (``call`` as it was before): abandoned if nobody had accepted yet."""
    if call.state in (LiveState.WAITING, LiveState.RINGING):
        metrics.call_outcome(call.flow, metrics.Outcome.ABANDONED)
        rt.counts.abandoned(call.flow, call.team, _waited(rt, call), at=_queued(call))


# -- the reports' counts (callflow.records.counts) -----------------------------------------

def _queued(call: LiveCall) -> datetime | None:
    """When the call joined the waiting line: the hour its outcome is counted in."""
    return datetime.fromisoformat(call.started_at) if call.started_at else None


def _waited(rt: Runtime, call: LiveCall) -> float:
    started = _queued(call)
    return (rt.clock() - started).total_seconds() if started else 0.0
