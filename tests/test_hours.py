"""Opening hours in the helpline's own time zone: ranges, closures, DST and 24:00."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from callflow.language.hours import OpeningHours, parse_hours, parse_zone, spoken_opening
from callflow.language.source import load_text
from callflow.platform.errors import FlowError, Where

WEEKDAYS = """\
hours:
  monday: "09:00-17:00"
  tuesday: "09:00-17:00"
  wednesday: ["09:00-12:00", "13:00-17:00"]
  thursday: "09:00-17:00"
  friday: "09:00-17:00"
  saturday: closed
  sunday: "22:00-24:00"
closures: ["2026-12-25", 2026-12-26]
"""


def hours_of(text: str = WEEKDAYS, zone: str = "Europe/London") -> OpeningHours:
    doc = load_text(text, "test.yaml")
    where = Where("test.yaml", 1, 1)
    return parse_hours(parse_zone(zone, where), doc["hours"], doc.get("closures"), where)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("moment", "is_open"), [
    pytest.param(utc(2026, 11, 23, 8, 59), False, id="Monday 08:59 GMT"),
    pytest.param(utc(2026, 11, 23, 9, 0), True, id="Monday 09:00 GMT, the start is open"),
    pytest.param(utc(2026, 11, 23, 16, 59), True, id="Monday 16:59 GMT"),
    pytest.param(utc(2026, 11, 23, 17, 0), False, id="Monday 17:00 GMT, the end is closed"),
    pytest.param(utc(2026, 11, 25, 12, 30), False, id="Wednesday lunch, between two ranges"),
    pytest.param(utc(2026, 11, 25, 13, 0), True, id="Wednesday 13:00, the second range"),
    pytest.param(utc(2026, 11, 28, 12, 0), False, id="Saturday closed"),
    pytest.param(utc(2026, 11, 29, 21, 59), False, id="Sunday 21:59"),
    pytest.param(utc(2026, 11, 29, 23, 59), True, id="Sunday 23:59, open until 24:00"),
    pytest.param(utc(2026, 11, 30, 0, 0), False, id="Sunday 24:00 is Monday 00:00"),
])
def test_weekly_ranges(moment, is_open):
    assert hours_of().is_open(moment) is is_open


def test_24_00_ends_the_day_and_does_not_open_the_next():
    hours = hours_of('hours:\n  sunday: "22:00-24:00"\n')
    assert hours.is_open(utc(2026, 11, 29, 23, 59, 59))
    assert not hours.is_open(utc(2026, 11, 30, 0, 0))
    assert hours.describe()[6] == "Sunday 22:00-24:00"


def test_a_whole_day():
    hours = hours_of('hours:\n  monday: "00:00-24:00"\n')
    assert hours.is_open(utc(2026, 11, 23, 0, 0))
    assert hours.is_open(utc(2026, 11, 23, 23, 59))
    assert not hours.is_open(utc(2026, 11, 24, 0, 0))


@pytest.mark.parametrize(("moment", "is_open"), [
    pytest.param(utc(2026, 12, 24, 12, 0), True, id="Christmas Eve"),
    pytest.param(utc(2026, 12, 25, 12, 0), False, id="Christmas Day (quoted date)"),
    pytest.param(utc(2026, 12, 26, 12, 0), False, id="Boxing Day (YAML date)"),
    pytest.param(utc(2027, 12, 27, 12, 0), True, id="a closure is one date, not every year"),
])
def test_closures(moment, is_open):
    hours = hours_of(WEEKDAYS.replace("saturday: closed", 'saturday: "09:00-17:00"'))
    assert hours.is_open(moment) is is_open


def test_a_closure_is_a_date_in_the_helplines_zone():
    text = 'hours:\n  thursday: "00:00-24:00"\n  friday: "00:00-24:00"\nclosures: ["2026-12-25"]\n'
    # 12:00 UTC on the 24th is already the 25th in Auckland (UTC+13 in December).
    assert not hours_of(text, "Pacific/Auckland").is_open(utc(2026, 12, 24, 12, 0))
    assert hours_of(text, "Europe/London").is_open(utc(2026, 12, 24, 12, 0))


@pytest.mark.parametrize(("moment", "is_open"), [
    # Clocks go forward at 01:00 UTC on Sunday 29 March 2026: 09:00 local is 08:00 UTC after it.
    pytest.param(utc(2026, 3, 27, 8, 30), False, id="Friday before: 08:30 GMT"),
    pytest.param(utc(2026, 3, 27, 9, 0), True, id="Friday before: 09:00 GMT"),
    pytest.param(utc(2026, 3, 30, 8, 0), True, id="Monday after: 09:00 BST"),
    pytest.param(utc(2026, 3, 30, 16, 0), False, id="Monday after: 17:00 BST"),
    # Clocks go back at 01:00 UTC on Sunday 25 October 2026.
    pytest.param(utc(2026, 10, 23, 8, 0), True, id="Friday before: 09:00 BST"),
    pytest.param(utc(2026, 10, 26, 8, 30), False, id="Monday after: 08:30 GMT"),
    pytest.param(utc(2026, 10, 26, 16, 30), True, id="Monday after: 16:30 GMT"),
])
def test_hours_follow_summer_time(moment, is_open):
    assert hours_of().is_open(moment) is is_open


def test_the_hour_that_happens_twice_when_clocks_go_back():
    hours = hours_of('hours:\n  sunday: "01:00-02:00"\n')
    assert hours.is_open(utc(2026, 10, 25, 0, 30))  # 01:30 BST
    assert hours.is_open(utc(2026, 10, 25, 1, 30))  # 01:30 GMT, an hour later
    assert not hours.is_open(utc(2026, 10, 25, 2, 0))


def test_the_hour_that_never_happens_when_clocks_go_forward():
    hours = hours_of('hours:\n  sunday: "01:00-02:00"\n')
    assert not hours.is_open(utc(2026, 3, 29, 0, 59))  # 00:59 GMT
    assert not hours.is_open(utc(2026, 3, 29, 1, 0))  # 02:00 BST: 01:00-02:00 was skipped


def test_describe_lists_every_day():
    assert hours_of().describe() == [
        "Monday 09:00-17:00", "Tuesday 09:00-17:00", "Wednesday 09:00-12:00, 13:00-17:00",
        "Thursday 09:00-17:00", "Friday 09:00-17:00", "Saturday closed", "Sunday 22:00-24:00"]


@pytest.mark.parametrize("value", ["closed", "false", "off", "no"])
def test_ways_to_say_closed(value):
    assert hours_of(f"hours:\n  monday: {value}\n").weekly[0] == ()


def test_a_day_not_written_is_closed():
    assert hours_of('hours:\n  monday: "09:00-17:00"\n').weekly.get(1, ()) == ()


@pytest.mark.parametrize(("text", "parsed"), [
    ('"9:00-17:30"', ((540, 1050),)),
    ('" 09:00 - 17:00 "', ((540, 1020),)),
    ('["13:00-17:00", "09:00-12:00"]', ((540, 720), (780, 1020))),
    ('"00:00-24:00"', ((0, 1440),)),
])
def test_ranges_are_read_in_minutes_and_sorted(text, parsed):
    assert hours_of(f"hours:\n  monday: {text}\n").weekly[0] == parsed


def test_an_unknown_zone_suggests_the_nearest():
    with pytest.raises(FlowError) as caught:
        parse_zone("Europe/Lndon", Where("f.yaml", 3, 11))
    assert str(caught.value) == ("f.yaml:3:11: 'Europe/Lndon' is not a known time zone (did you "
                                 "mean 'Europe/London'?)")


@pytest.mark.parametrize("name", [None, 5, ["Europe/London"]])
def test_a_zone_that_is_not_a_name(name):
    with pytest.raises(FlowError, match="the time zone should be a name like Europe/London"):
        parse_zone(name, Where("f.yaml", 3, 11))


# -- when the line opens next, as a caller hears it ------------------------------------------

@pytest.mark.parametrize(("moment", "spoken"), [
    pytest.param(utc(2026, 11, 23, 7, 30), "at 9am today", id="Monday before opening"),
    pytest.param(utc(2026, 11, 23, 12, 0), "now", id="open now"),
    pytest.param(utc(2026, 11, 25, 12, 15), "at 1pm today", id="Wednesday's lunch break"),
    pytest.param(utc(2026, 11, 23, 17, 0), "at 9am tomorrow", id="Monday after closing"),
    pytest.param(utc(2026, 11, 28, 10, 0), "at 10pm tomorrow", id="Saturday: Sunday night"),
    pytest.param(utc(2026, 12, 24, 18, 0), "on Sunday 27 December at 10pm",
                 id="Christmas Eve: two closures, then Sunday night"),
    pytest.param(utc(2026, 12, 25, 14, 0), "on Sunday 27 December at 10pm", id="a closure"),
    pytest.param(utc(2026, 6, 1, 7, 30), "at 9am today", id="BST: 08:30 local"),
])
def test_the_next_opening_is_said_in_the_helplines_own_time(moment, spoken):
    hours = hours_of()
    assert spoken_opening(hours.next_opening(moment), moment) == spoken


def test_the_next_opening_in_another_zone_is_said_in_that_zones_time():
    hours = hours_of(zone="America/New_York")
    moment = utc(2026, 11, 23, 13, 0)  # 08:00 in New York
    opening = hours.next_opening(moment)
    assert opening == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
    assert spoken_opening(opening, moment) == "at 9am today"


def test_minutes_are_said_when_the_line_opens_off_the_hour():
    hours = hours_of('hours:\n  monday: "09:30-17:00"\n')
    assert spoken_opening(hours.next_opening(utc(2026, 11, 22, 12, 0)),
                          utc(2026, 11, 22, 12, 0)) == "at 9:30am tomorrow"


def test_a_line_that_never_opens_says_so_gently():
    hours = hours_of("hours: {}\n")
    assert hours.next_opening(utc(2026, 11, 23, 12, 0)) is None
    assert spoken_opening(None, utc(2026, 11, 23, 12, 0)) == "when our opening hours allow"


@pytest.mark.parametrize(("moment", "closure"), [
    (utc(2026, 12, 25, 12, 0), True), (utc(2026, 12, 26, 23, 30), True),
    (utc(2026, 12, 27, 0, 30), False), (utc(2026, 12, 24, 23, 59), False),
])
def test_a_closure_is_a_date_at_the_helpline(moment, closure):
    assert hours_of().is_closure(moment) is closure
