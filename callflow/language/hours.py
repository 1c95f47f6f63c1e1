"""Opening hours: weekly ranges and closure dates, in the helpline's own time zone.

Needs no store, so the degraded path applies opening hours too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from callflow.language.fields import did_you_mean
from callflow.language.source import Mapping, Sequence
from callflow.platform.errors import FlowError, Where

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
RANGE = re.compile(r"^\s*([0-2]?\d):([0-5]\d)\s*-\s*([0-2]?\d):([0-5]\d)\s*$")
MIDNIGHT_END = 24 * 60
LOOK_AHEAD_DAYS = 366  # far enough to pass any run of closures


@dataclass(frozen=True)
class OpeningHours:
    zone: ZoneInfo
    # weekday (0 = Monday) -> [(start minute, end minute)], end exclusive
    weekly: dict[int, tuple[tuple[int, int], ...]]
    closures: frozenset[date]

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.zone)
        if local.date() in self.closures:
            return False
        minute = local.hour * 60 + local.minute
        return any(start <= minute < end for start, end in self.weekly.get(local.weekday(), ()))

    def is_closure(self, now: datetime) -> bool:
        """Whether today, at the helpline, is one of its closure dates."""
        return now.astimezone(self.zone).date() in self.closures

    def next_opening(self, now: datetime) -> datetime | None:
        """When the line is next open (``now`` itself if it is open now), in the helpline's
        zone; None if it never opens within a year."""
        local = now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        for ahead in range(LOOK_AHEAD_DAYS):
            day = local.date() + timedelta(days=ahead)
            if day in self.closures:
                continue
            for start, end in self.weekly.get(day.weekday(), ()):
                if ahead == 0 and minute >= end:
                    continue
                if ahead == 0 and minute >= start:
                    return local
                opening = datetime.combine(day, time(start // 60, start % 60))
                return opening.replace(tzinfo=self.zone)
        return None

    def describe(self) -> list[str]:
        """Human-readable lines, e.g. 'Monday 09:00-17:00'."""
        lines = []
        for index, day in enumerate(DAYS):
            ranges = self.weekly.get(index)
            spans = ", ".join(f"{_clock(s)}-{_clock(e)}" for s, e in ranges) if ranges else "closed"
            lines.append(f"{day.capitalize()} {spans}")
        return lines


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def spoken_opening(opening: datetime | None, now: datetime) -> str:
    """When the line opens, as a caller hears it: "now", "at 2pm today", "at 9am tomorrow",
    "on Monday 28 December at 9:30am"."""
    if opening is None:
        return "when our opening hours allow"
    today = now.astimezone(opening.tzinfo).date()
    if opening <= now:
        return "now"
    hour = opening.hour % 12 or 12
    minutes = f":{opening.minute:02d}" if opening.minute else ""
    at = f"{hour}{minutes}{'am' if opening.hour < 12 else 'pm'}"
    if opening.date() == today:
        return f"at {at} today"
    if opening.date() == today + timedelta(days=1):
        return f"at {at} tomorrow"
    return f"on {opening:%A} {opening.day} {opening:%B} at {at}"


def parse_zone(name, where: Where) -> ZoneInfo:
    if not isinstance(name, str):
        raise FlowError(where, "the time zone should be a name like Europe/London")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        hint = did_you_mean(name, available_timezones()) or "use a name like Europe/London"
        raise FlowError(where, f"'{name}' is not a known time zone", hint) from None


def _parse_range(text, where: Where) -> tuple[int, int]:
    match = RANGE.match(text) if isinstance(text, str) else None
    if not match:
        raise FlowError(where, f"'{text}' is not a range of hours",
                        "write it as \"09:00-17:00\", in quotes")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if h1 > 23 or end > MIDNIGHT_END or start >= end:
        raise FlowError(where, f"'{text}' does not run forwards within one day",
                        "the end must be after the start and no later than 24:00")
    return start, end


def _parse_day(value, where: Where) -> tuple[tuple[int, int], ...]:
    if value == "closed" or value is False:
        return ()
    if isinstance(value, str):
        return (_parse_range(value, where),)
    if isinstance(value, Sequence):
        return tuple(sorted(_parse_range(v, w) for v, w in zip(value, value.item_where,
                                                               strict=True)))
    raise FlowError(where, "a day's hours should be a range like \"09:00-17:00\", a list of "
                    "ranges, or closed")


def _parse_closure(value, where: Where) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise FlowError(where, f"'{value}' is not a date", "write it as 2026-12-25") from None


def parse_hours(zone: ZoneInfo, hours, closures, where: Where,
                closures_where: Where | None = None) -> OpeningHours:
    """``where`` is where the hours were written, ``closures_where`` the closures (if apart)."""
    if not isinstance(hours, Mapping):
        raise FlowError(where, "opening hours should list days, e.g. monday: \"09:00-17:00\"")
    weekly = {}
    for day, value in hours.items():
        if day not in DAYS:
            hint = did_you_mean(day, DAYS) or "use the full English day names"
            raise FlowError(hours.key_where[day], f"'{day}' is not a day of the week", hint)
        weekly[DAYS.index(day)] = _parse_day(value, hours.at(day))
    closed = set()
    if closures is not None:
        if not isinstance(closures, Sequence):
            raise FlowError(closures_where or where, "closures should be a list of dates",
                            "write them as [\"2026-12-25\", \"2026-12-26\"]")
        closed = {_parse_closure(v, w) for v, w in zip(closures, closures.item_where,
                                                       strict=True)}
    return OpeningHours(zone, weekly, frozenset(closed))
