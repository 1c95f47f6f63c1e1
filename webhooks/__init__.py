"""The Flask application: Twilio's voice webhooks, the manager's dashboard and API, health,
metrics and the public policy page."""

from __future__ import annotations

import atexit
import logging
import weakref
from datetime import timedelta
from typing import Any

from flask import Flask, Response, current_app, request
from twilio.request_validator import RequestValidator
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from callflow import runtime
from callflow.bridge.staff_line import StaffLineCalls
from callflow.call.engine import CallEngine
from callflow.language.registry import reload_on_sighup
from callflow.monitoring.manager_line import ManagerLineCalls
from callflow.platform import logs
from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError
from callflow.platform.links import Links
from callflow.staff.accounts import StaffStore
from callflow.staff.sessions import WebSessions
from callflow.staff.sign_in import WebSignIn
from webhooks import body_size, sessions

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 64 * 1024  # the dashboard and API; Twilio's webhooks: webhooks.body_size


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app. ``config`` may hold Flask settings plus ``SETTINGS`` (a Settings),
    ``CLOCK`` (a function returning an aware datetime), ``STORE`` (a Redis client),
    ``TWILIO_HTTP_CLIENT`` (for the REST client) and ``SYNC_JOBS`` (run jobs at once)."""
    config = dict(config or {})
    settings: Settings = config.pop("SETTINGS", None) or Settings.from_env()
    app = Flask(__name__)
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, SECRET_KEY=settings.secret_key,
                      SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      SESSION_COOKIE_SECURE=settings.public_url.startswith("https://"),
                      SESSION_COOKIE_NAME="callflow_session", SESSION_COOKIE_PATH="/manager",
                      PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes))
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies,
                                x_proto=settings.trusted_proxies)
    app.session_interface = sessions.RedisSessionInterface()
    app.config.update(config)
    if not app.testing:
        _require(settings, allow_missing_token=config.pop("ALLOW_MISSING_TOKEN", False))
        logs.configure(settings.log_level)

    register_blueprints(app)
    rt = runtime.build(
        settings, links=Links(settings.public_url, routes(app)), store=config.get("STORE"),
        clock=config.get("CLOCK"), http_client=config.get("TWILIO_HTTP_CLIENT"),
        sync_jobs=bool(config.get("SYNC_JOBS")))
    engine = CallEngine(rt)
    staff = StaffStore(rt.store, audit=rt.audit.append)
    desk = rt.shift_desk()
    validator = RequestValidator(settings.twilio_auth_token)
    app.extensions["callflow"] = {"settings": settings, "registry": rt.registry,
                                  "store": rt.store, "runtime": rt, "engine": engine,
                                  "staff": staff, "sign_in": WebSignIn(staff, clock=rt.clock),
                                  "manager_line": ManagerLineCalls(rt, staff),
                                  "shift_desk": desk,
                                  "staff_line": StaffLineCalls(rt, staff, desk),
                                  "sessions": WebSessions(rt.store), "validator": validator}
    if not app.testing:  # SIGHUP reloads whatever the interval (0: SIGHUP only)
        rt.registry.watch(settings.reload_interval)
        reload_on_sighup(rt.registry)
        atexit.register(flush_at_exit, weakref.ref(rt.counts))
    app.after_request(write_counts)
    app.before_request(body_size.allow_twilio_bodies)
    app.register_error_handler(RequestEntityTooLarge, body_size.too_large)
    return app


def flush_at_exit(counts: weakref.ref) -> None:
    """What this process counted, written as it ends (if its app still exists)."""
    alive = counts()
    if alive is not None and alive.pending():
        alive.flush()


def write_counts(response: Response) -> Response:
    """After a request that talks to Redis anyway, write the reports' counts if they are due.
    Never after a caller's menu webhook: those send Redis no command at all."""
    if request.blueprint != "voice" or request.endpoint == "voice.status":
        current_app.extensions["callflow"]["runtime"].counts.flush_if_due()
    return response


def register_blueprints(app: Flask) -> None:
    from webhooks import (
        bridge,
        dashboard,
        health,
        manager,
        manager_line,
        ops,
        public,
        reports,
        security,
        shifts,
        staff_line,
        voice,
    )

    for module in (voice, bridge, manager_line, staff_line, manager, dashboard, shifts, reports,
                   health, ops, public):
        app.register_blueprint(module.bp)
    security.init_app(app)


def routes(app: Flask | None = None) -> dict[str, str]:
    """Endpoint -> path of every route, from the app's URL map: what ``Links`` builds on.

    Without an app (the job runner, which serves no requests), the blueprints are registered
    on a bare one just to read their routes."""
    if app is None:
        app = Flask(__name__)
        register_blueprints(app)
    return {rule.endpoint: rule.rule for rule in app.url_map.iter_rules()}


def _require(settings: Settings, allow_missing_token: bool = False) -> None:
    """Refuse to start without the secrets and the public URL (no silent defaults).

    Only ``callflow serve`` on a loopback address may start without the auth token, and then
    every webhook is refused until it is set.
    """
    needed = [("SECRET_KEY", settings.secret_key), ("CALLFLOW_PUBLIC_URL", settings.public_url)]
    if not allow_missing_token:
        needed.insert(0, ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token))
    missing = [name for name, value in needed if not value]
    if missing:
        raise ConfigError(f"set {', '.join(missing)} before starting the service "
                          "(see the README's configuration table)")
