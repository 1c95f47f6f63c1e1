"""Running the RQ jobs: a worker process (``callflow worker``), or a thread in ``serve``.

With ``REDIS_URL`` the Procfile's worker process runs the jobs. Without it (the embedded store,
one command to try the service) a thread in the web process does, so nothing else is needed.
"""

from __future__ import annotations

import logging
import threading
import time

from rq import Queue, SimpleWorker, Worker
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty

from callflow.cron import TIMED_QUEUE, scheduler
from callflow.runtime import Runtime

log = logging.getLogger(__name__)


def run_worker(rt: Runtime, *, burst: bool = False) -> bool:
    """The RQ worker of the Procfile, with RQ's scheduler for retries with backoff, and the
    cron scheduler with its own worker thread for the timed jobs."""
    if not burst:
        start_timed_jobs(rt)
    worker = Worker([rt.queue], connection=rt.queue.connection, serializer=JSONSerializer)
    return worker.work(burst=burst, with_scheduler=True, logging_level="INFO")


def start_timed_jobs(rt: Runtime) -> None:
    """Run RQ's cron scheduler and a worker for its queue in daemon threads."""
    connection = rt.queue.connection
    timed = Queue(TIMED_QUEUE, connection=connection)
    threading.Thread(target=scheduler(connection).start, name="callflow-cron",
                     daemon=True).start()

    def work() -> None:
        worker = ThreadWorker([timed], connection=connection)
        while True:
            try:
                worker.work(burst=False, logging_level="WARNING")
            except Exception:
                log.exception("timed-job worker failed", extra={"event": "worker_error"})
                time.sleep(5)

    threading.Thread(target=work, name="callflow-timed", daemon=True).start()


class ThreadWorker(SimpleWorker):
    """An RQ worker that can run off the main thread (no signal handlers, timer timeouts)."""

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        """Signals belong to the web server that hosts this thread."""


def start_in_process(rt: Runtime, interval: float = 0.5) -> threading.Event:
    """Run queued and scheduled jobs in a daemon thread; set the returned event to stop."""
    stop = threading.Event()
    connection = rt.queue.connection
    scheduler = RQScheduler([rt.queue], connection=connection, serializer=JSONSerializer)
    worker = ThreadWorker([rt.queue], connection=connection, serializer=JSONSerializer)

    def loop() -> None:
        while not stop.wait(interval):
            try:
                if scheduler.acquire_locks():
                    scheduler.enqueue_scheduled_jobs()
                worker.work(burst=True, logging_level="WARNING")
            except Exception:  # keep the thread alive; the next turn tries again
                log.exception("in-process job runner failed", extra={"event": "worker_error"})

    threading.Thread(target=loop, name="callflow-jobs", daemon=True).start()
    start_timed_jobs(rt)
    return stop
