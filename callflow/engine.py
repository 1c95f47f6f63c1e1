"""Runs calls through their flows: every voice webhook's answer is decided here.

Each method takes only what survives the edge (ids, the dialled number, digits, statuses) and
returns TwiML. Whatever goes wrong inside (the store down, a step removed by a reload), the
caller gets a spoken apology and the degraded path, never silence.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from twilio.twiml.voice_response import VoiceResponse

from callflow import metrics
from callflow.bridge import Bridge
from callflow.context import CallContext
from callflow.degraded import CONNECTED, degraded_dial_result, degraded_response, helpline_number
from callflow.dialling import accept_or_refuse, screen_worker
from callflow.errors import StoreUnavailable
from callflow.flow import Flow
from callflow.limits import MAX_STEPS_PER_TURN
from callflow.policy import OPTED_OUT, policy_text, spoken_paragraphs
from callflow.runtime import Runtime
from callflow.state import CallState
from callflow.steps import DEFAULT_WHISPER, Connect, Menu, Notice, Step

log = logging.getLogger(__name__)

# The validator refuses a turn of more steps; the last pass only finds that the turn ended.
MAX_HOPS = MAX_STEPS_PER_TURN + 1
ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


def utc_now() -> datetime:
    return datetime.now(UTC)


class CallEngine:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.registry = rt.registry
        self.store = rt.calls
        self.links = rt.links
        self.clock: Callable[[], datetime] = rt.clock
        self.policy_file = rt.settings.policy_file
        self.bridge = Bridge(rt)

    # -- the caller's leg -------------------------------------------------------------------

    def incoming(self, call_sid: str, dialled: str) -> VoiceResponse:
        flowset = self.registry.current
        flow = flowset.flow_for(dialled)
        if flow is None:
            log.warning("call to a number no flow answers", extra={"call": call_sid,
                                                                   "event": "unknown_number"})
            return self.degraded(flowset.default_flow, dialled, apology=True)
        log.info("call started", extra={"call": call_sid, "flow": flow.id, "event": "incoming"})
        return self._guarded(call_sid, flow, dialled, lambda: self._run(
            call_sid, flow, dialled, flow.start, CallState(flow=flow.id)))

    def resume(self, call_sid: str, flow_id: str, step: str, dialled: str) -> VoiceResponse:
        """Carry on at ``step`` (after a redirect)."""
        return self._step_turn(call_sid, flow_id, step, dialled, Step,
                               lambda flow, _step, state: self._run(call_sid, flow, dialled,
                                                                    step, state))

    def notice_answer(self, call_sid: str, flow_id: str, step: str, dialled: str,
                      digits: str) -> VoiceResponse:
        def answer(flow: Flow, notice: Notice, state: CallState) -> VoiceResponse:
            response = VoiceResponse()
            state.notice_heard = True
            voice = {"voice": notice.voice or flow.voice,
                     "language": notice.language or flow.language}
            if digits == notice.policy_digit:
                log.info("policy read out", extra={"call": call_sid, "step": step})
                for paragraph in spoken_paragraphs(policy_text(self.policy_file)):
                    response.say(paragraph, **voice)
            elif digits and digits == notice.monitoring_opt_out:
                log.info("caller declined monitoring", extra={"call": call_sid, "step": step})
                state.monitor_declined = True
                response.say(OPTED_OUT, **voice)
            return self._run(call_sid, flow, dialled, notice.next, state, response)

        return self._step_turn(call_sid, flow_id, step, dialled, Notice, answer)

    def menu_answer(self, call_sid: str, flow_id: str, step: str, dialled: str,
                    digits: str) -> VoiceResponse:
        def answer(flow: Flow, menu: Menu, state: CallState) -> VoiceResponse:
            state.attempts = state.attempts + 1 if state.step == step else 1
            state.step = step
            target, apology = menu.choose(digits, state.attempts)
            response = VoiceResponse()
            if apology:
                menu.say(response, self._context(flow, dialled, state), apology)
            log.info("menu answered", extra={"call": call_sid, "step": step,
                                             "event": "chosen" if target in menu.options.values()
                                             else "retry" if target is None else "fallback"})
            return self._run(call_sid, flow, dialled, target or step, state, response)

        return self._step_turn(call_sid, flow_id, step, dialled, Menu, answer)

    def dial_result(self, call_sid: str, flow_id: str, step: str, dialled: str,
                    dial_status: str) -> VoiceResponse:
        def answer(flow: Flow, connect: Connect, state: CallState) -> VoiceResponse:
            log.info("dial ended", extra={"call": call_sid, "step": step, "status": dial_status})
            connected = (self.bridge.connected(state.live) if state.live
                         else dial_status in CONNECTED)
            if connected:
                response = VoiceResponse()
                response.hangup()
                return response
            return self._run(call_sid, flow, dialled, connect.on_no_answer, state)

        return self._step_turn(call_sid, flow_id, step, dialled, Connect, answer)

    def status(self, call_sid: str, call_status: str) -> None:
        """Twilio's call status callback: forget a finished call at once."""
        if call_status not in ENDED:
            return
        log.info("call ended", extra={"call": call_sid, "status": call_status})
        try:
            state = self.store.load(call_sid)
            if state.live:
                self.bridge.caller_gone(state.live, call_sid)
            elif self.rt.settings.purge_twilio_logs:
                self.bridge.purge_records([call_sid], job_id=f"purge-{call_sid}")
            self.store.end(call_sid)
        except StoreUnavailable:
            log.warning("store unavailable; call state will expire", extra={"call": call_sid})

    # -- the degraded path ------------------------------------------------------------------

    def degraded(self, flow: Flow, dialled: str | None, *, apology: bool) -> VoiceResponse:
        metrics.degraded(flow.id)
        return degraded_response(self.registry.current, flow, dialled=dialled, now=self.clock(),
                                 links=self.links, apology=apology)

    def fallback(self, dialled: str) -> VoiceResponse:
        """Twilio's fallback URL: no store, no flow run, just notice and a direct dial."""
        flowset = self.registry.current
        log.warning("fallback URL called", extra={"event": "fallback"})
        return self.degraded(flowset.flow_for(dialled) or flowset.default_flow, dialled,
                             apology=True)

    def degraded_dial_result(self, flow_id: str, dial_status: str) -> VoiceResponse:
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id) or flowset.default_flow
        return degraded_dial_result(flow, dial_status)

    # -- the worker's leg -------------------------------------------------------------------

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

    def _context(self, flow: Flow, dialled: str, state: CallState,
                 call_sid: str = "") -> CallContext:
        number = helpline_number(flow, dialled)

        def put_through(response: VoiceResponse, connect: Connect) -> bool:
            if not call_sid or not self.bridge.available():
                return False
            call = self.bridge.put_through(response, flow, connect, caller_sid=call_sid,
                                           helpline_number=number,
                                           monitorable=not state.monitor_declined)
            state.live = call.id
            return True

        return CallContext(flowset=self.registry.current, flow=flow, helpline_number=number,
                           now=self.clock(), links=self.links, notice_heard=state.notice_heard,
                           put_through=put_through)

    def _step_turn(self, call_sid, flow_id, step_name, dialled, kind, answer) -> VoiceResponse:
        """Find the flow and step a callback names, load the call, and answer; or degrade."""
        flowset = self.registry.current
        flow = flowset.flows.get(flow_id)
        step = flow.steps.get(step_name) if flow else None
        if flow is None or not isinstance(step, kind):
            log.warning("callback names a step that is not live",
                        extra={"call": call_sid, "flow": flow_id if flow else None,
                               "event": "stale_step"})
            return self.degraded(flow or flowset.flow_for(dialled) or flowset.default_flow,
                                 dialled, apology=True)

        def turn() -> VoiceResponse:
            state = self.store.load(call_sid)
            if state.flow != flow.id:  # expired or never saved: assume nothing was heard
                state = CallState(flow=flow.id, step=step_name)
            return answer(flow, step, state)

        return self._guarded(call_sid, flow, dialled, turn)

    def _guarded(self, call_sid, flow, dialled, turn) -> VoiceResponse:
        try:
            return turn()
        except StoreUnavailable:
            log.error("store unavailable; degraded path", extra={"call": call_sid,
                                                                 "flow": flow.id,
                                                                 "event": "degraded"})
            return self.degraded(flow, dialled, apology=True)

    def _run(self, call_sid: str, flow: Flow, dialled: str, name: str, state: CallState,
             response: VoiceResponse | None = None) -> VoiceResponse:
        """Render steps from ``name`` until one waits for Twilio or ends the call; save state."""
        response = response or VoiceResponse()
        call = self._context(flow, dialled, state, call_sid)
        current: str | None = name
        for _ in range(MAX_HOPS):
            if current is None:
                break
            step = flow.steps[current]
            if step.contacts_person and not call.notice_heard:
                # The validator proves this cannot happen; if state was lost, say it again.
                response.say(flow.notice_text, voice=flow.voice, language=flow.language)
                call.notice_heard = True
            if current != state.step:
                state.attempts = 0
            state.step = current
            call.visited.append(current)
            current = step.render(response, call)
        else:
            log.error("step chain too long; degraded path", extra={"call": call_sid,
                                                                   "flow": flow.id})
            return self.degraded(flow, dialled, apology=True)
        state.notice_heard = call.notice_heard
        self.store.save(call_sid, state)
        log.info("steps run", extra={"call": call_sid, "flow": flow.id,
                                     "step": " > ".join(call.visited)})
        return response
