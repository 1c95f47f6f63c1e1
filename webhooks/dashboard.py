"""The Helplines Manager's and admins' pages: the audit trail and its exports, the exceptions
register, the flows; and, for every response of the app, the security headers.

The live-calls page itself (``manager.home``) and the JSON API are in :mod:`webhooks.manager`;
these views read the same domain objects (the audit log, the exceptions register, the flow
registry) and render them for people. Nothing about callers is ever on a page: calls are opaque
references, and the audit log refuses anything phone-like.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from datetime import datetime
from functools import wraps
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from markupsafe import Markup

from callflow.language import svg
from callflow.language.flow import Flow, FlowSet
from callflow.language.loader import load_flowset
from callflow.platform.errors import AuditUnavailable, FlowSetInvalid, StoreUnavailable
from callflow.records.audit import AuditKind, Entry, Verification, canonical
from callflow.records.audit_query import AuditQuery
from callflow.records.register import (
    MAX_DETAIL,
    POLICY_GROUNDS,
    WHY_NOT,
    Agency,
    Ground,
    WhyNot,
    record_exception,
)
from callflow.runtime import Runtime
from callflow.staff.accounts import Role
from webhooks import sessions
from webhooks.auth import DASHBOARD_ROLES, check_csrf, csrf_token, current_member, sign_out
from webhooks.public import display_number, hours_table

log = logging.getLogger(__name__)
bp = Blueprint("dashboard", __name__, url_prefix="/manager")
bp.before_request(check_csrf)
sessions.keep(bp)

SHOWN_ENTRIES = 500

KIND_LABELS = {
    AuditKind.MONITOR_REQUESTED: "Listen requested",
    AuditKind.MONITOR_GRANTED: "Listen allowed",
    AuditKind.MONITOR_REFUSED: "Listen refused",
    AuditKind.MONITOR_STARTED: "Listening started",
    AuditKind.MONITOR_ENDED: "Listening ended",
    AuditKind.MONITOR_UNKNOWN: "Listen not confirmed by Twilio",
    AuditKind.ALARM: "Alarm",
    AuditKind.LOGIN: "Signed in",
    AuditKind.LOGIN_FAILED: "Sign-in refused",
    AuditKind.LOCKOUT: "Locked out",
    AuditKind.LOGIN_THROTTLED: "Sign-ins refused unchecked",
    AuditKind.STAFF_CHANGED: "Staff account changed",
    AuditKind.FLOW_RELOADED: "Flows reloaded",
    AuditKind.FLOW_RELOAD_REFUSED: "Flow edit refused",
    AuditKind.EXCEPTION_RECORDED: "Confidentiality exception",
    AuditKind.PURGED: "Old entries purged",
    AuditKind.SHIFT_STARTED: "Shift started",
    AuditKind.SHIFT_ENDED: "Shift ended",
    AuditKind.WORKER_PAUSED: "Worker paused",
    AuditKind.WORKER_RESUMED: "Worker resumed",
}
KIND_TONES = {
    AuditKind.MONITOR_REFUSED: "warn", AuditKind.LOGIN_FAILED: "warn", AuditKind.LOCKOUT: "bad",
    AuditKind.FLOW_RELOAD_REFUSED: "bad", AuditKind.MONITOR_GRANTED: "good",
    AuditKind.MONITOR_UNKNOWN: "warn", AuditKind.ALARM: "bad",
    AuditKind.LOGIN_THROTTLED: "warn",
    AuditKind.MONITOR_STARTED: "good", AuditKind.EXCEPTION_RECORDED: "note",
}
GROUND_LABELS = {ground.value: text[0].upper() + text[1:] for ground, text in
                 POLICY_GROUNDS.items()}
AGENCY_LABELS = {
    Agency.SOCIAL_SERVICES.value: "Social Services",
    Agency.POLICE.value: "Police",
    Agency.PARTNER.value: "The caller's (ex-)partner",
    Agency.OTHER.value: "Another agency",
}
WHY_NOT_LABELS = {why.value: text[0].upper() + text[1:] for why, text in WHY_NOT.items()}
WORDY = frozenset({"reason", "change", "channel", "purpose", "problem", "resolved_by"})
CSV_COLUMNS = ("seq", "at", "kind", "actor", "data", "prev", "hash")


def rt() -> Runtime:
    return current_app.extensions["callflow"]["runtime"]


@bp.errorhandler(StoreUnavailable)
@bp.errorhandler(AuditUnavailable)
def unavailable(error: Exception):
    log.error("a manager page failed closed", extra={"event": "unavailable"})
    return render_template("unavailable.html", member=None), 503


def page(*roles: Role):
    """Pages for signed-in staff of these roles (the dashboard's, if none are given): the
    sign-in page otherwise, and a plain 403 for a role that may not see this page."""
    allowed = roles or DASHBOARD_ROLES

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            member = current_member()
            if member is None:
                return redirect(url_for("manager.login_form"))
            if member.role not in allowed:
                return render_template("forbidden.html", **chrome("")), 403
            return view(*args, **kwargs)
        return wrapped
    return decorate


def chrome(active: str) -> dict:
    """What every signed-in page's frame needs: who, the CSRF token, which tab is open."""
    return {"member": current_member(), "csrf_token": csrf_token(), "active": active}


def helpline_zone() -> ZoneInfo:
    """Times on the pages are in the helplines' own time zone (the first flow's)."""
    flows = rt().registry.current.flows
    first = flows[sorted(flows)[0]] if flows else None
    return first.hours.zone if first else ZoneInfo("Europe/London")


@bp.app_template_filter("local_time")
def local_time(value: str | datetime, fmt: str = "%-d %b %Y, %H:%M:%S %Z") -> str:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(helpline_zone()).strftime(fmt)


# -- sign out everywhere ---------------------------------------------------------------------

@bp.post("/sign-out-everywhere")
@page(*Role)
def sign_out_everywhere():
    sessions.sign_out_everywhere(current_member().name)
    sign_out()
    sessions.leave_notice("everywhere")
    return redirect(url_for("manager.login_form"))


# -- the audit trail -------------------------------------------------------------------------

def verification_badge(result: Verification) -> dict:
    if result.ok and result.checked_from is not None:
        last = result.checked_from + result.count - 1
        return {"ok": True, "text": f"Chain verified from entry {result.checked_from}, the "
                                    f"newest its witness saw, to entry {last}; check again to "
                                    "walk every entry"}
    if result.ok:
        noun = "entry" if result.count == 1 else "entries"
        return {"ok": True, "text": f"Chain verified: all {result.count} {noun} intact"}
    where = f" at entry {result.first_bad_seq}" if result.first_bad_seq is not None else ""
    return {"ok": False, "text": f"Chain broken{where}: {result.reason}"}


def details(entry: Entry) -> list[tuple[str, str]]:
    """An entry's data as label/value pairs a person reads."""
    rows = []
    for name, value in entry.data.items():
        if name == "grounds" and isinstance(value, list):
            value = "; ".join(GROUND_LABELS.get(v, v) for v in value)
        elif name == "agency":
            value = AGENCY_LABELS.get(value, value)
        elif name == "why_not":
            value = WHY_NOT_LABELS.get(value, value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, dict):
            value = ", ".join(f"{k} ({str(v)[:10]}…)" if isinstance(v, str) and len(v) > 16
                              else f"{k}: {v}" for k, v in value.items())
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        elif name in WORDY and isinstance(value, str):
            value = value.replace("_", " ")  # a reason or change is a name: say it as words
        rows.append((name.replace("_", " ").capitalize(), str(value)))
    return rows


@bp.get("/audit")
@page(Role.MANAGER, Role.ADMIN)
def audit():
    chosen = AuditQuery.from_args(request.args)
    entries = chosen.entries(rt().audit, helpline_zone())
    rows = [{"entry": e, "label": KIND_LABELS.get(e.kind, e.kind), "tone": KIND_TONES.get(
        e.kind, ""), "details": details(e)} for e in entries[:SHOWN_ENTRIES]]
    return render_template("audit.html", **chrome("audit"), rows=rows, total=len(entries),
                           shown=SHOWN_ENTRIES, chosen=chosen, kinds=KIND_LABELS,
                           typed={"from": request.args.get("from", ""),
                                  "to": request.args.get("to", "")},
                           badge=verification_badge(rt().audit.verify_recent()))


def _download(body: str, mimetype: str, suffix: str) -> Response:
    stamp = rt().clock().astimezone(helpline_zone()).strftime("%Y%m%d-%H%M")
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{suffix}"'
    return response


@bp.get("/audit/export.jsonl")
@page(Role.MANAGER, Role.ADMIN)
def export_jsonl():
    """The filtered trail, oldest first, one entry a line exactly as stored and hashed, so
    ``callflow audit verify`` style checks can be rerun on the export."""
    entries = reversed(AuditQuery.from_args(request.args).entries(rt().audit, helpline_zone()))
    return _download("".join(e.to_json() + "\n" for e in entries),
                     "application/x-ndjson; charset=utf-8", "jsonl")


@bp.get("/audit/export.csv")
@page(Role.MANAGER, Role.ADMIN)
def export_csv():
    """The filtered trail, oldest first, for a spreadsheet; ``data`` is the entry's JSON."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in reversed(AuditQuery.from_args(request.args).entries(rt().audit, helpline_zone())):
        row = entry.to_dict()
        row["data"] = canonical(entry.data)
        writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
    return _download(out.getvalue(), "text/csv; charset=utf-8", "csv")


def _cell(value) -> str:
    """A spreadsheet must not run a cell as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# -- the exceptions register -----------------------------------------------------------------

def exception_rows() -> list[dict]:
    entries = rt().audit.entries(kind=AuditKind.EXCEPTION_RECORDED)
    return [{"entry": e, "grounds": [GROUND_LABELS.get(g, g) for g in e.data.get("grounds", [])],
             "agency": AGENCY_LABELS.get(e.data.get("agency"), e.data.get("agency")),
             "informed": e.data.get("caller_informed"),
             "why_not": WHY_NOT.get(e.data.get("why_not"), ""),
             # Entries recorded before the structured reasons kept a free-text one.
             "reason": e.data.get("detail") or e.data.get("not_informed_reason", "")}
            for e in reversed(entries)]


def render_register(form: dict, error: str | None = None, recorded: str | None = None,
                    status: int = 200):
    return render_template("exceptions.html", **chrome("exceptions"), rows=exception_rows(),
                           grounds=GROUND_LABELS, agencies=AGENCY_LABELS, reasons=WHY_NOT_LABELS,
                           max_detail=MAX_DETAIL, form=form, error=error,
                           recorded=recorded), status


@bp.get("/exceptions")
@page(Role.MANAGER, Role.ADMIN)
def exceptions():
    return render_register({}, recorded=request.args.get("recorded"))


@bp.post("/exceptions")
@page(Role.MANAGER, Role.ADMIN)
def record():
    form = {"call": request.form.get("call", "").strip(),
            "grounds": request.form.getlist("grounds"),
            "agency": request.form.get("agency", ""),
            "informed": request.form.get("caller_informed", ""),
            "why_not": request.form.get("why_not", ""),
            "detail": request.form.get("detail", "")}
    if form["informed"] not in ("yes", "no"):
        return render_register(form, "Say whether the caller was told that information would "
                               "be shared.", status=400)
    if form["agency"] not in AGENCY_LABELS:
        return render_register(form, "Choose who the information was shared with.", status=400)
    told = form["informed"] == "yes"
    if not told and form["why_not"] not in tuple(WhyNot):
        return render_register(form, "Say why the caller was not told: it was not safe, or "
                               "not possible.", status=400)
    try:
        entry = record_exception(rt().audit, current_member().name, form["call"],
                                 [g for g in form["grounds"] if g in tuple(Ground)]
                                 or form["grounds"], form["agency"], told,
                                 None if told else form["why_not"],
                                 None if told else form["detail"])
    except ValueError as exc:
        if str(exc).startswith("call_id"):  # never echo back what may be a phone number
            form["call"] = ""
        return render_register(form, _sentence(str(exc)), status=400)
    return redirect(url_for("dashboard.exceptions", recorded=entry.seq))


# The register's checks name its fields as the API does; the form says them in words.
FIELD_WORDS = {
    "not_informed_reason": "the reason the caller was not told",
    "caller_informed": "whether the caller was told",
    "call_id": "the call reference",
    "grounds": "the grounds",
    "agency": "who it was shared with",
    "actor": "who is recording it",
}
# Only the names no sentence would use as words ("grounds" is both).
FIELD_NAME = re.compile(r"\b(" + "|".join(n for n in FIELD_WORDS if "_" in n) + r")\b")


def _sentence(message: str) -> str:
    """A check's message as the form shows it: a field named first ("grounds: …") is the
    field the message is about, and any field named inside it is said in words."""
    head, _, rest = message.partition(": ")
    text = rest if rest and head in FIELD_WORDS else message
    text = FIELD_NAME.sub(lambda m: FIELD_WORDS[m[1]], text)
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")


# -- the flows -------------------------------------------------------------------------------

def flow_card(flow: Flow, line: int, flowset: FlowSet, now: datetime) -> dict:
    notices = [step for step in flow.steps.values() if step.is_notice]
    warnings = [w for w in flowset.warnings if Path(w.where.path).name == Path(flow.path).name]
    return {"flow": flow, "file": Path(flow.path).name, "line": line,
            "numbers": [(n, display_number(n)) for n in flow.numbers],
            "svg": Markup(svg.render(flow, id_prefix=f"diagram-{flow.id}")),
            "description": svg.description(flow), "notices": notices, "warnings": warnings,
            "open": flow.hours.is_open(now), "hours": hours_table(flow),
            "closures": sorted(d for d in flow.hours.closures if d >= now.date())[:6]}


def folder_status(flowset: FlowSet) -> dict:
    """Whether the flows folder, as it is now on disk, would load; and if it differs from the
    flows callers are getting."""
    directory = rt().registry.directory
    try:
        on_disk = load_flowset(directory)
    except FlowSetInvalid as exc:
        return {"valid": False, "errors": [str(e) for e in exc.errors], "pending": True}
    return {"valid": True, "errors": [], "pending": on_disk.files != flowset.files}


def last_reload() -> Entry | None:
    entries = [e for e in rt().audit.entries()
               if e.kind in (AuditKind.FLOW_RELOADED, AuditKind.FLOW_RELOAD_REFUSED)]
    return entries[-1] if entries else None


@bp.get("/flows")
@page(Role.ADMIN)
def flows():
    flowset = rt().registry.current
    now = rt().clock()
    ordered = sorted(flowset.flows.values(), key=lambda f: f.helpline)
    cards = [flow_card(flow, index % 4, flowset, now) for index, flow in enumerate(ordered)]
    return render_template("flows.html", **chrome("flows"), cards=cards,
                           folder=folder_status(flowset), reload=last_reload())
