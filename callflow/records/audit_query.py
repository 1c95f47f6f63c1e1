"""A question put to the audit log from a page: which kind of entry, between which days.

Dates are typed and shown day first (25/11/2026, as every date on the pages is) and mean days in
the helpline's own time zone; a link or a browser's date picker may send 2026-11-25. What cannot
be read is said, in words, and left out of the question rather than refused: a manager looking
for an entry is shown every entry rather than none.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from callflow.records.audit import AuditKind, AuditLog, Entry


def day_first(day: date) -> str:
    """A date as it is shown and typed on the pages: 25/11/2026 (en-GB)."""
    return day.strftime("%d/%m/%Y")


def read_date(text: str | None) -> date | None | bool:
    """A date typed day first (25/11/2026, 25-11-2026, 25.11.2026), or 2026-11-25 as a link
    or a browser's date picker sends it; None for nothing typed, False for anything else."""
    text = (text or "").strip()
    if not text:
        return None
    with suppress(ValueError):
        return date.fromisoformat(text)
    parts = text.replace("-", "/").replace(".", "/").split("/")
    if len(parts) == 3 and all(p.isascii() and p.isdigit() for p in parts) and len(parts[2]) == 4:
        with suppress(ValueError):
            return date(int(parts[2]), int(parts[1]), int(parts[0]))
    return False


@dataclass(frozen=True)
class AuditQuery:
    kind: str | None
    start: date | None
    end: date | None
    problem: str | None = None  # what could not be read, in words

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> AuditQuery:
        kind = args.get("kind") or None
        problems = []
        if kind and kind not in tuple(AuditKind):
            problems.append("That kind of entry does not exist; showing every kind.")
            kind = None
        start, end = read_date(args.get("from")), read_date(args.get("to"))
        if start is False or end is False:
            problems.append("Dates are written day first, like 25/11/2026; that date was "
                            "ignored.")
        start = start or None
        end = end or None
        if start and end and end < start:
            problems.append("The end date is before the start date; they were swapped.")
            start, end = end, start
        return cls(kind, start, end, " ".join(problems) or None)

    def entries(self, audit: AuditLog, zone: ZoneInfo | None) -> list[Entry]:
        """Matching entries, newest first; the days are the helpline's (``zone``)."""
        since = datetime.combine(self.start, time(), zone) if self.start else None
        until = datetime.combine(self.end + timedelta(days=1), time(), zone) if self.end else None
        found = audit.entries(since=since, kind=self.kind)
        if until is not None:
            found = [entry for entry in found if entry.when < until]
        return list(reversed(found))

    def args(self) -> dict[str, str]:
        """The query as a page's link carries it."""
        values = {"kind": self.kind, "from": self.start and day_first(self.start),
                  "to": self.end and day_first(self.end)}
        return {name: value for name, value in values.items() if value}
