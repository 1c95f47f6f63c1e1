"""Redis through Sentinel: the store, RQ's bytes client and a failover, on real servers (a
master, a replica and a sentinel the tests start on free ports)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis as redis_lib
from rq import Queue

from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError
from callflow.platform.store import TIMEOUT_SECONDS, connect, sentinel_addresses
from callflow.runtime import raw_client
from tests.conftest import free_port, start_redis_server

MASTER_NAME = "callflow-test"


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except redis_lib.RedisError:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out")


@dataclass
class Servers:
    master: int
    replica: int
    sentinel: int
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def client(self, port: int) -> redis_lib.Redis:
        return redis_lib.Redis(port=port, decode_responses=True)

    def settings(self, **changes) -> Settings:
        return Settings(redis_sentinels=f"127.0.0.1:{self.sentinel}",
                        redis_sentinel_master=MASTER_NAME, **changes)


def start_sentinel(port: int, master: int, folder: Path) -> subprocess.Popen:
    config = folder / "sentinel.conf"
    config.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                      f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master} 1\n"
                      f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                      f"sentinel failover-timeout {MASTER_NAME} 5000\n", encoding="utf-8")
    return subprocess.Popen([shutil.which("redis-server"), str(config), "--sentinel"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("sentinel")
    ports = Servers(free_port(), free_port(), free_port())
    ports.procs = {ports.master: start_redis_server(ports.master),
                   ports.replica: start_redis_server(ports.replica)}
    try:
        replica = ports.client(ports.replica)
        replica.replicaof("127.0.0.1", ports.master)
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up")
        ports.procs[ports.sentinel] = start_sentinel(ports.sentinel, ports.master, folder)
        sentinel = ports.client(ports.sentinel)
        wait_for(lambda: sentinel.sentinel_slaves(MASTER_NAME))
        yield ports
    finally:
        for proc in ports.procs.values():
            proc.kill()
            proc.wait(timeout=10)


def master_port(servers: Servers) -> int:
    return int(servers.client(servers.sentinel)
               .sentinel_get_master_addr_by_name(MASTER_NAME)[1])


def test_the_store_is_the_master_the_sentinels_name(servers):
    store = connect(servers.settings())
    store.set("callflow:test:where", "here")
    assert servers.client(master_port(servers)).get("callflow:test:where") == "here"
    assert store.get("callflow:test:where") == "here"  # decoded, as the service expects
    kwargs = store.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == TIMEOUT_SECONDS


def test_the_master_password_and_database_come_from_redis_url(servers):
    store = connect(servers.settings(redis_url="redis://ignored.invalid:1/3"))
    store.set("callflow:test:db", "3")
    assert redis_lib.Redis(port=master_port(servers), db=3, decode_responses=True) \
        .get("callflow:test:db") == "3"


def test_rq_gets_a_bytes_client_on_the_same_master(servers):
    store = connect(servers.settings())
    raw = raw_client(store)
    raw.set("callflow:test:raw", "x")
    assert raw.get("callflow:test:raw") == b"x"
    queue = Queue("callflow-sentinel-test", connection=raw)
    queue.empty()
    queue.enqueue("builtins.print", "nothing")
    assert servers.client(master_port(servers)).llen("rq:queue:callflow-sentinel-test") == 1
    queue.empty()


def test_a_failover_is_followed_without_a_restart(servers):
    store = connect(servers.settings())
    store.set("callflow:test:before", "1")
    old = master_port(servers)
    replica = servers.client(servers.replica)
    wait_for(lambda: replica.get("callflow:test:before"))
    servers.procs[old].kill()  # the master dies; the sentinel promotes the replica
    servers.procs[old].wait(timeout=10)
    new = wait_for(lambda: (port := master_port(servers)) != old and port)
    wait_for(lambda: servers.client(new).info("replication")["role"] == "master")
    # What redis-py asks before it connects: the master as the sentinel sees it, healthy.
    sentinel = servers.client(servers.sentinel)
    wait_for(lambda: (state := sentinel.sentinel_master(MASTER_NAME))["is_master"]
             and not state["is_sdown"] and not state["is_odown"])
    # The pooled connection to the dead master fails; the one retry asks the sentinel again.
    assert store.set("callflow:test:after", "1")
    assert store.get("callflow:test:before") == "1"
    assert servers.client(new).get("callflow:test:after") == "1"


def test_an_unreachable_sentinel_fails_with_a_connection_error_and_no_backoff():
    """How fast is bench/outage.py's to measure; here, that it fails, and with the settings
    that make it fast: the sentinels asked once each with short timeouts, no backoff."""
    store = connect(Settings(redis_sentinels=f"127.0.0.1:{free_port()}"))
    with pytest.raises(redis_lib.ConnectionError):
        store.ping()
    [sentinel] = store.connection_pool.sentinel_manager.sentinels
    sentinel_kwargs = sentinel.connection_pool.connection_kwargs
    assert sentinel_kwargs["socket_timeout"] == TIMEOUT_SECONDS
    assert sentinel_kwargs["socket_connect_timeout"] == TIMEOUT_SECONDS
    assert sentinel_kwargs["retry"].get_retries() == 0
    master_kwargs = store.connection_pool.connection_kwargs
    assert master_kwargs["socket_timeout"] == master_kwargs["socket_connect_timeout"] == \
        TIMEOUT_SECONDS


@pytest.mark.parametrize(("text", "expected"), [
    ("sentinel-1:26379", [("sentinel-1", 26379)]),
    (" a:1 , b:2 ,c:3", [("a", 1), ("b", 2), ("c", 3)]),
    ("[::1]:26379", [("::1", 26379)]),
])
def test_sentinel_addresses(text, expected):
    assert sentinel_addresses(text) == expected


@pytest.mark.parametrize("text", ["sentinel-1", "a:1,,b:2", ":26379", "a:port"])
def test_a_malformed_sentinel_list_names_the_entry(text):
    with pytest.raises(ConfigError, match="REDIS_SENTINELS entry"):
        sentinel_addresses(text)


def test_the_variables_are_read_from_the_environment():
    settings = Settings.from_env({"REDIS_SENTINELS": "a:1,b:2", "REDIS_SENTINEL_MASTER": "m",
                                  "REDIS_SENTINEL_PASSWORD": "pw",
                                  "CALLFLOW_METRICS_TOKEN": "t"})
    assert (settings.redis_sentinels, settings.redis_sentinel_master,
            settings.redis_sentinel_password, settings.metrics_token) == ("a:1,b:2", "m", "pw",
                                                                          "t")
    assert settings.shared_store
    assert Settings.from_env({}).redis_sentinel_master == "mymaster"
    assert not Settings.from_env({}).shared_store
