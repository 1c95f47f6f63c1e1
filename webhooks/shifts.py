"""Workers' shifts on the web: a worker's own "My shift" page, and the managers' view of every
worker (with ending a forgotten shift and resuming a paused worker), page and JSON.

Every change goes through :class:`callflow.staff.desk.ShiftDesk`, which audits it and tells the
waiting line. A worker's account sees only its own shift: nothing about callers, calls or other
workers. Nothing here shows a phone number.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for

from callflow.platform.errors import AuditUnavailable, StoreUnavailable
from callflow.staff.accounts import Role
from callflow.staff.desk import Channel, NotOnRoster, ShiftDesk
from callflow.staff.shifts import WorkerState
from webhooks import sessions
from webhooks.auth import DASHBOARD_ROLES, check_csrf, current_member, require
from webhooks.dashboard import chrome, page

log = logging.getLogger(__name__)
bp = Blueprint("shifts", __name__, url_prefix="/manager")
bp.before_request(check_csrf)
sessions.keep(bp)

# How a worker's own state reads on their page, and on the managers' list.
STATE_WORDS = {
    WorkerState.OFF: "Off shift",
    WorkerState.AVAILABLE: "On shift, free for the next call",
    WorkerState.OFFERED: "On shift, your phone is ringing",
    WorkerState.ON_CALL: "On shift, on a call",
    WorkerState.WRAP_UP: "On shift, wrapping up after a call",
    WorkerState.PAUSED: "On shift, paused: not rung until resumed",
}
STATE_LABELS = {WorkerState.OFF: "Off", WorkerState.AVAILABLE: "Available",
                WorkerState.OFFERED: "Ringing", WorkerState.ON_CALL: "On a call",
                WorkerState.WRAP_UP: "Wrapping up", WorkerState.PAUSED: "Paused"}
NOTICES = {"started": "You are on shift.", "ended": "Your shift has ended.",
           "already": "Nothing changed: that was already so."}


def desk() -> ShiftDesk:
    return current_app.extensions["callflow"]["shift_desk"]


@bp.errorhandler(StoreUnavailable)
@bp.errorhandler(AuditUnavailable)
def unavailable(error: Exception):
    log.error("a shift request failed closed", extra={"event": "unavailable"})
    if request.path.startswith("/manager/api/"):
        return jsonify(reason="unavailable", message="The service's store or audit log is "
                       "unavailable; nothing was changed."), 503
    return render_template("unavailable.html", member=None), 503


# -- a worker's own shift --------------------------------------------------------------------

def render_my_shift(error: str | None = None, status: int = 200):
    member = current_member()
    worker = desk().find(member.name)
    state = desk().status(worker.name) if worker else None
    return render_template("shift.html", **chrome("shift"), worker=worker, status=state,
                           words=STATE_WORDS, error=error,
                           notice=NOTICES.get(request.args.get("done", ""))), status


@bp.get("/shift")
@page(Role.WORKER)
def my_shift():
    return render_my_shift()


@bp.post("/shift")
@page(Role.WORKER)
def change_my_shift():
    action = request.form.get("action", "")
    if action not in ("start", "end"):
        return render_my_shift("Choose to sign on or to sign off.", 400)
    name = current_member().name
    try:
        if action == "start":
            changed = desk().start(name, actor=name, channel=Channel.WEB)
        else:
            changed = desk().end(name, actor=name, channel=Channel.WEB).on_shift
    except NotOnRoster as exc:
        return render_my_shift(_sentence(str(exc)), 409)
    done = ("started" if action == "start" else "ended") if changed else "already"
    return redirect(url_for("shifts.my_shift", done=done))


# -- every worker, for managers ----------------------------------------------------------------

@bp.get("/workers")
@page(*DASHBOARD_ROLES)
def workers():
    return render_template("workers.html", **chrome("workers"), rows=desk().rows(),
                           labels=STATE_LABELS, changed=request.args.get("changed"),
                           error=None)


@bp.post("/workers/end")
@page(*DASHBOARD_ROLES)
def end_shift():
    return _act("end", request.form.get("worker", ""), page_view=True)


@bp.post("/workers/resume")
@page(*DASHBOARD_ROLES)
def resume():
    return _act("resume", request.form.get("worker", ""), page_view=True)


@bp.get("/api/workers")
@require(*DASHBOARD_ROLES)
def api_workers():
    """Every worker on the roster: name, teams, state (and why, when paused). No numbers."""
    return jsonify(workers=[row.to_dict() for row in desk().rows()])


@bp.post("/api/workers/end")
@require(*DASHBOARD_ROLES)
def api_end_shift():
    return _act("end", _json_worker(), page_view=False)


@bp.post("/api/workers/resume")
@require(*DASHBOARD_ROLES)
def api_resume():
    return _act("resume", _json_worker(), page_view=False)


def _json_worker() -> str:
    body = request.get_json(silent=True)
    value = body.get("worker") if isinstance(body, dict) else None
    return value if isinstance(value, str) else ""


def _act(action: str, name: str, *, page_view: bool):
    """End a shift or resume a worker, as the signed-in manager; the page or JSON says how
    it went. A name not on the roster is a 404, a change that did not apply a 409."""
    actor = current_member().name
    worker = desk().find(name)
    if worker is None:
        # Never echoed: what was typed may be anything, a phone number included.
        return _refused("There is no such worker in the team file.", 404, page_view)
    if action == "end":
        changed = desk().end(worker.name, actor=actor, channel=Channel.WEB).on_shift
        message = f"{worker.name}'s shift has ended." if changed else \
            f"{worker.name} was not on shift."
    else:
        changed = desk().resume(worker.name, actor=actor, channel=Channel.WEB)
        message = f"{worker.name} is available again." if changed else \
            f"{worker.name} is not paused."
    if not changed:
        return _refused(message, 409, page_view)
    if page_view:
        return redirect(url_for("shifts.workers", changed=message))
    return jsonify(worker=desk().row(worker.name).to_dict(), message=message)


def _refused(message: str, status: int, page_view: bool):
    if not page_view:
        return jsonify(reason="not_changed" if status == 409 else "not_found",
                       message=message), status
    return render_template("workers.html", **chrome("workers"), rows=desk().rows(),
                           labels=STATE_LABELS, changed=None, error=message), status


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")
