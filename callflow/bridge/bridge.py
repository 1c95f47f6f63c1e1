"""The conference bridge: the caller waits in a private room while workers are rung.

The caller's side is TwiML (``<Dial><Conference>``); each worker's leg is a REST call made by
an RQ job, screened with "press 1 to accept"; the first to accept is joined and the others are
cancelled; if nobody accepts in time the caller is taken to the flow's no-answer step. Every
leg shows the helpline's number and is never recorded.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from rq import Worker
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from callflow.language.dialling import DO_NOT_RECORD, screen_worker
from callflow.language.flow import Flow, Team
from callflow.language.steps import DEFAULT_WHISPER, Connect
from callflow.language.texts import fill
from callflow.platform import keys, metrics
from callflow.platform.errors import StoreUnavailable
from callflow.platform.jobspec import PURGE_RETRY, Job
from callflow.platform.links import CallState
from callflow.records.live import LEG_ENDED, LiveCall, LiveState
from callflow.runtime import Runtime

log = logging.getLogger(__name__)
CONFERENCE_EVENTS = "start end join leave mute"
REST_TROUBLE_SECONDS = 60
# An idle worker heartbeats every 15 s (callflow.jobs.runner); a ring job takes seconds.
LIVE_RUNNER_SECONDS = 35
HOLDING = "Thank you for waiting. We are finding someone to talk to you."
TAKEN = "Thank you. This call has already been answered, or the caller has gone."


class Bridge:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- on the request path: the caller ---------------------------------------------------

    def available(self) -> bool:
        """Whether callers can be bridged now; if not, the flow dials the team directly."""
        if self.rt.twilio is None:
            return False
        try:
            if self.rt.store.exists(keys.rest_trouble()):
                return False
            # Nobody would ring the workers, or ever take the caller out of the room.
            return self.rt.sync_jobs or self._a_runner_is_alive()
        except redis.RedisError as exc:  # the store is down: the caller takes the degraded path
            raise StoreUnavailable(str(exc)) from exc

    def _a_runner_is_alive(self) -> bool:
        """A worker that heartbeat lately. RQ keeps a dead worker listed for minutes (its key
        outlives the worker by its TTL plus a minute, longer mid-job), so the listing alone
        would put callers in a room whose workers nobody will ring."""
        now = datetime.now(UTC)
        return any(worker.last_heartbeat is not None
                   and (now - worker.last_heartbeat).total_seconds() < LIVE_RUNNER_SECONDS
                   for worker in Worker.all(queue=self.rt.queue))

    def put_through(self, response: VoiceResponse, flow: Flow, connect: Connect, *,
                    state: CallState, caller_sid: str, helpline_number: str) -> LiveCall:
        """Open a live call, queue the worker legs, and put the caller in the waiting room.

        The first Redis write of a call is here; a retried webhook finds the call opened."""
        call = self.rt.live.open(flow=flow.id, step=connect.name,
                                 team=connect.team, helpline_number=helpline_number,
                                 caller_sid=caller_sid, now=self.rt.clock(),
                                 monitorable=not state.declined)
        self.rt.enqueue(Job.RING_TEAM, call.id, job_id=f"ring-{call.id}")
        action = self.rt.links.answer(Connect.callback, flow.id, connect.name, state,
                                      call=call.id)
        dial = response.dial(action=action, method="POST", record=DO_NOT_RECORD)
        self._room(dial, call.id, caller=True)
        log.info("caller waiting for a worker", extra={"call": caller_sid, "flow": flow.id,
                                                       "event": "bridged"})
        return call

    def _room(self, dial, call_id: str, *, caller: bool) -> None:
        """The conference noun, the same for caller and worker but for who starts it."""
        dial.conference(keys.conference_room(call_id), beep=False, record=DO_NOT_RECORD,
                        start_conference_on_enter=not caller, end_conference_on_exit=True,
                        wait_url=self.rt.links.hold(call_id) if caller else None,
                        wait_method="POST" if caller else None,
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

    def hold(self, call_id: str) -> VoiceResponse:
        """What a waiting caller hears; each fetch also checks the team's time limit."""
        response = VoiceResponse()
        call, _ = self._lookup(call_id)
        team = self._team(call)
        if call and team:
            waited = (self.rt.clock() - datetime.fromisoformat(call.started_at)).total_seconds()
            if call.state in (LiveState.WAITING, LiveState.RINGING) and waited >= team.ring_limit:
                self.rt.enqueue(Job.GIVE_UP, call_id, job_id=f"give-up-{call_id}")
            elif call.state == LiveState.FALLBACK and not call.raw.get("fallback_done"):
                # An earlier redirect failed (its retries too): try again, at most twice a
                # minute, for as long as the caller is still waiting in the room.
                self.rt.enqueue(Job.GIVE_UP, call_id,
                                job_id=f"give-up-{call_id}-{int(waited // 30)}")
        if team and team.hold_music:
            response.play(team.hold_music)
        else:
            flow = self._flow(call)
            response.say(HOLDING, voice=flow.voice, language=flow.language)
            response.pause(length=8)
        return response

    def left_room(self, call: LiveCall, event: str) -> None:
        """The room closed, or the caller left it: the call is over, and nobody is rung for it
        any more."""
        if self.rt.live.advance(call.id, LiveState.ENDED, self.rt.clock()):
            _count_ended(self.rt, call)
            log.info("bridge ended", extra={"call": call.caller_sid, "event": event})
        self.rt.enqueue(Job.CANCEL_LEGS, call.id, job_id=f"cancel-{call.id}")

    def caller_ended(self, caller_sid: str) -> None:
        """The caller's call is over (status callback): if it reached the bridge, stop ringing
        anyone for it; and forget it at Twilio when so configured (even if the live entry has
        expired, or the call never reached the bridge)."""
        call_id = self.rt.live.id_for(caller_sid)
        call = self.rt.live.get(call_id)
        legs = list(call.legs.values()) if call else []
        if call is not None:
            self.left_room(call, "caller_ended")
        if self.rt.settings.purge_twilio_logs:
            self.purge_records([caller_sid, *legs], job_id=f"purge-{call_id}")

    def purge_records(self, sids: list[str], *, job_id: str) -> None:
        """Queue the deletion of finished calls' records from Twilio's logs."""
        if self.rt.twilio is not None:
            self.rt.enqueue(Job.PURGE_CALL_RECORDS, sids, job_id=job_id, retry=PURGE_RETRY)

    # -- on the request path: the worker ---------------------------------------------------

    def worker_screen(self, call_id: str, leg: int, flow_id: str = "") -> VoiceResponse:
        response = VoiceResponse()
        call, answered = self._lookup(call_id)
        flow = self._flow(call, flow_id)
        waiting = call is not None and call.state in (LiveState.WAITING, LiveState.RINGING)
        if answered and not waiting:
            response.say(TAKEN, voice=flow.voice, language=flow.language)
            response.hangup()
            return response
        connect = flow.steps.get(call.step) if call else None
        whisper = connect.whisper if isinstance(connect, Connect) else DEFAULT_WHISPER
        screen_worker(response, whisper=fill(whisper, helpline=flow.helpline),
                      action=self.rt.links.worker_answer(call_id, leg, flow.id),
                      voice=flow.voice,
                      language=flow.language)
        return response

    def worker_answer(self, call_id: str, leg: int, digits: str,
                      flow_id: str = "", leg_sid: str = "") -> VoiceResponse:
        response = VoiceResponse()
        call, answered = self._lookup(call_id)
        flow = self._flow(call, flow_id)
        if digits != "1":
            response.hangup()
            return response
        if answered:
            if call is None or not self._accept(call_id, leg):
                response.say(TAKEN, voice=flow.voice, language=flow.language)
                response.hangup()
                return response
            if leg_sid:  # known from now on, even if Twilio's answer to the ring was lost
                self.rt.live.set_leg(call_id, leg, leg_sid)
            _count_accepted(self.rt, call, leg)
            log.info("worker accepted", extra={"call": call.caller_sid, "event": "accepted"})
            self._enqueue_quietly(Job.CANCEL_LEGS, call_id, job_id=f"cancel-{call_id}")
        # With the store down the first worker to press 1 still reaches the waiting caller.
        response.say("Connecting you now.", voice=flow.voice, language=flow.language)
        self._room(response.dial(record=DO_NOT_RECORD), call_id, caller=False)
        return response

    def worker_status(self, call_id: str, leg: int, status: str) -> None:
        """A worker's leg changed state; when it ended unanswered, ring on or give up."""
        if status not in LEG_ENDED:
            return
        call = self.rt.live.set_leg_status(call_id, leg, status)
        if call is None or call.accepted == leg:
            return
        if call.state not in (LiveState.WAITING, LiveState.RINGING):
            return
        team = self._team(call)
        rung = int(call.raw.get("leg_count") or 0)
        if team and team.ring == "sequential" and leg + 1 < rung:
            self.rt.enqueue(Job.RING_LEG, call_id, leg + 1, job_id=f"ring-{call_id}-{leg + 1}")
        elif len(call.leg_status) >= rung:
            self.rt.enqueue(Job.GIVE_UP, call_id, job_id=f"give-up-{call_id}")

    def _accept(self, call_id: str, leg: int) -> bool:
        try:
            return self.rt.live.accept(call_id, leg, self.rt.clock())
        except StoreUnavailable:
            return True

    def _enqueue_quietly(self, job: Job, *args, job_id: str) -> None:
        try:
            self.rt.enqueue(job, *args, job_id=job_id)
        except Exception:  # the caller is served; the job's absence is logged
            log.exception("could not queue a job", extra={"event": "enqueue_failed"})

    # -- in RQ jobs: the REST requests -----------------------------------------------------

    def ring_team(self, call_id: str) -> None:
        call = self.rt.live.get(call_id)
        team = self._team(call)
        if call is None or team is None or call.state not in (LiveState.WAITING,
                                                              LiveState.RINGING):
            return  # a retry after one leg was created rings the rest; claims stop repeats
        workers = team.active_workers()
        self.rt.live.note(call_id, leg_count=str(len(workers)))
        if not workers:
            self.give_up(call_id)
            return
        legs = range(len(workers)) if team.ring == "simultaneous" else range(1)
        failures = []
        for leg in legs:
            try:
                self._ring(call, team, leg)
            except Exception as exc:  # one worker's failure must not stop the others
                failures.append(exc)
        if failures:
            raise failures[0]

    def ring_next(self, call_id: str, leg: int) -> None:
        call = self.rt.live.get(call_id)
        team = self._team(call)
        if call and team and call.state in (LiveState.WAITING, LiveState.RINGING):
            self._ring(call, team, leg)

    def _ring(self, call: LiveCall, team: Team, leg: int) -> None:
        workers = team.active_workers()
        if leg >= len(workers):
            return
        if not self.rt.live.claim_leg(call.id, leg):
            return  # already rung (a retried or duplicated job): never ring twice
        try:
            sid = self.rt.twilio.ring(to=workers[leg].number,
                                      helpline_number=call.helpline_number,
                                      url=self.rt.links.worker(call.id, leg, call.flow),
                                      status_callback=self.rt.links.worker_status(call.id, leg),
                                      timeout=team.ring_timeout)
        except TwilioRestException as exc:
            if exc.status >= 500:
                self._rest_failed(call.id, leg)
                raise
            # Twilio refused this one worker (a bad number, say): that leg has failed, the
            # others go on, and the API is not in trouble for everyone else.
            log.error("Twilio refused a worker's leg", extra={"event": "leg_refused",
                                                              "error": str(exc.code)})
            self.worker_status(call.id, leg, "failed")
            return
        except Exception:
            self._rest_failed(call.id, leg)
            raise
        self.rt.live.set_leg(call.id, leg, sid)
        self.rt.live.advance(call.id, LiveState.RINGING, self.rt.clock())

    def _rest_failed(self, call_id: str, leg: int) -> None:
        """Twilio was unreachable or failed: the leg was not created, so a retry may ring it,
        and new callers are dialled directly for a while."""
        self.rt.live.release_leg(call_id, leg)
        self.rt.store.set(keys.rest_trouble(), "1", ex=REST_TROUBLE_SECONDS)

    def cancel_legs(self, call_id: str) -> None:
        call = self.rt.live.get(call_id)
        if call is None:
            return
        for leg, sid in call.legs.items():
            if leg != call.accepted and call.leg_status.get(leg) not in LEG_ENDED:
                self.rt.twilio.hang_up(sid)

    def give_up(self, call_id: str) -> None:
        """Nobody accepted in time: take the caller to the flow's no-answer step."""
        call = self.rt.live.get(call_id)
        if call is None or call.raw.get("fallback_done"):
            return
        moved = self.rt.live.advance(call_id, LiveState.FALLBACK, self.rt.clock())
        if not moved and call.state != LiveState.FALLBACK:
            return  # a worker accepted, or the caller left, first
        flow = self._flow(call)
        connect = flow.steps.get(call.step)
        target = connect.on_no_answer if isinstance(connect, Connect) else flow.start
        # The caller heard the notice on the way here; the URL carries that on.
        state = CallState(notice_heard=True, declined=not call.monitorable)
        self.rt.twilio.redirect(call.caller_sid, self.rt.links.step(flow.id, target, state))
        self.rt.live.note(call_id, fallback_done="1")
        self.rt.live.retire(call_id)
        metrics.call_outcome(call.flow, metrics.Outcome.FALLBACK)
        self.rt.counts.no_answer(call.flow, call.team, _waited(self.rt, call), at=_queued(call))
        log.info("nobody accepted; caller taken to the no-answer step",
                 extra={"call": call.caller_sid, "step": target, "event": "fallback"})
        self.cancel_legs(call_id)

    # -- helpers -----------------------------------------------------------------------------

    def _flow(self, call: LiveCall | None, flow_id: str = "") -> Flow:
        flowset = self.rt.registry.current
        return flowset.flows.get(call.flow if call else flow_id) or flowset.default_flow

    def _team(self, call: LiveCall | None) -> Team | None:
        return self.rt.registry.current.teams.get(call.team) if call else None


def _count_accepted(rt: Runtime, call: LiveCall, leg: int) -> None:
    """A worker accepted; counted once (not again when Twilio retries the keypress)."""
    if call.state != LiveState.CONNECTED:
        metrics.call_outcome(call.flow, metrics.Outcome.CONNECTED)
        rt.counts.answered(call.flow, call.team, _waited(rt, call),
                           worker=_worker(rt, call, leg), at=_queued(call))


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


def _worker(rt: Runtime, call: LiveCall, leg: int) -> str:
    """The name of the worker rung on ``leg`` (staff data, for their own counts)."""
    team = rt.registry.current.teams.get(call.team)
    workers = team.active_workers() if team else []
    return workers[leg].name if 0 <= leg < len(workers) else ""
