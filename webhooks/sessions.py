"""Flask's session, kept on the server (:mod:`callflow.staff.sessions`); the inactivity timeout;
"sign out everywhere".

The cookie carries only a random id; signing out deletes the record, so the id is worthless from
then on, everywhere, and signing in starts a new id. A session ends 12 hours after sign-in
however active it is, and besides:

- each session holds the time of its last *activity* (any request but the page's background
  polling, which says so with the ``X-Callflow-Poll`` header); a session idle for longer than
  ``CALLFLOW_SESSION_MINUTES`` is cleared before the request is handled;
- each account has a session *generation* in Redis, copied into the session at sign-in;
  "sign out everywhere" moves it on, and :func:`webhooks.auth.current_member` refuses a
  session of an older generation, on every device at once.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request, session
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

from callflow.platform.errors import StoreUnavailable
from callflow.records.audit import AuditKind
from callflow.staff.sessions import ABSOLUTE_LIFETIME, WebSessions, new_id

log = logging.getLogger(__name__)
# A signed-in record outlives the idle limit a little, so an idle session is still found, and
# said to have timed out, when its owner comes back; an anonymous one (a sign-in form's CSRF
# token) lasts ten minutes at most, so a flood of sign-in pages costs little memory.
IDLE_GRACE_SECONDS = 60 * 60
ANONYMOUS_SECONDS = 10 * 60
POLL_HEADER = "X-Callflow-Poll"
# Why the sign-in page was reached, shown there once.
NOTICES = {
    "expired": "You were signed out after {minutes} minutes without activity.",
    "signed_out": "You have signed out.",
    "everywhere": "You have been signed out on every device, this one included.",
    "lifetime": "You were signed out 12 hours after signing in; please sign in again.",
}


class ServerSession(CallbackDict, SessionMixin):
    """The session's values, with the id they are stored under and when it began."""

    def __init__(self, values: dict | None = None, sid: str = "", created: float = 0.0,
                 available: bool = True) -> None:
        def changed(_session) -> None:
            self.modified = True

        super().__init__(values or {}, changed)
        self.sid, self.created, self.available = sid, created, available
        self.modified = False
        self.renewed = False

    def renew(self) -> None:
        """Start over under a new id (at sign-in, so an id known before is no use after)."""
        self.renewed = True
        self.modified = True


class RedisSessionInterface(SessionInterface):
    """Flask's session, kept in the service's Redis; the cookie holds the id only."""

    def open_session(self, app: Flask, request) -> ServerSession:
        if not request.path.startswith(self.get_cookie_path(app)):
            return ServerSession()  # a webhook, the policy page: the cookie is never sent there
        sid = request.cookies.get(self.get_cookie_name(app), "")
        try:
            stored = _sessions(app).load(sid)
        except StoreUnavailable:
            log.error("the session store is unavailable", extra={"event": "unavailable"})
            return ServerSession(available=False)
        if stored is None:
            return ServerSession()
        if _now(app) - stored.created > ABSOLUTE_LIFETIME.total_seconds():
            _delete(app, sid)
            return ServerSession({"notice": "lifetime"} if "user" in stored.values else {})
        return ServerSession(stored.values, sid=sid, created=stored.created)

    def save_session(self, app: Flask, session: ServerSession, response) -> None:
        name, path = self.get_cookie_name(app), self.get_cookie_path(app)
        if not session.available:
            return
        if not session:
            if session.sid:
                _delete(app, session.sid)
            if request.cookies.get(name):
                response.delete_cookie(name, path=path, domain=self.get_cookie_domain(app))
            return
        if session.sid and not (session.modified or session.renewed):
            return
        now = _now(app)
        if session.renewed or not session.sid:
            if session.sid:
                _delete(app, session.sid)
            session.sid, session.created = new_id(), now
        remaining = ABSOLUTE_LIFETIME.total_seconds() - (now - session.created)
        idle = app.permanent_session_lifetime.total_seconds()
        kept = idle + IDLE_GRACE_SECONDS if "user" in session else min(idle, ANONYMOUS_SECONDS)
        try:
            _sessions(app).save(session.sid, dict(session), session.created,
                                ttl=int(max(1, min(remaining, kept))))
        except StoreUnavailable:
            log.error("a session could not be saved", extra={"event": "unavailable"})
            return
        response.set_cookie(name, session.sid, max_age=int(max(1, remaining)), path=path,
                            domain=self.get_cookie_domain(app),
                            secure=self.get_cookie_secure(app),
                            httponly=self.get_cookie_httponly(app),
                            samesite=self.get_cookie_samesite(app))


def _sessions(app: Flask | None = None) -> WebSessions:
    return (app or current_app).extensions["callflow"]["sessions"]


def _delete(app: Flask, sid: str) -> None:
    try:
        _sessions(app).delete(sid)
    except StoreUnavailable:
        log.error("a session could not be deleted", extra={"event": "unavailable"})


def session_generation(name: str) -> int:
    """The account's current session generation (0 until it first signs out everywhere)."""
    return _sessions().generation(name)


def sign_out_everywhere(name: str) -> int:
    """End every web session of the account, on every device; audited. The new generation."""
    generation = _sessions().end_every(name)
    runtime = current_app.extensions["callflow"]["runtime"]
    runtime.audit.append(AuditKind.STAFF_CHANGED, name, name=name, change="signed_out_everywhere")
    log.info("signed out everywhere", extra={"event": "signed_out_everywhere"})
    return generation


def _now(app: Flask | None = None) -> float:
    return (app or current_app).extensions["callflow"]["runtime"].clock().timestamp()


def _limit_seconds() -> float:
    return current_app.permanent_session_lifetime.total_seconds()


def keep(blueprint) -> None:
    """The staff pages' blueprints keep sessions: idle ones end, and activity is noted."""
    blueprint.before_request(expire_idle)
    blueprint.after_request(note_activity)


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
