"""The staff line's webhooks: a worker's staff number and PIN, then start or end their shift.

The staff line's numbers (``CALLFLOW_STAFF_LINE_NUMBERS``) are answered at ``/voice/incoming``
like every number the service answers (``callflow twilio sync`` sets them so), or at
``/voice/staff/incoming``. Signature-checked and stripped like every voice webhook.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app

from callflow.bridge.staff_line import StaffLineCalls
from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from webhooks.edge import check_and_strip, field, require_call_sid
from webhooks.voice import METHODS, dialled, twiml

log = logging.getLogger(__name__)
bp = Blueprint("staff_line", __name__, url_prefix="/voice/staff")
bp.before_request(check_and_strip)


def line() -> StaffLineCalls:
    return current_app.extensions["callflow"]["staff_line"]


@bp.errorhandler(StoreUnavailable)
@bp.errorhandler(AuditUnavailable)
def unavailable(error: Exception):
    """No store or no audit log: no sign-in, and no shift changed."""
    log.error("staff line unavailable", extra={"event": "staff_line_unavailable"})
    return twiml(line().unavailable())


@bp.route("/incoming", methods=METHODS)
def incoming():
    return twiml(line().incoming(require_call_sid(), dialled()))


@bp.route("/staff", methods=METHODS)
def staff():
    return twiml(line().staff_number(require_call_sid(), field("Digits")))


@bp.route("/pin", methods=METHODS)
def pin():
    return twiml(line().pin(require_call_sid(), field("Digits")))


@bp.route("/choice", methods=METHODS)
def choice():
    return twiml(line().choice(require_call_sid(), field("Digits")))
