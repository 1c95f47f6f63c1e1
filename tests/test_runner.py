"""Running the jobs: the Procfile's worker process, a plain RQ job runner on the JSON serializer,
and the in-process runner of the embedded mode."""

from __future__ import annotations

import importlib
import signal
import threading
import time

import pytest
from click.testing import CliRunner
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker

from callflow.jobs import runner as worker_module
from callflow.jobs.runner import JobRunner, ThreadRunner, run_process, start_in_process
from callflow.platform import keys
from callflow.records.live import LiveState
from callflow.staff.shifts import Shifts, WorkerState
from tests.bridge_support import Caller, sign_on
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, RESPECT
from webhooks import create_app
from webhooks.simulator import TwilioSim

runner_cli = importlib.import_module("webhooks.cli")


@pytest.fixture
def queued_app(bridge_settings, redis, clock, twilio_api):
    """The bridged app leaving its jobs on the queue, with a worker registered to run them
    and every active worker on shift."""
    app = create_app({"TESTING": True, "SETTINGS": bridge_settings, "STORE": redis,
                      "CLOCK": clock})
    queue = app.extensions["callflow"]["runtime"].queue
    SimpleWorker([queue], connection=queue.connection,
                 serializer=JSONSerializer).register_birth()
    sign_on(app)
    return app


@pytest.fixture
def rt(queued_app):
    return queued_app.extensions["callflow"]["runtime"]


@pytest.fixture
def caller(queued_app, twilio_api) -> Caller:
    caller = Caller(TwilioSim(queued_app, extra_fields=CANARY_FIELDS), twilio_api, to=RESPECT,
                    number=CANARY_NUMBER)
    caller.enter()
    assert caller.call_id and twilio_api.sent == []  # queued, not yet run
    return caller


def dispatch_job(rt, caller: Caller):
    """The dispatch job the caller's arrival queued (its id is new each time)."""
    ids = [*rt.queue.job_ids, *rt.queue.finished_job_registry.get_job_ids(),
           *rt.queue.failed_job_registry.get_job_ids()]
    (found,) = {j for j in ids if j.startswith("dispatch-respect-workers-")}
    return rt.queue.fetch_job(found)


def test_a_simple_worker_runs_the_queued_jobs_on_the_json_serializer(rt, caller, twilio_api):
    worker = JobRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                       runtime=rt)

    assert worker.work(burst=True)

    assert [str(leg.data["To"]) for leg in caller.legs()] == ["+447700900101", "+447700900102"]
    assert rt.live.get(caller.call_id).state is LiveState.WAITING
    assert dispatch_job(rt, caller).get_status() == JobStatus.FINISHED

    caller.press(1, "1")  # queues moving the caller and the cancelling of Alice's leg
    assert twilio_api.of("hang_up") == [] and twilio_api.of("redirect") == []
    worker.work(burst=True)

    assert [h.sid for h in twilio_api.of("hang_up")] == [caller.leg(0).sid]
    assert [r.sid for r in twilio_api.of("redirect")] == [caller.sid]
    assert twilio_api.problems == [] and twilio_api.strays == []


def test_the_procfile_worker_runs_a_job_in_a_work_horse(rt, caller):
    """``callflow runner``'s RQ job runner forks a work horse per job; what it did is in Redis."""
    assert run_process(rt, burst=True) is True

    shifts = Shifts(rt.store, rt.clock)
    assert [shifts.status(n).state for n in ("Alice", "Bilal")] == [WorkerState.OFFERED] * 2
    assert all(rt.store.hget(keys.worker(n), "leg") for n in ("Alice", "Bilal"))  # leg sids
    assert rt.live.get(caller.call_id).state is LiveState.WAITING
    assert dispatch_job(rt, caller).get_status() == JobStatus.FINISHED


def test_the_in_process_runner_runs_queued_jobs_until_stopped(rt, caller, twilio_api,
                                                              monkeypatch):
    monkeypatch.setattr(worker_module, "start_timed_jobs", lambda rt, stop=None: None)
    stop = start_in_process(rt, interval=0.02)
    (runner,) = [t for t in threading.enumerate() if t.name == "callflow-jobs"]
    try:
        deadline = time.monotonic() + 5
        while len(caller.legs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        runner.join(timeout=5)

    assert len(caller.legs()) == 2
    assert not runner.is_alive()


def test_a_thread_worker_leaves_the_signal_handlers_alone(rt):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)

    ThreadRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                 runtime=rt)._install_signal_handlers()

    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_worker_command_needs_redis_url(monkeypatch):
    monkeypatch.setattr(runner_cli.logs, "configure", lambda *args, **kwargs: None)

    result = CliRunner().invoke(runner_cli.runner, ["--burst"], env={"REDIS_URL": ""})

    assert result.exit_code != 0
    assert "set REDIS_URL" in result.output


def test_the_commands_first_name_still_runs_it_but_is_not_offered(runner):
    """Deployments whose Procfile still says `callflow worker` keep working."""
    from callflow.cli import cli

    help_text = runner.invoke(cli, ["--help"]).output
    assert "runner" in help_text and "  worker" not in help_text
    result = runner.invoke(cli, ["worker", "--burst"], env={"REDIS_URL": ""})
    assert result.exit_code != 0 and "REDIS_URL" in result.output
