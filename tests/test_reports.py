"""Reports from counts alone: a known mix of calls played through the app as Twilio sends
them, and the report's figures equal to that mix, in every format; and the canary caller's
details in no counter and no report."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest

from callflow.cli import cli
from callflow.platform import keys
from callflow.records import reports
from callflow.records.counts import Outcome
from callflow.records.reports import FEWER_THAN_5, By
from tests.bridge_support import Caller, FlakyStore, raw_dump, sign_on
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    CLOSED_TIME,
    OPEN_TIME,
    RESPECT,
    assert_no_canary,
)
from webhooks import create_app
from webhooks.simulator import TwilioSim

HELPLINE = "respect-phoneline"
DAY = "2026-11-25"  # OPEN_TIME and CLOSED_TIME, a Wednesday (GMT: London time is UTC)
# What the mix below must come to.
EXPECTED = {
    "offered": 12, "hung_up_before_notice": 1, "hung_up_after_notice": 1, "out_of_hours": 2,
    "closure": 0, "degraded": 1, "queued": 7, "direct": 0, "answered": 3, "abandoned": 2,
    "abandoned_short": 1, "unanswered": 2, "max_wait": 2, "no_workers": 0, "no_answer": 0,
    "dial_unanswered": 0, "fallback": 1,
    "service_level_20": 66.7, "service_level_20_with_abandoned": 40.0,
    "service_level_60": 100.0, "service_level_60_with_abandoned": 60.0,
    "average_wait": 21.7, "longest_wait": "under 600 s", "average_handle": 180.0,
}


@pytest.fixture
def mix_app(bridge_settings, redis_url, clock, twilio_api):
    """The bridged app on a store that can be taken down, counts written only when asked."""
    store = FlakyStore.from_url(redis_url, decode_responses=True)
    store.flushdb()
    settings = dataclasses.replace(bridge_settings, counts_flush_seconds=10_000)
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": store, "CLOCK": clock,
                      "SYNC_JOBS": True})
    sign_on(app)
    yield app, store
    store.down = False
    store.flushdb()
    store.close()


def counts_of(app):
    return app.extensions["callflow"]["runtime"].counts


def new_caller(app, twilio_api) -> Caller:
    return Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                  number=CANARY_NUMBER)


def play_the_mix(app, store, clock, twilio_api) -> None:
    """Twelve calls to the Respect Phoneline on one day, and one at Twilio's fallback URL."""
    clock.now = OPEN_TIME
    for wait in (5, 15, 45):  # answered by Alice after 5, 15 and 45 s; three minutes' talk
        caller = new_caller(app, twilio_api)
        caller.enter()
        assert caller.call_id
        clock.now += timedelta(seconds=wait)
        caller.press(0, "1")
        caller.conference("participant-join", caller.leg(0).sid)
        clock.now += timedelta(minutes=3)
        caller.post(str(caller.leg(0).data["StatusCallback"]),
                    caller.worker_fields(0, CallStatus="completed", CallDuration="180"))
        caller.status("completed")
        clock.now += timedelta(minutes=2)  # Alice's wrap-up is over
    for wait in (4, 30):  # abandoned while waiting, one within 10 s
        caller = new_caller(app, twilio_api)
        caller.enter()
        clock.now += timedelta(seconds=wait)
        caller.status("completed")
    for _ in range(2):  # nobody answered: the caller waited the team's max_wait (300 s)
        caller = new_caller(app, twilio_api)
        caller.enter()
        clock.now += timedelta(seconds=300)
        assert "<Leave" in caller.hold()
        caller.leave()
    new_caller(app, twilio_api).turn("/voice/incoming")  # hung up during the notice
    caller = new_caller(app, twilio_api)  # heard the notice, hung up in the menu
    caller.enter(keys=("",))
    store.down = True  # Redis down at the connect step: the degraded path, a direct dial
    degraded = new_caller(app, twilio_api)
    body = degraded.enter()
    assert "<Dial" in body and not degraded.call_id
    store.down = False
    new_caller(app, twilio_api).turn("/voice/fallback")  # Twilio's fallback URL
    clock.now = CLOSED_TIME
    for _ in range(2):  # out of hours
        new_caller(app, twilio_api).enter(keys=("",))
    assert counts_of(app).flush()


def report_of(app, by=By.DAY, publish=False, start=DAY, end=DAY):
    rt = app.extensions["callflow"]["runtime"]
    return reports.build(rt.counts, rt.audit, start=date.fromisoformat(start),
                         end=date.fromisoformat(end), by=by, helplines=[HELPLINE],
                         zone_of=rt.counts.zone_of, publish=publish)


def cli_env(settings) -> dict[str, str]:
    return {"REDIS_URL": settings.redis_url, "CALLFLOW_FLOWS": settings.flows_dir}


def test_the_report_equals_the_mix_of_calls_in_every_format(mix_app, clock, twilio_api,
                                                            runner):
    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    settings = app.extensions["callflow"]["settings"]
    args = ["report", "--from", DAY, "--to", DAY, "--helpline", HELPLINE]

    as_json = runner.invoke(cli, [*args, "--format", "json"], env=cli_env(settings))
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    [helpline] = data["helplines"]
    [day] = helpline["periods"]
    assert day["period"] == DAY and day["complete"]
    assert day["figures"] == EXPECTED
    assert helpline["total"] == EXPECTED
    # Both phones rang for each of the seven callers in the line (the team rings everyone
    # free at once); Alice took three, for three minutes each; no offer was missed (those
    # withdrawn when Alice took a caller, or the caller left, do not count as missed).
    assert helpline["workers"] == [
        {"worker": "Alice", "offers": 7, "accepts": 3, "missed": 0, "calls": 3,
         "talk_seconds": 540},
        {"worker": "Bilal", "offers": 7, "accepts": 0, "missed": 0, "calls": 0,
         "talk_seconds": 0}]
    assert helpline["teams"]["respect-workers"]["answered"] == 3
    assert helpline["calls_by_weekday_and_hour"]["Wed"][12] == 10
    assert helpline["calls_by_weekday_and_hour"]["Wed"][22] == 2

    as_csv = runner.invoke(cli, [*args, "--format", "csv"], env=cli_env(settings))
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.output)))
    by_figure = {row["figure"]: row["value"] for row in rows if row["period"] == DAY}
    assert by_figure == {name: "" if value is None else str(value)
                         for name, value in EXPECTED.items()}

    as_table = runner.invoke(cli, [*args, "--format", "table"], env=cli_env(settings))
    assert as_table.exit_code == 0, as_table.output
    lines = as_table.output.splitlines()
    for name, value in EXPECTED.items():
        [line] = [x for x in lines if x.startswith(reports.LABELS[name] + "  ")]
        shown = "-" if value is None else str(value)
        assert line.split()[-2:] == [shown, shown] or line.endswith(f"{shown}  {shown}"), line


def test_a_menu_webhook_still_sends_redis_no_command(mix_app, clock, twilio_api):
    app, store = mix_app
    before = int(store.info("stats")["total_commands_processed"])
    new_caller(app, twilio_api).enter(keys=("", "2", "2"))
    assert int(store.info("stats")["total_commands_processed"]) == before + 1
    assert counts_of(app).pending() > 0


def test_the_canary_caller_is_in_no_counter_and_no_report(mix_app, clock, twilio_api, runner,
                                                          redis_url):
    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    settings = app.extensions["callflow"]["settings"]
    counted = {key: store.hgetall(key) for key in store.scan_iter(f"{keys.PREFIX}:counts*")
               if store.type(key) == "hash"}
    assert counted  # there are counts to search
    assert_no_canary(str(counted), raw_dump(redis_url))
    for form in ("table", "csv", "json"):
        for extra in ([], ["--publish", "--by", "week"]):
            result = runner.invoke(cli, ["report", "--from", DAY, "--to", DAY, "--format",
                                         form, *extra], env=cli_env(settings))
            assert result.exit_code == 0, result.output
            assert_no_canary(result.output)
    # No counter names a call: only helplines, teams, workers and hours.
    for key in counted:
        assert "CA" not in key.split(":", 2)[2]


def test_published_figures_are_weekly_or_monthly_with_small_counts_suppressed(
        mix_app, clock, twilio_api, runner):
    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    published = report_of(app, by=By.WEEK, publish=True).as_dict()
    figures = published["helplines"][0]["total"]
    assert figures["offered"] == 12
    assert figures["queued"] == 7
    assert figures["answered"] == FEWER_THAN_5
    assert figures["abandoned"] == FEWER_THAN_5
    assert figures["closure"] == 0  # nobody to hide
    assert figures["service_level_20"] == FEWER_THAN_5  # a rate over three calls
    assert "workers" not in published["helplines"][0]
    assert "calls_by_weekday_and_hour" not in published["helplines"][0]
    with pytest.raises(ValueError, match="weekly or monthly"):
        report_of(app, by=By.DAY, publish=True)
    settings = app.extensions["callflow"]["settings"]
    refused = runner.invoke(cli, ["report", "--from", DAY, "--to", DAY, "--publish"],
                            env=cli_env(settings))
    assert refused.exit_code == 2 and "weekly or monthly" in refused.output


def test_with_redis_down_counts_are_kept_and_their_hours_marked_incomplete(mix_app, clock,
                                                                          twilio_api):
    app, store = mix_app
    counts = counts_of(app)
    clock.now = CLOSED_TIME
    new_caller(app, twilio_api).enter(keys=("",))
    store.down = True
    assert not counts.flush()  # kept in the process
    assert counts.pending() > 0
    store.down = False
    assert counts.flush()
    report = report_of(app).as_dict()["helplines"][0]
    assert report["incomplete_hours"] == [f"{DAY}T22"]
    assert report["total"]["out_of_hours"] == 1
    assert not report["periods"][0]["complete"]


def test_beyond_its_bound_the_buffer_drops_events_and_says_so(mix_app, clock, twilio_api):
    app, store = mix_app
    counts = counts_of(app)
    counts.limit = 1
    clock.now = OPEN_TIME
    counts.offered(HELPLINE)
    counts.ended(HELPLINE, Outcome.OUT_OF_HOURS)  # a second counter: dropped
    assert counts.flush()
    report = report_of(app).as_dict()["helplines"][0]
    assert report["total"]["offered"] == 1
    assert report["total"]["out_of_hours"] == 0
    assert report["incomplete_hours"] == [f"{DAY}T12"]


def test_a_closure_date_is_counted_apart_from_out_of_hours(mix_app, clock, twilio_api):
    app, store = mix_app
    clock.now = datetime(2026, 12, 25, 12, 0, tzinfo=UTC)
    new_caller(app, twilio_api).enter(keys=("",))
    assert counts_of(app).flush()
    total = report_of(app, start="2026-12-25", end="2026-12-25").as_dict()
    figures = total["helplines"][0]["total"]
    assert (figures["closure"], figures["out_of_hours"], figures["offered"]) == (1, 0, 1)


def test_hours_roll_up_into_days_and_the_oldest_counts_go(mix_app, clock, twilio_api):
    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    counts = counts_of(app)
    before = report_of(app).as_dict()["helplines"][0]["total"]
    clock.now = OPEN_TIME + timedelta(days=30)
    folded, removed = counts.apply_retention(hourly_days=7, keep_days=3650)
    assert folded > 0 and removed == 0
    assert not [k for k in store.scan_iter(keys.counts(HELPLINE, "*", f"{DAY}T*"))]
    assert report_of(app).as_dict()["helplines"][0]["total"] == before
    clock.now = OPEN_TIME + timedelta(days=400)
    counts.apply_retention(hourly_days=7, keep_days=365)
    assert report_of(app).as_dict()["helplines"][0]["total"]["offered"] == 0
    assert not list(store.scan_iter(keys.counts(HELPLINE, "*", "*")))


# -- the Reports page ---------------------------------------------------------------------

def page_args(**extra) -> str:
    from urllib.parse import urlencode

    return urlencode({"from": DAY, "to": DAY, **extra})


def test_the_reports_page_shows_the_mix_with_charts_and_their_tables(mix_app, clock,
                                                                     twilio_api):
    from tests.test_dashboard import sign_in

    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    manager = sign_in(app)
    page = manager.get(f"/manager/reports?{page_args()}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "<script>" not in html and "style=" not in html  # the strict policy holds
    for kind in ("volume", "heat", "service"):
        assert f"/manager/reports/chart/{kind}.svg?" in html
    assert "3 answered, 2 abandoned, 2 unanswered and 2 out of hours" in html
    assert "Table view of the charts" in html
    assert "Each team’s calls" in html and "respect-workers" in html
    chart = manager.get(f"/manager/reports/chart/volume.svg?{page_args(helpline=HELPLINE)}")
    assert chart.status_code == 200 and chart.mimetype == "image/svg+xml"
    body = chart.get_data(as_text=True)
    assert body.lstrip().startswith("<?xml") and "<svg" in body and "<script" not in body
    assert "script-src" not in chart.headers["Content-Security-Policy"]
    assert_no_canary(html, body)


def test_the_publish_button_gives_the_suppressed_weekly_figures(mix_app, clock, twilio_api):
    from tests.test_dashboard import sign_in

    app, store = mix_app
    play_the_mix(app, store, clock, twilio_api)
    manager = sign_in(app)
    html = manager.get(f"/manager/reports?{page_args(publish='1')}").get_data(as_text=True)
    assert "fewer than 5" in html and "2026-W48" in html
    assert "/manager/reports/chart/" not in html  # charts show every count: not published
    published = manager.get(f"/manager/reports/export.json?"
                            f"{page_args(publish='1', helpline=HELPLINE)}")
    figures = json.loads(published.get_data(as_text=True))["helplines"][0]["total"]
    assert figures["answered"] == FEWER_THAN_5 and figures["offered"] == 12
    refused = manager.get(f"/manager/reports/chart/volume.svg?"
                          f"{page_args(helpline=HELPLINE, publish='1')}")
    assert refused.status_code == 404


def test_the_reports_page_is_for_signed_in_managers_and_admins(mix_app, client):
    from tests.test_dashboard import sign_in

    app, _ = mix_app
    assert app.test_client().get("/manager/reports").status_code == 302
    for role in ("manager", "admin"):
        from callflow.staff.accounts import Role

        member = sign_in(app, f"r{role}", Role(role))
        assert member.get("/manager/reports?from=nonsense").status_code == 200
        assert member.get("/manager/reports/export.xml").status_code == 404


# -- when counts are written ------------------------------------------------------------------

def test_counts_are_written_after_a_status_callback_never_after_a_menu_webhook(
        bridge_settings, redis, clock, twilio_api):
    settings = dataclasses.replace(bridge_settings, counts_flush_seconds=0)
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                      "SYNC_JOBS": True})
    clock.now = CLOSED_TIME
    caller = new_caller(app, twilio_api)
    caller.enter(keys=("",))  # the notice, then the out-of-hours message: no Redis command
    assert not list(redis.scan_iter(f"{keys.PREFIX}:counts*"))
    assert counts_of(app).pending() > 0
    caller.status("completed")  # talks to Redis anyway: the counts go with it
    assert counts_of(app).pending() == 0
    report = report_of(app).as_dict()["helplines"][0]["total"]
    assert (report["offered"], report["out_of_hours"]) == (1, 1)


def test_the_job_runner_writes_counts_after_each_job(app, redis, clock):
    from callflow.jobs.runner import JobRunner
    from callflow.platform import jobspec
    from callflow.platform.jobspec import Job

    rt = app.extensions["callflow"]["runtime"]
    clock.now = OPEN_TIME
    rt.counts.offered(HELPLINE)
    jobspec.enqueue(rt.queue, Job.APPLY_COUNTS_RETENTION, job_id="retention-now")
    JobRunner([rt.queue], connection=rt.queue.connection, runtime=rt).work(
        burst=True, logging_level="WARNING")
    assert rt.counts.pending() == 0
    assert report_of(app).as_dict()["helplines"][0]["total"]["offered"] == 1


def test_monitoring_sessions_and_exceptions_by_ground_come_from_the_audit_log(app, clock):
    from callflow.records.audit import AuditKind
    from callflow.records.register import record_exception

    rt = app.extensions["callflow"]["runtime"]
    clock.now = OPEN_TIME
    rt.audit.append(AuditKind.MONITOR_STARTED, "maria", session="s1", call="c1")
    record_exception(rt.audit, "maria", "c1", ["threat_to_worker", "service_interference"],
                     "police", True)
    record_exception(rt.audit, "maria", "c2", ["threat_to_worker"], "police", True)
    today = rt.audit.entries()[-1].when.date().isoformat()  # the audit log keeps its own time
    service = report_of(app, start=today, end=today).as_dict()["service"]
    assert service == {"monitoring_sessions": 1,
                       "exceptions": {"service_interference": 1, "threat_to_worker": 2}}


def recoverable(figures: dict, total: str, parts: tuple[str, ...]) -> bool:
    """Whether one hidden part is the sum shown less the other parts shown."""
    hidden = [p for p in parts if figures[p] == FEWER_THAN_5]
    return len(hidden) == 1 and isinstance(figures[total], int)


def test_no_published_figure_can_be_worked_out_by_subtraction():
    """Secondary suppression: a week with two callers at no_workers among nine unanswered, and
    a week of five; neither the week's sums nor the fortnight's total give the two away."""
    from callflow.records.counts import Period
    from callflow.records.reports import SUMS, Report, helpline_report

    periods = [Period("h", "all", "2026-11-02T10", {"offered": 9, "queued": 9, "max_wait": 7,
                                                     "no_workers": 2}),
               Period("h", "all", "2026-11-09T10", {"offered": 5, "queued": 5, "max_wait": 5})]
    start, end = date(2026, 11, 2), date(2026, 11, 15)
    h = helpline_report("h", periods, {}, start, end, By.WEEK)
    data = Report(start=start, end=end, by=By.WEEK, helplines=[h],
                  published=True).as_dict()["helplines"][0]

    tables = [p["figures"] for p in data["periods"]] + [data["total"]]
    assert data["periods"][0]["figures"]["no_workers"] == FEWER_THAN_5
    for figures in tables:
        for total, parts in SUMS:
            assert not recoverable(figures, total, parts), (total, figures)
    for name, value in data["total"].items():
        cells = [p["figures"][name] for p in data["periods"]]
        assert not (cells.count(FEWER_THAN_5) == 1 and isinstance(value, int)
                    and all(isinstance(c, int) or c == FEWER_THAN_5 for c in cells)), name
