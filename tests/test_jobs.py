"""The RQ jobs: queued once per id, JSON payloads of ids only, retried with backoff, and never
ringing a worker twice however often a job runs."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import warnings
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
from tests.bridge_support import Caller, dead_store
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, FLOWS, RESPECT
from webhooks import create_app
from webhooks.simulator import TwilioSim

CALL_SIDS = ["CA" + "1" * 32, "CA" + "2" * 32, "CA" + "3" * 32]


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
    worker process."""
    return with_worker(make_app(bridge_settings, redis, clock))


@pytest.fixture
def rt(queued_app):
    """The app's runtime, bound for the test, as the job runner binds it around each job."""
    with runtime.binding(queued_app.extensions["callflow"]["runtime"]) as bound:
        yield bound


def bridged(app, twilio_api) -> Caller:
    caller = Caller(TwilioSim(app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)
    caller.enter()
    assert caller.call_id
    return caller


def fetch(rt, job_id: str) -> Job:
    return Job.fetch(job_id, connection=rt.queue.connection, serializer=JSONSerializer)


def run_queued(rt) -> None:
    JobRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
              runtime=rt).work(burst=True)


# -- queueing -------------------------------------------------------------------------------


def test_enqueue_raises_no_deprecation_warning(rt):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rt.enqueue(Named.CANCEL_LEGS, "some-call", job_id="cancel-some-call")


def test_the_caller_is_put_in_the_room_before_any_worker_is_rung(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)

    assert twilio_api.sent == []
    assert rt.queue.job_ids == [f"ring-{caller.call_id}"]


def test_a_job_is_queued_once_per_id(rt, caplog):
    with caplog.at_level(logging.INFO, logger="callflow.platform.jobspec"):
        rt.enqueue(Named.GIVE_UP, "some-call", job_id="give-up-some-call")
        rt.enqueue(Named.GIVE_UP, "some-call", job_id="give-up-some-call")

    assert rt.queue.job_ids == ["give-up-some-call"]
    assert "job already queued" in caplog.text


def test_a_job_is_json_naming_a_function_and_ids(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)

    stored = rt.queue.connection.hgetall(f"rq:job:ring-{caller.call_id}")
    payload = json.loads(zlib.decompress(stored[b"data"]))
    assert payload == ["callflow.jobs.tasks.ring_team", None, [caller.call_id], {}]
    assert stored[b"failure_callback_name"] == b"callflow.platform.jobspec.log_failure"
    job = fetch(rt, f"ring-{caller.call_id}")
    assert (job.func_name, job.args, job.kwargs) == ("callflow.jobs.tasks.ring_team",
                                                     [caller.call_id], {})


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
        rt.enqueue(Named.GIVE_UP, "some-call", job_id="give-up-some-call")
    store.close()


# -- ringing: once per worker, whatever happens ---------------------------------------------


def test_running_the_ring_job_twice_rings_each_worker_once(queued_app, twilio_api, rt, redis):
    caller = bridged(queued_app, twilio_api)

    jobs.ring_team(caller.call_id)
    jobs.ring_team(caller.call_id)
    run_queued(rt)  # and the queued copy, run by a worker

    assert [str(leg.data["To"]) for leg in caller.legs()] == ["+447700900101", "+447700900102"]


def test_a_duplicated_ring_job_rings_nobody_twice(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    job = fetch(rt, f"ring-{caller.call_id}")
    rt.queue.enqueue_job(job)  # delivered twice, as after a worker crash

    assert rt.queue.job_ids == [job.id, job.id]
    run_queued(rt)

    assert len(caller.legs()) == 2


def test_ringing_the_next_leg_twice_rings_once(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    jobs.ring_team(caller.call_id)

    jobs.ring_leg(caller.call_id, 1)

    assert len(caller.legs()) == 2


@pytest.mark.parametrize("failure", [500, (503, 20503), requests.ConnectionError("down")],
                         ids=["http-500", "http-503", "connection-error"])
def test_a_failed_ring_raises_releases_its_claim_and_flags_the_api(queued_app, twilio_api,
                                                                   rt, redis, failure):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", failure, failure)

    expected = requests.ConnectionError if isinstance(failure, Exception) else (
        TwilioRestException)
    with pytest.raises(expected):
        jobs.ring_team(caller.call_id)

    assert 0 < redis.ttl(keys.rest_trouble()) <= 60
    assert rt.live.get(caller.call_id).state is LiveState.WAITING

    jobs.ring_team(caller.call_id)  # the retry, with Twilio back

    assert len(caller.legs()) == 4  # two refused, then each worker rung once
    assert rt.live.get(caller.call_id).state is LiveState.RINGING


def test_a_retry_after_one_workers_leg_failed_rings_that_worker(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", 500)  # Alice's leg fails; Bilal's is created

    with pytest.raises(TwilioRestException):
        jobs.ring_team(caller.call_id)
    jobs.ring_team(caller.call_id)  # RQ's retry

    assert [str(leg.data["To"]) for leg in caller.legs()] == [
        "+447700900101", "+447700900102", "+447700900101"]


def test_a_ring_job_failing_in_a_worker_is_logged_and_scheduled_again(queued_app, twilio_api,
                                                                      rt, caplog):
    caller = bridged(queued_app, twilio_api)
    twilio_api.fail("ring", 500, 500)

    with caplog.at_level(logging.ERROR, logger="callflow.jobs.tasks"):
        run_queued(rt)

    job = fetch(rt, f"ring-{caller.call_id}")
    assert job.get_status() == JobStatus.SCHEDULED
    assert job.retries_left == jobspec.REST_RETRY.max - 1
    assert job.id in rt.queue.scheduled_job_registry.get_job_ids()

    rt.queue.scheduled_job_registry.requeue(job)  # its backoff is over
    run_queued(rt)

    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert [str(leg.data["To"]) for leg in caller.legs()][-2:] == [
        "+447700900101", "+447700900102"]


def test_a_job_that_fails_for_good_is_logged(bridge_sim, twilio_api, caplog):
    twilio_api.fail("ring", 500, 500)

    with caplog.at_level(logging.ERROR, logger="callflow.jobs.tasks"):
        caller = Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)
        caller.enter()

    failed = [r for r in caplog.records if getattr(r, "event", "") == "job_failed"]
    assert [(r.kind, r.error) for r in failed] == [(f"ring-{caller.call_id}",
                                                    "TwilioRestException")]


# -- the other jobs -------------------------------------------------------------------------


def test_give_up_redirects_once(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    jobs.ring_team(caller.call_id)

    jobs.give_up(caller.call_id)
    jobs.give_up(caller.call_id)

    assert [r.sid for r in twilio_api.of("redirect")] == [caller.sid]
    assert len(twilio_api.of("hang_up")) == 2


def test_give_up_after_a_worker_accepted_does_nothing(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    jobs.ring_team(caller.call_id)
    caller.press(0, "1")

    jobs.give_up(caller.call_id)

    assert twilio_api.of("redirect") == []
    assert rt.live.get(caller.call_id).state is LiveState.CONNECTED


def test_jobs_for_a_call_that_is_over_or_unknown_do_nothing(queued_app, twilio_api, rt):
    caller = bridged(queued_app, twilio_api)
    caller.conference("conference-end")

    for job in (jobs.ring_team, jobs.give_up, jobs.cancel_legs):
        job(caller.call_id)
        job("unknown")
    jobs.ring_leg(caller.call_id, 1)

    assert twilio_api.sent == []


def test_a_team_with_nobody_active_goes_straight_to_the_no_answer_step(
        tmp_path, bridge_settings, redis, clock, twilio_api):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    teams = folder / "teams.yaml"
    text = teams.read_text(encoding="utf-8")
    for name in ("Alice", "Bilal"):
        old = f"      - name: {name}\n"
        text = text.replace(old, old + "        active: false\n")
    teams.write_text(text, encoding="utf-8")
    app = make_app(dataclasses.replace(bridge_settings, flows_dir=str(folder)), redis, clock)
    caller = bridged(with_worker(app), twilio_api)

    with runtime.binding(app.extensions["callflow"]["runtime"]):
        jobs.ring_team(caller.call_id)

    assert [s.kind for s in twilio_api.sent] == ["redirect"]


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
        jobs.give_up("some-call")


def test_two_apps_in_one_process_run_their_jobs_each_with_its_own_runtime(
        bridge_settings, redis, clock, twilio_api):
    """Jobs run at once see the runtime of the app that queued them, not the last one built."""
    first = make_app(bridge_settings, redis, clock, SYNC_JOBS=True)
    other = dataclasses.replace(bridge_settings, public_url="https://other.example.org")
    make_app(other, redis, clock, SYNC_JOBS=True)

    caller = bridged(first, twilio_api)

    urls = [str(leg.data["Url"]) for leg in caller.legs()]
    assert urls and all(url.startswith("https://callflow.example.org/") for url in urls)


@pytest.mark.parametrize("raw", ["flase", "disabled", "2"])
def test_an_opt_out_must_be_said_plainly(raw):
    """A typo must not turn the purge off: only false, 0, no or off do."""
    with pytest.raises(ConfigError, match="CALLFLOW_PURGE_TWILIO_LOGS"):
        Settings.from_env({"CALLFLOW_PURGE_TWILIO_LOGS": raw})
