"""Staff members' web sessions, kept on the server so that they can be ended.

A signed cookie that holds the session itself cannot be taken back: a copy saved before
sign-out would go on working wherever it was replayed. So the cookie carries only a random id,
and the session's record is here, in Redis, keyed by the id's SHA-256 (the id itself is never
stored) with a TTL: deleting the record makes the id worthless everywhere. A session ends
:data:`ABSOLUTE_LIFETIME` after it began however active it is.

Each account also has a session *generation*, copied into a session at sign-in; "sign out
everywhere" moves it on, and a session of an older generation is refused on every device.
The web app's adapter is ``webhooks.sessions``; nothing here imports Flask.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis

from callflow.platform import keys
from callflow.platform.store import store_guard

ABSOLUTE_LIFETIME = timedelta(hours=12)
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Stored:
    """A session as it was kept: its values, and when it began (a Unix time)."""

    values: dict[str, Any]
    created: float


def new_id() -> str:
    return secrets.token_urlsafe(32)


class WebSessions:
    """Session records and generations in Redis (a client made with ``decode_responses``).

    Every method raises ``StoreUnavailable`` when Redis does not answer."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    @store_guard
    def load(self, sid: str) -> Stored | None:
        """The session ``sid`` names, or None: unknown, malformed, or gone."""
        if not SESSION_ID.fullmatch(sid or ""):
            return None
        raw = self.client.get(keys.web_session(_hash(sid)))
        if raw is None:
            return None
        record = json.loads(raw)
        created = float(record.pop("_created", 0))
        return Stored(record, created)

    @store_guard
    def save(self, sid: str, values: dict[str, Any], created: float, ttl: int) -> None:
        self.client.set(keys.web_session(_hash(sid)), json.dumps({**values, "_created": created}),
                        ex=ttl)

    @store_guard
    def delete(self, sid: str) -> None:
        self.client.delete(keys.web_session(_hash(sid)))

    @store_guard
    def generation(self, name: str) -> int:
        """The account's current session generation (0 until it first signs out everywhere)."""
        value = self.client.get(keys.session_generation(name))
        return int(value) if value else 0

    @store_guard
    def end_every(self, name: str) -> int:
        """End every session of the account, on every device; the new generation."""
        return int(self.client.incr(keys.session_generation(name)))


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("ascii")).hexdigest()
