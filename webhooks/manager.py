"""The Helplines Manager's sign-in and JSON API (the dashboard's pages build on it).

Every view is a few lines over the domain: the monitoring gate, the audit log, the staff store,
the exceptions register. No caller data is ever in a response: calls are opaque ids.
"""

from __future__ import annotations

import logging
from datetime import datetime

from flask import (
    Blueprint,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)

from callflow.monitoring.gate import REQUEST_FIELDS, MonitoringGate
from callflow.platform.errors import AuditUnavailable, LockedOut, SignInRefused, StoreUnavailable
from callflow.records.audit import AuditKind
from callflow.records.live import LiveCall
from callflow.records.register import record_exception
from callflow.runtime import Runtime
from callflow.staff.accounts import Role
from webhooks import sessions
from webhooks.auth import (
    DASHBOARD_ROLES,
    DEVICE_COOKIE,
    check_csrf,
    client_address,
    csrf_token,
    current_member,
    home_for,
    keep_device,
    require,
    sign_in,
    sign_out,
    web_sign_in,
)
from webhooks.public import helplines

log = logging.getLogger(__name__)
bp = Blueprint("manager", __name__, url_prefix="/manager")
bp.before_request(check_csrf)
sessions.keep(bp)


def rt() -> Runtime:
    return current_app.extensions["callflow"]["runtime"]


def gate() -> MonitoringGate:
    return MonitoringGate(rt(), rt().audit)


def wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


@bp.errorhandler(StoreUnavailable)
@bp.errorhandler(AuditUnavailable)
def unavailable(error: Exception):
    """Fail closed: the API says so in JSON, a page (the sign-in form too) in words."""
    log.error("manager request failed closed", extra={"event": "unavailable"})
    if not (request.path.startswith("/manager/api/") or wants_json()):
        return render_template("unavailable.html", member=None), 503
    return jsonify(reason="unavailable", message="The service's store or audit log is "
                   "unavailable; nothing was changed."), 503


# -- sign-in ---------------------------------------------------------------------------------

@bp.get("/login")
def login_form():
    member = current_member()
    if member is not None:
        return redirect(url_for(home_for(member)))
    return render_template("login.html", csrf_token=csrf_token(), error=None,
                           notice=sessions.take_notice(), username="")


@bp.post("/login")
def login():
    name, password = request.form.get("username", ""), request.form.get("password", "")
    address = client_address()
    if address is None:
        return _login_refused("Your request's forwarded address is not an IP address, so it "
                              "cannot be signed in; check the proxy in front of the service.",
                              400, reason="bad_request")
    try:
        signed = web_sign_in().attempt(name, password, address,
                                       request.cookies.get(DEVICE_COOKIE, ""))
    except LockedOut as exc:
        return _login_refused(str(exc).capitalize() + ".", 429)
    except SignInRefused:
        return _login_refused("That username and password did not match.", 401)
    sign_in(signed.member)
    if wants_json():
        response = jsonify(user=signed.member.name, role=signed.member.role.value,
                           csrf_token=csrf_token())
    else:
        response = redirect(url_for(home_for(signed.member)))
    return keep_device(response, signed.device)


def _login_refused(message: str, status: int, reason: str = "sign_in_refused"):
    if wants_json():
        return jsonify(reason=reason, message=message), status
    return render_template("login.html", csrf_token=csrf_token(), error=message,
                           notice=None, username=request.form.get("username", "")), status


@bp.post("/logout")
def logout():
    sign_out()
    if wants_json():
        return jsonify(ok=True)
    sessions.leave_notice("signed_out")
    return redirect(url_for("manager.login_form"))


@bp.get("/")
def home():
    member = current_member()
    if member is None:
        return redirect(url_for("manager.login_form"))
    if member.role not in DASHBOARD_ROLES:  # a worker's account sees only their own shift
        return render_template("forbidden.html", member=member, csrf_token=csrf_token(),
                               active=""), 403
    now = rt().clock()
    return render_template("home.html", member=member, csrf_token=csrf_token(), active="live",
                           helplines=helplines(rt().registry.current, now), now=now,
                           daily_limit=rt().settings.monitor_daily_limit,
                           session_minutes=rt().settings.session_minutes)


# -- JSON API --------------------------------------------------------------------------------

@bp.get("/api/session")
@require()
def session_info():
    member = current_member()
    return jsonify(user=member.name, role=member.role.value, csrf_token=csrf_token(),
                   phone_set=bool(member.phone), phone_label=member.phone_label or None)


def call_json(call: LiveCall, helplines: dict[str, str]) -> dict:
    return {"id": call.id, "helpline": helplines.get(call.flow, call.flow),
            "state": call.state.value, "started_at": call.started_at,
            "connected_at": call.connected_at or None, "monitorable": call.monitorable,
            "being_monitored": bool(call.raw.get("monitor_session"))}


@bp.get("/api/calls")
@require()
def calls():
    """The live calls, and whether each helpline is open now (the page's pills follow it)."""
    flows = rt().registry.current.flows.values()
    names = {f.id: f.helpline for f in flows}
    now = rt().clock()
    return jsonify(calls=[call_json(c, names) for c in rt().live.listing()],
                   helplines=[{"name": f.helpline, "open": f.hours.is_open(now)}
                              for f in sorted(flows, key=lambda f: f.helpline)])


@bp.post("/api/calls/<call_id>/listen")
@require()
def listen(call_id: str):
    body = request.get_json(silent=True)
    body = body if isinstance(body, dict) else {}
    purpose = str(body.get("purpose") or "")
    if set(body) - REQUEST_FIELDS:
        decision = gate().refuse_request(current_member(), call_id, purpose, set(body))
    else:
        decision = gate().request(current_member(), call_id, purpose)
    if decision.granted:
        return jsonify(session=decision.session, message=decision.message,
                       outcome="unknown" if decision.unknown else "granted"), 202
    return jsonify(reason=decision.refusal.value, message=decision.message), decision.status


@bp.post("/api/sessions/<session_id>/stop")
@require()
def stop(session_id: str):
    decision = gate().stop(current_member(), session_id)
    if decision.granted:
        return jsonify(session=session_id, message=decision.message)
    return jsonify(reason=decision.refusal.value, message=decision.message), decision.status


@bp.get("/api/audit")
@require(Role.MANAGER, Role.ADMIN)
def audit():
    since = _since(request.args.get("since"))
    if since is False:
        return jsonify(reason="bad_request", message="since must be a date or time like "
                       "2026-11-01 or 2026-11-01T09:00:00+00:00"), 400
    kind = request.args.get("kind") or None
    if kind and kind not in tuple(AuditKind):
        return jsonify(reason="bad_request", message=f"unknown kind '{kind}'"), 400
    entries = rt().audit.entries(since=since or None, kind=kind)
    return jsonify(entries=[e.to_dict() for e in entries])


@bp.get("/api/audit/verify")
@require(Role.MANAGER, Role.ADMIN)
def audit_verify():
    result = rt().audit.verify()
    return jsonify(ok=result.ok, count=result.count, first_bad_seq=result.first_bad_seq,
                   reason=result.reason)


@bp.post("/api/exceptions")
@require(Role.MANAGER, Role.ADMIN)
def record():
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(reason="bad_request", message="send the exception as a JSON object"), 400
    if "not_informed_reason" in body:
        return jsonify(reason="bad_request", message="not_informed_reason is no longer taken: "
                       "give why_not (not_safe or not_possible) and, if it helps, a short "
                       "detail that names no one"), 400
    try:
        entry = record_exception(rt().audit, current_member().name, str(body.get("call", "")),
                                 body.get("grounds") or [], str(body.get("agency", "")),
                                 body.get("caller_informed"), body.get("why_not"),
                                 body.get("detail"))
    except ValueError as exc:
        return jsonify(reason="bad_request", message=str(exc)), 400
    return jsonify(entry=entry.to_dict()), 201


@bp.get("/api/exceptions")
@require(Role.MANAGER, Role.ADMIN)
def exceptions():
    entries = rt().audit.entries(kind=AuditKind.EXCEPTION_RECORDED)
    return jsonify(entries=[e.to_dict() for e in reversed(entries)])


def _since(text: str | None) -> datetime | None | bool:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    return moment if moment.tzinfo else moment.replace(tzinfo=rt().clock().tzinfo)
