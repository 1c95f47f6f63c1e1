"""Local mode: the service on one machine, on the embedded store (no ``REDIS_URL``).

Without ``SECRET_KEY``, ``callflow serve`` in local mode signs manager sessions and the audit
log's head with a key it keeps beside the embedded store. Every command that reads or writes
that store (``audit``, ``exception``, ``manager``, ``simulate``) takes its settings from
:func:`settings`, so it opens the same store with the same key, and what local mode wrote
verifies. With ``REDIS_URL`` (or Sentinel) nothing here applies: the deployment's own
``SECRET_KEY`` is the only key.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path

from callflow.platform.config import Settings

SECRET_FILE = "secret-key"


def is_local(settings: Settings) -> bool:
    """Whether the state lives in the embedded store: one process, one machine."""
    return not settings.shared_store


def secret_path(settings: Settings) -> Path:
    return Path(settings.embedded_db).parent / SECRET_FILE


def secret(settings: Settings) -> str:
    """The local key, made on first use (readable by its owner only) and kept from then on,
    so the embedded store's signed audit log verifies across runs and commands."""
    path = secret_path(settings)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a file of its own, then linked into place: a command starting at
        # the same moment finds either no key or all of it, and only one key ever wins.
        draft = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(8)}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(descriptor, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text(encoding="utf-8").strip()


def with_local_key(settings: Settings) -> Settings:
    """``settings``, with the local key as ``SECRET_KEY`` in local mode when none is set."""
    if settings.secret_key or not is_local(settings):
        return settings
    return replace(settings, secret_key=secret(settings))


def settings(env: dict[str, str] | None = None) -> Settings:
    """The settings every command that opens the store uses: the environment's, with the
    local key in local mode (the same key ``callflow serve`` signs with)."""
    return with_local_key(Settings.from_env(env))
