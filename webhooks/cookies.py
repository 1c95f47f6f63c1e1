"""Flask's signed-cookie sessions, at no cost to a request that carries no cookie.

Every Twilio webhook is such a request: Flask would still build a signing serializer on each
to read nothing. A request with the session cookie is read exactly as Flask reads it."""

from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessions(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            return self.session_class()
        return super().open_session(app, request)
