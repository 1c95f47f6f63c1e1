"""The time, as the service asks for it: one function, so tests and the simulator can pin it."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)
