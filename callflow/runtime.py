"""Everything a process needs to serve calls, built once from the settings and passed on.

The web app builds one in its factory, and the job runner one for the RQ jobs. Jobs are
module-level functions that take ids (RQ finds them by name); the runtime they work with is
bound for the time a job runs (:func:`binding`), by the job runner around each job or by
:meth:`Runtime.enqueue` when jobs run at once. So two apps in one process never share one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, tzinfo
from zoneinfo import ZoneInfo

import redis
from redis.sentinel import SentinelConnectionPool
from rq import Queue, Retry
from rq.serializers import JSONSerializer

from callflow.language.lastgood import LastGoodFlows
from callflow.language.registry import FlowRegistry
from callflow.platform import jobspec
from callflow.platform.clock import utc_now
from callflow.platform.config import Settings
from callflow.platform.errors import AuditUnavailable, FlowSetInvalid
from callflow.platform.jobspec import QUEUE_NAME, REST_RETRY, Job
from callflow.platform.links import Links
from callflow.platform.store import bytes_client, connect
from callflow.platform.twilio_api import TwilioApi, make_client
from callflow.records.audit import AuditKind, AuditLog
from callflow.records.counts import Counts
from callflow.records.live import LiveCalls
from callflow.staff.desk import ShiftDesk
from callflow.staff.shifts import Shifts

log = logging.getLogger(__name__)
DEFAULT_ZONE = "Europe/London"


@dataclass
class Runtime:
    settings: Settings
    registry: FlowRegistry
    store: redis.Redis  # decoded strings: the service's own keys
    queue: Queue  # bytes: RQ's own connection
    twilio: TwilioApi | None  # None without an account: callers are dialled directly
    links: Links
    clock: Callable[[], datetime]
    live: LiveCalls
    audit: AuditLog
    shifts: Shifts  # the workers' live state: who is on shift, and what each is doing
    counts: Counts  # the reports' counts, buffered in this process (callflow.records.counts)
    sync_jobs: bool = False  # jobs run at once, in this process (tests, the simulator)

    def enqueue(self, job: Job, *args, job_id: str, retry: Retry = REST_RETRY) -> None:
        """Queue ``job``; run at once, with this runtime bound, when jobs are synchronous."""
        if self.sync_jobs:
            with binding(self):
                jobspec.enqueue(self.queue, job, *args, job_id=job_id, retry=retry)
        else:
            jobspec.enqueue(self.queue, job, *args, job_id=job_id, retry=retry)

    def shift_desk(self) -> ShiftDesk:
        """Signing workers on and off, on this runtime's roster, audit log and job queue."""
        return ShiftDesk(self.shifts, lambda: self.registry.current.teams, self.audit.append,
                         self.enqueue)


def raw_client(client: redis.Redis, *, blocking: bool = False) -> redis.Redis:
    """A client on the same server that returns bytes, as RQ requires.

    ``blocking`` is for a job runner: RQ waits minutes for work on one command, so the
    fail-fast socket timeout that suits a webhook would cut every wait short."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return bytes_client(client, blocking=blocking)
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    if blocking:
        kwargs["socket_timeout"] = None
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))


def build(settings: Settings, *, links: Links, store: redis.Redis | None = None,
          registry: FlowRegistry | None = None, clock: Callable[[], datetime] | None = None,
          http_client=None, sync_jobs: bool = False, runner: bool = False) -> Runtime:
    """``links`` are the web app's routes (``webhooks.routes``), which the legs' URLs name."""
    store = store or connect(settings)
    queue = Queue(QUEUE_NAME, connection=raw_client(store, blocking=runner),
                  serializer=JSONSerializer,
                  is_async=not sync_jobs)
    twilio = None
    if settings.twilio_account_sid and settings.twilio_auth_token:
        twilio = TwilioApi(make_client(settings, http_client))
    else:
        log.warning("TWILIO_ACCOUNT_SID is not set: callers are put through by direct dial, "
                    "and live calls cannot be monitored", extra={"event": "no_rest_api"})
    audit = AuditLog.from_settings(store, settings)
    clock = clock or utc_now
    registry = registry or FlowRegistry(settings.flows_dir, on_reload=audit_reloads(audit),
                                        last_good=LastGoodFlows(store, clock))
    counts = Counts(store, zone_of=helpline_zone(registry), clock=clock,
                    flush_seconds=settings.counts_flush_seconds,
                    limit=settings.counts_buffer_limit)
    return Runtime(settings=settings, registry=registry, store=store, queue=queue,
                   twilio=twilio, links=links, clock=clock,
                   live=LiveCalls(store, settings.secret_key),
                   audit=audit, shifts=Shifts(store, clock), counts=counts, sync_jobs=sync_jobs)


def helpline_zone(registry: FlowRegistry) -> Callable[[str], tzinfo]:
    """A helpline's time zone (its flow's), for the hour its counts are filed under; a flow
    no longer loaded counts in the default zone."""
    def zone_of(helpline: str) -> tzinfo:
        flow = registry.current.flows.get(helpline)
        return flow.hours.zone if flow is not None else ZoneInfo(DEFAULT_ZONE)

    return zone_of


def audit_reloads(audit: AuditLog):
    """Record each flow reload (files and their hashes) or refused edit in the audit log."""
    from pathlib import Path

    def record(flowset, refused: FlowSetInvalid | None) -> None:
        try:
            if flowset is not None:
                audit.append(AuditKind.FLOW_RELOADED, "system",
                             files={Path(p).name: h for p, h in flowset.files.items()})
            else:
                files = sorted({Path(e.where.path).name for e in refused.errors})
                audit.append(AuditKind.FLOW_RELOAD_REFUSED, "system", files=files,
                             errors=len(refused.errors))
        except AuditUnavailable:
            log.error("a flow reload could not be audited", extra={"event": "audit_down"})

    return record


_bound: ContextVar[Runtime] = ContextVar("callflow_runtime")


@contextmanager
def binding(rt: Runtime) -> Iterator[Runtime]:
    """Make ``rt`` the runtime of the jobs run inside this block (this context only)."""
    token = _bound.set(rt)
    try:
        yield rt
    finally:
        _bound.reset(token)


def bound() -> Runtime:
    """The runtime of the job running now; a job run outside :func:`binding` is a bug."""
    try:
        return _bound.get()
    except LookupError:
        raise RuntimeError("a job ran with no runtime bound: run it through a job runner "
                           "or inside runtime.binding(rt)") from None
