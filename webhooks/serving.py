"""Serving the app with Werkzeug for ``callflow serve``, with an access log that never holds a
query string: Twilio may be set to send webhooks as GET, the caller's number in the query."""

from __future__ import annotations

import logging
import time

from werkzeug.serving import WSGIRequestHandler, run_simple

log = logging.getLogger("callflow.access")


class PrivateAccessLog(WSGIRequestHandler):
    """Logs method, path and status only: no query, no body, no client details beyond that."""

    def handle_one_request(self) -> None:
        self._started = time.perf_counter()
        super().handle_one_request()

    def log_request(self, code="-", size="-") -> None:
        path = (getattr(self, "path", "") or "").split("?", 1)[0]
        elapsed = (time.perf_counter() - getattr(self, "_started", time.perf_counter())) * 1000
        log.info("request", extra={"method": getattr(self, "command", "-"), "path": path,
                                   "status": getattr(code, "value", code),
                                   "duration_ms": round(elapsed, 1)})

    def log_error(self, format: str, *args) -> None:  # noqa: A002 - the base's signature
        log.warning("server error", extra={"event": "http_error"})

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log.info("server message", extra={"event": "http_message"})


def serve(app, host: str, port: int) -> None:
    run_simple(host, port, app, threaded=True, request_handler=PrivateAccessLog)
