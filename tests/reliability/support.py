"""What the fault-injection tests share: a private redis-server that can be killed, frozen and
restarted on its own port, Twilio's REST API as a real HTTP server on 127.0.0.1 that records what
it is sent (and can hang), a ``callflow runner`` process, signed requests, and the places caller
data must never reach (responses, log records, Redis keys and values, RQ job payloads, REST
requests).

Every process and thread started here is stopped by its owner's ``stop()`` (the fixtures call it
whatever the test did), and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import redis as redis_lib
from twilio.request_validator import RequestValidator
from werkzeug.datastructures import MultiDict

from callflow.platform.logs import JsonFormatter
from tests.bridge_support import decoded, raw_dump
from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, CANARY_STRINGS, free_port

ACCOUNT_SID = "AC" + "5" * 32
SIM_ACCOUNT_SID = "AC" + "0" * 32
# Every URL Twilio is given (test_webhook_fuzz checks that this is all the app's /voice/ routes).
VOICE_ENDPOINTS = [
    "/voice/incoming", "/voice/step", "/voice/notice", "/voice/menu", "/voice/dial",
    "/voice/degraded/dial", "/voice/screen", "/voice/screen/answer", "/voice/fallback",
    "/voice/status", "/voice/hold", "/voice/waiting/left", "/voice/waiting/join",
    "/voice/conference", "/voice/worker",
    "/voice/worker/answer", "/voice/worker/status", "/voice/monitor/status",
    "/voice/manager/staff", "/voice/manager/pin", "/voice/manager/list", "/voice/manager/purpose",
    "/voice/staff/incoming", "/voice/staff/staff", "/voice/staff/pin", "/voice/staff/choice",
]
# Every field Twilio sends that names the caller, on every request the tests send.
CALLER_FIELDS = {"From": CANARY_NUMBER, "Caller": CANARY_NUMBER, **CANARY_FIELDS}


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05, detail: Callable[[], str] | None = None) -> object:
    """Poll ``condition`` until it is truthy; fail the test after ``timeout`` seconds (with
    ``detail()``, such as a process's log, in the message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}"
                                 + (f":\n{detail()}" if detail else ""))
        time.sleep(interval)


@contextlib.contextmanager
def rq_loggers_kept():
    """RQ's workers and scheduler give their loggers handlers of their own and stop them
    propagating when they start; put them back afterwards, so that later tests (and caplog)
    see RQ's records as before."""
    names = [name for name in logging.root.manager.loggerDict if name.split(".")[0] == "rq"]
    names += ["rq.worker", "rq.job", "rq.scheduler", "rq.queue", "rq.cron"]
    saved = {name: (list(logger.handlers), logger.level, logger.propagate)
             for name in set(names) for logger in [logging.getLogger(name)]}
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


# -- a private redis-server ---------------------------------------------------------------------


class RedisServer:
    """A non-persistent redis-server on a port of its own, which a test may kill, freeze
    (SIGSTOP: it accepts connections and never answers) and restart on the same port."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self.binary = binary
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.frozen = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis_lib.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        try:
            wait_for(lambda: self._pings(client), 10, "redis-server to start")
        finally:
            client.close()
        return self

    @staticmethod
    def _pings(client: redis_lib.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis_lib.RedisError:
            return False

    def kill(self) -> None:
        """Gone at once, as after a crash: connections are refused."""
        if self.proc and self.proc.poll() is None:
            if self.frozen:
                self.thaw()
            self.proc.kill()
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """Hung: the kernel still accepts connections, nothing ever answers."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)
        self.frozen = False

    def stop(self) -> None:
        self.kill()


# -- Twilio's REST API on 127.0.0.1 -------------------------------------------------------------


@dataclass
class RestCall:
    """One request Twilio's API received."""

    method: str
    path: str
    form: dict[str, list[str]]
    body: str
    status: int = 0

    def one(self, name: str) -> str:
        values = self.form.get(name, [])
        assert len(values) == 1, f"{name} sent {len(values)} times"
        return values[0]


@dataclass
class FakeTwilio:
    """Twilio's REST API as a real HTTP server on 127.0.0.1: records every request; answers a
    new call with 201 and a fresh sid, an update with 200. With ``hang_first`` the first request
    to create a call is held (up to ``hang_seconds``) until ``release()``."""

    hang_first: bool = False
    hang_seconds: float = 30.0
    received: list[RestCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.first_arrived = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8", errors="replace")
                status, answer = fake._answer("POST", self.path, body)
                self._send(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._send(404, {"code": 20404, "message": "not found", "status": 404})

            def _send(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client was killed while we held its request

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                """Quiet: the test reads ``received``."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.05})
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, method: str, path: str, body: str) -> tuple[int, dict]:
        call = RestCall(method, path, parse_qs(body, keep_blank_values=True), body)
        with self.lock:
            self.received.append(call)
            first = len([c for c in self.received if c.path.endswith("/Calls.json")]) == 1
        if path.endswith("/Calls.json"):
            if self.hang_first and first:
                self.first_arrived.set()
                self.released.wait(self.hang_seconds)
            call.status = 201
            return 201, {"sid": "CA" + secrets.token_hex(16), "status": "queued",
                         "to": call.form.get("To", [""])[0]}
        call.status = 200
        return 200, {"sid": path.rsplit("/", 1)[-1].removesuffix(".json"), "status": "canceled"}

    def ring_requests(self) -> list[RestCall]:
        with self.lock:
            return [c for c in self.received if c.path.endswith("/Calls.json")]

    def rung(self) -> Counter:
        """How many times each number was asked to be rung (creating a call leg)."""
        return Counter(c.one("To") for c in self.ring_requests())

    def release(self) -> None:
        self.released.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


# -- a `callflow runner` process ----------------------------------------------------------------


def callflow_command() -> list[str]:
    """The console script beside this interpreter (what the Procfile runs), else the module."""
    script = Path(sys.executable).with_name("callflow")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from webhooks.cli import main; main()"]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc). ``callflow runner`` starts none (its jobs,
    RQ's scheduler and the timed jobs run in its own process); this is how a test sees that,
    and reaches any child that left the worker's process group (as RQ's forked work horse did,
    with ``os.setpgrp``), which a group kill alone would not."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class WorkerProcess:
    """``callflow runner`` (or ``command``) in a session of its own. ``kill_main`` is kill -9
    of the worker's own pid, which is the whole worker now that it forks nothing; ``kill_hard``
    also kills -9 everything ever seen below it, as when a container or machine dies."""

    env: dict[str, str]
    log: Path
    command: list[str] | None = None  # default: the console script's ``worker``
    proc: subprocess.Popen | None = None
    known: set[int] = field(default_factory=set)  # every process seen below the worker

    def start(self) -> WorkerProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command or [*callflow_command(), "worker"], env=self.env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def children(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        found = descendants(self.proc.pid)
        self.known.update(found)
        return found

    def kill_main(self) -> None:
        """kill -9 of the worker's pid alone: any children would carry on, orphaned."""
        assert self.proc is not None
        self.children()
        os.kill(self.proc.pid, signal.SIGKILL)
        self._wait(10)

    def kill_hard(self) -> None:
        """kill -9 of the worker and everything below it: nothing gets to clean up."""
        pids = self.children()
        self._signal(signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._wait(10)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL for whatever is left, orphans included."""
        if self.proc is not None and self.proc.poll() is None:
            self.children()
            self._signal(signal.SIGTERM)
            if not self._wait(15):
                self.kill_hard()
        self._signal(signal.SIGKILL)
        for pid in self.known:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def _wait(self, timeout: float) -> bool:
        assert self.proc is not None
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


# -- Twilio's side of a webhook -----------------------------------------------------------------


def sign(token: str, url: str, fields: dict[str, str] | list[tuple[str, str]]) -> str:
    """X-Twilio-Signature for a POST of ``fields`` to the absolute ``url``."""
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    return RequestValidator(token).compute_signature(url, MultiDict(pairs))


def signed_post(client, base: str, token: str, path: str,
                fields: dict[str, str] | list[tuple[str, str]]):
    """POST ``fields`` (repeated keys allowed, as a list of pairs) to ``path`` on the Flask test
    client, signed with ``token`` for ``base`` + ``path`` exactly as Twilio signs."""
    url = urljoin(base.rstrip("/") + "/", path.lstrip("/"))
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    pairs = list(fields.items()) if isinstance(fields, dict) else list(fields)
    return client.post(target, data=urlencode(pairs),
                       content_type="application/x-www-form-urlencoded",
                       headers={"X-Twilio-Signature": sign(token, url, pairs)})


def caller_fields(call_sid: str, to: str, **extra: str) -> dict[str, str]:
    """What Twilio sends on a caller's leg: the caller's number and details included."""
    return {"CallSid": call_sid, "AccountSid": SIM_ACCOUNT_SID, "To": to, "Called": to,
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01",
            **CALLER_FIELDS, **extra}


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


# -- where caller data must never be ------------------------------------------------------------


# Every key and value in the store, read as bytes so that RQ's compressed job payloads,
# results and exception texts are searched too.
redis_text = raw_dump


def job_payloads(url: str) -> str:
    """Every RQ job hash (``rq:job:*``), each field decoded."""
    client = redis_lib.Redis.from_url(url, socket_timeout=5)
    try:
        return "\n".join(decoded(x) for key in client.scan_iter("rq:job:*")
                         for pair in client.hgetall(key).items() for x in pair)
    finally:
        client.close()


_FORMATTER = JsonFormatter()
_PLAIN = logging.Formatter()


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """Each record twice: every attribute as handed to the logging call (before any redaction,
    so a leak the formatter would hide is still caught) and the JSON line the service writes."""
    lines = []
    for record in records:
        raw = {k: v for k, v in vars(record).items() if k not in ("exc_info", "args")}
        lines.append(repr(raw))
        lines.append(repr(record.args))
        if record.exc_info:
            lines.append(_PLAIN.formatException(record.exc_info))
        lines.append(_FORMATTER.format(record))
    return "\n".join(lines)


def assert_clean(*texts: str) -> None:
    """No canary string (the caller's number, name, town, postcode) in any of ``texts``."""
    for text in texts:
        for canary in CANARY_STRINGS:
            assert canary not in text, (f"caller data {canary!r} leaked: "
                                        f"...{_around(text, canary)}...")


def _around(text: str, needle: str, width: int = 80) -> str:
    at = text.find(needle)
    return text[max(0, at - width): at + len(needle) + width]


# -- a caller, request by request ---------------------------------------------------------------


class Line:
    """Signed webhooks to one app, as Twilio sends them; keeps every response body so that a
    test can check that none of them holds caller data."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.base = app.extensions["callflow"]["settings"].public_url
        self.token = token
        self.bodies: list[str] = []
        self.local = threading.local()

    @property
    def client(self):
        """One test client per thread (a test client is not shared between threads)."""
        if not hasattr(self.local, "client"):
            self.local.client = self.app.test_client()
        return self.local.client

    def post(self, path: str, fields: dict[str, str] | list[tuple[str, str]]):
        response = signed_post(self.client, self.base, self.token, path, fields)
        self.bodies.append(response.get_data(as_text=True))
        return response

    def text(self) -> str:
        return "\n".join(self.bodies)


class Caller:
    """One caller's call: each webhook Twilio would send for it, with the caller's details."""

    def __init__(self, line: Line, to: str) -> None:
        self.line, self.to, self.sid = line, to, new_call_sid()
        self.last = ""

    def send(self, url: str, **extra: str):
        response = self.line.post(url, caller_fields(self.sid, self.to, **extra))
        self.last = response.get_data(as_text=True)
        return response

    def ring(self):
        return self.send("/voice/incoming")

    def action(self, verb: str = "Gather") -> str:
        """The action URL of the last answer's ``verb``."""
        element = ET.fromstring(self.last).find(f".//{verb}")
        assert element is not None and element.get("action"), f"no <{verb} action> in {self.last}"
        return element.get("action", "")
