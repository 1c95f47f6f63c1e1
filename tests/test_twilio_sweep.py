"""The periodic sweep of Twilio's call log: every finished call to a helpline number (by ``To``,
never by the caller's number) and every leg from one (workers' and managers') is deleted,
whatever Redis remembers, page by page as Twilio lists them."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from callflow import runtime
from callflow.jobs import cron
from callflow.jobs import tasks as jobs
from tests.bridge_support import Caller
from tests.conftest import CANARY_NUMBER, MENS_ADVICE, RESPECT
from webhooks import create_app

MANAGER_LINE = "+441632960009"
WORKER_PHONE = "+447700900123"
MANAGER_PHONE = "+447700900321"
ELSEWHERE = "+441632960555"  # a number of the account that is no helpline's
OURS = (RESPECT, MENS_ADVICE, MANAGER_LINE)
FINISHED = ("completed", "busy", "failed", "no-answer", "canceled")


def app_with(settings, redis, clock):
    return create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock,
                       "SYNC_JOBS": True})


@pytest.fixture
def sweeping(bridge_app):
    """The app's runtime, bound for the test as the job runner binds it for each job."""
    with runtime.binding(bridge_app.extensions["callflow"]["runtime"]) as rt:
        yield rt


def listed(twilio_api) -> list[dict[str, str]]:
    """The filters of every list request the sweep sent."""
    return [{k: v[0] for k, v in parse_qs(urlsplit(s.url).query).items()}
            for s in twilio_api.of("list")]


def an_account_log(twilio_api) -> dict[str, set[str]]:
    """Callers' calls to both helplines, workers' and a manager's legs from them, a manager's
    call to the manager line, calls still going on, and calls that are none of ours."""
    log = {"ours": set(), "live": set(), "not ours": set()}
    for status in FINISHED:
        log["ours"].add(twilio_api.keep_call(to=RESPECT, from_=CANARY_NUMBER, status=status))
    log["ours"].add(twilio_api.keep_call(to=MENS_ADVICE, from_=CANARY_NUMBER))
    log["ours"].add(twilio_api.keep_call(to=WORKER_PHONE, from_=RESPECT,
                                         direction="outbound-api"))
    log["ours"].add(twilio_api.keep_call(to=MANAGER_PHONE, from_=MENS_ADVICE,
                                         direction="outbound-api"))
    log["ours"].add(twilio_api.keep_call(to=MANAGER_LINE, from_=MANAGER_PHONE))
    log["live"].add(twilio_api.keep_call(to=RESPECT, from_=CANARY_NUMBER,
                                         status="in-progress"))
    log["live"].add(twilio_api.keep_call(to=WORKER_PHONE, from_=RESPECT, status="ringing"))
    log["not ours"].add(twilio_api.keep_call(to=ELSEWHERE, from_=CANARY_NUMBER))
    return log


def test_the_sweep_deletes_every_finished_call_to_or_from_a_helpline(sweeping, twilio_api,
                                                                     monkeypatch):
    monkeypatch.setattr(jobs, "SWEEP_PAGE_SIZE", 2)  # so that paging is followed
    log = an_account_log(twilio_api)

    assert jobs.sweep_twilio_records() == len(log["ours"])

    assert {d.sid for d in twilio_api.of("delete")} == log["ours"]
    assert set(twilio_api.calls) == log["live"] | log["not ours"]
    assert twilio_api.problems == [] and twilio_api.strays == []


def test_the_sweep_asks_by_the_helplines_numbers_never_a_callers(sweeping, twilio_api,
                                                                 monkeypatch):
    monkeypatch.setattr(jobs, "SWEEP_PAGE_SIZE", 2)
    an_account_log(twilio_api)

    jobs.sweep_twilio_records()

    filters = listed(twilio_api)
    assert {(f.get("To"), f.get("From")) for f in filters} == (
        {(n, None) for n in OURS} | {(None, n) for n in OURS})
    assert max(sum(1 for f in filters if f.get("To") == RESPECT), 0) > 1  # several pages
    assert all(f["PageSize"] == "2" for f in filters)
    assert not any(CANARY_NUMBER in s.url or CANARY_NUMBER.lstrip("+") in s.url
                   for s in twilio_api.of("list"))


def test_the_sweep_needs_nothing_redis_remembers(bridge_sim, sweeping, twilio_api, redis):
    """A call whose fast-path purge failed every time, and then Redis lost everything."""
    twilio_api.fail("delete", *[500] * 12)
    caller = Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
    twilio_api.calls[caller.sid] = {"sid": caller.sid, "to": RESPECT, "from": CANARY_NUMBER,
                                    "status": "in-progress", "direction": "inbound"}
    twilio_api.order.append(caller.sid)
    caller.enter()
    caller.press(0, "1")
    legs = [leg.sid for leg in caller.legs()]
    caller.status("completed")  # the fast path's purge job fails (RQ keeps it as failed)
    assert {caller.sid, *legs} <= set(twilio_api.calls)
    twilio_api.failures.clear()
    for sid in (caller.sid, *legs):
        twilio_api.calls[sid]["status"] = "completed"
    redis.flushdb()

    jobs.sweep_twilio_records()

    assert {caller.sid, *legs} <= {d.sid for d in twilio_api.of("delete")}
    assert not {caller.sid, *legs} & set(twilio_api.calls)


def test_a_delete_twilio_refuses_is_left_for_the_next_sweep(sweeping, twilio_api, caplog):
    log = an_account_log(twilio_api)
    twilio_api.fail("delete", 500)

    assert jobs.sweep_twilio_records() == len(log["ours"]) - 1
    assert "could not be deleted" in caplog.text
    assert jobs.sweep_twilio_records() == 1
    assert set(twilio_api.calls) == log["live"] | log["not ours"]


def test_each_sweep_deletes_at_most_its_share(sweeping, twilio_api, monkeypatch):
    monkeypatch.setattr(jobs, "SWEEP_LIMIT", 3)
    log = an_account_log(twilio_api)

    assert jobs.sweep_twilio_records() == 3
    assert jobs.sweep_twilio_records() == 3
    assert jobs.sweep_twilio_records() == len(log["ours"]) - 6
    assert set(twilio_api.calls) == log["live"] | log["not ours"]


def test_with_purging_turned_off_the_sweep_asks_nothing(bridge_settings, redis, clock,
                                                        twilio_api):
    app = app_with(dataclasses.replace(bridge_settings, purge_twilio_logs=False), redis, clock)
    an_account_log(twilio_api)

    with runtime.binding(app.extensions["callflow"]["runtime"]):
        assert jobs.sweep_twilio_records() == 0
    assert twilio_api.sent == []


def test_without_a_twilio_account_the_sweep_does_nothing(app, twilio_api):
    with runtime.binding(app.extensions["callflow"]["runtime"]):
        assert jobs.sweep_twilio_records() == 0
    assert twilio_api.sent == []


def test_the_sweep_runs_on_rq_cron():
    [sweep] = [job for job in cron.TIMED_JOBS if job["name"] == "sweep-twilio-records"]
    assert sweep["func"] is jobs.sweep_twilio_records
    assert 60 <= sweep["interval"] <= 3600
    assert sweep["job_timeout"] >= 300
