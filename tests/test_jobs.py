"""The RQ jobs: queued once per id, JSON payloads of ids only, retried with backoff, and never
offering a worker twice however often a job runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import warnings
import xml.etree.ElementTree as ET
import zlib

import pytest
import requests
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker
from twilio.base.exceptions import TwilioRestException

from callflow import runtime
from callflow.jobs import tasks as jobs
from callflow.jobs.runner import JobRunner
from callflow.platform import jobspec, keys
from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError, StoreUnavailable
from callflow.platform.jobspec import Job as Named
from callflow.records.live import LiveState
from callflow.staff.shifts import Shifts, WorkerState
from tests.bridge_support import Caller, dead_store, query, sign_on
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, FLOWS, RESPECT
from webhooks import create_app
from webhooks.simulator import TwilioSim

CALL_SIDS = ["CA" + "1" * 32, "CA" + "2" * 32, "CA" + "3" * 32]


TEAM = "respect-workers"
ALICE, BILAL = "+447700900101", "+447700900102"  # Chris, the third, is not active


def make_app(settings, store, clock, **config):
    return create_app({"TESTING": True, "SETTINGS": settings, "STORE": store, "CLOCK": clock,
                       **config})


def with_worker(app):
    """``app``, with an (idle) RQ job runner registered on its queue as `callflow runner` would
    be: the bridge is only offered when someone will run its jobs. The test's Redis is
    flushed afterwards, and the registration with it."""
    queue = app.extensions["callflow"]["runtime"].queue
    SimpleWorker([queue], connection=queue.connection,
                 serializer=JSONSerializer).register_birth()
    return app


@pytest.fixture
def queued_app(bridge_settings, redis, clock, twilio_api):
    """The bridged app with jobs left on the queue, as a web process leaves them for the
    worker process; every active worker on shift."""
    app = with_worker(make_app(bridge_settings, redis, clock))
    sign_on(app)
    return app


@pytest.fixture
def rt(queued_app):
    """The app's runtime, bound for the test, as the job runner binds it around each job."""
    with runtime.binding(queued_app.extensions["callflow"]["runtime"]) as bound:
        yield bound


@pytest.fixture
def shifts(rt):
    return Shifts(rt.store, rt.clock)


def bridged(app, twilio_api) -> Caller:
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)
    caller.enter()
    assert caller.call_id
    return caller


def fetch(rt, job_id: str) -> Job:
    return Job.fetch(job_id, connection=rt.queue.connection, serializer=JSONSerializer)


def dispatch_job_id(rt) -> str:
    """The one dispatch job on the queue (its id is new each time: every change asks)."""
    (found,) = [j for j in rt.queue.job_ids if j.startswith(f"dispatch-{TEAM}-")]
    return found


def run_queued(rt) -> None:
    JobRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
              runtime=rt).work(burst=True)


def rung(caller: Caller) -> list[str]:
    return [str(leg.data["To"]) for leg in caller.legs()]


def states(shifts, *names: str) -> list[WorkerState]:
    return [shifts.status(name).state for name in names]


# -- queueing -------------------------------------------------------------------------------


def test_enqueue_raises_no_deprecation_warning(rt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rt.enqueue(Named.WITHDRAW_OFFER, "Alice", job_id="withdraw-Alice")


def test_the_caller_is_put_in_the_line_before_any_worker_is_offered(queued_app, twilio_api,
                                                                     rt, shifts):
    caller = bridged(queued_app, twilio_api)

    assert twilio_api.sent == []
    assert "<Enqueue" in caller.line_twiml
    assert rt.queue.job_ids == [dispatch_job_id(rt)]
    assert states(shifts, "Alice", "Bilal") == [WorkerState.AVAILABLE] * 2


def test_a_job_is_queued_once_per_id(rt, caplog):
    with caplog.at_level(logging.INFO, logger="callflow.platform.jobspec"):
        rt.enqueue(Named.WITHDRAW_OFFER, "Alice", job_id="withdraw-Alice")
        rt.enqueue(Named.WITHDRAW_OFFER, "Alice", job_id="withdraw-Alice")

    assert rt.queue.job_ids == ["withdraw-Alice"]
    assert "job already queued" in caplog.text


def test_a_job_is_json_naming_a_function_and_ids(queued_app, twilio_api, rt):
    bridged(queued_app, twilio_api)
    job_id = dispatch_job_id(rt)

    stored = rt.queue.connection.hgetall(f"rq:job:{job_id}")
    payload = json.loads(zlib.decompress(stored[b"data"]))
    assert payload == ["callflow.jobs.tasks.dispatch", None, [TEAM], {}]
    assert stored[b"failure_callback_name"] == b"callflow.platform.jobspec.log_failure"
    job = fetch(rt, job_id)
    assert (job.func_name, job.args, job.kwargs) == ("callflow.jobs.tasks.dispatch", [TEAM], {})


@pytest.mark.parametrize("retry, attempts, intervals", [
    (jobspec.REST_RETRY, 3, [1, 4, 10]),
    (jobspec.PURGE_RETRY, 5, [30, 60, 300, 900, 3600]),
])
def test_jobs_are_retried_with_backoff(rt, retry, attempts, intervals):
    rt.enqueue(Named.PURGE_CALL_RECORDS, CALL_SIDS, job_id="retried", retry=retry)

    job = fetch(rt, "retried")
    assert job.retries_left == attempts
    assert job.retry_intervals == intervals


def test_a_purge_is_queued_with_its_own_retries(bridge_settings, redis, clock, twilio_api):
    settings = dataclasses.replace(bridge_settings, purge_twilio_logs=True)
    app = with_worker(make_app(settings, redis, clock))
    sign_on(app)
    caller = bridged(app, twilio_api)
    caller.status("completed")

    job = fetch(app.extensions["callflow"]["runtime"], f"purge-{caller.call_id}")
    assert job.func_name == "callflow.jobs.tasks.purge_call_records"
    assert job.args[0][0] == caller.sid
    assert job.retries_left == jobspec.PURGE_RETRY.max


def test_enqueue_with_redis_down_is_store_unavailable(bridge_settings, clock):
    store = dead_store()
    rt = make_app(bridge_settings, store, clock).extensions["callflow"]["runtime"]

    with pytest.raises(StoreUnavailable):
        rt.enqueue(Named.WITHDRAW_OFFER, "Alice", job_id="withdraw-Alice")
    store.close()


# -- offering: once per worker, whatever happens --------------------------------------------


def test_running_the_dispatch_job_twice_offers_each_worker_once(queued_app, twilio_api, rt,
                                                                shifts):
    caller = bridged(queued_app, twilio_api)

    jobs.dispatch(TEAM)
    jobs.dispatch(TEAM)
    run_queued(rt)  # and the queued copy, run by a worker

    assert rung(caller) == [ALICE, BILAL]
    assert states(shifts, "Alice", "Bilal") == [WorkerState.OFFERED] * 2


def test_a_duplicated_dispatch_job_offers_nobody_twice(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    job = fetch(rt, dispatch_job_id(rt))
    rt.queue.enqueue_job(job)  # delivered twice, as after a worker crash

    assert rt.queue.job_ids == [job.id, job.id]
    run_queued(rt)

    assert rung(caller) == [ALICE, BILAL]


def test_a_second_caller_offers_no_worker_already_ringing(queued_app, twilio_api, rt):
    first = bridged(queued_app, twilio_api)
    run_queued(rt)
    bridged(queued_app, twilio_api)

    run_queued(rt)
    jobs.dispatch(TEAM)

    assert rung(first) == [ALICE, BILAL]


@pytest.mark.parametrize("failure", [500, (503, 20503), requests.ConnectionError("down")],
                         ids=["http-500", "http-503", "connection-error"])
def test_a_failed_ring_raises_ends_the_offer_unmissed_and_flags_the_api(
        queued_app, twilio_api, rt, redis, shifts, failure):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", failure, failure)

    expected = requests.ConnectionError if isinstance(failure, Exception) else (
        TwilioRestException)
    with pytest.raises(expected):
        jobs.dispatch(TEAM)

    assert 0 < redis.ttl(keys.rest_trouble()) <= 60
    assert rt.live.get(caller.call_id).state is LiveState.WAITING
    for name in ("Alice", "Bilal"):
        status = shifts.status(name)
        assert (status.state, status.missed, status.offer) == (WorkerState.AVAILABLE, 0, "")

    jobs.dispatch(TEAM)  # the retry, with Twilio back

    assert rung(caller) == [ALICE, BILAL, ALICE, BILAL]  # two refused, then each rung once
    assert states(shifts, "Alice", "Bilal") == [WorkerState.OFFERED] * 2


def test_a_retry_after_one_workers_leg_failed_offers_that_worker(queued_app, twilio_api, rt,
                                                                 shifts):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", 500)  # Alice's leg fails; Bilal's is created

    with pytest.raises(TwilioRestException):
        jobs.dispatch(TEAM)
    assert states(shifts, "Alice", "Bilal") == [WorkerState.AVAILABLE, WorkerState.OFFERED]
    jobs.dispatch(TEAM)  # RQ's retry

    assert rung(caller) == [ALICE, BILAL, ALICE]


def test_a_dispatch_job_failing_in_a_worker_is_logged_and_scheduled_again(
        queued_app, twilio_api, rt, caplog):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", 500, 500)

    with caplog.at_level(logging.ERROR, logger="callflow.jobs.tasks"):
        run_queued(rt)

    job = fetch(rt, dispatch_job_id_of(rt, caller))
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == jobspec.REST_RETRY.max - 1
    assert job.id in rt.queue.scheduled_job_registry.get_job_ids()

    rt.queue.scheduled_job_registry.requeue(job)  # its backoff is over
    run_queued(rt)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert rung(caller)[-2:] == [ALICE, BILAL]


def dispatch_job_id_of(rt, caller: Caller) -> str:
    """The id of the dispatch job the caller's arrival queued, wherever RQ now keeps it."""
    ids = [*rt.queue.job_ids, *rt.queue.scheduled_job_registry.get_job_ids(),
           *rt.queue.failed_job_registry.get_job_ids(),
           *rt.queue.finished_job_registry.get_job_ids()]
    (found,) = {j for j in ids if j.startswith(f"dispatch-{TEAM}-")}
    return found


def test_a_job_that_fails_for_good_is_logged(bridge_sim, twilio_api, caplog):
    twilio_api.fail("ring", 500, 500)

    with caplog.at_level(logging.ERROR, logger="callflow.jobs.tasks"):
        caller = Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
        caller.enter()

    assert caller.call_id
    failed = [r for r in caplog.records if getattr(r, "event", "") == "job_failed"]
    assert [(r.kind.startswith(f"dispatch-{TEAM}-"), r.error) for r in failed] == [
        (True, "TwilioRestException")]


# -- the other jobs -------------------------------------------------------------------------


def test_withdrawing_the_surplus_twice_hangs_up_each_leg_once(queued_app, twilio_api, rt,
                                                             shifts):
    caller = bridged(queued_app, twilio_api)
    run_queued(rt)
    legs = caller.legs()
    caller.status("completed")  # the caller hangs up while both phones ring

    jobs.cancel_surplus(TEAM)
    jobs.cancel_surplus(TEAM)
    run_queued(rt)  # and the queued copy

    assert sorted(h.sid for h in twilio_api.of("hang_up")) == sorted(leg.sid for leg in legs)
    assert states(shifts, "Alice", "Bilal") == [WorkerState.AVAILABLE] * 2
    assert [s.missed for s in shifts.statuses(["Alice", "Bilal"])] == [0, 0]


def test_after_a_worker_accepted_only_the_other_leg_is_withdrawn(queued_app, twilio_api, rt,
                                                                 shifts):
    caller = bridged(queued_app, twilio_api)
    run_queued(rt)
    caller.press(1, "1")  # Bilal takes the caller

    jobs.cancel_surplus(TEAM)
    jobs.cancel_surplus(TEAM)

    assert [h.sid for h in twilio_api.of("hang_up")] == [caller.leg(0).sid]
    assert rt.live.get(caller.call_id).state is LiveState.CONNECTED
    assert states(shifts, "Alice", "Bilal") == [WorkerState.AVAILABLE, WorkerState.ON_CALL]


def test_joining_the_caller_twice_redirects_once(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    run_queued(rt)
    caller.press(1, "1")
    assert twilio_api.of("redirect") == []  # queued, not yet run

    jobs.join_caller(caller.call_id)
    jobs.join_caller(caller.call_id)
    run_queued(rt)  # and the queued copy

    assert [r.sid for r in twilio_api.of("redirect")] == [caller.sid]
    assert rt.live.get(caller.call_id).state is LiveState.CONNECTED


def test_joining_a_caller_nobody_accepted_does_nothing(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    run_queued(rt)

    jobs.join_caller(caller.call_id)

    assert twilio_api.of("redirect") == []
    assert rt.live.get(caller.call_id).state is LiveState.WAITING


def test_withdrawing_the_offer_of_a_worker_who_signed_off_stops_their_phone(
        queued_app, twilio_api, rt, shifts):
    caller = bridged(queued_app, twilio_api)
    run_queued(rt)
    shifts.end("Alice")

    jobs.withdraw_offer("Alice")
    jobs.withdraw_offer("Alice")
    jobs.withdraw_offer("Bilal")  # still on shift: their phone rings on

    assert [h.sid for h in twilio_api.of("hang_up")] == [caller.leg(0).sid]


def test_jobs_for_a_call_or_team_that_is_over_or_unknown_do_nothing(queued_app, twilio_api,
                                                                    rt):
    caller = bridged(queued_app, twilio_api)
    caller.conference("conference-end")  # before any worker was offered the caller

    for team in (TEAM, "unknown"):
        jobs.dispatch(team)
        jobs.cancel_surplus(team)
    for call_id in (caller.call_id, "unknown"):
        jobs.join_caller(call_id)
    for name in ("Alice", "unknown"):
        jobs.withdraw_offer(name)
    run_queued(rt)  # the queued dispatch and cancelling too

    assert twilio_api.sent == []


def test_a_team_with_nobody_on_shift_goes_straight_to_the_no_workers_step(
        tmp_path, bridge_settings, redis, clock, twilio_api):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    teams = folder / "teams.yaml"
    text = teams.read_text(encoding="utf-8")
    for name in ("Alice", "Bilal"):
        old = f"      - name: {name}\n"
        text = text.replace(old, old + "        active: false\n")
    teams.write_text(text, encoding="utf-8")
    app = with_worker(make_app(dataclasses.replace(bridge_settings, flows_dir=str(folder)),
                               redis, clock))
    sign_on(app)  # every active worker: nobody of the Respect team
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)

    body = caller.enter()

    assert caller.call_id == ""
    redirect = ET.fromstring(body).find("Redirect")
    assert query(redirect.text)["step"] == "busy"  # on_no_workers defaults to on_no_answer
    assert app.extensions["callflow"]["runtime"].queue.job_ids == []
    assert twilio_api.sent == []


# -- purging Twilio's call logs -------------------------------------------------------------


def test_purge_deletes_each_call_record(rt, twilio_api, caplog):
    with caplog.at_level(logging.INFO, logger="callflow.jobs.tasks"):
        jobs.purge_call_records(CALL_SIDS)

    assert [(d.method, d.sid) for d in twilio_api.of("delete")] == [
        ("DELETE", sid) for sid in CALL_SIDS]
    assert twilio_api.problems == []
    assert "call records deleted" in caplog.text


def test_purge_of_a_record_twilio_no_longer_has_carries_on(rt, twilio_api):
    twilio_api.fail("delete", 404)

    jobs.purge_call_records(CALL_SIDS)

    assert len(twilio_api.of("delete")) == 3


def test_purge_that_twilio_refuses_raises_so_it_is_retried(rt, twilio_api):
    twilio_api.fail("delete", 500)

    with pytest.raises(TwilioRestException):
        jobs.purge_call_records(CALL_SIDS)


def test_purge_without_a_twilio_account_does_nothing(app, twilio_api):
    with runtime.binding(app.extensions["callflow"]["runtime"]):
        jobs.purge_call_records(CALL_SIDS)

    assert twilio_api.sent == []


@pytest.mark.parametrize("raw, on", [
    (None, True), ("", True), ("0", False), ("false", False), ("False", False), ("no", False),
    ("off", False), ("1", True), ("true", True), ("TRUE", True), (" yes ", True), ("on", True),
])
def test_purge_setting_from_the_environment(raw, on):
    env = {} if raw is None else {"CALLFLOW_PURGE_TWILIO_LOGS": raw}

    assert Settings.from_env(env).purge_twilio_logs is on


def test_every_job_name_is_a_job_function():
    """Code on the request path queues jobs by name; each name is a function here."""
    for name in Named:
        assert callable(getattr(jobs, name.value)), name
        assert name.path == f"callflow.jobs.tasks.{name.value}"


def test_a_job_run_with_no_runtime_bound_says_so():
    with pytest.raises(RuntimeError, match="no runtime bound"):
        jobs.withdraw_offer("Alice")


def test_two_apps_in_one_process_run_their_jobs_each_with_its_own_runtime(
        bridge_settings, redis, clock, twilio_api):
    """Jobs run at once see the runtime of the app that queued them, not the last one built."""
    first = make_app(bridge_settings, redis, clock, SYNC_JOBS=True)
    other = dataclasses.replace(bridge_settings, public_url="https://other.example.org")
    make_app(other, redis, clock, SYNC_JOBS=True)
    sign_on(first)

    caller = bridged(first, twilio_api)

    urls = [str(leg.data["Url"]) for leg in caller.legs()]
    assert urls and all(url.startswith("https://callflow.example.org/") for url in urls)


@pytest.mark.parametrize("raw", ["flase", "disabled", "2"])
def test_an_opt_out_must_be_said_plainly(raw):
    """A typo must not turn the purge off: only false, 0, no or off do."""
    with pytest.raises(ConfigError, match="CALLFLOW_PURGE_TWILIO_LOGS"):
        Settings.from_env({"CALLFLOW_PURGE_TWILIO_LOGS": raw})
