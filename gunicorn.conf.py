"""Gunicorn settings for the ``web`` process (see the Procfile and docs)."""

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
# Twilio gives up on a webhook after 15 seconds; answer (or fail over) well before that.
timeout = 10
graceful_timeout = 10
keepalive = 5
# The access log names the path only (%(U)s): never the query string, where a GET webhook
# would carry the caller's number, and never a body.
accesslog = "-"
access_log_format = '{"logger": "gunicorn.access", "method": "%(m)s", "path": "%(U)s", "status": %(s)s, "duration_ms": %(M)s}'  # noqa: E501
errorlog = "-"
