"""Everything a process needs to serve calls, built once from the settings.

The web app builds one in its factory; ``callflow worker`` builds one for the RQ jobs. Jobs
are module-level functions that take ids, so they reach the runtime of the process they run
in through :func:`current`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import redis
from redis.sentinel import SentinelConnectionPool
from rq import Queue
from rq.serializers import JSONSerializer

from callflow.audit import AuditKind, AuditLog
from callflow.config import Settings
from callflow.context import Links
from callflow.errors import AuditUnavailable, FlowSetInvalid
from callflow.lastgood import LastGoodFlows
from callflow.live import LiveCalls
from callflow.registry import FlowRegistry
from callflow.state import CallStore
from callflow.store import bytes_client, connect
from callflow.twilio_api import TwilioApi, make_client

log = logging.getLogger(__name__)
QUEUE_NAME = "callflow"


@dataclass
class Runtime:
    settings: Settings
    registry: FlowRegistry
    store: redis.Redis  # decoded strings: the service's own keys
    queue: Queue  # bytes: RQ's own connection
    twilio: TwilioApi | None  # None without an account: callers are dialled directly
    links: Links
    clock: Callable[[], datetime]
    calls: CallStore
    live: LiveCalls
    audit: AuditLog
    sync_jobs: bool = False  # jobs run at once, in this process (tests, the simulator)


def raw_client(client: redis.Redis, *, blocking: bool = False) -> redis.Redis:
    """A client on the same server that returns bytes, as RQ requires.

    ``blocking`` is for a worker process: RQ waits minutes for work on one command, so the
    fail-fast socket timeout that suits a webhook would cut every wait short."""
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        return bytes_client(client, blocking=blocking)
    kwargs = {**pool.connection_kwargs, "decode_responses": False}
    if blocking:
        kwargs["socket_timeout"] = None
    return redis.Redis(connection_pool=redis.ConnectionPool(
        connection_class=pool.connection_class, **kwargs))


def build(settings: Settings, *, store: redis.Redis | None = None,
          registry: FlowRegistry | None = None, clock: Callable[[], datetime] | None = None,
          http_client=None, sync_jobs: bool = False, worker: bool = False) -> Runtime:
    from callflow.engine import utc_now

    store = store or connect(settings)
    queue = Queue(QUEUE_NAME, connection=raw_client(store, blocking=worker),
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
    return Runtime(settings=settings, registry=registry, store=store, queue=queue,
                   twilio=twilio, links=Links(settings.public_url), clock=clock,
                   calls=CallStore(store, settings.call_ttl), live=LiveCalls(store),
                   audit=audit, sync_jobs=sync_jobs)


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


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    """Make ``runtime`` the one this process's jobs use."""
    global _current
    _current = runtime
    return runtime


def current() -> Runtime:
    if _current is None:
        from callflow.config import Settings as _Settings

        return install(build(_Settings.from_env()))
    return _current
