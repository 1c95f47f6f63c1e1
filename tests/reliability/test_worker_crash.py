"""An RQ worker killed with kill -9 while a ring job waits on Twilio: what RQ really does with
the job, and that no worker's phone is ever rung twice.

A real ``callflow worker`` process (the Procfile's) works a private redis-server and sends its
REST requests to an HTTP server on 127.0.0.1 standing in for Twilio, which holds the first
request to create a call, so the kill lands mid-request: Twilio has been asked to ring Alice and
nobody knows yet whether it did.

What RQ does, found out here (RQ 3 semantics):

- kill -9 of the worker's own pid: RQ's work horse is in a process group of its own
  (``os.setpgrp`` after the fork), so it lives on, gets Twilio's answer and finishes the job.
- kill -9 of the worker with its horse (the container or machine dies): nothing at once. The
  job stays *started* in the queue's StartedJobRegistry until its heartbeat lapses (the job
  monitoring interval + 60 s = 90 s), and only a worker's maintenance pass notices that, once at
  start-up and then every 10 minutes; a replacement started at once has made its start-up pass
  before the 90 s are up. When a pass does notice, the job is *retried* (it has retries left), on
  ``REST_RETRY``'s backoff, by a worker's scheduler, whose lock the dead worker held for 61 s.
  So a job lost this way runs again some 10 minutes later, by which time the caller has long
  been taken to the no-answer step. The test sees each stage happen, then moves RQ's clock on
  (the heartbeat's and the scheduler lock's expiry) and runs the replacement's next
  maintenance pass and scheduler tick itself instead of waiting for them; the replacement
  works the retried job: Bilal, never rung, is rung; Alice, whose request reached Twilio, is
  not rung again (her leg's claim outlives the crash).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from urllib.parse import parse_qs, urlsplit

import pytest
import redis as redis_lib
from rq import Queue, Worker
from rq.job import Job, JobStatus
from rq.registry import (
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
    clean_registries,
)
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from callflow.config import Settings
from callflow.cron import TIMED_QUEUE
from callflow.jobs import REST_RETRY
from callflow.runtime import QUEUE_NAME
from callflow.store import connect
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


class Rig:
    """The private Redis, Twilio on 127.0.0.1, up to two worker processes, the app."""

    def __init__(self, redis_url: str, logs) -> None:
        self.redis_url = redis_url
        self.twilio = FakeTwilio(hang_first=True)
        self.raw = redis_lib.Redis.from_url(redis_url)
        self.queue = Queue(QUEUE_NAME, connection=self.raw, serializer=JSONSerializer)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("CALLFLOW_", "TWILIO_", "REDIS_"))}
        env.update(REDIS_URL=redis_url, TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=TOKEN,
                   TWILIO_API_URL=self.twilio.url, CALLFLOW_PUBLIC_URL=PUBLIC_URL,
                   SECRET_KEY="reliability-secret", CALLFLOW_FLOWS=str(FLOWS),
                   CALLFLOW_RELOAD_INTERVAL="0", CALLFLOW_LOG_LEVEL="INFO",
                   PYTHONFAULTHANDLER="1")
        self.workers = [WorkerProcess(env, logs / f"worker-{n}.log") for n in (1, 2)]
        settings = Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=TOKEN,
                            public_url=PUBLIC_URL, secret_key="reliability-secret",
                            redis_url=redis_url, flows_dir=str(FLOWS), reload_interval=0,
                            twilio_api_url=self.twilio.url)
        self.app = create_app({"TESTING": True, "SETTINGS": settings,
                               "STORE": connect(settings), "CLOCK": Clock(OPEN_TIME)})
        self.line = Line(self.app, TOKEN)

    def start_worker(self, index: int) -> WorkerProcess:
        """Start a worker; return once it works the queue and its start-up timed job is done.

        ``callflow worker`` runs its timed jobs in threads of the process that forks RQ's work
        horses, on the same Redis pools; a horse forked while such a thread holds a pool's lock
        hangs for good (test_the_worker_forks_no_process_while_its_own_threads_run). Waiting
        for the timed job that every worker runs at start keeps that race out of these tests."""
        count = Worker.count(queue=self.queue)
        done = self.timed_jobs_done()
        worker = self.workers[index].start()
        wait_for(lambda: Worker.count(queue=self.queue) > count, 30,
                 f"worker {index + 1} to register", detail=worker.output)
        wait_for(lambda: self.timed_jobs_done() > done, 30,
                 f"worker {index + 1}'s start-up timed job", detail=worker.output)
        return worker

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
        caller = self.caller()
        room = ET.fromstring(caller.last).find("Dial/Conference")
        assert room is not None, caller.last  # on the bridge: the worker process rings
        call_id = parse_qs(urlsplit(room.get("waitUrl")).query)["call"][0]
        return caller, Job.fetch(f"ring-{call_id}", connection=self.raw,
                                 serializer=JSONSerializer)

    def mid_request(self) -> None:
        """Until Twilio holds the request to ring the first worker (its client would give up
        after 5 s, so the kill that follows lands inside the request)."""
        if not self.twilio.first_arrived.wait(20):
            raise AssertionError("no request reached Twilio:\n" + self.stacks())

    def logs(self) -> str:
        return "\n".join(w.output() for w in self.workers)

    def state(self, job: Job) -> str:
        """Where RQ has the job, for a failure's message."""
        scheduled = ScheduledJobRegistry(queue=self.queue)
        return (f"job {job.get_status(refresh=True)}; queued {self.queue.get_job_ids()}; "
                f"scheduled {scheduled.get_job_ids(cleanup=False)}; started "
                f"{StartedJobRegistry(queue=self.queue).get_job_ids(cleanup=False)}; "
                f"scheduler lock {self.raw.get(RQScheduler.get_locking_key(QUEUE_NAME))}\n"
                + self.stacks())

    def stacks(self) -> str:
        """The logs, after each live worker's work horse has dumped its Python stacks."""
        for worker in self.workers:
            for pid in worker.children():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGABRT)
        time.sleep(1)
        return self.logs()

    def assert_no_caller_data(self, records) -> None:
        assert_clean(self.line.text(), log_text(records), self.logs(),
                     "\n".join(r.body for r in self.twilio.received),
                     redis_text(self.redis_url), job_payloads(self.redis_url))

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
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


def test_kill_9_of_the_worker_pid_leaves_its_work_horse_to_finish_the_job(rig, caplog):
    caplog.set_level(logging.INFO)
    worker = rig.start_worker(0)
    _, job = rig.bridged()
    rig.mid_request()

    worker.kill_main()
    rig.twilio.release()

    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 20,
             "the orphaned work horse to finish the job", detail=rig.stacks)
    assert job.retries_left == REST_RETRY.max
    assert rig.twilio.rung() == Counter({ALICE: 1, BILAL: 1})
    rig.assert_no_caller_data(caplog.records)


def test_a_crashed_workers_job_is_retried_by_rq_and_nobody_is_rung_twice(rig, caplog):
    caplog.set_level(logging.INFO)
    first = rig.start_worker(0)
    _, job = rig.bridged()
    rig.mid_request()

    first.kill_hard()
    rig.twilio.release()
    assert rig.twilio.rung() == Counter({ALICE: 1})

    # RQ has not noticed: the job is still "started", due to lapse in about 90 s.
    job.refresh()
    assert job.get_status() == JobStatus.STARTED
    assert job.retries_left == REST_RETRY.max
    started = StartedJobRegistry(queue=rig.queue)
    lapses_in = min(executions(rig.raw, started, job).values()) - time.time()
    assert 60 < lapses_in <= 95

    # A replacement started at once makes its start-up pass, finds nothing lapsed and leaves
    # the job alone; nor can it run RQ's scheduler, whose lock the dead worker still holds.
    lock = RQScheduler.get_locking_key(QUEUE_NAME)
    dead_scheduler = rig.raw.get(lock)
    assert dead_scheduler and 0 < rig.raw.ttl(lock) <= 61
    rig.start_worker(1)
    time.sleep(1.0)
    assert job.get_status(refresh=True) == JobStatus.STARTED
    assert rig.raw.get(lock) == dead_scheduler
    assert rig.twilio.rung() == Counter({ALICE: 1})

    # Ten minutes on, the replacement's next maintenance pass: the heartbeat has lapsed, so
    # RQ retries the job on the backoff; the dead scheduler's lock has expired, so the pass
    # takes the scheduler, which queues the retry once due. Both steps are RQ's own, run from
    # the test instead of waited for.
    rig.raw.zadd(started.key, dict.fromkeys(executions(rig.raw, started, job), time.time() - 1))
    rig.raw.delete(lock)
    with rq_loggers_kept():
        clean_registries(rig.queue)
        assert job.get_status(refresh=True) == JobStatus.SCHEDULED
        scheduler = RQScheduler([rig.queue], connection=rig.raw, serializer=JSONSerializer)
        assert scheduler.acquire_locks()
        try:
            wait_for(lambda: scheduler.enqueue_scheduled_jobs() or job.get_status(
                refresh=True) != JobStatus.SCHEDULED, REST_RETRY.intervals[0] + 5,
                "the retry to be due", interval=0.2)
        finally:
            scheduler.release_locks()
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.FINISHED, 30,
             "the abandoned job to be retried and to finish", detail=lambda: rig.state(job))

    # Retried, not failed: through the job's failure callback, then RQ's retry on the backoff.
    failed = [r for r in caplog.records if getattr(r, "event", "") == "job_failed"]
    assert [r.error for r in failed] == ["AbandonedJobError"]
    assert any(r.getMessage().startswith(f"Job {job.id}: scheduled for retry")
               for r in caplog.records)
    assert rig.twilio.rung() == Counter({ALICE: 1, BILAL: 1})
    assert all(r.one("From") == RESPECT for r in rig.twilio.ring_requests())
    rig.assert_no_caller_data(caplog.records)


@pytest.mark.xfail(strict=True, reason=(
    "for up to 7 minutes after the only worker dies, new callers are still put on the bridge, "
    "where nobody rings a worker for them and only an RQ job (give_up) could take them out: "
    "callflow/bridge.py Bridge.available() trusts rq's Worker.all(queue), which drops a dead "
    "worker only when its key expires, worker_ttl (420 s) after its last heartbeat; "
    "callflow/worker.py run_worker() could pass Worker(..., worker_ttl=30) (an idle worker "
    "then heartbeats every 15 s), or the worker could refresh a short-lived liveness key"))
def test_callers_are_not_put_on_the_bridge_a_minute_after_the_only_worker_died(rig):
    first = rig.start_worker(0)
    first.kill_hard()
    # What one minute does to the dead worker's keys.
    for key in rig.raw.scan_iter("rq:worker:*"):
        ttl = rig.raw.ttl(key)
        if ttl > 60:
            rig.raw.expire(key, ttl - 60)
        elif ttl >= 0:
            rig.raw.delete(key)

    caller = rig.caller()

    dial = ET.fromstring(caller.last).find("Dial")
    assert dial is not None and dial.find("Conference") is None, caller.last


@pytest.mark.xfail(strict=True, raises=redis_lib.TimeoutError, reason=(
    "an idle `callflow worker` cannot wait for jobs: RQ blocks in BLPOP for worker_ttl - 15 "
    "= 405 s, but callflow/runtime.py build() gives RQ raw_client(store), a copy of "
    "callflow/store.py connect()'s client with socket_timeout=1 s, so every wait ends in "
    "redis.TimeoutError after 2 s and RQ backs off (1, 2, 4 ... 60 s, logged as 'could not "
    "connect to Redis instance'); a ring job queued meanwhile waits up to a minute. RQ's "
    "connection should keep no socket timeout shorter than its BLPOP (the fast one is for "
    "the request path)"))
def test_an_idle_workers_connection_lets_rq_wait_for_a_job(private_redis):
    from rq.exceptions import DequeueTimeout

    from callflow import runtime

    rt = runtime.build(Settings(redis_url=private_redis.url, flows_dir=str(FLOWS),
                                secret_key="reliability-secret", reload_interval=0))
    started = time.monotonic()
    with pytest.raises(DequeueTimeout):  # what RQ's worker expects of an empty queue
        Queue.dequeue_any([rt.queue], timeout=3, connection=rt.queue.connection,
                          serializer=JSONSerializer)
    assert time.monotonic() - started >= 2.5


FORK_PROBE = """
import os, sys, threading
from callflow import runtime
from callflow.config import Settings
from callflow.worker import run_worker

def fork():  # the first fork RQ makes: report who else is running, then stop
    names = sorted(t.name for t in threading.enumerate() if t.name.startswith("callflow-"))
    print("FORK", ",".join(names), flush=True)
    os._exit(0)

os.fork = fork
run_worker(runtime.install(runtime.build(Settings.from_env())))
"""


@pytest.mark.xfail(strict=True, reason=(
    "`callflow worker` forks while threads of its own run: callflow/worker.py run_worker() "
    "starts start_timed_jobs()' threads (callflow-cron, callflow-timed) before "
    "Worker.work(with_scheduler=True) forks RQ's scheduler process and, per job, a work "
    "horse; a child forked while one of those threads holds a lock (the import lock, a "
    "logging handler's, a redis-py pool's) hangs for good. Seen in this suite: a scheduler "
    "process stuck in importlib's _lock_unlock_module under Job.fetch_many (scheduled "
    "retries are then never queued) and a work horse stuck in redis-py ConnectionPool.reset "
    "under LiveCalls.get (the ring job hangs until RQ's job timeout). Run the timed jobs in "
    "a process of their own, or start no thread before the worker forks"))
def test_the_worker_forks_no_process_while_its_own_threads_run(rig):
    env = dict(rig.workers[0].env)
    probe = subprocess.run([sys.executable, "-c", FORK_PROBE], env=env, capture_output=True,
                           text=True, timeout=60)
    forks = [line for line in probe.stdout.splitlines() if line.startswith("FORK")]
    assert forks, probe.stdout + probe.stderr
    assert forks[0] == "FORK ", forks[0]
