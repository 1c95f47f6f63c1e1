"""Structured logs: one JSON object a line, and never a phone number."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from callflow.platform.logs import JsonFormatter, configure, redact

CALL_SID = "CA0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("text", [
    "+447700900666", "447700900666", "07700 900666", "07700900666", "+44 7700 900666",
    "+44 (0)7700-900-666", "(07700) 900 666", "+1 500 555 0006", "+15005550006",
    "From=%2B447700900666", "From=%2b447700900666", "tel:+447700900666", "caller 447700900666.",
])
def test_phone_numbers_are_redacted(text):
    redacted = redact(text)
    assert "[redacted]" in redacted
    assert not re.search(r"\d{4}", redacted.replace("%2B", "").replace("%2b", ""))


@pytest.mark.parametrize("text", [
    CALL_SID, "call 999 now", "step main-menu", "press 1", "duration 1234", "retries 3 of 5",
    "AC00000000000000000000000000000000", "a7f3c2e1-9b8d-4c6a", "room-0123456789abcdef",
    " * Running on http://127.0.0.1:5000", "listening on 0.0.0.0:8080", "from 203.0.113.25",
    "via [2001:db8::1]:443", "proxy 10.255.255.254 port 65535", "::ffff:192.168.100.200",
])
def test_what_is_not_a_phone_number_is_kept(text):
    assert redact(text) == text


@pytest.mark.parametrize("text", [
    "07700.900.666", "+44.7700.900.666", "1.800.555.0199", "447.700.900.666", "44.7700.900666",
])
def test_a_phone_number_written_with_dots_is_still_redacted(text):
    assert redact(text) == "[redacted]"


def test_terminal_colours_never_reach_a_json_line():
    coloured = ("\x1b[31m\x1b[1mWARNING: This is a development server.\x1b[0m\n"
                " * Running on http://127.0.0.1:5000\n\x1b[33mPress CTRL+C to quit\x1b[0m")
    line = JsonFormatter().format(record(coloured))
    assert "\\u001b" not in line and "\x1b" not in line
    assert json.loads(line)["msg"] == ("WARNING: This is a development server.\n"
                                       " * Running on http://127.0.0.1:5000\nPress CTRL+C to quit")


def record(msg: str = "hello", *args, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("callflow.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.created, rec.msecs = 1795651200.25, 250.0  # 2026-11-26T00:00:00.250Z
    for name, value in extra.items():
        setattr(rec, name, value)
    return rec


def test_a_line_is_one_json_object_with_its_context():
    line = JsonFormatter().format(record("call started", call=CALL_SID, flow="respect-phoneline",
                                         step="welcome", event="incoming", ignored="not a field"))
    assert "\n" not in line
    assert json.loads(line) == {
        "ts": "2026-11-26T00:00:00.250Z", "level": "warning", "logger": "callflow.test",
        "msg": "call started", "call": CALL_SID, "flow": "respect-phoneline", "step": "welcome",
        "event": "incoming"}


def test_the_timestamp_is_never_taken_for_a_phone_number():
    entry = json.loads(JsonFormatter().format(record()))
    assert entry["ts"] == "2026-11-26T00:00:00.250Z"


@pytest.mark.parametrize(("msg", "args", "extra"), [
    ("caller %s", ("+447700900666",), {}),
    ("caller", (), {"error": "From=+447700900666 rejected"}),
    ("caller", (), {"status": 447700900666}),
    ("caller", (), {"path": "/voice/incoming?From=%2B447700900666"}),
])
def test_a_number_that_reaches_a_log_call_is_redacted(msg, args, extra):
    line = JsonFormatter().format(record(msg, *args, **extra))
    assert "447700900666" not in line
    assert "[redacted]" in line
    json.loads(line)


def test_an_exception_is_logged_on_the_same_line_and_redacted():
    try:
        raise ValueError("could not dial +447700900666")
    except ValueError:
        import sys

        rec = record("failed")
        rec.exc_info = sys.exc_info()
    line = JsonFormatter().format(rec)
    entry = json.loads(line)
    assert "ValueError" in entry["exc"]
    assert "447700900666" not in line


def test_configure_sends_every_logger_through_the_formatter():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    try:
        configure("info", stream=stream)
        logging.getLogger("werkzeug").info("GET /voice/incoming?From=%2B447700900666 200")
        logging.getLogger("callflow.call.engine").debug("not shown")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    [line] = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["logger"] == "werkzeug"
    assert "447700900666" not in line


@pytest.mark.parametrize(("text", "shown"), [
    ("Listening at: http://127.0.0.1:45123 (4321)", "Listening at: http://127.0.0.1:45123 (4321)"),
    ("call +447700900666 from 10.0.0.1:80 (99)", "call [redacted] from 10.0.0.1:80 (99)"),
    ("a NUL\x000\x00 and 198.51.100.7:443", "a NUL0 and 198.51.100.7:443"),
])
def test_an_address_and_its_port_are_kept_whole_beside_other_digits(text, shown):
    """Gunicorn's start-up line names the port, then its process id: not one phone number."""
    assert redact(text) == shown
