"""Running the RQ jobs: the job runner process (``callflow runner``), or a thread in ``serve``.

With ``REDIS_URL`` the Procfile's job runner process runs the jobs. Without it (the embedded
store, one command to try the service) a thread in the web process does, so nothing else is
needed. Every job runs with the process's runtime bound (:class:`JobRunner`).
"""

from __future__ import annotations

import logging
import threading
import time

from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job as RQJob
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from callflow.jobs.cron import TIMED_QUEUE
from callflow.jobs.cron import scheduler as cron_scheduler
from callflow.runtime import Runtime, binding

log = logging.getLogger(__name__)


# A job runner that stops heartbeating is dropped from RQ's registry after this long, so callers
# are dialled directly soon after the last runner dies (RQ's default is seven minutes).
RUNNER_TTL_SECONDS = 30
# How often a runner looks for jobs a dead runner left started (RQ's default: ten minutes).
MAINTENANCE_SECONDS = 15


class JobRunner(SimpleWorker):
    """RQ's in-process ``SimpleWorker``, with this process's runtime bound while each job runs."""

    def __init__(self, *args, runtime: Runtime, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.runtime = runtime

    def perform_job(self, job: RQJob, queue: Queue, execution: Execution) -> bool:
        with binding(self.runtime):
            try:
                return super().perform_job(job, queue, execution)
            finally:  # what the job counted is written now (never raises)
                self.runtime.counts.flush()


class ThreadRunner(JobRunner):
    """A job runner that can run off the main thread (no signal handlers, timer timeouts)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the web server that hosts this thread."""


def run_process(rt: Runtime, *, burst: bool = False) -> bool:
    """The RQ job runner of the Procfile, with RQ's scheduler (retries with backoff) and cron
    scheduler (the timed jobs) in threads of the same process.

    A ``SimpleWorker`` runs each job in this process: RQ's default worker forks a work horse
    per job, and a fork while this process's threads hold locks can hang the child."""
    if not burst:
        start_scheduled_jobs(rt)
        start_timed_jobs(rt)
    runner = JobRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                       worker_ttl=RUNNER_TTL_SECONDS, maintenance_interval=MAINTENANCE_SECONDS,
                       runtime=rt)
    try:
        return runner.work(burst=burst, logging_level="INFO")
    finally:
        rt.counts.flush()


def start_scheduled_jobs(rt: Runtime, interval: float = 1.0) -> threading.Event:
    """Move jobs whose retry time has come back onto the queue, in a daemon thread."""
    stop = threading.Event()
    rq_scheduler = RQScheduler([rt.queue], connection=rt.queue.connection,
                               serializer=JSONSerializer)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                if rq_scheduler.acquire_locks():
                    rq_scheduler.enqueue_scheduled_jobs()
            except Exception:  # keep the thread alive; the next turn tries again
                log.exception("job scheduler failed", extra={"event": "runner_error"})

    threading.Thread(target=loop, name="callflow-scheduler", daemon=True).start()
    return stop


def start_timed_jobs(rt: Runtime, stop: threading.Event | None = None,
                     interval: float = 5.0) -> None:
    """Run RQ's cron scheduler and a job runner for its queue in daemon threads.

    Given ``stop`` (``serve``'s jobs, which end with the process), the runner looks for work
    every ``interval`` seconds instead of waiting on the store, and ends once it is set.
    """
    connection = rt.queue.connection
    timed = Queue(TIMED_QUEUE, connection=connection)
    threading.Thread(target=cron_scheduler(connection).start, name="callflow-cron",
                     daemon=True).start()

    def work() -> None:
        runner = ThreadRunner([timed], connection=connection, worker_ttl=RUNNER_TTL_SECONDS,
                              runtime=rt)
        while stop is None or not stop.is_set():
            try:
                if stop is None:
                    runner.work(burst=False, logging_level="WARNING")
                else:
                    runner.work(burst=True, logging_level="WARNING")
                    stop.wait(interval)
            except Exception:
                log.exception("timed-job runner failed", extra={"event": "runner_error"})
                if stop is None:
                    time.sleep(5)
                else:
                    stop.wait(5)

    threading.Thread(target=work, name="callflow-timed", daemon=True).start()


def start_in_process(rt: Runtime, interval: float = 0.5) -> threading.Event:
    """Run queued and scheduled jobs in daemon threads; set the returned event to stop."""
    stop = start_scheduled_jobs(rt)
    runner = ThreadRunner([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer,
                          worker_ttl=RUNNER_TTL_SECONDS, runtime=rt)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                runner.work(burst=True, logging_level="WARNING")
            except Exception:  # keep the thread alive; the next turn tries again
                log.exception("in-process job runner failed", extra={"event": "runner_error"})

    threading.Thread(target=loop, name="callflow-jobs", daemon=True).start()
    start_timed_jobs(rt, stop)
    return stop
