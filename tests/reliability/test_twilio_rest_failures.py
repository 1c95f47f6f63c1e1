"""Twilio's REST API failing (500s, timeouts) while a caller waits in the team's line: the job
offering the line to the workers (DISPATCH) raises and RQ retries it with the configured
backoff, each failed offer ends (unmissed) so a retry may offer that worker again, callers who
arrive meanwhile are dialled directly (``callflow:rest-trouble``), and no worker is ever given
two legs.

The real twilio ``Client`` and its HTTP stack make the requests; ``responses`` answers them at a
base that is not Twilio's (``TWILIO_API_URL``). The jobs run in this process on the project's own
in-process RQ job runner, and RQ's scheduler moves the retries, so the retry path is RQ's own.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from rq import Worker
from rq.job import Job, JobStatus
from rq.registry import ScheduledJobRegistry
from rq.serializers import JSONSerializer

from callflow import runtime
from callflow.bridge.bridge import HOLDING
from callflow.bridge.offers import REST_TROUBLE_SECONDS
from callflow.bridge.waiting_line import WaitingLine
from callflow.jobs import tasks as jobs
from callflow.jobs.runner import ThreadRunner
from callflow.platform import keys
from callflow.platform.jobspec import REST_RETRY
from callflow.staff.shifts import Shifts, WorkerState
from tests.bridge_support import sign_on
from tests.conftest import RESPECT, TOKEN
from tests.reliability.support import (
    ACCOUNT_SID,
    Caller,
    Line,
    assert_clean,
    job_payloads,
    log_text,
    redis_text,
    rq_loggers_kept,
)
from webhooks import create_app

MOCK_API = "https://twilio-mock.test"
CALLS = re.compile(re.escape(MOCK_API) + r"/2010-04-01/Accounts/AC\w+/Calls\.json$")
# Anywhere but the mock (responses uses each of several matching routes once, so the routes
# must not overlap).
ELSEWHERE = re.compile(r"^(?!" + re.escape(MOCK_API) + r"/)")
ALICE, BILAL = "+447700900101", "+447700900102"  # the Respect Phoneline's active workers
TIMEOUT = "timeout"


@dataclasses.dataclass
class FlakyTwilio:
    """Twilio's API on ``responses``: each worker's ring attempts get the scripted outcomes in
    turn (an HTTP status with Twilio's error body, or a read timeout), then 201."""

    script: dict[str, list[int | str]]
    attempts: list[tuple[str, int | str]] = dataclasses.field(default_factory=list)
    bodies: list[str] = dataclasses.field(default_factory=list)
    strays: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.turns: dict[str, int] = defaultdict(int)

    def create_call(self, request):
        body = request.body.decode() if isinstance(request.body, bytes) else request.body or ""
        self.bodies.append(body)
        to = parse_qs(body)["To"][0]
        script = self.script.get(to, [])
        outcome = script[self.turns[to]] if self.turns[to] < len(script) else 201
        self.turns[to] += 1
        self.attempts.append((to, outcome))
        if outcome == TIMEOUT:
            return requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")
        if outcome != 201:
            return outcome, {"Content-Type": "application/json"}, (
                f'{{"code": 20500, "message": "Internal Server Error", "status": {outcome}}}')
        return 201, {"Content-Type": "application/json"}, (
            f'{{"sid": "CA{len(self.attempts):032x}", "status": "queued", "to": "{to}"}}')

    def stray(self, request):
        self.strays.append(f"{request.method} {request.url}")
        return requests.exceptions.ConnectionError("only Twilio's mock answers here")

    def created(self) -> Counter:
        """Legs Twilio created, by worker number."""
        return Counter(to for to, outcome in self.attempts if outcome == 201)


@pytest.fixture
def flaky_twilio():
    flaky = FlakyTwilio({ALICE: [500, TIMEOUT]})
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, CALLS, callback=flaky.create_call)
        for method in (responses.GET, responses.POST, responses.DELETE):
            mock.add_callback(method, ELSEWHERE, callback=flaky.stray)
        yield flaky


@pytest.fixture
def bridged_app(settings, redis, clock):
    """The app with a Twilio account at the mock base, its workers on shift; jobs are queued,
    not run inline."""
    bridged = dataclasses.replace(settings, twilio_account_sid=ACCOUNT_SID,
                                  twilio_api_url=MOCK_API)
    app = create_app({"TESTING": True, "SETTINGS": bridged, "STORE": redis, "CLOCK": clock})
    sign_on(app)  # Alice and Bilal are on shift: callers wait in their team's line
    return app


def run_jobs(rt) -> None:
    """What the job runner does, in this process: RQ's scheduler moves the retries that
    are due into the queue, then the queue is worked until it is empty."""
    worker = ThreadRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                          runtime=rt)
    with rq_loggers_kept():
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")


def run_and_check_backoff(rt, job: Job, interval: int) -> None:
    """Run the jobs; the failed ``job`` must come back ``interval`` seconds after it failed
    (RQ's schedule keeps whole seconds, hence the second either side)."""
    before = datetime.now(UTC)
    run_jobs(rt)
    after = datetime.now(UTC)
    job.refresh()
    assert job.get_status() == JobStatus.SCHEDULED
    due = ScheduledJobRegistry(queue=rt.queue).get_scheduled_time(job)
    assert before + timedelta(seconds=interval - 1) <= due
    assert due <= after + timedelta(seconds=interval + 1)


def bring_forward(rt, job: Job) -> None:
    """Skip the rest of the backoff's wait: the scheduled retry becomes due now."""
    ScheduledJobRegistry(queue=rt.queue).schedule(job, datetime.now(UTC) - timedelta(seconds=1))


def failures(caplog) -> list[str]:
    """The exception of each failed run of a job, as its failure callback logged it."""
    return [r.error for r in caplog.records if getattr(r, "event", "") == "job_failed"]


def said(body: str) -> list[str]:
    return [e.text or "" for e in ET.fromstring(body).iter("Say")]


BUSY = "Sorry, all our helpline workers are busy"


def put_through(line: Line, to: str = RESPECT) -> Caller:
    caller = Caller(line, to)
    caller.ring()
    caller.send(caller.action())
    caller.send(caller.action(), Digits="1")
    return caller


def waiting_line(caller: Caller) -> ET.Element:
    """The caller's <Enqueue> in the team's waiting line (its hold URL and its action)."""
    enqueue = ET.fromstring(caller.last).find("Enqueue")
    assert enqueue is not None, caller.last
    return enqueue


def call_of(enqueue: ET.Element) -> str:
    return parse_qs(urlsplit(enqueue.get("waitUrl")).query)["call"][0]


def dispatch_job(rt) -> Job:
    """The one job queued so far to offer the Respect Phoneline's team its waiting line."""
    ids = [(key.decode() if isinstance(key, bytes) else key).removeprefix("rq:job:")
           for key in rt.queue.connection.scan_iter("rq:job:dispatch-respect-workers-*")]
    assert len(ids) == 1, ids
    return Job.fetch(ids[0], connection=rt.queue.connection, serializer=JSONSerializer)


def leg_sid(attempt: int) -> str:
    """The sid the mock gave the leg its ``attempt``-th request (from 1) created."""
    return f"CA{attempt:032x}"


def test_dispatch_job_is_retried_with_backoff_and_new_callers_are_dialled_directly(
        bridged_app, flaky_twilio, redis, redis_url, caplog):
    caplog.set_level(logging.INFO)
    rt = bridged_app.extensions["callflow"]["runtime"]
    shifts, line_of = Shifts(rt.store, rt.clock), WaitingLine(rt.store)
    # A worker process is running (so callers are bridged); its jobs run below, in this process.
    standby = Worker([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer)
    standby.register_birth()
    line = Line(bridged_app, TOKEN)

    waiting = put_through(line)
    call_id = call_of(waiting_line(waiting))
    job = dispatch_job(rt)
    assert job.args == ["respect-workers"]  # the team's line, never a caller
    assert (job.retries_left, job.retry_intervals) == (REST_RETRY.max, REST_RETRY.intervals)
    assert job.retry_intervals == [1, 4, 10]

    # 1st attempt: Alice's leg gets a 500, Bilal's is created.
    run_and_check_backoff(rt, job, REST_RETRY.intervals[0])
    assert flaky_twilio.attempts == [(ALICE, 500), (BILAL, 201)]
    assert job.retries_left == 2
    assert failures(caplog) == ["TwilioRestException"]  # the job raised
    # Alice's offer ended, not missed: she is free, so a retry may offer her again.
    alice = shifts.status("Alice")
    assert (alice.state, alice.missed, alice.offer) == (WorkerState.AVAILABLE, 0, "")
    # Bilal's leg exists: he stays offered, so nobody may offer him again.
    assert shifts.status("Bilal").state is WorkerState.OFFERED
    assert line_of.leg_of("Bilal") == leg_sid(2)
    assert line_of.position("respect-workers", call_id) == 1  # the caller still waits
    assert 0 < redis.ttl(keys.rest_trouble()) <= REST_TROUBLE_SECONDS

    # Meanwhile a new caller is dialled directly, as the flow's connect step does without the
    # bridge: the helpline's number shown, nothing recorded, every leg screened. No REST call.
    before = len(flaky_twilio.attempts)
    direct = put_through(line)
    dial = ET.fromstring(direct.last).find("Dial")
    assert dial is not None and dial.find("Conference") is None, direct.last
    assert ET.fromstring(direct.last).find("Enqueue") is None
    assert dial.get("callerId") == RESPECT
    assert dial.get("record") == "do-not-record"
    assert [n.text for n in dial.findall("Number")] == [ALICE, BILAL]
    assert all("/voice/screen" in n.get("url", "") for n in dial.findall("Number"))
    assert len(flaky_twilio.attempts) == before
    assert line_of.waiting("respect-workers") == 1  # the direct caller is not in the line

    # 2nd attempt (the backoff's first second skipped): Alice's request times out.
    bring_forward(rt, job)
    run_and_check_backoff(rt, job, REST_RETRY.intervals[1])
    assert flaky_twilio.attempts[before:] == [(ALICE, TIMEOUT)]
    assert job.retries_left == 1
    assert failures(caplog) == ["TwilioRestException", "ReadTimeout"]
    # Twilio may have made that leg (its answer was lost): Alice's offer stands, so her phone
    # is not rung twice, until the offer runs out.
    assert shifts.status("Alice").state is WorkerState.OFFERED

    # 3rd attempt: nobody is asked for again, Alice's offer still standing.
    bring_forward(rt, job)
    run_jobs(rt)
    job.refresh()
    assert flaky_twilio.attempts[before + 1:] == []
    assert job.get_status() == JobStatus.FINISHED
    # Her offer runs out (its ring time and a grace; moved on here), and the next dispatch,
    # which the caller's next hold turn queues, rings her.
    rt.store.hset(keys.worker("Alice"), "until", 0)
    with runtime.binding(rt):
        jobs.dispatch("respect-workers")
    assert flaky_twilio.attempts[before + 1:] == [(ALICE, 201)]
    assert flaky_twilio.created() == Counter({ALICE: 1, BILAL: 1})
    assert [s.state for s in shifts.statuses(["Alice", "Bilal"])] == [WorkerState.OFFERED] * 2
    assert (line_of.leg_of("Alice"), line_of.leg_of("Bilal")) == (leg_sid(4), leg_sid(2))
    assert flaky_twilio.strays == []

    standby.register_death()
    assert_clean(line.text(), log_text(caplog.records), "\n".join(flaky_twilio.bodies),
                 redis_text(redis_url), job_payloads(redis_url))


def test_a_dispatch_job_that_keeps_failing_ends_in_rqs_failed_registry_after_its_retries(
        bridged_app, redis, clock, caplog):
    """Twilio down for good: four attempts (one and three retries), then the job is failed and
    logged; a worker is never rung by a request Twilio refused, nor left offered by one."""
    caplog.set_level(logging.INFO)
    flaky = FlakyTwilio({ALICE: [503] * 4, BILAL: [503] * 4})
    rt = bridged_app.extensions["callflow"]["runtime"]
    shifts = Shifts(rt.store, rt.clock)
    standby = Worker([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer)
    standby.register_birth()
    line = Line(bridged_app, TOKEN)
    team = rt.registry.current.teams["respect-workers"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_callback(responses.POST, CALLS, callback=flaky.create_call)
        mock.add_callback(responses.POST, ELSEWHERE, callback=flaky.stray)
        waiting = put_through(line)
        enqueue = waiting_line(waiting)
        call_id = call_of(enqueue)
        job = dispatch_job(rt)
        for _ in range(REST_RETRY.max + 1):
            if job.get_status() == JobStatus.SCHEDULED:
                bring_forward(rt, job)
            run_jobs(rt)
            job.refresh()

        assert job.get_status() == JobStatus.FAILED
        assert job.retries_left == 0
        # Each failed offer ended unmissed: both workers are free to be offered the line
        # again, neither counted as having missed a caller (nor paused for it).
        for status in shifts.statuses(["Alice", "Bilal"]):
            assert (status.state, status.missed, status.offer) == (WorkerState.AVAILABLE, 0, "")

        # The caller in the line is not dropped: their hold turns keep them waiting, hearing
        # the holding message, until the team's max_wait has passed; then the hold turn itself
        # says to leave the line (no REST request, which could fail too), and the line's
        # action takes them to the connect step's no-answer step.
        held = waiting.send(enqueue.get("waitUrl"))
        assert held.status_code == 200
        assert HOLDING in said(held.get_data(as_text=True))
        assert WaitingLine(rt.store).position("respect-workers", call_id) == 1
        clock.now += timedelta(seconds=team.max_wait)
        sent = len(flaky.attempts)
        hold = waiting.send(enqueue.get("waitUrl"))
        assert [v.tag for v in ET.fromstring(hold.get_data(as_text=True))] == ["Leave"]
        gone = waiting.send(enqueue.get("action"), QueueResult="leave",
                            QueueTime=str(team.max_wait))
        heard = said(gone.get_data(as_text=True))
        assert heard and heard[0].startswith(BUSY), heard
        assert len(flaky.attempts) == sent
        assert WaitingLine(rt.store).position("respect-workers", call_id) is None

    assert flaky.created() == Counter()
    assert flaky.strays == []
    assert Counter(to for to, _ in flaky.attempts) == Counter({ALICE: 4, BILAL: 4})
    assert any(getattr(r, "event", "") == "job_failed" for r in caplog.records)
    standby.register_death()
    assert_clean(line.text(), log_text(caplog.records), "\n".join(flaky.bodies))
