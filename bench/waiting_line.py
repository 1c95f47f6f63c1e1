"""The waiting line under load: callers admitted per second, and the time from a worker's
accept to caller and worker on one bridge, with Twilio's REST API answering in ~200 ms.

The script starts a private ``redis-server``, a mock of Twilio's REST API on a free port (each
request answered after ``--rest-ms``, as Twilio's own take about 200 ms), the real job runner
(``callflow runner``, a separate process, as in production) and the app in this process,
driven through signed webhooks as Twilio sends them. Caller threads play whole calls to the
waiting line (notice, 1 at the menu, into the line) for ``--seconds``; worker threads answer
every leg the runner rings, press 1, and time how long until the caller is in the room: the
service's REST redirect of the caller reaching the mock, and Twilio fetching the join TwiML.

Printed, each with its baseline from the same run:

- callers admitted per second, against the same callers put through by the flow's direct
  dial (the connect turn with the waiting line off: TwiML rendered once, no Redis);
- accept -> joined, median and p95, against one bare round trip to the mock REST API (the
  least any design that moves a caller by REST can take). Goal: a median of 1.5 s at most.

Run ``python bench/waiting_line.py`` (``--help`` for options).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhook import ACCOUNT_SID, ROOT, TOKEN, audit_env, free_port, spawn, start_redis  # noqa: E402

GOAL_SECONDS = 1.5
PUBLIC_URL = "https://bench.callflow.invalid"
HELPLINE = "+441632960001"
CALLER = "+447700900999"  # fictional; dropped at the edge
WORKERS = 8


class MockTwilio(ThreadingHTTPServer):
    """Twilio's REST API, slow as the real one: the calls it is asked to make, kept."""

    daemon_threads = True

    def __init__(self, port: int, delay: float) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.delay = delay
        self.lock = threading.Lock()
        self.rings: list[dict[str, str]] = []  # the legs the runner asked for
        self.moved: dict[str, tuple[float, str]] = {}  # caller sid -> (when, the join URL)
        self.event = threading.Condition(self.lock)


class Handler(BaseHTTPRequestHandler):
    server: MockTwilio

    def log_message(self, *args) -> None:
        """Quiet."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(self.server.delay)
        body = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        form = {k: v[0] for k, v in body.items()}
        path = urlsplit(self.path).path
        sid = "CA" + secrets.token_hex(16)
        with self.server.event:
            if path.endswith("/Calls.json"):
                self.server.rings.append({**form, "Sid": sid})
            else:
                sid = path.rsplit("/", 1)[1].removesuffix(".json")
                if "Url" in form:
                    self.server.moved[sid] = (time.monotonic(), form["Url"])
            self.server.event.notify_all()
        self._json(201 if path.endswith("/Calls.json") else 200,
                   {"sid": sid, "account_sid": ACCOUNT_SID, "status": "queued"})

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(self.server.delay)
        self._json(200, {"calls": [], "participants": [], "meta": {"next_page_url": None}})

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def flows_with_a_team(folder: Path) -> None:
    """The shipped flows, with the Respect team grown to eight workers, rung in turn."""
    shutil.copytree(ROOT / "flows", folder)
    teams = (folder / "teams.yaml").read_text(encoding="utf-8")
    start, end = teams.index("  respect-workers:"), teams.index("  mal-workers:")
    workers = "".join(f'      - {{name: W{n}, number: "+4477009003{n:02d}"}}\n'
                      for n in range(WORKERS))
    team = ("  respect-workers:\n    ring: round_robin\n    wrap_up: 0\n    max_wait: 3600\n"
            f"    workers:\n{workers}")
    (folder / "teams.yaml").write_text(teams[:start] + team + teams[end:], encoding="utf-8")


def environment(redis_url: str, rest_port: int, flows: Path, workdir: Path) -> dict[str, str]:
    return {**os.environ, "REDIS_URL": redis_url, "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": TOKEN, "TWILIO_API_URL": f"http://127.0.0.1:{rest_port}",
            "CALLFLOW_PUBLIC_URL": PUBLIC_URL, "SECRET_KEY": "bench-secret-" + "0" * 20,
            "CALLFLOW_FLOWS": str(flows), "CALLFLOW_LOG_LEVEL": "ERROR",
            "CALLFLOW_PURGE_TWILIO_LOGS": "false", **audit_env(workdir)}


def build_app(env: dict[str, str]):
    """The app in this process, on the run's settings, its clock inside opening hours."""
    from datetime import UTC, datetime

    from callflow.platform.config import Settings
    from webhooks import create_app

    settings = Settings.from_env(env)
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday: the line is open
    return create_app({"SETTINGS": settings, "CLOCK": lambda: noon, "PROPAGATE_EXCEPTIONS":
                       False})


class Phone:
    """Signed webhooks to the app, as Twilio sends them (one test client per thread)."""

    def __init__(self, app) -> None:
        from webhooks.simulator import TwilioSim

        self.sim = TwilioSim(app)

    def post(self, url: str, fields: dict[str, str]) -> str:
        response = self.sim.post(url, fields)
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code}")
        return response.get_data(as_text=True)


def caller_fields(sid: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": CALLER, "To": HELPLINE,
            "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01"}


def admit(phone: Phone, sid: str) -> str:
    """Ring, no key at the notice, 1 at the menu: the TwiML of the turn that reaches connect."""
    fields = caller_fields(sid)
    body = phone.post("/voice/incoming", fields)
    for digits in ("", "1"):
        gather = ET.fromstring(body).find("Gather")
        body = phone.post(gather.get("action"), {**fields, **({"Digits": digits} if digits
                                                              else {})})
    return body


def callers(app, seconds: float, threads: int, waiting: list[str]) -> int:
    """Callers joining for ``seconds``; returns how many were admitted. Their sids go to
    ``waiting`` (for the workers' side to find them moved)."""
    count = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def run() -> None:
        phone = Phone(app)
        while time.monotonic() < deadline:
            sid = "CA" + secrets.token_hex(16)
            body = admit(phone, sid)
            if ET.fromstring(body).find("Enqueue") is None and \
                    ET.fromstring(body).find("Dial") is None:
                raise RuntimeError(f"not admitted: {body}")
            with lock:
                count[0] += 1
                waiting.append(sid)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return count[0]


def workers(app, mock: MockTwilio, stop: threading.Event, timings: list[float]) -> None:
    """Every leg rung is answered: screened, 1 pressed; then the time until the caller the
    worker was given is in the room (moved by REST, its join TwiML fetched)."""
    phone = Phone(app)
    seen = 0
    while not stop.is_set():
        with mock.event:
            mock.event.wait_for(lambda after=seen: len(mock.rings) > after or stop.is_set(),
                                timeout=0.5)
            legs = mock.rings[seen:]
        seen += len(legs)
        for leg in legs:
            fields = {"CallSid": leg["Sid"], "AccountSid": ACCOUNT_SID, "From": leg["From"],
                      "To": leg["To"], "CallStatus": "in-progress", "Direction": "outbound-api",
                      "ApiVersion": "2010-04-01"}
            screen = ET.fromstring(phone.post(leg["Url"], fields)).find("Gather")
            if screen is None:
                continue  # taken already
            pressed = time.monotonic()
            room = ET.fromstring(phone.post(screen.get("action"), {**fields, "Digits": "1"}))
            conference = room.find("Dial/Conference")
            if conference is None:
                continue
            call_id = conference.text.removeprefix("room-")
            with mock.event:
                mock.event.wait_for(lambda c=call_id: any(
                    url.endswith(f"call={c}") for _, url in mock.moved.values()) or stop.is_set(),
                    timeout=10)
                found = [(sid, url) for sid, (_, url) in mock.moved.items()
                         if url.endswith(f"call={call_id}")]
            if not found:
                continue
            sid, url = found[0]
            joined = ET.fromstring(phone.post(url, caller_fields(sid))).find("Dial/Conference")
            if joined is not None and joined.text == conference.text:
                timings.append(time.monotonic() - pressed)
            phone.post(leg["StatusCallback"], {**fields, "CallStatus": "completed",
                                               "CallDuration": "1"})


def bare_round_trip(port: int, samples: int = 20) -> float:
    """The median of one REST request to the mock, as the service's client makes it."""
    session = requests.Session()
    seconds = []
    for _ in range(samples):
        started = time.monotonic()
        session.post(f"http://127.0.0.1:{port}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/"
                     f"CA{'0' * 32}.json", data={"Url": "https://example.invalid/"})
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--callers", type=int, default=4, help="caller threads")
    parser.add_argument("--rest-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="callflow-queue-bench-"))
    redis = start_redis(workdir, None)
    rest_port = free_port()
    mock = MockTwilio(rest_port, args.rest_ms / 1000)
    threading.Thread(target=mock.serve_forever, daemon=True).start()
    flows = workdir / "flows"
    flows_with_a_team(flows)
    env = environment(f"redis://127.0.0.1:{redis.port}/0", rest_port, flows, workdir)
    runner = spawn("runner", [sys.executable, "-c", "from webhooks.cli import main; main()",
                             "runner"], 0, workdir, env,
                   None)
    try:
        os.environ.update({k: v for k, v in env.items() if k.startswith("CALLFLOW_")
                           or k in ("REDIS_URL", "SECRET_KEY")})
        app = build_app(env)
        direct = build_app({**env, "TWILIO_ACCOUNT_SID": ""})  # no bridge: the direct dial
        from callflow.staff.shifts import Shifts

        rt = app.extensions["callflow"]["runtime"]
        for n in range(WORKERS):
            Shifts(rt.store, rt.clock).start(f"W{n}")
        time.sleep(3)  # the runner's first heartbeat
        baseline_admitted = callers(direct, args.seconds / 2, args.callers, [])
        stop, timings, waiting = threading.Event(), [], []
        answering = [threading.Thread(target=workers, args=(app, mock, stop, timings))
                     for _ in range(2)]
        for thread in answering:
            thread.start()
        admitted = callers(app, args.seconds, args.callers, waiting)
        time.sleep(2)
        stop.set()
        for thread in answering:
            thread.join()
        round_trip = bare_round_trip(rest_port)
    finally:
        runner.stop()
        redis.stop()
        mock.shutdown()
    per_second = admitted / args.seconds
    baseline = baseline_admitted / (args.seconds / 2)
    print(f"callers admitted to the line: {per_second:,.1f}/s  (direct dial, same run: "
          f"{baseline:,.1f}/s; ratio {per_second / baseline:.2f})")
    if not timings:
        print("accept -> joined: no worker was joined to a caller (see the runner's log: "
              f"{runner.log})")
        return 1
    median = statistics.median(timings)
    print(f"accept -> joined ({len(timings)} calls): median {median:.3f} s, p95 "
          f"{pct(timings, 0.95):.3f} s  (one bare REST round trip: {round_trip:.3f} s; "
          f"ratio {median / round_trip:.2f})")
    met = median <= GOAL_SECONDS
    print(f"goal: median accept -> joined <= {GOAL_SECONDS} s: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
