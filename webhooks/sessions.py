"""Web sessions beyond the signed cookie: the inactivity timeout and "sign out everywhere".

The cookie alone cannot do either. Flask re-issues it on every request, and the live-calls
page polls every few seconds, so a tab left open would never time out; and a cookie cannot be
taken back from a device once issued. So:

- each session holds the time of its last *activity* (any request but the page's background
  polling, which says so with the ``X-Callflow-Poll`` header); a session idle for longer than
  ``CALLFLOW_SESSION_MINUTES`` is cleared before the request is handled;
- each account has a session *generation* in Redis, copied into the session at sign-in;
  "sign out everywhere" moves it on, and :func:`webhooks.auth.current_member` refuses a
  session of an older generation, on every device at once.
"""

from __future__ import annotations

import logging

import redis
from flask import Flask, current_app, request, session

from callflow import keys
from callflow.audit import AuditKind

log = logging.getLogger(__name__)
POLL_HEADER = "X-Callflow-Poll"
# Why the sign-in page was reached, shown there once.
NOTICES = {
    "expired": "You were signed out after {minutes} minutes without activity.",
    "signed_out": "You have signed out.",
    "everywhere": "You have been signed out on every device, this one included.",
}


def _store(app: Flask | None = None) -> redis.Redis:
    return (app or current_app).extensions["callflow"]["store"]


def session_generation(name: str) -> int:
    """The account's current session generation (0 until it first signs out everywhere)."""
    value = _store().get(keys.session_generation(name))
    return int(value) if value else 0


def sign_out_everywhere(name: str) -> int:
    """End every web session of the account, on every device; audited. The new generation."""
    generation = int(_store().incr(keys.session_generation(name)))
    runtime = current_app.extensions["callflow"]["runtime"]
    runtime.audit.append(AuditKind.STAFF_CHANGED, name, name=name, change="signed_out_everywhere")
    log.info("signed out everywhere", extra={"event": "signed_out_everywhere"})
    return generation


def _now() -> float:
    return current_app.extensions["callflow"]["runtime"].clock().timestamp()


def _limit_seconds() -> float:
    return current_app.permanent_session_lifetime.total_seconds()


def expire_idle() -> None:
    """``before_request``: clear a signed-in session that has been idle too long."""
    if "user" not in session:
        return
    seen = session.get("seen")
    if isinstance(seen, int | float) and _now() - seen > _limit_seconds():
        session.clear()
        leave_notice("expired")


def note_activity(response):
    """``after_request``: a request the person made (not background polling) is activity."""
    if "user" in session and (request.headers.get(POLL_HEADER) != "1" or "seen" not in session):
        session["seen"] = _now()
    return response


def leave_notice(kind: str) -> None:
    """Say on the next sign-in page why the person is there."""
    session["notice"] = kind


def take_notice() -> str | None:
    """The notice left for the sign-in page, in words, once."""
    kind = session.pop("notice", None)
    if kind not in NOTICES:
        return None
    minutes = round(_limit_seconds() / 60)
    return NOTICES[kind].format(minutes=minutes)
