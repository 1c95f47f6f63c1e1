"""Fixtures of the fault-injection suite: servers a test may break, each stopped afterwards."""

from __future__ import annotations

import pytest

from tests.reliability.support import FakeTwilio, RedisServer


@pytest.fixture
def private_redis():
    """A redis-server of this test's own, which it may kill, freeze and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_twilio():
    """Twilio's REST API as an HTTP server on 127.0.0.1 that records what it is sent."""
    fake = FakeTwilio()
    try:
        yield fake
    finally:
        fake.stop()
