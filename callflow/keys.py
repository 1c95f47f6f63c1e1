"""Every Redis key the service uses is built here, and only here."""

from __future__ import annotations

PREFIX = "callflow"


def call(call_sid: str) -> str:
    """A call's state while it runs through its flow (a hash, with a TTL)."""
    return f"{PREFIX}:call:{call_sid}"
