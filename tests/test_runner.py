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
from callflow.records.live import LiveState
from tests.bridge_support import Caller
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, RESPECT
from webhooks import create_app
from webhooks.simulator import TwilioSim

runner_cli = importlib.import_module("webhooks.cli")


@pytest.fixture
def queued_app(bridge_settings, redis, clock, twilio_api):
    """The bridged app leaving its jobs on the queue, with a worker registered to run them."""
    app = create_app({"TESTING": True, "SETTINGS": bridge_settings, "STORE": redis,
                      "CLOCK": clock})
    queue = app.extensions["callflow"]["runtime"].queue
    SimpleWorker([queue], connection=queue.connection,
                 serializer=JSONSerializer).register_birth()
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


def test_a_simple_worker_runs_the_queued_jobs_on_the_json_serializer(rt, caller, twilio_api):
    worker = JobRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                       runtime=rt)

    assert worker.work(burst=True)

    assert [str(leg.data["To"]) for leg in caller.legs()] == ["+447700900101", "+447700900102"]
    assert rt.live.get(caller.call_id).state is LiveState.RINGING
    assert rt.queue.fetch_job(f"ring-{caller.call_id}").get_status() == JobStatus.FINISHED

    caller.press(1, "1")  # queues the cancelling of Alice's leg
    assert twilio_api.of("hang_up") == []
    worker.work(burst=True)

    assert [h.sid for h in twilio_api.of("hang_up")] == [caller.leg(0).sid]
    assert twilio_api.problems == [] and twilio_api.strays == []


def test_the_procfile_worker_runs_a_job_in_a_work_horse(rt, caller):
    """``callflow runner``'s RQ job runner forks a work horse per job; what it did is in Redis."""
    assert run_process(rt, burst=True) is True

    ringing = rt.live.get(caller.call_id)
    assert ringing.state is LiveState.RINGING
    assert sorted(ringing.legs) == [0, 1]
    assert rt.queue.fetch_job(f"ring-{caller.call_id}").get_status() == JobStatus.FINISHED


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
