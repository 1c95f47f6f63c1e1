"""Manager sign-in for the web: the session cookie, CSRF protection, and who is signed in.

The cookie holds only the id of a session kept in Redis (``webhooks.sessions``); it is
http-only, same-site strict, secure behind https and sent only to ``/manager``. Every
state-changing request must carry the session's CSRF token and must not come from another site.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from functools import wraps
from urllib.parse import urlsplit

from flask import current_app, g, jsonify, request, session

from callflow.platform.errors import StoreUnavailable
from callflow.staff.accounts import Role, StaffMember, StaffStore
from callflow.staff.sign_in import DEVICE_SECONDS, WebSignIn
from webhooks.sessions import session_generation

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-CSRF-Token"
# The browser's device token: sent only to the sign-in form, for 90 days.
DEVICE_COOKIE = "callflow_device"
DEVICE_PATH = "/manager/login"


def staff_store() -> StaffStore:
    return current_app.extensions["callflow"]["staff"]


def web_sign_in() -> WebSignIn:
    return current_app.extensions["callflow"]["sign_in"]


def client_address() -> str | None:
    """The client's IP address (behind ``CALLFLOW_TRUSTED_PROXIES``, the one the proxy put in
    X-Forwarded-For), or None when it is not an IP address at all: a malformed header is never
    counted, logged or stored (it could be anything, a phone number included)."""
    value = request.remote_addr or ""
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def keep_device(response, token: str):
    """Let this browser be known to the account next time (see ``callflow.staff.sign_in``)."""
    settings = current_app.extensions["callflow"]["settings"]
    response.set_cookie(DEVICE_COOKIE, token, max_age=DEVICE_SECONDS, path=DEVICE_PATH,
                        secure=settings.public_url.startswith("https://"), httponly=True,
                        samesite="Strict")
    return response


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def session_store_up() -> None:
    """Fail closed (503, through the blueprints' handlers) when the session store is down:
    neither who is signed in nor the CSRF token can be known then."""
    if not getattr(session, "available", True):
        raise StoreUnavailable("the session store is unavailable")


def current_member() -> StaffMember | None:
    """The signed-in staff member, re-read each request: a disabled account is signed out."""
    session_store_up()
    if "member" not in g:
        name = session.get("user")
        member = staff_store().get(name) if name else None
        current = member and session.get("generation", 0) == session_generation(member.name)
        g.member = member if current and not member.disabled else None
    return g.member


def sign_in(member: StaffMember) -> None:
    session.clear()
    session.renew()  # a new id: one known before sign-in (fixation) is no use after
    session.permanent = True
    session["user"] = member.name
    session["generation"] = session_generation(member.name)
    csrf_token()


def sign_out() -> None:
    session.clear()


def same_site_request() -> bool:
    """Refuse requests a browser marks as cross-site, or whose Origin is not ours."""
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if not origin:
        return True
    # Our pages are served with "Referrer-Policy: no-referrer", under which a browser sends
    # "Origin: null" with their own forms; it also says "Sec-Fetch-Site: same-origin", which
    # no other site can make it say.
    if origin == "null" and request.headers.get("Sec-Fetch-Site") == "same-origin":
        return True
    settings = current_app.extensions["callflow"]["settings"]
    ours = urlsplit(settings.public_url or request.host_url)
    theirs = urlsplit(origin)
    return (theirs.scheme, theirs.netloc) == (ours.scheme, ours.netloc)


def check_csrf() -> tuple | None:
    """``before_request`` of the manager blueprint: None, or a 403 response."""
    if request.method in SAFE_METHODS:
        return None
    session_store_up()
    sent = request.headers.get(CSRF_HEADER) or request.form.get("csrf_token", "")
    expected = session.get("csrf", "")
    matches = hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8"))
    if not same_site_request() or not expected or not matches:
        return jsonify(reason="csrf", message="This request was refused: reload the page "
                       "and try again."), 403
    return None


# What a view is open to when it names no roles: the dashboard's people. A worker's account
# opens only the pages that name it (their own shift), so a new page is closed to it by default.
DASHBOARD_ROLES = (Role.MANAGER, Role.ADMIN)


def home_for(member: StaffMember) -> str:
    """The endpoint a signed-in account starts on."""
    return "shifts.my_shift" if member.role is Role.WORKER else "manager.home"


def require(*roles: Role):
    """Views for signed-in staff of these roles (the dashboard's, if none are given); JSON
    401/403 otherwise."""
    allowed = roles or DASHBOARD_ROLES

    def decorate(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            member = current_member()
            if member is None:
                return jsonify(reason="not_signed_in", message="Please sign in."), 401
            if member.role not in allowed:
                return jsonify(reason="forbidden", message="Your account cannot do this."), 403
            return view(*args, **kwargs)
        return wrapped
    return decorate
