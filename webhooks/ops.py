"""Readiness and metrics for whoever runs the service; no sign-in, never caller data.

``/healthz`` (in ``health``) says the process is alive. ``/readyz`` says whether it can serve
calls fully: 503 means "degraded" (Redis unreachable, so callers get the notice and a direct
dial and monitoring is off; or the flow files on disk are broken, so the last good flows are
served), not "down". Point a load balancer's health check at ``/healthz``,
and alerting at ``/readyz``: taking every node out of the pool when Redis fails would turn a
degraded service into no service at all.

``/metrics`` is Prometheus text, served only to a request bearing ``CALLFLOW_METRICS_TOKEN``
(unset: 404, as if it did not exist). Every request the app serves is counted here by its URL
rule, never by its raw path.
"""

from __future__ import annotations

import hmac
import logging
import time

import redis
from flask import Blueprint, Response, abort, current_app, g, jsonify, request

from callflow.platform import metrics
from callflow.platform.errors import CallflowError

log = logging.getLogger(__name__)
bp = Blueprint("ops", __name__)


def callflow() -> dict:
    return current_app.extensions["callflow"]


@bp.before_app_request
def start_timer() -> None:
    g.ops_started = time.perf_counter()


@bp.after_app_request
def count_request(response: Response) -> Response:
    started = g.pop("ops_started", None)
    rule = request.url_rule.rule if request.url_rule is not None else metrics.UNMATCHED
    metrics.observe_request(rule, request.method, response.status_code,
                            time.perf_counter() - started if started is not None else None)
    return response


@bp.get("/readyz")
def readyz():
    registry = callflow()["registry"]
    broken = registry.broken_files
    checks = {"flows": "last good" if broken else "ok" if registry.current.flows
              else "none loaded"}
    try:
        callflow()["store"].ping()
        checks["store"] = "ok"
    except (redis.RedisError, OSError, CallflowError):
        checks["store"] = "unreachable"
    if all(value == "ok" for value in checks.values()):
        return jsonify(status="ready", checks=checks)
    return jsonify(status="degraded", checks=checks, detail=_degraded(checks, broken),
                   broken=broken), 503


def _degraded(checks: dict[str, str], broken: list[str]) -> str:
    """What degraded means, in words. Broken files are named, never their errors: a flow's
    mistakes quote its contents (a worker's number, say), and this page needs no sign-in."""
    details = []
    if checks["store"] != "ok":
        details.append("Redis is unreachable: callers are served by the degraded path (the "
                       "notice, then a direct dial) and monitoring is off")
    if broken:
        details.append(f"serving the last good flows: {', '.join(broken)} "
                       f"{'is' if len(broken) == 1 else 'are'} broken (`callflow validate` "
                       "names each mistake; a good edit is loaded by itself)")
    elif checks["flows"] != "ok":
        details.append("no flows are loaded")
    return "; ".join(details)


def authorised() -> bool:
    token = callflow()["settings"].metrics_token
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(),
                                                               token.encode())


@bp.get("/metrics")
def prometheus():
    if not authorised():
        return Response("a bearer token is required\n", status=401,
                        headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                        mimetype="text/plain")
    body, content_type = metrics.exposition(callflow()["runtime"],
                                            request.headers.get("Accept", ""))
    return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})
