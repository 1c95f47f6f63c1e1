"""``callflow runner`` killed with kill -9 while a job offering the team's waiting line to its
workers (DISPATCH) waits on Twilio: what RQ really does
with the job, that no worker's phone is ever rung twice, and when new callers are dialled
directly instead of being put on the bridge.

A real ``callflow runner`` process (the Procfile's) works a private redis-server and sends its
REST requests to an HTTP server on 127.0.0.1 standing in for Twilio, which holds the first
request to create a call, so the kill lands mid-request: Twilio has been asked to ring Alice and
nobody knows yet whether it did.

The worker is an RQ ``SimpleWorker``: the dispatch job runs in the worker's own process (no work
horse is forked), and RQ's scheduler, the cron scheduler and the timed-jobs worker are threads
of that process, so kill -9 of its pid ends the job with it and leaves nothing behind. What RQ
(3.0) then does, found out here:

- Nothing at once. The job stays *started* in the queue's StartedJobRegistry, and the dead
  worker stays in ``Worker.all``: both were given ``job.timeout + 60`` = 90 s when the job
  started (``SimpleWorker.get_heartbeat_ttl``; callflow's jobs time out after 30 s), and
  nothing refreshes them during a SimpleWorker's job. ``Bridge.available()`` does not trust
  the listing: it wants a heartbeat younger than 35 s, so new callers are dialled directly
  within 35 s of the death.
- A replacement started at once makes its start-up maintenance pass, finds nothing lapsed and
  leaves the job alone; its scheduler thread cannot take RQ's scheduler lock, which the dead
  worker's holds for up to 61 s. Its passes come every ``MAINTENANCE_SECONDS`` (15 s); the
  first after the entry lapses runs the job's failure callback with ``AbandonedJobError`` and
  *retries* the job (it has retries left) on ``REST_RETRY``'s backoff; the replacement's
  scheduler thread queues it once due and the replacement runs it: Bilal, never rung, should
  be rung once his unrung offer has run out; Alice, whose request reached Twilio, is not rung
  again (her offer outlives the crash).
  So the retry comes within about 90-105 s of the kill.

The tests do not wait that long. Each checks that what would expire by itself will (the
registry entry's score, the dead worker's key and scheduler lock, with their TTLs asserted),
expires it (RQ's clock moved on), and runs the replacement's next maintenance pass itself,
``clean_registries()`` of a worker built as ``run_process`` builds it, instead of waiting for
the replacement's own; everything after that (the scheduler thread queueing the retry, the
replacement running it, Twilio's requests) is the real replacement process's work.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as redis_lib
from rq import Queue, SimpleWorker, Worker
from rq.job import Job, JobStatus
from rq.registry import FinishedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.utils import utcformat, utcparse

from callflow.jobs.cron import TIMED_QUEUE
from callflow.jobs.runner import MAINTENANCE_SECONDS, RUNNER_TTL_SECONDS
from callflow.platform import keys
from callflow.platform.config import Settings
from callflow.platform.jobspec import JOB_TIMEOUT_SECONDS, QUEUE_NAME, REST_RETRY
from callflow.platform.store import connect
from callflow.staff.shifts import Shifts, WorkerStatus
from tests.audit_keys import SIGNING_PEM
from tests.bridge_support import sign_on
from tests.conftest import FLOWS, OPEN_TIME, PUBLIC_URL, RESPECT, TOKEN, Clock
from tests.reliability.support import (
    ACCOUNT_SID,
    Caller,
    FakeTwilio,
    Line,
    WorkerProcess,
    assert_clean,
    job_payloads,
    log_text,
    redis_text,
    rq_loggers_kept,
    wait_for,
)
from webhooks import create_app

ALICE, BILAL = "+447700900101", "+447700900102"  # the Respect Phoneline's active workers
SCHEDULER_LOCK = RQScheduler.get_locking_key(QUEUE_NAME)
# What RQ's log says when a worker's connection cannot wait for work (see the idle test below).
CANNOT_WAIT = ("could not connect to Redis instance", "Redis connection timeout")


class Rig:
    """The private Redis, Twilio on 127.0.0.1, the job runners a test starts, the app."""

    def __init__(self, redis_url: str, logs) -> None:
        self.redis_url = redis_url
        self.logs_dir = logs
        self.twilio = FakeTwilio(hang_first=True)
        self.raw = redis_lib.Redis.from_url(redis_url)
        self.queue = Queue(QUEUE_NAME, connection=self.raw, serializer=JSONSerializer)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CALLFLOW_", "TWILIO_", "REDIS_"))}
        env.update(REDIS_URL=redis_url, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=TOKEN,
                   TWILIO_API_URL=self.twilio.url, CALLFLOW_PUBLIC_URL=PUBLIC_URL,
                   SECRET_KEY="reliability-secret", CALLFLOW_FLOWS=str(FLOWS),
                   CALLFLOW_AUDIT_SIGNING_KEY=SIGNING_PEM,
                   CALLFLOW_AUDIT_WITNESS=str(logs / "audit-witness.jsonl"),
                   CALLFLOW_RELOAD_INTERVAL="0", CALLFLOW_LOG_LEVEL="INFO",
                   PYTHONFAULTHANDLER="1")
        self.env = env
        self.workers: list[WorkerProcess] = []  # every process started, stopped by stop()
        settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN,
                            public_url=PUBLIC_URL, secret_key="reliability-secret",
                            redis_url=redis_url, flows_dir=str(FLOWS), reload_interval=0,
                            twilio_api_url=self.twilio.url, audit_signing_key=SIGNING_PEM,
                            audit_witness=env["CALLFLOW_AUDIT_WITNESS"])
        self.app = create_app({"TESTING": True, "SETTINGS": settings,
                               "STORE": connect(settings), "CLOCK": Clock(OPEN_TIME)})
        sign_on(self.app)  # Alice and Bilal are on shift: callers wait in their team's line
        self.line = Line(self.app, TOKEN)

    def start_worker(self, command: list[str] | None = None) -> WorkerProcess:
        """Start ``callflow runner`` (or ``command``); return once it works the queue and the
        timed job that every worker's cron scheduler queues at start is done, so its threads
        (RQ's scheduler, the cron scheduler, the timed-jobs worker) are running."""
        done = self.timed_jobs_done()
        worker = WorkerProcess(self.env, self.logs_dir / f"worker-{len(self.workers) + 1}.log",
                               command)
        self.workers.append(worker)
        worker.start()
        wait_for(lambda: self.rq_worker(worker) is not None, 30,
                 f"worker {len(self.workers)} to register", detail=worker.output)
        wait_for(lambda: self.timed_jobs_done() > done, 30,
                 f"worker {len(self.workers)}'s start-up timed job", detail=worker.output)
        return worker

    def rq_worker(self, process: WorkerProcess) -> Worker | None:
        """The RQ job runner of the callflow queue that ``process`` runs, as ``Worker.all`` (what
        ``Bridge.available()`` asks) lists it."""
        return next((w for w in Worker.all(queue=self.queue) if w.pid == process.pid), None)

    def timed_jobs_done(self) -> int:
        return FinishedJobRegistry(TIMED_QUEUE, connection=self.raw).get_job_count()

    def caller(self) -> Caller:
        """A caller who hears the notice and presses 1."""
        caller = Caller(self.line, RESPECT)
        caller.ring()
        caller.send(caller.action())
        caller.send(caller.action(), Digits="1")
        return caller

    def bridged(self) -> tuple[Caller, Job]:
        """A caller put in the team's waiting line, and the job that offers the line to the
        team's free workers (the job runner rings them)."""
        dispatches = set(self.dispatch_jobs())
        caller = self.caller()
        line = ET.fromstring(caller.last).find("Enqueue")
        assert line is not None, caller.last  # in the waiting line
        assert parse_qs(urlsplit(line.get("waitUrl")).query)["call"][0]
        new = [job_id for job_id in self.dispatch_jobs() if job_id not in dispatches]
        assert len(new) == 1, new
        return caller, Job.fetch(new[0], connection=self.raw, serializer=JSONSerializer)

    def worker(self, name: str) -> WorkerStatus:
        rt = self.app.extensions["callflow"]["runtime"]
        return Shifts(rt.store, rt.clock).status(name)

    def dispatch_jobs(self) -> list[str]:
        """The ids of every job queued to offer the Respect Phoneline's team its line."""
        return [key.decode().removeprefix("rq:job:")
                for key in self.raw.scan_iter("rq:job:dispatch-respect-workers-*")]

    def mid_request(self) -> None:
        """Until Twilio holds the request to ring the first worker (its client would give up
        after 5 s, so the kill that follows lands inside the request)."""
        if not self.twilio.first_arrived.wait(20):
            raise AssertionError("no request reached Twilio:\n" + self.stacks())

    def maintenance_pass(self) -> None:
        """The maintenance pass a replacement worker makes every ``MAINTENANCE_SECONDS``: RQ's
        own ``clean_registries()``, of a worker built as callflow/jobs/runner.py ``run_process``
        builds it (not registered: it works nothing), run here instead of waited for."""
        with rq_loggers_kept():
            SimpleWorker([self.queue], connection=self.raw, serializer=JSONSerializer,
                         worker_ttl=RUNNER_TTL_SECONDS,
                         maintenance_interval=MAINTENANCE_SECONDS).clean_registries()

    def logs(self) -> str:
        return "\n".join(w.output() for w in self.workers)

    def where(self, job: Job) -> str:
        """Where RQ has the job."""
        scheduled = ScheduledJobRegistry(queue=self.queue)
        return (f"job {job.get_status(refresh=True)}; queued {self.queue.get_job_ids()}; "
                f"scheduled {scheduled.get_job_ids(cleanup=False)}; started "
                f"{StartedJobRegistry(queue=self.queue).get_job_ids(cleanup=False)}; "
                f"scheduler lock {self.raw.get(SCHEDULER_LOCK)}")

    def state(self, job: Job) -> str:
        """Where RQ has the job, and the workers' stacks, for a failure's message."""
        return self.where(job) + "\n" + self.stacks()

    def stacks(self) -> str:
        """The logs, after each live worker has dumped its threads' Python stacks (SIGABRT
        with PYTHONFAULTHANDLER: the worker dies of it; only a failing test asks)."""
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGABRT)
        time.sleep(1)
        return self.logs()

    def assert_no_caller_data(self, records) -> None:
        assert_clean(self.line.text(), log_text(records), self.logs(),
                     "\n".join(r.body for r in self.twilio.received),
                     redis_text(self.redis_url), job_payloads(self.redis_url))

    def stop(self) -> None:
        try:
            for worker in self.workers:
                worker.stop()
        finally:
            self.twilio.stop()
            self.raw.close()


@pytest.fixture
def rig(private_redis, tmp_path):
    rig = Rig(private_redis.url, tmp_path)
    try:
        yield rig
    finally:
        rig.stop()


def executions(raw: redis_lib.Redis, registry: StartedJobRegistry, job: Job) -> dict:
    """The job's entries in the registry (``job_id:execution_id``) and when each lapses."""
    entries = {entry: score for entry, score in raw.zrange(registry.key, 0, -1, withscores=True)
               if entry.decode().startswith(f"{job.id}:")}
    assert entries, "the job is not in the started registry"
    return entries


@dataclass
class Crash:
    """The only worker, killed with kill -9 while Twilio held its request to ring Alice."""

    worker: WorkerProcess
    worker_key: str  # its RQ key (rq:worker:<name>): listed by Worker.all while it exists
    job: Job  # the dispatch job it was running


def kill_mid_ring(rig: Rig) -> Crash:
    worker = rig.start_worker()
    listed = rig.rq_worker(worker)
    assert listed is not None
    # As in a worker that has run a while, its scheduler thread holds RQ's scheduler lock.
    wait_for(lambda: rig.raw.exists(SCHEDULER_LOCK), 10, "the worker's scheduler thread",
             detail=worker.output)
    _, job = rig.bridged()
    rig.mid_request()

    # The dispatch job runs in the worker's own process: no work horse, no process below it.
    job.refresh()
    assert job.get_status() == JobStatus.STARTED
    assert job.worker_name == listed.name
    assert worker.children() == []

    worker.kill_main()
    rig.twilio.release()
    assert not worker.alive() and worker.known == set()  # nothing left running, orphaned or not
    return Crash(worker, listed.key, job)


@pytest.fixture
def only_worker_killed(rig, request) -> Crash | None:
    """The only worker killed with kill -9, mid-ring (the Crash) or idle (None; parametrize
    indirectly with "idle"). A fixture, so that an xfail test below cannot pass a broken setup
    off as the bug it marks: an error here is an error, not an expected failure."""
    if getattr(request, "param", "mid-ring") == "idle":
        worker = rig.start_worker()
        worker.kill_main()
        assert not worker.alive() and worker.known == set()
        return None
    return kill_mid_ring(rig)


def test_a_killed_workers_job_is_retried_by_a_replacement_and_nobody_is_rung_twice(rig, caplog):
    """kill -9 of ``callflow runner`` mid-ring, a replacement started at once: RQ retries the
    job (once the dead worker's registry entry lapses, 240 s after the job started, at the
    replacement's next maintenance pass, up to 75 s later), the replacement runs the retry,
    and nobody is rung twice. The wait for the lapse and for the pass is skipped: the test
    asserts the entry, the dead worker's key and its scheduler lock would expire by themselves,
    expires them, and runs the replacement's maintenance pass (``clean_registries()``) itself;
    the rest is the replacement process's own work."""
    caplog.set_level(logging.INFO)
    crash = kill_mid_ring(rig)
    job = crash.job
    assert rig.twilio.rung() == Counter({ALICE: 1})

    # RQ has not noticed: the job is still "started", its entry and the dead worker's key due
    # to lapse job.timeout + 60 s after the job started (SimpleWorker.get_heartbeat_ttl).
    job.refresh()
    assert job.get_status() == JobStatus.STARTED
    assert job.retries_left == REST_RETRY.max
    lifetime = job.timeout + 60
    assert lifetime == JOB_TIMEOUT_SECONDS + 60  # callflow's jobs set a short timeout
    started = StartedJobRegistry(queue=rig.queue)
    lapses_in = min(executions(rig.raw, started, job).values()) - time.time()
    assert lifetime - 15 < lapses_in <= lifetime
    assert 0 < rig.raw.ttl(crash.worker_key) <= lifetime
    assert crash.worker_key in [w.key for w in Worker.all(queue=rig.queue)]
    dead_scheduler = rig.raw.get(SCHEDULER_LOCK)
    assert dead_scheduler and 0 < rig.raw.ttl(SCHEDULER_LOCK) <= 61

    # A replacement started at once makes its start-up pass, finds nothing lapsed and leaves
    # the job alone; nor can its scheduler thread take RQ's scheduler lock from the dead one.
    replacement = rig.start_worker()
    time.sleep(1.5)  # a tick or two of the replacement's scheduler thread
    assert job.get_status(refresh=True) == JobStatus.STARTED
    assert rig.raw.get(SCHEDULER_LOCK) == dead_scheduler
    assert rig.twilio.rung() == Counter({ALICE: 1})

    # Four minutes on: the entry has lapsed, and the dead worker's key and scheduler lock have
    # expired. The replacement's next maintenance pass retries the job on the backoff.
    rig.raw.zadd(started.key, dict.fromkeys(executions(rig.raw, started, job), time.time() - 1),
                 xx=True)
    rig.raw.delete(crash.worker_key, SCHEDULER_LOCK)
    # Bilal was marked offered by the killed job but never rung: his offer lasts its ring time
    # and a grace (less than the lapse), then ends by itself, so the retry may offer him again.
    bilal = keys.worker("Bilal")
    assert rig.raw.hget(bilal, "state") == b"offered" and not rig.raw.hget(bilal, "leg")
    assert float(rig.raw.hget(bilal, "until")) - time.time() < lifetime
    rig.raw.hset(bilal, "until", time.time() - 1)
    rig.maintenance_pass()
    assert job.get_status(refresh=True) != JobStatus.FAILED

    # The replacement's scheduler thread queues the retry once due; the replacement runs it.
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED,
             REST_RETRY.intervals[0] + 20, "the abandoned job to be retried and to finish",
             interval=0.2, detail=lambda: rig.state(job))
    job.refresh()
    assert job.retries_left == REST_RETRY.max - 1  # retried once, never failed
    assert job.worker_name == rig.rq_worker(replacement).name

    # Retried, not failed: through the job's failure callback, then RQ's retry on the backoff.
    failed = [r for r in caplog.records if getattr(r, "event", "") == "job_failed"]
    assert [r.error for r in failed] == ["AbandonedJobError"]
    assert any(r.getMessage().startswith(f"Job {job.id}: scheduled for retry")
               for r in caplog.records)

    # No worker is rung twice: Alice, whose request reached Twilio, is not rung again.
    assert rig.twilio.rung()[ALICE] == 1
    assert set(rig.twilio.rung()) <= {ALICE, BILAL}
    assert all(r.one("From") == RESPECT for r in rig.twilio.ring_requests())
    assert [w.pid for w in Worker.all(queue=rig.queue)] == [replacement.pid]
    assert replacement.children() == []
    assert not any(text in rig.logs() for text in CANNOT_WAIT), rig.logs()
    rig.assert_no_caller_data(caplog.records)
    # And Bilal, never rung, is rung: the caller still waiting is offered to him.
    assert rig.twilio.rung() == Counter({ALICE: 1, BILAL: 1}), rig.worker("Bilal")


def test_new_callers_are_dialled_directly_once_the_killed_worker_has_left_rq(rig):
    """With the only worker dead, a new caller is dialled directly (no bridge, no REST request)
    as soon as RQ has dropped the dead worker from ``Worker.all``; that is when its key expires,
    asserted here to be at most job.timeout + 60 s away and then expired by the test."""
    crash = kill_mid_ring(rig)
    assert crash.worker_key in [w.key for w in Worker.all(queue=rig.queue)]
    assert 0 < rig.raw.ttl(crash.worker_key) <= crash.job.timeout + 60
    rig.raw.delete(crash.worker_key)  # its TTL has run out
    assert Worker.all(queue=rig.queue) == []
    rung = rig.twilio.rung()

    caller = rig.caller()

    dial = ET.fromstring(caller.last).find("Dial")
    assert dial is not None and dial.find("Conference") is None, caller.last
    assert dial.get("callerId") == RESPECT
    assert [n.text for n in dial.findall("Number")] == [ALICE, BILAL]
    assert all("/voice/screen" in n.get("url", "") for n in dial.findall("Number"))
    assert rig.twilio.rung() == rung == Counter({ALICE: 1})


def test_a_killed_workers_job_is_retried_within_90_seconds(rig, only_worker_killed):
    crash = only_worker_killed
    started = StartedJobRegistry(queue=rig.queue)
    # 90 s on: the entry (job timeout + 60 s) has lapsed and a maintenance pass (every 15 s)
    # has come since.
    rig.raw.zadd(started.key, {entry: score - 90 for entry, score
                               in executions(rig.raw, started, crash.job).items()}, xx=True)

    rig.maintenance_pass()

    assert crash.job.get_status(refresh=True) == JobStatus.SCHEDULED, rig.where(crash.job)


@pytest.mark.parametrize("only_worker_killed", ["idle", "mid-ring"], indirect=True)
def test_callers_are_dialled_directly_35_seconds_after_the_only_worker_died(
        rig, only_worker_killed):
    # What 35 seconds do to the dead worker: its keys' TTLs run down, and its last heartbeat
    # (Bridge.available() wants one younger than LIVE_RUNNER_SECONDS) grows old.
    for key in rig.raw.scan_iter("rq:worker:*"):
        ttl = rig.raw.ttl(key)
        if ttl > 35:
            rig.raw.expire(key, ttl - 35)
        elif ttl >= 0:
            rig.raw.delete(key)
        if rig.raw.type(key) == b"hash" and rig.raw.hexists(key, "last_heartbeat"):
            beat = utcparse(rig.raw.hget(key, "last_heartbeat").decode())
            rig.raw.hset(key, "last_heartbeat", utcformat(beat - timedelta(seconds=35)))

    caller = rig.caller()

    dial = ET.fromstring(caller.last).find("Dial")
    assert dial is not None and dial.find("Conference") is None, caller.last


def test_an_idle_workers_connection_lets_rq_wait_for_a_job(private_redis):
    """RQ's connection as ``callflow runner`` builds it (``build(..., runner=True)``) keeps no
    socket timeout shorter than RQ's wait for a job; a webhook's fail-fast one would end every
    wait in redis.TimeoutError (see also the idle check of the fork probe below, which runs
    the real command)."""
    from rq.exceptions import DequeueTimeout

    from callflow import runtime
    from callflow.platform.links import Links
    from webhooks import routes

    rt = runtime.build(Settings(redis_url=private_redis.url, flows_dir=str(FLOWS),
                                secret_key="reliability-secret", reload_interval=0,
                                audit_signing_key=SIGNING_PEM,
                                audit_witness=os.environ["CALLFLOW_AUDIT_WITNESS"]),
                       links=Links("", routes()), runner=True)
    started = time.monotonic()
    with pytest.raises(DequeueTimeout):  # what RQ's worker expects of an empty queue
        Queue.dequeue_any([rt.queue], timeout=3, connection=rt.queue.connection,
                          serializer=JSONSerializer)
    assert time.monotonic() - started >= 2.5


# ``callflow runner`` itself, with os.fork reporting and ending the process instead of forking,
# and any fork made some other way reported (os.register_at_fork). ``callflow_threads`` is a job
# the test queues (``__main__.callflow_threads``): which of the worker's threads run beside it.
FORK_PROBE = """
import os, sys, threading

def fork(*args, **kwargs):
    print("FORK by os.fork", flush=True)
    os._exit(3)

os.fork = fork
os.register_at_fork(before=lambda: print("FORK", flush=True))

def callflow_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("callflow-"))

sys.argv = ["callflow", "worker"]
from webhooks.cli import main
main()
"""


def test_the_worker_forks_no_process_while_its_own_threads_run(rig):
    """A fork while the worker's own threads hold a lock (the import lock, a logging
    handler's, a redis-py pool's) can hang the child for good: the worker runs its jobs, RQ's
    scheduler and the timed jobs in its own process, and never forks."""
    probe = rig.start_worker([sys.executable, "-c", FORK_PROBE])
    job = rig.queue.enqueue("__main__.callflow_threads")

    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 30,
             "the worker to run a job", detail=probe.output)

    assert set(job.return_value(refresh=True)) >= {"callflow-scheduler", "callflow-cron",
                                                   "callflow-timed"}
    assert probe.children() == []
    # Idle for longer than a webhook's socket timeout (2 x 1 s) would let RQ wait for work.
    time.sleep(3)
    assert probe.alive(), probe.output()
    assert "FORK" not in probe.output()
    assert not any(text in probe.output() for text in CANNOT_WAIT), probe.output()
