"""Reports for funders and the quality standard, computed from counts alone.

:func:`build` reads the counts of a period (:mod:`callflow.records.counts`) and the audit log's
monitoring sessions and confidentiality exceptions; everything else here is pure: figures per
day, week or month in the helpline's own time zone, derived rates, and the small-number
suppression of figures for publication. Nothing here can invent a figure: a rate whose base is
zero is left empty, and every hour whose counts are incomplete is listed with the report.

Definitions (also in the README):

- *offered*: calls that reached ``/voice/incoming`` with a helpline's flow.
- *hung up in the menu, before the notice ended*: offered, less the turns in which the notice
  was heard, less the counted ends reached without it; *after the notice*: the turns in which it
  was heard, less the counted ends reached after it. The counted ends are out of hours, closure
  date, degraded path, queued and dialled directly. A Twilio retry of a webhook counts twice,
  so these derived figures are floored at zero.
- *answered*: answered from the waiting line, plus direct dials a worker answered.
- *unanswered*: ended at ``on_max_wait``, ``on_no_workers`` or ``on_no_answer``, plus direct
  dials nobody answered.
- *service level (answered)*: answered from the waiting line within 20 s (60 s) over answered
  from the waiting line; *(answered + abandoned)*: the same over answered plus abandoned.
- *longest wait*: the bucket the longest wait fell in (only buckets are kept).
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any

from callflow.records.audit import AuditKind, AuditLog
from callflow.records.counts import (
    ALL,
    ENDS,
    TALK_CALLS,
    TALK_SUM,
    WAIT_BUCKETS,
    WAITED,
    Counts,
    Outcome,
    Period,
    WorkerCount,
    bucket_names,
    wait_field,
    wait_sum_field,
)

SUPPRESS_BELOW = 5
FEWER_THAN_5 = "fewer than 5"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class By(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


# (name, label, is a count): the rows of every report, in order.
ROWS: tuple[tuple[str, str, bool], ...] = (
    ("offered", "Calls offered", True),
    ("hung_up_before_notice", "Hung up before the notice ended (derived)", True),
    ("hung_up_after_notice", "Hung up in the menu after the notice (derived)", True),
    ("out_of_hours", "Out of hours", True),
    ("closure", "On a closure date", True),
    ("degraded", "Sent to the degraded path", True),
    ("queued", "Queued for a worker", True),
    ("direct", "Put through by direct dial", True),
    ("answered", "Answered by a worker", True),
    ("abandoned", "Abandoned while waiting", True),
    ("abandoned_short", "Abandoned within 10 s", True),
    ("unanswered", "Unanswered", True),
    ("max_wait", "Ended at the longest wait allowed", True),
    ("no_workers", "Ended with no workers on shift", True),
    ("no_answer", "Ended with nobody answering", True),
    ("dial_unanswered", "Direct dial not answered", True),
    ("fallback", "Answered by Twilio's fallback URL", True),
    ("service_level_20", "Answered within 20 s, of answered (%)", False),
    ("service_level_20_with_abandoned", "Answered within 20 s, of answered + abandoned (%)",
     False),
    ("service_level_60", "Answered within 60 s, of answered (%)", False),
    ("service_level_60_with_abandoned", "Answered within 60 s, of answered + abandoned (%)",
     False),
    ("average_wait", "Average wait to answer (s)", False),
    ("longest_wait", "Longest wait", False),
    ("average_handle", "Average handle time (s)", False),
)
LABELS = {name: label for name, label, _ in ROWS}
COUNT_ROWS = frozenset(name for name, _, counted in ROWS if counted)
# Counts that are the sum of others, as published: a hidden part must not be the difference
# between the sum and the parts shown.
SUMS = (("unanswered", ("max_wait", "no_workers", "no_answer", "dial_unanswered")),
        ("offered", ("hung_up_before_notice", "hung_up_after_notice", "out_of_hours",
                     "closure", "degraded", "queued", "direct")))


def _hidden(value: Any) -> bool:
    return value == FEWER_THAN_5


def _hide_smallest(cells: list[tuple[dict[str, Any], str]]) -> bool:
    """Hide the smallest count above nought among ``cells`` ((table, name)); False if none."""
    shown = [(table[name], i) for i, (table, name) in enumerate(cells)
             if isinstance(table[name], int) and table[name] > 0]
    if not shown:
        return False
    table, name = cells[min(shown)[1]]
    table[name] = FEWER_THAN_5
    return True


def _hide_a_second(figures: dict[str, Any], total: str, parts: tuple[str, ...]) -> bool:
    hidden = [p for p in parts if _hidden(figures[p])]
    if len(hidden) != 1 or _hidden(figures[total]):
        return False
    others = [(figures, p) for p in parts if p not in hidden]
    return _hide_smallest(others) or _hide_smallest([(figures, total)])


def _hide_a_second_period(entry: dict[str, Any], name: str) -> bool:
    periods = [p["figures"] for p in entry["periods"]]
    hidden = [f for f in periods if _hidden(f[name])]
    if len(hidden) != 1 or _hidden(entry["total"][name]):
        return False
    others = [(f, name) for f in periods if not _hidden(f[name])]
    return _hide_smallest(others) or _hide_smallest([(entry["total"], name)])


# Rates and averages, and the count each is taken over (suppressed with it when published).
BASES = {"service_level_20": "answered_queue", "service_level_60": "answered_queue",
         "service_level_20_with_abandoned": "answered_or_abandoned",
         "service_level_60_with_abandoned": "answered_or_abandoned",
         "average_wait": "answered_queue", "longest_wait": "waited",
         "average_handle": "talk_calls"}


def figures(counts: dict[str, int]) -> dict[str, Any]:
    """A period's figures from its summed helpline counts (pure)."""
    c = defaultdict(int, counts)
    ends = sum(c[o.value] for o in ENDS)
    unheard_ends = c[Outcome.ENDS_BEFORE_NOTICE.value]
    heard = c[Outcome.NOTICE_HEARD.value]
    offered = c[Outcome.OFFERED.value]
    answered_queue = c[Outcome.ANSWERED.value]
    abandoned = c[Outcome.ABANDONED.value]
    out = {
        "offered": offered,
        "hung_up_before_notice": max(0, offered - heard - unheard_ends),
        "hung_up_after_notice": max(0, heard - (ends - unheard_ends)),
        "answered": answered_queue + c[Outcome.DIAL_ANSWERED.value],
        "unanswered": sum(c[o] for o in ("max_wait", "no_workers", "no_answer",
                                         "dial_unanswered")),
    }
    for name in ("out_of_hours", "closure", "degraded", "queued", "direct", "abandoned",
                 "abandoned_short", "max_wait", "no_workers", "no_answer", "dial_unanswered",
                 "fallback"):
        out[name] = c[name]
    names = bucket_names(WAIT_BUCKETS)
    within = {limit: sum(c[wait_field(Outcome.ANSWERED, b)] for b, hi in
                         zip(names, WAIT_BUCKETS, strict=False) if hi <= limit)
              for limit in (20, 60)}
    for limit in (20, 60):
        out[f"service_level_{limit}"] = _percent(within[limit], answered_queue)
        out[f"service_level_{limit}_with_abandoned"] = _percent(within[limit],
                                                                answered_queue + abandoned)
    out["average_wait"] = _ratio(c[wait_sum_field(Outcome.ANSWERED)], answered_queue)
    out["longest_wait"] = _longest(c)
    out["average_handle"] = _ratio(c[TALK_SUM], c[TALK_CALLS])
    out["answered_queue"] = answered_queue
    out["answered_or_abandoned"] = answered_queue + abandoned
    out["waited"] = sum(c[o.value] for o in WAITED)
    out["talk_calls"] = c[TALK_CALLS]
    return out


def _percent(part: int, whole: int) -> float | None:
    return round(100 * part / whole, 1) if whole else None


def _ratio(total: int, n: int) -> float | None:
    return round(total / n, 1) if n else None


def _longest(c: dict[str, int]) -> str | None:
    names = bucket_names(WAIT_BUCKETS)
    for index in range(len(names) - 1, -1, -1):
        if any(c[wait_field(o, names[index])] for o in WAITED):
            if index == len(names) - 1:
                return f"{WAIT_BUCKETS[-1]} s or more"
            return f"under {WAIT_BUCKETS[index]} s"
    return None


def period_of(day: date, by: By) -> tuple[str, date]:
    """The label and first day of the day, ISO week or month ``day`` falls in."""
    if by is By.DAY:
        return day.isoformat(), day
    if by is By.WEEK:
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}", start
    return day.strftime("%Y-%m"), day.replace(day=1)


@dataclass
class HelplineReport:
    helpline: str
    periods: list[dict[str, Any]]  # {"period", "start", "figures", "incomplete"}
    total: dict[str, Any]
    teams: dict[str, dict[str, Any]]  # team -> figures over the whole report
    workers: list[dict[str, Any]]  # per worker: offers, accepts, missed, talk
    heat: list[list[int]]  # [weekday][hour] calls offered (hourly counts only)
    daily: list[dict[str, Any]]  # per day: answered, abandoned, unanswered, out of hours
    incomplete: list[str]  # local hours whose counts are incomplete


@dataclass
class Report:
    start: date
    end: date  # inclusive
    by: By
    helplines: list[HelplineReport]
    monitoring_sessions: int = 0
    exceptions: dict[str, int] = field(default_factory=dict)  # ground -> entries
    published: bool = False

    # -- shapes -------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "from": self.start.isoformat(), "to": self.end.isoformat(), "by": self.by.value,
            "published": self.published,
            "suppression": (f"counts below {SUPPRESS_BELOW} are shown as '{FEWER_THAN_5}'"
                            if self.published else None),
            "helplines": [],
            "service": {"monitoring_sessions": self._shown(self.monitoring_sessions),
                        "exceptions": {g: self._shown(n) for g, n in
                                       sorted(self.exceptions.items())}},
        }
        for h in self.helplines:
            entry: dict[str, Any] = {
                "helpline": h.helpline,
                "periods": [{"period": p["period"], "start": p["start"],
                             "complete": not p["incomplete"],
                             "incomplete_hours": p["incomplete"],
                             "figures": self._public(p["figures"])} for p in h.periods],
                "total": self._public(h.total),
                "incomplete_hours": h.incomplete,
            }
            self._protect(entry)
            if not self.published:
                entry["teams"] = {t: self._public(f) for t, f in sorted(h.teams.items())}
                entry["workers"] = h.workers
                entry["calls_by_weekday_and_hour"] = {
                    WEEKDAYS[d]: h.heat[d] for d in range(7)}
            data["helplines"].append(entry)
        return data

    def _protect(self, entry: dict[str, Any]) -> None:
        """Secondary suppression, when published: no suppressed count may be worked out by
        subtraction, from a sum shown beside its parts (a period's), or from a total shown
        beside its periods'. Where only one part of a sum is hidden, the smallest other part
        is hidden too (or the sum, when no other part is above nought)."""
        if not self.published:
            return
        tables = [p["figures"] for p in entry["periods"]] + [entry["total"]]
        for _ in range(len(ROWS)):  # hiding one cell may leave another alone: until stable
            changed = False
            for figures in tables:
                for total, parts in SUMS:
                    changed |= _hide_a_second(figures, total, parts)
            for name, _, counted in ROWS:
                if counted:
                    changed |= _hide_a_second_period(entry, name)
            if not changed:
                return

    def _shown(self, n: int) -> int | str:
        return FEWER_THAN_5 if self.published and 0 < n < SUPPRESS_BELOW else n

    def _public(self, figs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, _, counted in ROWS:
            value = figs.get(name)
            if counted:
                out[name] = self._shown(int(value or 0))
            elif self.published and 0 < figs.get(BASES[name], 0) < SUPPRESS_BELOW:
                out[name] = FEWER_THAN_5  # a rate over so few calls says too much
            else:
                out[name] = value
        return out

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, sort_keys=False)

    def to_csv(self) -> str:
        """Long form: one line per helpline, period, figure."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["helpline", "period", "start", "figure", "value", "complete"])
        data = self.as_dict()
        for h in data["helplines"]:
            for p in [*h["periods"], {"period": "total", "start": data["from"],
                                      "figures": h["total"],
                                      "complete": not h["incomplete_hours"]}]:
                for name, _, _ in ROWS:
                    value = p["figures"][name]
                    writer.writerow([h["helpline"], p["period"], p["start"], name,
                                     "" if value is None else value,
                                     "yes" if p["complete"] else "no"])
        service = data["service"]
        writer.writerow(["service", "total", data["from"], "monitoring_sessions",
                         service["monitoring_sessions"], "yes"])
        for ground, n in service["exceptions"].items():
            writer.writerow(["service", "total", data["from"], f"exceptions:{ground}", n, "yes"])
        return buffer.getvalue()

    def to_table(self) -> str:
        data = self.as_dict()
        lines = [f"Report {data['from']} to {data['to']}, by {data['by']}"
                 + (" (published: counts below 5 shown as 'fewer than 5')"
                    if self.published else "")]
        for h in data["helplines"]:
            heads = [p["period"] + ("*" if not p["complete"] else "") for p in h["periods"]]
            heads.append("total")
            columns = [*h["periods"], {"figures": h["total"]}]
            width = max(len(label) for _, label, _ in ROWS)
            cells = [[_cell(c["figures"][name]) for c in columns] for name, _, _ in ROWS]
            widths = [max(len(heads[i]), *(len(row[i]) for row in cells))
                      for i in range(len(heads))]
            lines += ["", f"== {h['helpline']} ==",
                      " " * width + "  " + "  ".join(x.rjust(w) for x, w in zip(heads, widths,
                                                                                strict=True))]
            for (_, label, _), row in zip(ROWS, cells, strict=True):
                lines.append(label.ljust(width) + "  " + "  ".join(
                    x.rjust(w) for x, w in zip(row, widths, strict=True)))
            if h["incomplete_hours"]:
                lines.append("* incomplete (Redis was unavailable or counts were dropped): "
                             + ", ".join(h["incomplete_hours"]))
            for team, f in h.get("teams", {}).items():
                if team == next(iter(h["teams"])):
                    lines += ["", "team  queued  answered  abandoned  unanswered"]
                lines.append(f"{team}  {f['queued']}  {f['answered']}  {f['abandoned']}  "
                             f"{f['unanswered']}")
            for worker in h.get("workers", []):
                if worker is h["workers"][0]:
                    lines += ["", "worker  offers  accepts  missed  calls  talk (s)"]
                lines.append(f"{worker['worker']}  {worker['offers']}  {worker['accepts']}  "
                             f"{worker['missed']}  {worker['calls']}  {worker['talk_seconds']}")
        service = data["service"]
        lines += ["", f"Monitoring sessions (all helplines): {service['monitoring_sessions']}"]
        for ground, n in service["exceptions"].items():
            lines.append(f"Confidentiality exceptions, {ground}: {n}")
        if not service["exceptions"]:
            lines.append("Confidentiality exceptions: 0")
        return "\n".join(lines) + "\n"

    def render(self, form: str) -> str:
        return {"table": self.to_table, "csv": self.to_csv, "json": self.to_json}[form]()


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


# -- building a report from the store (reads only) -------------------------------------------

def summed(periods: Iterable[Period]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for p in periods:
        for name, n in p.counts.items():
            total[name] += n
    return dict(total)


def helpline_report(helpline: str, periods: list[Period], incomplete: dict[str, str],
                    start: date, end: date, by: By) -> HelplineReport:
    """One helpline's report from its stored periods (pure)."""
    inside = [p for p in periods if start <= p.day <= end]
    mine = [p for p in inside if p.scope == ALL]
    buckets: dict[str, tuple[date, list[Period]]] = {}
    day = start
    while day <= end:
        label, first = period_of(day, by)
        buckets.setdefault(label, (max(first, start), []))
        day += timedelta(days=1)
    for p in mine:
        buckets[period_of(p.day, by)[0]][1].append(p)
    hours = sorted(h for h in incomplete if start <= date.fromisoformat(h[:10]) <= end)
    rows = []
    for label, (first, found) in buckets.items():
        rows.append({"period": label, "start": first.isoformat(),
                     "figures": figures(summed(found)),
                     "incomplete": [h for h in hours
                                    if period_of(date.fromisoformat(h[:10]), by)[0] == label]})
    teams = defaultdict(list)
    workers = defaultdict(list)
    for p in inside:
        if p.scope.startswith("team:"):
            teams[p.scope[5:]].append(p)
        elif p.scope.startswith("worker:"):
            workers[p.scope[7:]].append(p)
    heat = [[0] * 24 for _ in range(7)]
    daily: dict[date, dict[str, int]] = {}
    for p in mine:
        if p.hour is not None:
            heat[p.day.weekday()][p.hour] += p.counts.get(Outcome.OFFERED.value, 0)
    day = start
    while day <= end:
        f = figures(summed(p for p in mine if p.day == day))
        daily[day] = {"answered": f["answered"], "abandoned": f["abandoned"],
                      "unanswered": f["unanswered"],
                      "out_of_hours": f["out_of_hours"] + f["closure"],
                      "service_level_20": f["service_level_20"],
                      "average_wait": f["average_wait"]}
        day += timedelta(days=1)
    return HelplineReport(
        helpline=helpline, periods=rows, total=figures(summed(mine)),
        teams={t: figures(summed(ps)) for t, ps in teams.items()},
        workers=[_worker_row(name, summed(ps)) for name, ps in sorted(workers.items())],
        heat=heat, daily=[{"day": d.isoformat(), **v} for d, v in daily.items()],
        incomplete=hours)


def _worker_row(name: str, c: dict[str, int]) -> dict[str, Any]:
    return {"worker": name, "offers": c.get(WorkerCount.OFFER.value, 0),
            "accepts": c.get(WorkerCount.ACCEPT.value, 0),
            "missed": c.get(WorkerCount.MISSED.value, 0), "calls": c.get(TALK_CALLS, 0),
            "talk_seconds": c.get(TALK_SUM, 0)}


def audit_figures(audit: AuditLog, since: datetime, until: datetime) -> tuple[int, dict[str, int]]:
    """Monitoring sessions started, and confidentiality exceptions by ground, in [since,
    until). Read from the audit log (kept for its own retention, six months by default)."""
    sessions = sum(1 for e in audit.entries(since=since, kind=AuditKind.MONITOR_STARTED)
                   if e.when < until)
    grounds: dict[str, int] = defaultdict(int)
    for entry in audit.entries(since=since, kind=AuditKind.EXCEPTION_RECORDED):
        if entry.when < until:
            for ground in entry.data.get("grounds", []):
                grounds[str(ground)] += 1
    return sessions, dict(grounds)


def build(counts: Counts, audit: AuditLog | None, *, start: date, end: date, by: By,
          helplines: list[str], zone_of: Callable[[str], tzinfo],
          publish: bool = False) -> Report:
    """The report of ``helplines`` for the local days ``start`` to ``end`` (inclusive)."""
    if publish and by is By.DAY:
        raise ValueError("published figures are weekly or monthly: use --by week or month")
    if end < start:
        raise ValueError("the end date is before the start date")
    reports = []
    for helpline in helplines:
        zone = zone_of(helpline)
        since = datetime.combine(start, time(), zone)
        until = datetime.combine(end + timedelta(days=1), time(), zone)
        reports.append(helpline_report(helpline, counts.read(helpline, since, until),
                                       counts.incomplete(helpline), start, end, by))
    report = Report(start=start, end=end, by=by, helplines=reports, published=publish)
    if audit is not None:
        zone = zone_of(helplines[0] if helplines else "")
        since = datetime.combine(start, time(), zone)
        until = datetime.combine(end + timedelta(days=1), time(), zone)
        report.monitoring_sessions, report.exceptions = audit_figures(audit, since, until)
    return report
