"""The edge every Twilio request passes: signature first, then caller data dropped.

The signature is checked on ``CALLFLOW_PUBLIC_URL`` + path + query and the raw form (repeated
keys included), so it holds behind proxies; the query is the service's own routing and call
state, which Twilio signs with the rest. Then only allow-listed fields survive, and the
request's own form, query and values are replaced by them, so nothing later can reach a caller's
number even by mistake.

Twilio may sign an https URL with or without its default port, so both forms are accepted
(as the ``twilio`` library's validator does); but the form the configured public URL has is
computed first, and the other only when that does not match, so a genuine request costs one
HMAC, not two.
"""

from __future__ import annotations

import hmac
import logging
import re
from urllib.parse import parse_qsl, urlparse

from flask import abort, current_app, g, request
from twilio.request_validator import (
    SIGNATURE_HEADER,
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    add_port,
    get_signature_algorithm,
    remove_port,
)
from werkzeug.datastructures import CombinedMultiDict, ImmutableMultiDict, MultiDict

from callflow.platform.links import CallState
from callflow.platform.privacy import strip_caller_data

log = logging.getLogger(__name__)
# The service's own parameters, which it writes into the URLs it hands Twilio.
LINK_PARAMS = ("flow", "step", "call", "team", "leg", "offer", "session", *CallState.PARAMS)
FORM_ENCODED = "application/x-www-form-urlencoded"
CALL_SID = re.compile(r"CA[0-9a-f]{32}")  # matched whole: "$" would let a trailing newline in


def signed_url() -> str:
    settings = current_app.extensions["callflow"]["settings"]
    base = (settings.public_url or request.host_url).rstrip("/")
    query = request.query_string.decode("latin-1")
    return f"{base}{request.path}?{query}" if query else f"{base}{request.path}"


def signature_matches(validator: RequestValidator, url: str, params, signature: str,
                      algorithm: str) -> bool:
    """Whether ``signature`` is Twilio's for ``url`` and ``params``: the URL as given first,
    then with its default port added or removed. Compared in constant time."""
    expected = signature.encode("utf-8", "replace")
    for candidate in _both_forms(url):
        try:
            computed = validator.compute_signature(candidate, params, algorithm)
        except ValueError:  # an algorithm the library does not know
            return False
        if hmac.compare_digest(computed.encode("utf-8"), expected):
            return True
    return False


def _both_forms(url: str):
    yield url
    parsed = urlparse(url)
    yield remove_port(parsed) if parsed.port else add_port(parsed)


class Posted(dict):
    """A webhook's form fields, name -> every value in order, as the signature covers them."""

    def getlist(self, name: str) -> list[str]:
        return self.get(name, [])


def posted(req) -> Posted | MultiDict:
    """The fields Twilio posted. Twilio posts them url-encoded, which is parsed here in one
    pass (Werkzeug's form parser does more than a webhook needs); any other body is left to
    Werkzeug. Reading the body keeps the request's size limits."""
    if req.mimetype != FORM_ENCODED:
        return req.form
    fields = Posted()
    for name, value in parse_qsl(req.get_data(cache=False).decode("utf-8", "replace"),
                                 keep_blank_values=True):
        fields.setdefault(name, []).append(value)
    return fields


def check_and_strip() -> None:
    """``before_request`` of every Twilio-facing blueprint."""
    req = request._get_current_object()  # one proxy lookup, not one per attribute
    callflow = current_app.extensions["callflow"]
    post = req.method == "POST"
    params = posted(req) if post else {}
    signature = req.headers.get(SIGNATURE_HEADER, "")
    algorithm = get_signature_algorithm(req.headers.get(SIGNATURE_SETTINGS_HEADER))
    if not (callflow["settings"].twilio_auth_token and signature and signature_matches(
            callflow["validator"], signed_url(), params, signature, algorithm)):
        log.warning("refused a request without a valid Twilio signature",
                    extra={"path": req.path, "method": req.method, "status": 403})
        abort(403)
    query = req.args
    kept = strip_caller_data(params if post else query)
    # Our own routing parameters and call state, which we put in the URLs we hand Twilio.
    link = {name: query[name] for name in LINK_PARAMS if name in query}
    form = ImmutableMultiDict(kept if post else {})
    args = ImmutableMultiDict({**link, **({} if post else kept)})
    # Replace the parsed request data so no later code can read a dropped field.
    req.__dict__.update(form=form, args=args, values=CombinedMultiDict([args, form]))
    g.twilio, g.link = kept, link


def field(name: str, default: str = "") -> str:
    """A surviving webhook field (empty before the edge has run)."""
    return g.get("twilio", {}).get(name, default)


def require_call_sid() -> str:
    """The call's id, which keys its state: refuse a request without a well-formed one."""
    sid = field("CallSid")
    if not CALL_SID.fullmatch(sid):
        abort(400, description="CallSid is missing or malformed")
    return sid


def link(name: str) -> str:
    """A routing parameter of the URL we gave Twilio (``flow``, ``step``)."""
    return g.get("link", {}).get(name, "")
