"""The headers every response of the app carries: pages, JSON and webhooks alike.

No inline script or style anywhere, nothing from another origin, never framed, no referrer.
Installed by the app factory (``init_app``), so no blueprint holds an app-wide hook.
"""

from __future__ import annotations

from flask import Flask, Response, request

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
HEADERS = (
    ("Content-Security-Policy", CSP),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
)
# Staff pages and their API are never kept by a browser or a proxy.
NO_STORE_PREFIX = "/manager"


def security_headers(response: Response) -> Response:
    headers = response.headers
    # A view may set its own value of one of these; only what it left unset is added.
    headers.extend([(name, value) for name, value in HEADERS if name not in headers])
    if request.path.startswith(NO_STORE_PREFIX):
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(security_headers)
