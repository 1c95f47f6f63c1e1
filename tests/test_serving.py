"""`callflow serve`'s access log, over real HTTP: the path, never the query or the body.

Twilio may be set to send webhooks as GET, with the caller's number in the query string; the
stock Werkzeug log would write it to disk on every request.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
from urllib.parse import parse_qsl, urlencode

import pytest
from twilio.request_validator import RequestValidator
from werkzeug.serving import make_server

from callflow.platform.logs import JsonFormatter
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    PUBLIC_URL,
    RESPECT,
    TOKEN,
    assert_no_canary,
)
from webhooks import serving
from webhooks.serving import PrivateAccessLog
from webhooks.simulator import ACCOUNT_SID, new_call_sid


@pytest.fixture
def server(app):
    httpd = make_server("127.0.0.1", 0, app, threaded=True, request_handler=PrivateAccessLog)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def access_logged(caplog):
    caplog.set_level(logging.DEBUG)


def canary_query(**extra: str) -> str:
    return urlencode({"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID,
                      "From": CANARY_NUMBER, "Caller": CANARY_NUMBER, "To": RESPECT,
                      "Called": RESPECT, "CallStatus": "ringing", "Direction": "inbound",
                      **CANARY_FIELDS, **extra})


def request(server, method: str, target: str, body: str | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=5)
    try:
        connection.request(method, target, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8")
    finally:
        connection.close()


def access_lines(caplog) -> list[str]:
    formatter = JsonFormatter()
    return [formatter.format(r) for r in caplog.records if r.name == "callflow.access"]


def everything_logged(caplog) -> str:
    return caplog.text + "\n".join(repr(vars(record)) for record in caplog.records)


def test_a_get_webhook_is_logged_by_path_only(server, caplog):
    status, body = request(server, "GET", f"/voice/incoming?{canary_query()}")
    assert status == 403  # unsigned
    [line] = access_lines(caplog)
    entry = json.loads(line)
    assert (entry["method"], entry["path"], entry["status"]) == ("GET", "/voice/incoming", 403)
    assert "?" not in line
    assert_no_canary(everything_logged(caplog), body)


def test_a_signed_get_webhook_is_answered_and_its_caller_is_nowhere(server, caplog):
    target = f"/voice/incoming?{canary_query()}"
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC_URL}{target}", {})
    status, body = request(server, "GET", target, headers={"X-Twilio-Signature": signature})
    assert status == 200
    assert "This call is confidential" in body
    [line] = access_lines(caplog)
    assert json.loads(line)["path"] == "/voice/incoming"
    assert_no_canary(everything_logged(caplog), body)


def test_a_post_body_is_never_logged(server, caplog):
    body = canary_query()
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC_URL}/voice/incoming",
                                                          dict(parse_qsl(body)))
    status, _ = request(server, "POST", "/voice/incoming", body=body, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Twilio-Signature": signature})
    assert status == 200
    assert [json.loads(line)["path"] for line in access_lines(caplog)] == ["/voice/incoming"]
    assert_no_canary(everything_logged(caplog))


def test_a_malformed_request_line_is_logged_without_its_text(server, caplog):
    with socket.create_connection(("127.0.0.1", server.server_port), timeout=5) as sock:
        sock.sendall(f"GET /voice/incoming?From={CANARY_NUMBER} CANARYNAME HTTP/1.1\r\n\r\n"
                     .encode())
        reply = sock.recv(4096).decode("latin-1")
    assert reply.startswith("HTTP/1.")
    assert " 400 " in reply.splitlines()[0]
    assert_no_canary(everything_logged(caplog))


def test_serve_uses_the_private_access_log(monkeypatch, app):
    seen = {}
    monkeypatch.setattr(serving, "run_simple",
                        lambda host, port, application, **kwargs: seen.update(
                            host=host, port=port, app=application, **kwargs))
    serving.serve(app, "127.0.0.1", 5055)
    assert seen == {"host": "127.0.0.1", "port": 5055, "app": app, "threaded": True,
                    "request_handler": PrivateAccessLog}
