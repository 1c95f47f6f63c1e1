"""The Reports page (managers and admins): the counts of calls as charts, tables and
downloads, and the figures fit to publish. Views only read a report
(:mod:`callflow.records.reports`); the charts are drawn by :mod:`webhooks.charts`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta

from flask import Blueprint, Response, abort, current_app, render_template, request

from callflow.records import reports
from callflow.records.reports import By, Report
from callflow.runtime import Runtime
from callflow.staff.accounts import Role
from webhooks import charts, sessions
from webhooks.auth import check_csrf
from webhooks.dashboard import chrome, page

log = logging.getLogger(__name__)
bp = Blueprint("reports", __name__, url_prefix="/manager")
bp.before_request(check_csrf)
sessions.keep(bp)
DEFAULT_DAYS = 28
MOST_DAYS = 731
# An SVG shown as an image runs no script; its own stylesheet (pygal's) is all it may use.
CHART_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def rt() -> Runtime:
    return current_app.extensions["callflow"]["runtime"]


@dataclass(frozen=True)
class Chosen:
    start: date
    end: date
    by: By
    helpline: str  # "" for every helpline
    publish: bool
    problems: tuple[str, ...] = ()

    def args(self, **changes) -> dict[str, str]:
        values = {"from": self.start.isoformat(), "to": self.end.isoformat(),
                  "by": self.by.value, "helpline": self.helpline,
                  "publish": "1" if self.publish else ""}
        values.update(changes)
        return {name: value for name, value in values.items() if value}


def helplines() -> list[str]:
    return sorted(set(rt().registry.current.flows) | set(rt().counts.helplines()))


def chosen() -> Chosen:
    """What the form asks for; anything unreadable is replaced by a default, and said."""
    today = rt().clock().astimezone(rt().counts.zone_of("")).date()
    problems = []

    def day(name: str, default: date) -> date:
        text = request.args.get(name, "")
        if not text:
            return default
        try:
            return date.fromisoformat(text)
        except ValueError:
            problems.append(f"“{text[:20]}” is not a date (write 2026-12-01); it was ignored.")
            return default

    end = day("to", today)
    start = day("from", end - timedelta(days=DEFAULT_DAYS - 1))
    if end < start:
        start, end = end, start
        problems.append("The end date was before the start date; they were swapped.")
    if (end - start).days >= MOST_DAYS:
        start = end - timedelta(days=MOST_DAYS - 1)
        problems.append(f"A report covers at most {MOST_DAYS} days; it starts on "
                        f"{start.isoformat()}.")
    publish = request.args.get("publish") == "1"
    by = request.args.get("by", By.WEEK.value if publish else By.DAY.value)
    by = By(by) if by in tuple(By) else By.DAY
    if publish and by is By.DAY:
        by = By.WEEK
        problems.append("Published figures are weekly or monthly: shown by week.")
    helpline = request.args.get("helpline", "")
    if helpline and helpline not in helplines():
        problems.append("That helpline has no counts; showing every helpline.")
        helpline = ""
    return Chosen(start, end, by, helpline, publish, tuple(problems))


def build(choice: Chosen, *, audit: bool = True) -> Report:
    """The report chosen; ``audit`` False leaves out the audit log's figures (a chart does
    not show them, and reading the log is the costly part)."""
    counts = rt().counts
    counts.flush()  # this process's latest counts are in the report too
    names = [choice.helpline] if choice.helpline else helplines()
    return reports.build(counts, rt().audit if audit else None, start=choice.start,
                         end=choice.end, by=choice.by, helplines=names,
                         zone_of=counts.zone_of, publish=choice.publish)


@bp.get("/reports")
@page(Role.MANAGER, Role.ADMIN)
def reports_page():
    choice = chosen()
    report = build(choice)
    names = {flow_id: flow.helpline for flow_id, flow in rt().registry.current.flows.items()}
    sections = [{"report": h, "name": names.get(h.helpline, h.helpline),
                 "data": data, "charts": [
                     {"kind": kind, "alt": charts.describe(kind, h),
                      "args": choice.args(helpline=h.helpline)} for kind in charts.KINDS]}
                for h, data in zip(report.helplines, report.as_dict()["helplines"],
                                   strict=True)]
    return render_template("reports.html", **chrome("reports"), choice=choice,
                           sections=sections, service=report.as_dict()["service"],
                           rows=reports.ROWS, helplines=helplines(), names=names,
                           weekdays=reports.WEEKDAYS, published=report.published,
                           by_values=[b.value for b in By])


@bp.get("/reports/chart/<kind>.svg")
@page(Role.MANAGER, Role.ADMIN)
def chart(kind: str):
    choice = chosen()
    if kind not in charts.KINDS or not choice.helpline or choice.publish:
        abort(404)  # charts show every count, so never of published figures
    [helpline] = build(choice, audit=False).helplines
    response = Response(charts.svg(kind, helpline), mimetype="image/svg+xml")
    response.headers["Content-Security-Policy"] = CHART_CSP
    return response


@bp.get("/reports/export.<form>")
@page(Role.MANAGER, Role.ADMIN)
def export(form: str):
    if form not in ("csv", "json"):
        abort(404)
    choice = chosen()
    body = build(choice).render(form)
    mimetype = "text/csv" if form == "csv" else "application/json"
    response = Response(body, mimetype=f"{mimetype}; charset=utf-8")
    name = f"report-{choice.start}-{choice.end}{'-published' if choice.publish else ''}"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{form}"'
    return response
