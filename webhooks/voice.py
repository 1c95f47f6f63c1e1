"""Twilio's voice webhooks: thin views over :class:`callflow.engine.CallEngine`.

Every view is signature-checked and sees only allow-listed fields (``webhooks.edge``). Any
error that escapes the engine still answers the caller: an apology and the degraded path.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, request
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import HTTPException

from callflow.engine import CallEngine
from callflow.errors import StoreUnavailable
from webhooks.edge import check_and_strip, field, link, require_call_sid

log = logging.getLogger(__name__)
bp = Blueprint("voice", __name__, url_prefix="/voice")
bp.before_request(check_and_strip)
METHODS = ["POST", "GET"]  # Twilio may be set to either; both are signed
WORKER_LEG_VIEWS = frozenset({"voice.screen", "voice.screen_answer"})


def engine() -> CallEngine:
    return current_app.extensions["callflow"]["engine"]


def twiml(response: VoiceResponse) -> Response:
    return Response(str(response), mimetype="text/xml")


def call_sid() -> str:
    return require_call_sid()


def dialled() -> str:
    return field("To") or field("Called")


@bp.route("/incoming", methods=METHODS)
def incoming():
    if engine().registry.current.is_manager_line(dialled()):
        line = current_app.extensions["callflow"]["manager_line"]
        try:
            return twiml(line.incoming(call_sid()))
        except StoreUnavailable:  # the manager is not a caller: never put through to a team
            log.error("manager line unavailable", extra={"event": "monitoring_unavailable"})
            return twiml(line.unavailable())
    return twiml(engine().incoming(call_sid(), dialled()))


@bp.route("/step", methods=METHODS)
def resume():
    return twiml(engine().resume(call_sid(), link("flow"), link("step"), dialled()))


@bp.route("/notice", methods=METHODS)
def notice():
    return twiml(engine().notice_answer(call_sid(), link("flow"), link("step"), dialled(),
                                        field("Digits")))


@bp.route("/menu", methods=METHODS)
def menu():
    return twiml(engine().menu_answer(call_sid(), link("flow"), link("step"), dialled(),
                                      field("Digits")))


@bp.route("/dial", methods=METHODS)
def dial():
    return twiml(engine().dial_result(call_sid(), link("flow"), link("step"), dialled(),
                                      field("DialCallStatus")))


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
    engine().status(call_sid(), field("CallStatus"))
    return twiml(VoiceResponse())


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
    return twiml(engine().degraded(flow or flowset.default_flow, dialled(), apology=True))
