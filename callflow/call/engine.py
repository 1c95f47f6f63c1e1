"""Runs calls through their flows: every voice webhook's answer is decided here.

Each method takes only what survives the edge (ids, the dialled number, the state the signed
URL carries, digits, statuses) and returns TwiML as bytes. A turn walks the flow from the step
the callback names until a step waits for Twilio or ends the call; a step kind decides what
its callback means (:meth:`callflow.language.steps.Step.answer`). Before the bridge nothing here
touches Redis: the state is in the URL.

Most turns are the same for every caller who takes them (the same steps, the same state), so
their TwiML is rendered the first time and then served as bytes (:class:`Rendered`); only a
turn that reaches the bridge is built for its call. Whatever goes wrong (the store down at
the bridge, a step removed by a reload), the caller hears an apology and the degraded path,
never silence.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from twilio.twiml.voice_response import VoiceResponse

from callflow.bridge.bridge import Bridge
from callflow.call.degraded import (
    CONNECTED,
    degraded_dial_result,
    degraded_response,
    helpline_number,
)
from callflow.language.dialling import accept_or_refuse, screen_worker
from callflow.language.flow import Flow, FlowSet
from callflow.language.policy import policy_text, spoken_paragraphs
from callflow.language.steps import DEFAULT_WHISPER, Connect, Hours, Spoken, Step
from callflow.language.turn import Answer, Reply, Turn
from callflow.platform import metrics
from callflow.platform.errors import StoreUnavailable
from callflow.platform.limits import MAX_STEPS_PER_TURN
from callflow.platform.links import CallState
from callflow.records.counts import Outcome
from callflow.records.live import LiveState
from callflow.runtime import Runtime

log = logging.getLogger(__name__)
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
# Rendered turns kept per flow set; a flow set has a bounded number of them, this only caps a
# pathological one.
MAX_RENDERED = 4096


class Rendered:
    """TwiML already rendered for this flow set, by what it was rendered from.

    Belongs to one compiled flow set and is replaced with it on reload, so a reload can never
    serve an answer of the old flows."""

    def __init__(self) -> None:
        self.bodies: dict[tuple, bytes] = {}

    def get(self, key: tuple, render: Callable[[], VoiceResponse]) -> bytes:
        body = self.bodies.get(key)
        if body is None:
            body = str(render()).encode("utf-8")
            if len(self.bodies) < MAX_RENDERED:
                self.bodies[key] = body
        return body


def rendered(flowset: FlowSet) -> Rendered:
    return flowset.compiled.setdefault("twiml", Rendered())


class PolicySpeech:
    """The policy as callers hear it (key 9 at the notice), read again only when its file
    changes (``CALLFLOW_POLICY_FILE``; the shipped copy never does)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._read: tuple[int, tuple[str, ...]] | None = None

    def __call__(self) -> tuple[str, ...]:
        version = os.stat(self.path).st_mtime_ns if self.path else 0
        if self._read is None or self._read[0] != version:
            self._read = (version, tuple(spoken_paragraphs(policy_text(self.path))))
        return self._read[1]


class CallEngine:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.registry = rt.registry
        self.links = rt.links
        self.clock = rt.clock
        self.policy = PolicySpeech(rt.settings.policy_file)
        self.bridge = Bridge(rt)

    # -- the caller's leg -------------------------------------------------------------------

    def incoming(self, call_sid: str, dialled: str) -> bytes:
        flowset = self.registry.current
        flow = flowset.flow_for(dialled)
        if flow is None:
            log.warning("call to a number no flow answers", extra={"call": call_sid,
                                                                   "event": "unknown_number"})
            return self.degraded(flowset.default_flow, dialled, apology=True, counted=False)
        self.rt.counts.offered(flow.id)
        return self._guarded(call_sid, flow, dialled, lambda: self._run(
            call_sid, flowset, flow, dialled, flow.start, CallState(), event="incoming"),
            notice_heard=False)

    def resume(self, call_sid: str, flow_id: str, step: str, state: CallState,
               dialled: str) -> bytes:
        """Carry on at ``step`` (a redirect, e.g. from the bridge to the no-answer step)."""
        return self._callback(call_sid, flow_id, step, state, dialled, Step,
                              lambda found, turn: Answer(found.name, state, event="resumed"))

    def answer(self, kind: type[Step], call_sid: str, flow_id: str, step: str,
               state: CallState, dialled: str, *, digits: str = "", dial_status: str = "",
               live_call: str = "") -> bytes:
        """Twilio called back after ``step`` (of ``kind``): the step decides what happens."""
        def decide(found: Step, turn: Turn) -> Answer:
            # On the bridge the live call's record says whether a worker took it; a direct
            # dial's own status says so otherwise.
            connected = (self.bridge.connected(live_call) if live_call
                         else dial_status in CONNECTED)
            if isinstance(found, Connect) and not live_call:  # a direct dial's result
                self.rt.counts.dialled(turn.flow.id, found.team, connected)
            return found.answer(Reply(digits=digits, dial_status=dial_status,
                                      connected=connected), turn)

        return self._callback(call_sid, flow_id, step, state, dialled, kind, decide)

    def waiting_left(self, call_id: str, flow_id: str, step: str, state: CallState,
                     result: str, call_sid: str, dialled: str) -> bytes:
        """The caller left the team's waiting line (Twilio's ``<Enqueue>`` action): into the
        room if a worker took them, on to the step the line chose (no workers on shift, the
        longest wait), or, with the store down or the call unknown, the flow's direct dial,
        with an apology: queue order is all that is lost."""
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id) or flowset.flow_for(dialled) or flowset.default_flow
        try:
            call, target = self.bridge.left_line(call_id, result)
        except StoreUnavailable:  # counted already, as queued: only the direct dial is new
            log.error("store unavailable for a caller leaving the line; dialling directly",
                      extra={"call": call_sid, "flow": flow.id, "event": "degraded"})
            return self.degraded(flow, dialled or flow.numbers[0], apology=True)
        if result == "hangup":
            return rendered(flowset).get(("hang up",), _hang_up)
        if call is not None and call.state == LiveState.CONNECTED:
            return str(self.bridge.into_room(call)).encode("utf-8")
        if call is not None and target in flow.steps:
            return self._run(call_sid, flowset, flow, dialled, target, state,
                             event="left_line")
        return self.degraded(flow, dialled or flow.numbers[0], apology=True)

    def join_room(self, call_id: str, call_sid: str, dialled: str) -> bytes:
        """Where a caller whose worker accepted is moved (the REST redirect): into the room;
        or, with the store down or the call unknown, the flow's direct dial, with an apology,
        never a hang-up."""
        flowset = self.registry.current
        flow = flowset.flow_for(dialled) or flowset.default_flow
        try:
            call = self.rt.live.get(call_id)
        except StoreUnavailable:
            log.error("store unavailable for a caller joining their worker; dialling directly",
                      extra={"call": call_sid, "flow": flow.id, "event": "degraded"})
            call = None
        if call is None:
            return self.degraded(flow, dialled or flow.numbers[0], apology=True)
        return str(self.bridge.into_room(call)).encode("utf-8")

    def status(self, call_sid: str, call_status: str) -> None:
        """Twilio's call status callback: a finished call leaves the bridge (if it was on it)."""
        if call_status not in ENDED:
            return
        log.info("call ended", extra={"call": call_sid, "status": call_status})
        try:
            self.bridge.caller_ended(call_sid)
        except StoreUnavailable:
            log.warning("store unavailable; the call's bridge record will expire",
                        extra={"call": call_sid})

    # -- the degraded path ------------------------------------------------------------------

    def degraded(self, flow: Flow, dialled: str | None, *, apology: bool,
                 notice_heard: bool = True, counted: bool = True) -> bytes:
        """The degraded path; ``counted`` for a call the reports counted as offered (not an
        unknown number's, nor the fallback URL's, which is counted on its own)."""
        metrics.degraded(flow.id)
        if counted:
            self.rt.counts.ended(flow.id, Outcome.DEGRADED, notice_heard=notice_heard)
        flowset = self.registry.current
        now = self.clock()
        number = helpline_number(flow, dialled)
        key = ("degraded", flow.id, number, apology, flow.hours.is_open(now), self.links.base)
        return rendered(flowset).get(key, lambda: degraded_response(
            flowset, flow, dialled=number, now=now, links=self.links, apology=apology))

    def fallback(self, dialled: str) -> bytes:
        """Twilio's fallback URL: no store, no flow run, just notice and a direct dial."""
        flowset = self.registry.current
        log.warning("fallback URL called", extra={"event": "fallback"})
        flow = flowset.flow_for(dialled) or flowset.default_flow
        self.rt.counts.fallback(flow.id)
        return self.degraded(flow, dialled, apology=True, counted=False)

    def degraded_dial_result(self, flow_id: str, dial_status: str) -> VoiceResponse:
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id) or flowset.default_flow
        self.rt.counts.dialled(flow.id, flow.degraded.team, dial_status in CONNECTED)
        return degraded_dial_result(flow, dial_status)

    # -- the worker's leg (a direct dial) ---------------------------------------------------

    def screen(self, flow_id: str, step: str) -> VoiceResponse:
        flow, connect = self._worker_context(flow_id, step)
        whisper = connect.whisper if connect else DEFAULT_WHISPER
        response = VoiceResponse()
        screen_worker(response, whisper=whisper.format(helpline=flow.helpline),
                      action=self.links.screen_answer(flow.id, step), voice=flow.voice,
                      language=flow.language)
        return response

    def screen_answer(self, flow_id: str, step: str, digits: str) -> VoiceResponse:
        flow, _ = self._worker_context(flow_id, step)
        response = VoiceResponse()
        accepted = accept_or_refuse(response, digits, voice=flow.voice, language=flow.language)
        log.info("worker screened", extra={"flow": flow.id, "step": step,
                                           "event": "accepted" if accepted else "declined"})
        return response

    # -- internals --------------------------------------------------------------------------

    def _worker_context(self, flow_id: str, step: str) -> tuple[Flow, Connect | None]:
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id) or flowset.default_flow
        connect = flow.steps.get(step)
        return flow, connect if isinstance(connect, Connect) else None

    def _callback(self, call_sid: str, flow_id: str, step_name: str, state: CallState,
                  dialled: str, kind: type[Step],
                  decide: Callable[[Any, Turn], Answer]) -> bytes:
        """Find the flow and step a callback names and let the step decide; or degrade."""
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id)
        step = flow.steps.get(step_name) if flow else None
        if flow is None or not isinstance(step, kind):
            log.warning("callback names a step that is not live",
                        extra={"call": call_sid, "flow": flow_id if flow else None,
                               "event": "stale_step"})
            return self.degraded(flow or flowset.flow_for(dialled) or flowset.default_flow,
                                 dialled, apology=True, notice_heard=state.notice_heard)

        def turn() -> bytes:
            answer = decide(step, self._turn(flowset, flow, dialled, state, call_sid))
            if answer.state.notice_heard and not state.notice_heard:
                self.rt.counts.notice_heard(flow.id)
            if answer.next is None:
                log.info("turn", extra={"call": call_sid, "flow": flow.id, "step": step.name,
                                        "event": answer.event})
                return rendered(flowset).get(("hang up",), _hang_up)
            return self._run(call_sid, flowset, flow, dialled, answer.next, answer.state,
                             lead=(step, answer.say) if answer.say else None,
                             event=answer.event)

        return self._guarded(call_sid, flow, dialled, turn, notice_heard=state.notice_heard)

    def _guarded(self, call_sid: str, flow: Flow, dialled: str,
                 turn: Callable[[], bytes], *, notice_heard: bool) -> bytes:
        try:
            return turn()
        except StoreUnavailable:
            log.error("store unavailable; degraded path", extra={"call": call_sid,
                                                                 "flow": flow.id,
                                                                 "event": "degraded"})
            return self.degraded(flow, dialled, apology=True, notice_heard=notice_heard)

    def _turn(self, flowset: FlowSet, flow: Flow, dialled: str, state: CallState,
              call_sid: str) -> Turn:
        return Turn(flowset=flowset, flow=flow, helpline_number=helpline_number(flow, dialled),
                    now=self.clock(), links=self.links, state=state,
                    policy=self.policy)

    def _bridge(self, turn: Turn, call_sid: str, connect: Step):
        """How the connect step may put this caller on the bridge, or None when it cannot
        take them now (no account, Twilio's REST API in trouble, no job runner alive, the
        store down): then the step dials the team directly, with the same privacy settings,
        and a Redis outage costs the caller nothing they hear."""
        flow = turn.flow
        team = connect.team if isinstance(connect, Connect) else ""
        try:
            if not self.bridge.available():
                self.rt.counts.ended(flow.id, Outcome.DIRECT, team=team,
                                     notice_heard=turn.state.notice_heard)
                return None
        except StoreUnavailable:
            self._store_down(call_sid, flow, turn.state, team)
            return None

        def put_through(response: VoiceResponse, connect: Connect, state: CallState) -> bool:
            try:
                call = self.bridge.put_through(response, flow, connect, state=state,
                                               caller_sid=call_sid,
                                               helpline_number=turn.helpline_number)
            except StoreUnavailable:
                self._store_down(call_sid, flow, state, connect.team)
                return False
            if call is None or call.fresh:  # not again when Twilio retries the webhook
                self.rt.counts.ended(flow.id, Outcome.QUEUED, team=connect.team,
                                     notice_heard=state.notice_heard)
            return True

        return put_through

    def _store_down(self, call_sid: str, flow: Flow, state: CallState, team: str) -> None:
        log.error("store unavailable at the bridge; dialling directly",
                  extra={"call": call_sid, "flow": flow.id, "event": "degraded"})
        metrics.degraded(flow.id)
        self.rt.counts.ended(flow.id, Outcome.DEGRADED, team=team,
                             notice_heard=state.notice_heard)

    def _run(self, call_sid: str, flowset: FlowSet, flow: Flow, dialled: str, entry: str,
             state: CallState, *, lead: tuple[Spoken, tuple[str, ...]] | None = None,
             event: str = "") -> bytes:
        """Walk the steps from ``entry`` until one waits for Twilio or ends the call, and
        answer with their TwiML: rendered once for every caller, unless the walk reaches a
        step whose TwiML is this call's own (the bridge) or the moment's."""
        turn = self._turn(flowset, flow, dialled, state, call_sid)
        path: list[Step] = []
        name: str | None = entry
        while name is not None:
            if len(path) == MAX_STEPS_PER_TURN:  # the validator refuses such chains; a reload raced
                log.error("step chain too long; degraded path", extra={"call": call_sid,
                                                                       "flow": flow.id})
                return self.degraded(flow, dialled, apology=True,
                                     notice_heard=state.notice_heard)
            step = flow.steps[name]
            path.append(step)
            name = None if step.ends_turn else step.follow(turn)
            if isinstance(step, Hours) and not flow.hours.is_open(turn.now):
                closure = flow.hours.is_closure(turn.now)
                self.rt.counts.ended(flow.id, Outcome.CLOSURE if closure
                                     else Outcome.OUT_OF_HOURS,
                                     notice_heard=state.notice_heard)
        log.info("turn", extra={"call": call_sid, "flow": flow.id, "event": event,
                                "step": " > ".join(step.name for step in path)})
        if path[-1].contacts_person:
            turn.put_through = self._bridge(turn, call_sid, path[-1])
            if turn.put_through is not None:  # this call's own room on the bridge
                return str(_render(turn, path, lead)).encode("utf-8")
        if path[-1].dynamic:  # what it says depends on the time (when the line opens next)
            return str(_render(turn, path, lead)).encode("utf-8")
        # The same for every caller who takes this turn (a direct dial shows the number dialled).
        key = ("turn", flow.id, lead[0].name if lead else "", lead[1] if lead else (),
               tuple(step.name for step in path), state, turn.helpline_number,
               self.links.base)
        return rendered(flowset).get(key, lambda: _render(turn, path, lead))


def _render(turn: Turn, path: list[Step], lead) -> VoiceResponse:
    response = VoiceResponse()
    if lead:
        speaker, texts = lead
        for text in texts:
            speaker.speak(response, turn, text)
    for index, step in enumerate(path):
        if index == 1:  # tries count only at the step the callback named
            turn.state = turn.state.with_tries(0)
        if step.contacts_person and not turn.state.notice_heard:
            # The validator proves this cannot happen; should a URL say otherwise, say it again.
            response.say(turn.flow.notice_text, voice=turn.flow.voice,
                         language=turn.flow.language)
            turn.state = turn.state.heard_notice()
        step.render(response, turn)
    return response


def _hang_up() -> VoiceResponse:
    response = VoiceResponse()
    response.hangup()
    return response
