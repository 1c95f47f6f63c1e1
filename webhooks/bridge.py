"""Webhooks of the conference bridge: the waiting caller's hold, the worker's screening and
status, and the conference's own callbacks. Thin views over
:class:`callflow.bridge.bridge.Bridge`."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, current_app
from twilio.twiml.voice_response import VoiceResponse

from callflow.bridge.bridge import Bridge
from callflow.monitoring.conference import ConferenceCallbacks
from callflow.monitoring.gate import MonitoringGate
from callflow.platform.errors import StoreUnavailable
from webhooks.edge import CALL_SID, check_and_strip, field, link
from webhooks.voice import METHODS, state, twiml

log = logging.getLogger(__name__)
bp = Blueprint("bridge", __name__, url_prefix="/voice")
bp.before_request(check_and_strip)


def bridge() -> Bridge:
    return current_app.extensions["callflow"]["engine"].bridge


def leg() -> int:
    value = link("leg")
    if not (value.isascii() and value.isdigit()) or len(value) > 2:
        abort(400, description="leg is missing or malformed")
    return int(value)


def required(name: str, longest: int) -> str:
    """A link parameter the service always gives (an opaque id, a team's name), or 400."""
    value = link(name)
    if not value or len(value) > longest:
        abort(400, description=f"{name} is missing or malformed")
    return value


def team() -> str:
    return required("team", 64)


def offer() -> str:
    return required("offer", 32)


def call_id() -> str:
    return required("call", 64)


def sid_or_empty() -> str:
    """The request's CallSid when it is well formed, else "" (nothing is recorded then)."""
    sid = field("CallSid")
    return sid if CALL_SID.fullmatch(sid) else ""


@bp.errorhandler(StoreUnavailable)
def store_unavailable(error: StoreUnavailable):
    """A callback the store cannot take: Twilio logs the 503; no caller hears anything of it."""
    log.error("store unavailable for a bridge callback", extra={"event": "degraded"})
    return Response("the store is unavailable", status=503, mimetype="text/plain")


@bp.route("/hold", methods=METHODS)
def hold():
    return twiml(bridge().hold(call_id()))


@bp.route("/waiting/left", methods=METHODS)
def left():
    """The caller's ``<Enqueue>`` ended: on to the room, the step the line chose, or (the
    store down, the line gone) the flow's direct dial."""
    engine = current_app.extensions["callflow"]["engine"]
    body = engine.waiting_left(call_id(), link("flow"), link("step"), state(),
                               field("QueueResult"), sid_or_empty(), field("To"))
    return Response(body, mimetype="text/xml")


@bp.route("/waiting/join", methods=METHODS)
def join():
    engine = current_app.extensions["callflow"]["engine"]
    return Response(engine.join_room(call_id(), sid_or_empty(), field("To")),
                    mimetype="text/xml")


@bp.route("/conference", methods=METHODS)
def conference():
    ConferenceCallbacks(bridge().rt).event(call_id(), field("StatusCallbackEvent"),
                                           field("ConferenceSid"), field("CallSid"),
                                           field("ParticipantLabel"))
    return twiml(VoiceResponse())


@bp.route("/worker", methods=METHODS)
def worker():
    return twiml(bridge().worker_screen(team(), leg(), offer(), link("flow")))


@bp.route("/worker/answer", methods=METHODS)
def worker_answer():
    return twiml(bridge().worker_answer(team(), leg(), offer(), field("Digits"), link("flow"),
                                        sid_or_empty()))


@bp.route("/monitor/status", methods=METHODS)
def monitor_status():
    """The manager's web-rung leg: Twilio naming it (which settles a listen whose REST answer
    was lost) and, once it ends (or never answers), closing the session."""
    session = link("session")
    if session:
        MonitoringGate(bridge().rt, bridge().rt.audit).leg_reported(session, sid_or_empty(),
                                                                    field("CallStatus"))
    return twiml(VoiceResponse())


@bp.route("/worker/status", methods=METHODS)
def worker_status():
    bridge().worker_status(team(), leg(), offer(), field("CallStatus"), field("CallDuration"),
                           link("flow"))
    return twiml(VoiceResponse())
