"""The headers every response of the app carries.

Pages and JSON: no inline script or style anywhere, nothing from another origin, never framed,
no referrer. TwiML, which only Twilio reads, carries the two that matter should a browser ever
open it (no sniffing, nothing loaded or framed), and none of the page headers it would never
use: each webhook answer is that much shorter. Installed by the app factory (``init_app``), so
no blueprint holds an app-wide hook.
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
TWIML_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
)
# Staff pages and their API are never kept by a browser or a proxy.
NO_STORE_PREFIX = "/manager"
TWIML = "text/xml"


def security_headers(response: Response) -> Response:
    headers = response.headers
    wanted = TWIML_HEADERS if response.mimetype == TWIML else HEADERS
    # A view may set its own value of one of these; only what it left unset is added.
    present = {name.lower() for name, _ in headers.items()}
    headers.extend([(name, value) for name, value in wanted if name.lower() not in present])
    if request.path.startswith(NO_STORE_PREFIX):
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(security_headers)
