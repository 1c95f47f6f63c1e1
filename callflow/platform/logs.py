"""Structured logs: one JSON object a line, and never a phone number.

Caller data is dropped at the edge, so none should reach a log call; the redaction here is the
second lock on the same door, for anything (an exception message, a library's log) that might.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time

# A run of 7+ digits (with the separators people write), not inside an identifier like a CallSid;
# the leading + may be URL-encoded (%2B), as it is in a webhook's query string.
PHONE_LIKE = re.compile(r"(?<![A-Za-z0-9])(?:\+|%2[Bb])?\d[\d\s().-]{5,}\d(?![A-Za-z0-9])")
REDACTED = "[redacted]"
# Terminal colour and cursor codes (werkzeug colours its start-up lines): a JSON line is for
# a log store, not a terminal.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")
CONTEXT_FIELDS = ("call", "flow", "step", "event", "path", "method", "status", "error", "file",
                  "duration_ms", "kind")


def is_address(text: str) -> bool:
    """An IPv4 address ("127.0.0.1"): digits and dots, but not a phone number."""
    parts = text.split(".")
    return len(parts) == 4 and all(p.isdigit() and len(p) <= 3 and int(p) <= 255
                                   for p in parts)


# An IPv4 address with its port, kept whole so the digits around it ("Listening at:
# http://127.0.0.1:5000 (4321)": the port and a process id) are not read as one number.
ADDRESS_PORT = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?(?![\d.])")
KEPT = re.compile("\x00(\\d+)\x00")


def _redacted(match: re.Match) -> str:
    return match[0] if is_address(match[0]) else REDACTED


def redact(text: str) -> str:
    """``text`` with every phone-like run redacted (addresses and ports are kept) and no
    terminal colour codes."""
    text = ANSI.sub("", text).replace("\x00", "")  # NUL marks what is kept below
    kept: list[str] = []

    def keep(match: re.Match) -> str:
        if not is_address(match[0].partition(":")[0]):
            return match[0]
        kept.append(match[0])
        return f"\x00{len(kept) - 1}\x00"

    masked = PHONE_LIKE.sub(_redacted, ADDRESS_PORT.sub(keep, text))
    return KEPT.sub(lambda match: kept[int(match[1])], masked) if kept else masked


def _scrub(value):
    """``value`` with every phone-like text or number redacted, still fit for JSON."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return REDACTED if PHONE_LIKE.search(str(value)) else value
    if isinstance(value, dict):
        return {redact(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redact(str(value))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
              + f".{int(record.msecs):03d}Z")
        entry = {
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # Each value is redacted, not the JSON text: a number redacted there would break the
        # line, and the timestamp (ours, and a run of digits) would be redacted too.
        return json.dumps({"ts": ts, **_scrub(entry)})


def configure(level: str = "INFO", stream=None) -> None:
    """Send every logger (werkzeug, gunicorn, rq included) through the JSON formatter."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The twilio library logs each REST request's parameters (workers' numbers) at INFO.
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)
    # The audit witness's copy of each signed head is kept whatever the level (it is evidence).
    logging.getLogger("callflow.records.audit_witness").setLevel(logging.INFO)
