"""What the service counts for Prometheus, and nothing that could identify a caller.

Labels are bounded and say nothing about any one call: a URL rule (never a raw path or a query
string), a method, a status code, a helpline's flow id, an outcome, a refusal reason. Counters
are kept in the process that sees the event: the web processes count requests, outcomes on the
request path, degraded answers and monitoring decisions; ``callflow runner`` counts the
fallbacks its jobs perform.

With gunicorn's several workers each process has its own counters. When
``PROMETHEUS_MULTIPROC_DIR`` names a directory (shared by every process on the machine),
prometheus_client keeps them in files there and ``/metrics`` adds them up, so a scrape that
lands on any worker sees the whole machine. ``gunicorn.conf.py`` empties the directory at
start and tells the library when a worker exits.

Figures that live in Redis (queue depth, audit chain length) are read at scrape time, so every
web process reports the same shared figure.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from callflow.platform import keys

if TYPE_CHECKING:
    from callflow.runtime import Runtime

log = logging.getLogger(__name__)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Twilio waits 15 s for a webhook; the buckets resolve the range that matters below that.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0)
METHODS = frozenset({"GET", "POST", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # every path no route knows, so a scanner cannot mint labels


def multiprocess_dir() -> str:
    return os.environ.get(MULTIPROC_ENV, "")


if multiprocess_dir():  # the library writes there on first count; the worker may start first
    os.makedirs(multiprocess_dir(), exist_ok=True)


class Outcome(StrEnum):
    CONNECTED = "connected"  # a worker accepted the call
    ABANDONED = "abandoned"  # the caller hung up while waiting in the line
    MAX_WAIT = "max_wait"  # waited the team's max_wait: the connect step's on_max_wait step
    NO_WORKERS = "no_workers"  # nobody of the team on shift: the on_no_workers step


REQUESTS = Counter("callflow_http_requests", "HTTP requests served, by URL rule, method and "
                   "status", ["endpoint", "method", "status"])
LATENCY = Histogram("callflow_http_request_duration_seconds", "Time to answer a request, by "
                    "URL rule", ["endpoint"], buckets=LATENCY_BUCKETS)
CALLS = Counter("callflow_calls", "Calls that reached the waiting line, by helpline (flow id) "
                "and outcome", ["helpline", "outcome"])
DEGRADED = Counter("callflow_degraded_responses", "Callers answered by the degraded path (store "
                   "down, a failed webhook, an unknown number, Twilio's fallback URL)",
                   ["helpline"])
MONITORING = Counter("callflow_monitoring_requests", "Listen-in requests decided by the gate, "
                     "granted or refused, and why", ["decision", "reason"])


def never_raises(count: Callable[..., None]) -> Callable[..., None]:
    """Counting must never cost a caller their call: a failure (a full disk under the
    multiprocess directory, say) is logged and the call goes on."""

    @functools.wraps(count)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            count(*args, **kwargs)
        except Exception as exc:
            log.warning("a metric could not be counted", extra={"event": "metrics_failed",
                                                               "error": type(exc).__name__})

    return guarded


@never_raises
def observe_request(endpoint: str, method: str, status: int, seconds: float | None) -> None:
    method = method if method in METHODS else "other"
    REQUESTS.labels(endpoint=endpoint, method=method, status=str(status)).inc()
    if seconds is not None:
        LATENCY.labels(endpoint=endpoint).observe(seconds)


@never_raises
def call_outcome(helpline: str, outcome: Outcome) -> None:
    CALLS.labels(helpline=helpline or "unknown", outcome=outcome.value).inc()


@never_raises
def degraded(helpline: str) -> None:
    DEGRADED.labels(helpline=helpline or "unknown").inc()


@never_raises
def monitoring_decision(granted: bool, refusal: object) -> None:
    MONITORING.labels(decision="granted" if granted else "refused",
                      reason=str(getattr(refusal, "value", refusal) or "none")).inc()


def counts_monitoring(decide: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap the gate's ``request``: count each decision by its refusal reason.

    A decorator so the gate itself stays about the policy: every return path is counted,
    including ones added later.
    """

    @functools.wraps(decide)
    def counted(*args: Any, **kwargs: Any) -> Any:
        decision = decide(*args, **kwargs)
        monitoring_decision(decision.granted, getattr(decision, "refusal", None))
        return decision

    return counted


class SharedState(Collector):
    """Figures read from Redis at scrape time: whether it answers, queue depth, audit length."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def collect(self) -> Iterator[GaugeMetricFamily]:
        flows = GaugeMetricFamily("callflow_flows_loaded", "Helpline flows in the live set")
        flows.add_metric([], len(self.rt.registry.current.flows))
        yield flows
        up = GaugeMetricFamily("callflow_store_up", "1 when Redis answers; 0 means callers are "
                               "served by the degraded path and monitoring is off")
        try:
            audit_length = self.rt.store.llen(keys.audit_entries())
            depth = self.rt.queue.count
            failed = self.rt.queue.failed_job_registry.get_job_count(cleanup=False)
        except (redis.RedisError, OSError) as exc:
            log.warning("metrics could not read the store", extra={"error": type(exc).__name__})
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily("callflow_queue_depth", "Jobs waiting in the RQ queue",
                                  labels=["queue"])
        queue.add_metric([self.rt.queue.name], depth)
        yield queue
        failures = GaugeMetricFamily("callflow_queue_failed_jobs", "Jobs in RQ's failed "
                                     "registry (kept a week)", labels=["queue"])
        failures.add_metric([self.rt.queue.name], failed)
        yield failures
        audit = GaugeMetricFamily("callflow_audit_entries", "Entries in the audit log's hash "
                                  "chain (since the last purge)")
        audit.add_metric([], audit_length)
        yield audit


class Forward(Collector):
    """Another registry's metrics, so one scrape can be encoded as one document."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterator[Any]:
        return self.registry.collect()


def exposition(rt: Runtime, accept: str = "") -> tuple[bytes, str]:
    """This machine's metrics (every process's counters, and the shared state) in the format
    the scraper asked for, and its content type."""
    scrape = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(scrape)
    else:
        scrape.register(Forward(REGISTRY))
    scrape.register(SharedState(rt))
    encode, content_type = choose_encoder(accept)
    return encode(scrape), content_type
