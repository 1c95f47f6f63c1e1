"""Gunicorn settings for the ``web`` process (see the Procfile and docs/deployment.md).

Every value is chosen for a service whose requests are Twilio's webhooks: small, frequent, and
worthless if answered after Twilio's fifteen-second limit.
"""

import os
import shutil
from pathlib import Path

# Behind a TLS proxy on the same machine, GUNICORN_CMD_ARGS="--bind 127.0.0.1:5000" keeps the
# plain-HTTP port off the network.
bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
# Processes: one per CPU core is plenty; a webhook spends its time waiting on Redis.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads per process (gthread when more than one): overlap those short Redis waits.
threads = int(os.environ.get("WEB_THREADS", "4"))
# A worker that stops answering its arbiter for 10 s is replaced, well inside Twilio's 15 s.
# (With threads this is not a per-request limit: Redis' 1 s timeouts and the REST client's
# 5 s bound each request, and a request that fails turns into the degraded path.)
timeout = 10
# On a restart or deploy, requests in flight get up to 10 s to finish.
graceful_timeout = 10
# Idle keep-alive connections from the proxy are closed after 5 s; a proxy that reuses upstream
# connections must drop them sooner (nginx: keepalive_timeout 4s in the upstream block).
keepalive = 5
# No preloading: each worker builds its own app, Redis pool and flow watcher after the fork.
# So SIGHUP to the master (gunicorn's reload) replaces every worker, each loading the flows
# afresh, or the last good set while the files on disk are broken (a worker that failed to
# boot would halt the master); SIGHUP to one worker reloads its flows in place.
preload_app = False

# The access log names the path only (%(U)s): never the query string, where a GET webhook
# would carry the caller's number, never a body, never the client's address.
accesslog = "-"
access_log_format = '{"logger": "gunicorn.access", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s, "pid": "%(p)s"}'  # noqa: E501
errorlog = "-"
# Gunicorn's own messages go through the service's JSON formatter, which redacts anything
# phone-like (an "Error handling request" line quotes the request URI with its query string).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "callflow.platform.logs.JsonFormatter"},
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "error": {"class": "logging.StreamHandler", "formatter": "json",
                  "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "access",
                   "stream": "ext://sys.stdout"},
    },
    "root": {"level": "INFO", "handlers": ["error"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False,
                           "qualname": "gunicorn.error"},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False,
                            "qualname": "gunicorn.access"},
    },
}


def _metrics_dir() -> Path | None:
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def on_starting(server) -> None:
    """Start each run with an empty metrics directory: counters left by a previous run's
    processes would otherwise be added to this one's (prometheus_client's multiprocess mode)."""
    directory = _metrics_dir()
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    for entry in directory.glob("*.db"):
        if entry.is_file():
            entry.unlink()
        else:
            shutil.rmtree(entry)


def child_exit(server, worker) -> None:
    """Tell prometheus_client a worker is gone, so its live gauges stop being reported."""
    if _metrics_dir() is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
