"""Fixtures after the app factory: a real Redis, the app, a client, and a signing Twilio."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis as redis_lib
from click.testing import CliRunner

from callflow.platform.config import Settings
from webhooks import create_app
from webhooks.simulator import TwilioSim

ROOT = Path(__file__).resolve().parent.parent
FLOWS = ROOT / "flows"
TOKEN = "test-auth-token-0123456789abcdef"
PUBLIC_URL = "https://callflow.example.org"
RESPECT = "+441632960001"
MENS_ADVICE = "+441632960002"
# A Wednesday at noon in London: both helplines open.
OPEN_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CLOSED_TIME = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)

# The canary caller: fictional number and details sent on every simulated request; none of it
# may ever appear in a response, a log line or the store.
CANARY_NUMBER = "+447700900666"
CANARY_FIELDS = {
    "CallerName": "CANARYNAME",
    "ForwardedFrom": "+447700900667",
    "FromCity": "CANARYTOWN",
    "FromState": "CANARYSHIRE",
    "FromZip": "CN1 1AA",
    "FromCountry": "GB",
    "CallerCity": "CANARYTOWN",
    "CallerState": "CANARYSHIRE",
    "CallerZip": "CN1 1AA",
    "CallerCountry": "GB",
    "StirVerstat": "TN-Validation-Passed-A",
}
CANARY_STRINGS = ("447700900666", "447700900667", "CANARYNAME", "CANARYTOWN", "CANARYSHIRE",
                  "CN1 1AA")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# What some tests need beyond the [test] extra, by the fixture that needs it: a test whose
# fixtures need something missing is skipped when it is collected, with the reason, rather
# than failing somewhere inside a fixture or a mock.
NO_REDIS_SERVER = ("redis-server is not installed (apt-get install redis-server), and REDIS_URL "
                   "does not name a Redis to use instead")
NO_CHROMIUM = ("Chromium and chromedriver are not installed (apt-get install chromium "
               "chromium-driver)")


def missing_for(fixtures: list[str]) -> list[str]:
    """Why the tests using ``fixtures`` cannot run here (nothing when they can)."""
    from tests.browser.support import chromium_present

    reasons = []
    has_server = shutil.which("redis-server") is not None
    own_server = {"private_redis", "servers"}  # these start redis-servers of their own
    if not has_server and (own_server & set(fixtures)
                           or ("redis_url" in fixtures and not os.environ.get("REDIS_URL"))):
        reasons.append(NO_REDIS_SERVER)
    if "browser" in fixtures and not chromium_present():
        reasons.append(NO_CHROMIUM)
    return reasons


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        for reason in missing_for(getattr(item, "fixturenames", [])):
            item.add_marker(pytest.mark.skip(reason=reason))


def start_redis_server(port: int) -> subprocess.Popen:
    """A private, non-persistent redis-server on ``port``, ready when this returns."""
    binary = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    client = redis_lib.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc
        except redis_lib.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


@pytest.fixture(scope="session")
def redis_url():
    """The Redis the tests use: ``REDIS_URL`` (CI starts one) or a private server."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    port = free_port()
    proc = start_redis_server(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis(redis_url):
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


class Clock:
    """A settable clock for opening-hours tests."""

    def __init__(self, now: datetime = OPEN_TIME) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def flows_dir() -> Path:
    return FLOWS


@pytest.fixture(autouse=True)
def audit_environment(tmp_path, monkeypatch) -> Path:
    """Every test signs the audit log with the tests' key and keeps its own witness file,
    the command line (which reads the environment) and the app alike."""
    from tests.audit_keys import SIGNING_PEM

    witness = tmp_path / "audit-witness.jsonl"
    monkeypatch.setenv("CALLFLOW_AUDIT_SIGNING_KEY", SIGNING_PEM)
    monkeypatch.setenv("CALLFLOW_AUDIT_WITNESS", str(witness))
    return witness


@pytest.fixture
def settings(redis_url, flows_dir, audit_environment) -> Settings:
    from tests.audit_keys import SIGNING_PEM

    return Settings(twilio_auth_token=TOKEN, public_url=PUBLIC_URL, secret_key="test-secret",
                    redis_url=redis_url, flows_dir=str(flows_dir), reload_interval=0,
                    audit_signing_key=SIGNING_PEM, audit_witness=str(audit_environment))


@pytest.fixture
def app(settings, redis, clock):
    return create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def twilio(app) -> TwilioSim:
    """Twilio, as the app sees it: signed requests carrying the canary caller's details."""
    return TwilioSim(app, extra_fields=CANARY_FIELDS)


def store_dump(client: redis_lib.Redis) -> str:
    """Every key and value in the store, as one string to search."""
    parts = []
    for key in client.scan_iter():
        parts.append(key)
        kind = client.type(key)
        if kind == "string":
            parts.append(str(client.get(key)))
        elif kind == "hash":
            parts.append(str(client.hgetall(key)))
        elif kind == "list":
            parts.append(str(client.lrange(key, 0, -1)))
        elif kind == "set":
            parts.append(str(client.smembers(key)))
        elif kind == "zset":
            parts.append(str(client.zrange(key, 0, -1, withscores=True)))
        elif kind == "stream":
            parts.append(str(client.xrange(key)))
    return "\n".join(parts)


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for canary in CANARY_STRINGS:
            assert canary not in text, f"caller data {canary!r} leaked"


# -- the conference bridge: a REST account, Twilio's API on `responses`, jobs run at once ------


@pytest.fixture
def bridge_settings(settings) -> Settings:
    """Settings with a Twilio account, so callers are bridged, and the API at a mock base."""
    import dataclasses

    from tests.bridge_support import ACCOUNT_SID, MOCK_API

    return dataclasses.replace(settings, twilio_account_sid=ACCOUNT_SID, twilio_api_url=MOCK_API)


@pytest.fixture
def twilio_api():
    """Twilio's REST API, mocked with `responses` at the mock base (``TwilioMock``)."""
    from tests.bridge_support import TwilioMock

    with TwilioMock() as mock:
        yield mock


@pytest.fixture
def bridge_app(bridge_settings, redis, clock, twilio_api):
    """The app with the bridge on, every active worker on shift; RQ jobs run inside the
    request that queues them."""
    from tests.bridge_support import sign_on

    app = create_app({"TESTING": True, "SETTINGS": bridge_settings, "STORE": redis,
                      "CLOCK": clock, "SYNC_JOBS": True})
    sign_on(app)
    return app


@pytest.fixture
def bridge_sim(bridge_app, twilio_api) -> TwilioSim:
    """Twilio for the bridged app: signed webhooks with the canary, REST answered by the mock."""
    return TwilioSim(bridge_app, extra_fields=CANARY_FIELDS, rest=twilio_api)


@pytest.fixture(autouse=True)
def rq_loggers_restored():
    """A job runner started by a test gives RQ's loggers handlers of their own and stops them
    propagating; every test leaves them as it found them, so a later test's caplog sees RQ."""
    from tests.reliability.support import rq_loggers_kept

    with rq_loggers_kept():
        yield
