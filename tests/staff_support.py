"""Helpers for the staff and sign-in tests: cheap argon2, an audit callable that keeps what it
is given (and can be made to fail), and an account to sign in with."""

from __future__ import annotations

from argon2 import PasswordHasher

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "a different long passphrase"
PIN = "482915"
PHONE = "+447700900123"
HERE = "203.0.113.5"
CALL_SID = "CA" + "0123456789abcdef" * 2


def cheap_hasher() -> PasswordHasher:
    """Argon2id with the smallest parameters, so the suite stays fast; production uses defaults."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


class AuditRecorder:
    """Stands in for the audit log: keeps what it is given, can be made to fail."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict]] = []
        self.fail_on: set[str] = set()

    def __call__(self, kind: str, actor: str, **data) -> None:
        if kind in self.fail_on:
            raise RuntimeError("audit log unavailable")
        self.entries.append((kind, actor, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.entries]

    def of(self, kind: str) -> list[tuple[str, dict]]:
        return [(actor, data) for k, actor, data in self.entries if k == kind]

    def text(self) -> str:
        return repr(self.entries)


def store_state(client) -> dict:
    """Every key and its value as Python values: compared before and after, it says whether
    anything changed (whatever order Redis lists keys or fields in)."""
    found = {}
    for key in client.scan_iter():
        kind = client.type(key)
        if kind == "string":
            found[key] = client.get(key)
        elif kind == "hash":
            found[key] = client.hgetall(key)
        elif kind == "set":
            found[key] = client.smembers(key)
        elif kind == "list":
            found[key] = client.lrange(key, 0, -1)
        elif kind == "zset":
            found[key] = client.zrange(key, 0, -1, withscores=True)
    return found
