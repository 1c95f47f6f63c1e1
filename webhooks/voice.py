"""Twilio's voice webhooks: thin views over :class:`callflow.call.engine.CallEngine`.

Every view is signature-checked and sees only allow-listed fields (``webhooks.edge``). Each
step kind with a callback gets its route here (``/voice/<callback>``), made from the registry
of step kinds, so a new kind needs no view of its own. Any error that escapes the engine still
answers the caller: an apology and the degraded path.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from callflow.call.engine import CallEngine
from callflow.language.steps import STEP_KINDS, Step
from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from callflow.platform.links import CallState
from webhooks.edge import check_and_strip, field, link, require_call_sid

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")
bp.before_request(check_and_strip)
METHODS = ["POST", "GET"]  # Twilio may be set to either; both are signed
WORKER_LEG_VIEWS = frozenset({"voice.screen", "voice.screen_answer"})
EMPTY = str(VoiceResponse()).encode("utf-8")


def engine() -> CallEngine:
    return current_app.extensions["callflow"]["engine"]


def twiml(response: VoiceResponse | bytes) -> Response:
    body = response if isinstance(response, bytes) else str(response)
    return Response(body, mimetype="text/xml")


def dialled() -> str:
    return field("To") or field("Called")


def state() -> CallState:
    """The caller's state, from the signed URL Twilio called."""
    return CallState.from_query(link)


@bp.route("/incoming", methods=METHODS)
def incoming():
    staff_line = current_app.extensions["callflow"]["staff_line"]
    flows = engine().registry.current
    # A worker signing on or off, never a caller: a helpline's number listed for the staff
    # line by mistake still answers its callers with the helpline.
    if staff_line.answers(dialled()) and flows.flow_for(dialled()) is None:
        try:
            return twiml(staff_line.incoming(require_call_sid(), dialled()))
        except (StoreUnavailable, AuditUnavailable):  # no sign-in, and no shift changed
            log.error("staff line unavailable", extra={"event": "staff_line_unavailable"})
            return twiml(staff_line.unavailable())
    if flows.is_manager_line(dialled()):
        line = current_app.extensions["callflow"]["manager_line"]
        try:
            return twiml(line.incoming(require_call_sid()))
        except StoreUnavailable:  # the manager is not a caller: never put through to a team
            log.error("manager line unavailable", extra={"event": "monitoring_unavailable"})
            return twiml(line.unavailable())
    return twiml(engine().incoming(require_call_sid(), dialled()))


@bp.route("/step", methods=METHODS)
def step():
    return twiml(engine().resume(require_call_sid(), link("flow"), link("step"), state(),
                                 dialled()))


def answer_view(kind: type[Step]):
    """The view Twilio calls after a step of ``kind``: the kind decides what it means."""
    def view():
        return twiml(engine().answer(kind, require_call_sid(), link("flow"), link("step"),
                                     state(), dialled(), digits=field("Digits"),
                                     dial_status=field("DialCallStatus"),
                                     live_call=link("call")))

    view.__name__ = kind.callback
    return view


def add_callbacks(blueprint: Blueprint) -> None:
    """One route per step kind that Twilio calls back after: ``/voice/notice``, ..."""
    for kind in STEP_KINDS.values():
        if kind.callback:
            blueprint.add_url_rule(f"/{kind.callback}", endpoint=kind.callback,
                                   view_func=answer_view(kind), methods=METHODS)


add_callbacks(bp)


@bp.route("/degraded/dial", methods=METHODS)
def degraded_dial():
    return twiml(engine().degraded_dial_result(link("flow"), field("DialCallStatus")))


@bp.route("/screen", methods=METHODS)
def screen():
    return twiml(engine().screen(link("flow"), link("step")))


@bp.route("/screen/answer", methods=METHODS)
def screen_answer():
    return twiml(engine().screen_answer(link("flow"), link("step"), field("Digits")))


@bp.route("/fallback", methods=METHODS)
def fallback():
    return twiml(engine().fallback(dialled()))


@bp.route("/status", methods=METHODS)
def status():
    engine().status(require_call_sid(), field("CallStatus"))
    return twiml(EMPTY)


@bp.errorhandler(Exception)
def caller_never_hears_an_error(error: Exception):
    """Whatever failed, a caller hears an apology and is put through (promise 6)."""
    if isinstance(error, HTTPException):
        return error
    if request.endpoint in WORKER_LEG_VIEWS:
        # A worker's leg: never dial anyone from it; the caller's own path goes on.
        log.exception("worker screening failed", extra={"event": "screen_failed"})
        response = VoiceResponse()
        response.hangup()
        return twiml(response)
    log.exception("webhook failed; degraded path", extra={"event": "degraded"})
    flowset = engine().registry.current
    flow = flowset.flow_for(dialled())
    return twiml(engine().degraded(flow or flowset.default_flow, dialled(), apology=True,
                                   notice_heard=request.endpoint != "voice.incoming",
                                   counted=flow is not None))
