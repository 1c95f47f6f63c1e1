"""The manager line's webhooks: staff number and PIN, the list of live calls, the purpose."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from callflow.monitoring.manager_line import ManagerLineCalls
from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from webhooks.edge import check_and_strip, field, link, require_call_sid
from webhooks.voice import METHODS, twiml

log = logging.getLogger(__name__)
bp = Blueprint("manager_line", __name__, url_prefix="/voice/manager")
bp.before_request(check_and_strip)


def line() -> ManagerLineCalls:
    return current_app.extensions["callflow"]["manager_line"]


@bp.errorhandler(StoreUnavailable)
@bp.errorhandler(AuditUnavailable)
def unavailable(error: Exception):
    """Fail closed: no store or no audit log, no sign-in and no listening."""
    log.error("manager line unavailable", extra={"event": "monitoring_unavailable"})
    return twiml(line().unavailable())


@bp.route("/staff", methods=METHODS)
def staff():
    return twiml(line().staff_number(require_call_sid(), field("Digits")))


@bp.route("/pin", methods=METHODS)
def pin():
    return twiml(line().pin(require_call_sid(), field("Digits")))


@bp.route("/list", endpoint="list", methods=METHODS)
def listing():
    return twiml(line().listing(require_call_sid(), field("Digits")))


@bp.route("/purpose", methods=METHODS)
def purpose():
    return twiml(line().purpose(require_call_sid(), link("call"), field("Digits")))
