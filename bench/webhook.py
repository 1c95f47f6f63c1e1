"""Throughput and latency of the real app, as ratios to two baselines measured in the same run.

Absolute requests per second say more about the machine than about callflow, so one run
measures every server, served the same way (the project's ``gunicorn.conf.py``, the same
workers and threads), under the same load, and prints the ratios:

- **bare** (``bench/bare_app.py``): a Flask app returning static TwiML, no signature check;
- **sample** (``bench/sample_app.py``): the shape of Twilio's own IVR sample, a signature check
  with the library's validator and a ``VoiceResponse`` built per request.

Two workloads (``--workload``). A **call** is what Twilio sends for a caller who hears the
notice and presses 1: a signed POST of ``/voice/incoming``, then of the notice's action, then
of the menu's action with ``Digits=1``, each action URL read from the TwiML just returned.
**incoming** is the first of those alone, the webhook every call starts with. The real app
checks every signature, carries the call's state in the signed URLs, walks the shipped flows,
and has a private ``redis-server`` started here that it should never need before the bridge.

Targets (issue 13): a call: real/bare >= 0.7x req/s, p99 <= 1.5x bare's, server CPU per
request <= 1.5x bare's; incoming: real/bare >= 0.7x and real/sample >= 1.2x req/s.

The load generator is Python threads on keep-alive ``http.client`` connections to 127.0.0.1,
spread over ``--clients`` processes; it shares the machine's cores with the servers, so the
server-side CPU per request (read from /proc for each server's process group) is printed too:
it is the figure least disturbed by the load generator and by neighbours.

Run ``python bench/webhook.py`` (``--help`` for options). It stops by itself after
2 x (warm-up + ``--seconds``) and kills every process it started, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.pool import Pool
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
TOKEN = "bench-auth-token-" + "0" * 16
HELPLINE = "+441632960001"  # the Respect Phoneline (fictional number)
CALLER = "+447700900999"  # fictional; the real app drops it at the edge
ACCOUNT_SID = "AC" + "0" * 32
TARGET_RPS_RATIO = 0.7  # real/bare req/s
TARGET_P99_RATIO = 1.5  # real/bare p99 latency, a whole call
TARGET_CPU_RATIO = 1.5  # real/bare server CPU per request, a whole call
TARGET_SAMPLE_RATIO = 1.2  # real/sample req/s, incoming alone
REQUEST_TIMEOUT = 10.0  # seconds; gunicorn's own timeout is 10 s too
APPS = {"bare": "bare_app:create_app()", "sample": "sample_app:create_app()",
        "real": "real_app:create_app()"}
LIVE_APP = "webhooks:create_app()"


class CallFailed(Exception):
    """One request of a call did not get the TwiML it should; the call is abandoned."""


# -- processes we start, and stop whatever happens ----------------------------------------------


def free_port() -> int:
    """A port nobody listens on now, so runs beside other services and tests do not clash."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    """A child process in its own session, so it and its children can be stopped together
    (and so Ctrl-C in the terminal reaches only us, who then stop it in order)."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    def cpu_seconds(self) -> float | None:
        """User + system CPU of every process in the group so far (Linux /proc only)."""
        total, tick = 0, os.sysconf("SC_CLK_TCK")
        try:
            entries = os.listdir("/proc")
        except OSError:
            return None
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended while we looked
            if int(stat[2]) == self.proc.pid:  # field 5, pgrp; we made it the group leader
                total += int(stat[11]) + int(stat[12])  # utime, stime
        return total / tick

    def stop(self) -> None:
        """TERM the whole group (gunicorn's workers too), then KILL what is left.

        The group is signalled even when its leader has exited, as long as any member lives:
        Linux does not hand out its id again until the group is empty.
        """
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break  # nobody left in the group
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self.alive():
                time.sleep(0.05)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)

    def alive(self) -> bool:
        """Whether any process of the group still runs (a zombie leader does not count)."""
        if self.proc.poll() is None:
            return True
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], port: int, workdir: Path, env: dict[str, str],
          cpus: set[int] | None) -> Service:
    """Start a server in its own session with its output in a log file, kept out of the
    report and shown only if it fails to start."""
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
            # No threads exist yet in this process, so preexec_fn is safe here.
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    return Service(name, proc, port, log)


def start_redis(workdir: Path, cpus: set[int] | None, *, port: int | None = None,
                name: str = "redis") -> Service:
    """A private, empty, non-persistent Redis (on ``port``, or a free one), answering PING when
    this returns: no other run's keys, nothing written to disk."""
    binary = shutil.which("redis-server")
    if not binary:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = port or free_port()
    service = spawn(name, [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], port, workdir, dict(os.environ), cpus)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return service
        except OSError:
            time.sleep(0.05)
    service.stop()
    raise SystemExit(f"redis-server did not start:\n{service.tail()}")


def audit_signing_key() -> str:
    """A fresh Ed25519 key for one run's audit log (the service refuses to start on a shared
    Redis without one)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii")


def audit_env(workdir: Path) -> dict[str, str]:
    """What a server of this run needs for its audit log: a key, and a witness file here."""
    return {"CALLFLOW_AUDIT_SIGNING_KEY": audit_signing_key(),
            "CALLFLOW_AUDIT_WITNESS": str(workdir / "audit-witness.jsonl")}


def start_gunicorn(name: str, app: str, redis_url: str, args: argparse.Namespace,
                   workdir: Path, cpus: set[int] | None) -> Service:
    """Serve ``app`` as production does (the project's gunicorn.conf.py), on loopback only."""
    port = free_port()
    env = dict(os.environ, **audit_env(workdir),
               TWILIO_AUTH_TOKEN=TOKEN,
               SECRET_KEY=secrets.token_hex(16),
               CALLFLOW_PUBLIC_URL=f"http://127.0.0.1:{port}",
               REDIS_URL=redis_url,
               CALLFLOW_FLOWS=str(ROOT / "flows"),
               CALLFLOW_RELOAD_INTERVAL="0",
               CALLFLOW_LOG_LEVEL="WARNING")
    env.pop("PORT", None)
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
            "-b", f"127.0.0.1:{port}", "-w", str(args.workers), "--threads", str(args.threads),
            # No control socket: its default path is shared by every gunicorn on the machine.
            "--no-control-socket", "--pythonpath", f"{BENCH},{ROOT}", app]
    return spawn(name, argv, port, workdir, env, cpus)


def wait_until_serving(service: Service, timeout: float = 30.0) -> None:
    """Until a worker answers HTTP (any status: the real app refuses an unsigned request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=2)
            conn.request("GET", "/voice/incoming")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{service.name} server did not start:\n{service.tail()}")


def wait_until_idle(services: list[Service], timeout: float = 30.0) -> None:
    """Until no server burns CPU: every gunicorn worker has imported and built its app, so
    the first measured seconds do not run on fewer workers than the rest."""
    deadline = time.monotonic() + timeout
    before = [s.cpu_seconds() for s in services]
    while time.monotonic() < deadline:
        time.sleep(0.5)
        after = [s.cpu_seconds() for s in services]
        if any(b is None or a is None for a, b in zip(after, before, strict=True)):
            time.sleep(3)  # no /proc: give the workers a moment instead
            return
        if all(a - b < 0.05 for a, b in zip(after, before, strict=True)):
            return
        before = after


# -- the load generator -------------------------------------------------------------------------


@dataclass
class Tally:
    """What one client saw in its measured window; tallies from every client are added up."""

    requests: int = 0
    calls: int = 0
    latencies: list[float] = field(default_factory=list)  # ms per request
    call_latencies: list[float] = field(default_factory=list)  # ms per whole call
    errors: Counter = field(default_factory=Counter)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.calls += other.calls
        self.latencies.extend(other.latencies)
        self.call_latencies.extend(other.call_latencies)
        self.errors.update(other.errors)


class Caller:
    """One simulated Twilio connection: signs like Twilio, follows the TwiML it is given."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.public = f"http://127.0.0.1:{port}"
        self.validator = RequestValidator(TOKEN)
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)

    def post(self, url: str, params: dict[str, str], tally: Tally) -> ET.Element:
        parts = urlsplit(url)
        if parts.netloc != f"127.0.0.1:{self.port}":
            raise CallFailed(f"action URL on another host: {parts.netloc}")
        target = f"{parts.path}?{parts.query}" if parts.query else parts.path
        body = urlencode(params)
        started = time.perf_counter()
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Twilio-Signature": self.validator.compute_signature(url, params)}
        try:
            self.conn.request("POST", target, body=body, headers=headers)
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.conn.close()
            self.conn = self._connect()
            raise CallFailed(f"connection: {type(exc).__name__}") from None
        tally.latencies.append((time.perf_counter() - started) * 1000)
        tally.requests += 1
        if response.status != 200:
            raise CallFailed(f"HTTP {response.status}")
        if "xml" not in (response.getheader("Content-Type") or ""):
            raise CallFailed("not TwiML (Content-Type)")
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            raise CallFailed("not TwiML (XML)") from None
        if root.tag != "Response":
            raise CallFailed("not TwiML (root)")
        return root

    def call(self, tally: Tally, workload: str = "call") -> None:
        """Incoming, notice answered (timed out, no key), menu answered with 1: a dial.
        With ``workload`` "incoming", the first request alone."""
        base = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01",
                "CallSid": "CA" + secrets.token_hex(16), "CallStatus": "in-progress",
                "Direction": "inbound", "To": HELPLINE, "Called": HELPLINE, "ToCountry": "GB",
                "From": CALLER, "Caller": CALLER, "FromCountry": "GB", "CallerCountry": "GB"}
        started = time.perf_counter()
        root = self.post(f"{self.public}/voice/incoming", dict(base, CallStatus="ringing"), tally)
        if workload == "incoming":
            _action(root, "Gather", "incoming")  # the notice's gather, as a call would follow
            tally.call_latencies.append((time.perf_counter() - started) * 1000)
            tally.calls += 1
            return
        root = self.post(_action(root, "Gather", "notice"), dict(base, msg="Gather End"), tally)
        root = self.post(_action(root, "Gather", "menu"),
                         dict(base, Digits="1", FinishedOnKey="", msg="Gather End"), tally)
        if root.find("Dial") is None:
            raise CallFailed("the menu's answer has no <Dial>")
        tally.call_latencies.append((time.perf_counter() - started) * 1000)
        tally.calls += 1


def _action(root: ET.Element, verb: str, after: str) -> str:
    element = root.find(f".//{verb}")
    if element is None or not element.get("action"):
        raise CallFailed(f"no <{verb} action> after {after}")
    return element.get("action", "")


def keep_calling(threads: int, deadline: float, new_caller, call) -> list[Tally]:
    """``threads`` callers (``new_caller()``), each making calls (``call(caller, tally)``)
    until ``deadline`` (``time.monotonic()``); bounded whatever the server does."""
    tallies = [Tally() for _ in range(threads)]
    seconds = max(0.0, deadline - time.monotonic())

    def loop(tally: Tally) -> None:
        caller = new_caller()
        while time.monotonic() < deadline:
            try:
                call(caller, tally)
            except CallFailed as exc:
                tally.errors[str(exc)] += 1
                if str(exc).startswith("connection"):
                    time.sleep(0.01)  # a refused connection must not spin
        caller.conn.close()

    callers = [threading.Thread(target=loop, args=(t,), daemon=True) for t in tallies]
    for thread in callers:
        thread.start()
    for thread in callers:
        thread.join(seconds + REQUEST_TIMEOUT * 3 + 5)
    return tallies


def drive(port: int, threads: int, seconds: float, workload: str = "call") -> Tally:
    """Keep ``threads`` calls going for ``seconds``; time-bounded, whatever the server does."""
    total = Tally()
    for tally in keep_calling(threads, time.monotonic() + seconds, lambda: Caller(port),
                              lambda caller, tally: caller.call(tally, workload)):
        total.add(tally)
    return total


def _client_init() -> None:
    """Load-generator processes leave Ctrl-C and kills to the parent, which ends them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _drive_job(job: tuple[int, int, float, str]) -> Tally:
    return drive(*job)


def load(port: int, concurrency: int, clients: int, seconds: float,
         pool: Pool | None, workload: str = "call") -> Tally:
    """``concurrency`` connections spread over ``clients`` processes (the pool) or threads."""
    if pool is None:
        return drive(port, concurrency, seconds, workload)
    shares = [concurrency // clients + (i < concurrency % clients) for i in range(clients)]
    total = Tally()
    for tally in pool.map(_drive_job, [(port, n, seconds, workload) for n in shares if n]):
        total.add(tally)
    return total


# -- measuring and reporting ----------------------------------------------------------------------


@dataclass
class Measure:
    seconds: float = 0.0
    cpu: float | None = 0.0  # the server's process group
    store_cpu: float | None = 0.0  # the redis-server, which only the real app uses
    tally: Tally = field(default_factory=Tally)
    slices: list[float] = field(default_factory=list)  # req/s of each slice

    @property
    def rps(self) -> float:
        return self.tally.requests / self.seconds if self.seconds else 0.0

    @property
    def cps(self) -> float:
        return self.tally.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: int, calls: bool = False) -> float:
        data = self.tally.call_latencies if calls else self.tally.latencies
        if len(data) < 2:
            return float("nan")
        return statistics.quantiles(data, n=100, method="inclusive")[q - 1]

    @property
    def cpu_us(self) -> float | None:
        if self.cpu is None or not self.tally.requests:
            return None
        return self.cpu / self.tally.requests * 1e6

    @property
    def store_cpu_us(self) -> float | None:
        if self.store_cpu is None or not self.tally.requests:
            return None
        return self.store_cpu / self.tally.requests * 1e6


def warm_up(service: Service, args: argparse.Namespace, pool: Pool | None) -> None:
    """Unmeasured load first: imports, connection pools and caches settle in every worker."""
    if args.warmup > 0:
        load(service.port, args.concurrency, args.clients, args.warmup, pool, args.workload)


def measure(service: Service, store: Service, args: argparse.Namespace, pool: Pool | None,
            into: Measure) -> None:
    """One slice of load on one server, added to its totals."""
    seconds = args.seconds / args.slices
    cpu_before, store_before = service.cpu_seconds(), store.cpu_seconds()
    started = time.monotonic()
    tally = load(service.port, args.concurrency, args.clients, seconds, pool, args.workload)
    elapsed = time.monotonic() - started
    cpu_after, store_after = service.cpu_seconds(), store.cpu_seconds()
    into.seconds += elapsed
    into.cpu = _spent(into.cpu, cpu_before, cpu_after)
    into.store_cpu = _spent(into.store_cpu, store_before, store_after)
    into.tally.add(tally)
    into.slices.append(tally.requests / elapsed)


def _spent(total: float | None, before: float | None, after: float | None) -> float | None:
    if total is None or before is None or after is None:
        return None
    return total + after - before


def report(results: dict[str, Measure], workload: str = "call") -> bool:
    """Print the table and the ratios against each baseline; True when no request failed."""
    print(f"\n{'server':<6} {'calls/s':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'call p50':>9} {'call p99':>9} {'CPU us/req':>11} {'errors':>7}")
    for name, m in results.items():
        cpu = f"{m.cpu_us:11.0f}" if m.cpu_us is not None else f"{'n/a':>11}"
        print(f"{name:<6} {m.cps:8.1f} {m.rps:8.1f} {m.pct(50):8.2f} {m.pct(99):8.2f} "
              f"{m.pct(50, True):9.2f} {m.pct(99, True):9.2f} {cpu} "
              f"{sum(m.tally.errors.values()):7d}")
    clean = True
    for name, m in results.items():
        for error, count in m.tally.errors.most_common():
            clean = False
            print(f"  {name} error x{count}: {error}")
    real = results["real"]
    if not all(m.rps for m in results.values()):
        print("\nno ratio: a server answered nothing")
        return False
    targets = {"bare": TARGET_RPS_RATIO} if workload == "call" else {
        "bare": TARGET_RPS_RATIO, "sample": TARGET_SAMPLE_RATIO}
    print()
    for name, base in results.items():
        if name == "real":
            continue
        ratio = real.rps / base.rps
        target = targets.get(name)
        verdict = (f" (target >= {target}x: {'met' if ratio >= target else 'NOT met'})"
                   if target else "")
        pairs = sorted(r / b for r, b in zip(real.slices, base.slices, strict=True) if b)
        print(f"real/{name:<6} req/s {ratio:.2f}x{verdict}; slice pairs: median "
              f"{statistics.median(pairs):.2f}x, range {pairs[0]:.2f}-{pairs[-1]:.2f}x")
        p99 = real.pct(99) / base.pct(99)
        p99_verdict = (f" (target <= {TARGET_P99_RATIO}x: "
                       f"{'met' if p99 <= TARGET_P99_RATIO else 'NOT met'})"
                       if name == "bare" and workload == "call" else "")
        print(f"real/{name:<6} latency p50 {real.pct(50) / base.pct(50):.2f}x, p99 "
              f"{p99:.2f}x{p99_verdict}")
        if real.cpu_us and base.cpu_us:
            cpu = real.cpu_us / base.cpu_us
            cpu_verdict = (f" (target <= {TARGET_CPU_RATIO}x: "
                           f"{'met' if cpu <= TARGET_CPU_RATIO else 'NOT met'})"
                           if name == "bare" and workload == "call" else "")
            print(f"real/{name:<6} server CPU per request {cpu:.2f}x{cpu_verdict}: real "
                  f"{real.cpu_us:.0f} us (+ redis-server {real.store_cpu_us or 0:.0f} us), "
                  f"{name} {base.cpu_us:.0f} us")
    return clean


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="measured seconds per server (default 10)")
    parser.add_argument("--slices", type=int, default=10,
                        help="the measured seconds are cut into this many slices, taken in "
                        "turns (bare, real, real, bare, ...) so a noisy moment on a shared "
                        "machine hits both servers alike (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="unmeasured seconds of load on each server first (default 2)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="calls in flight, one keep-alive connection each (default 8)")
    parser.add_argument("--clients", type=int, default=2,
                        help="load-generator processes sharing the connections (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4,
                        help="gunicorn threads per worker (default 4)")
    parser.add_argument("--clock", choices=("pinned", "live"), default="pinned",
                        help="pinned: the real app's clock inside opening hours (bench/real_app.py)"
                        "; live: webhooks:create_app() as is (out of hours a call ends early)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the load generator to the last CPU, servers to the others")
    parser.add_argument("--workload", choices=("call", "incoming"), default="call",
                        help="call: incoming, notice and menu of a whole call; incoming: the "
                        "first webhook alone (default call)")
    parser.add_argument("--logs", type=Path,
                        help="keep the servers' logs (gunicorn access log included) here")
    args = parser.parse_args(argv)
    if min(args.seconds, args.concurrency, args.clients, args.workers, args.threads,
           args.slices) <= 0 or args.warmup < 0:
        parser.error("every count and duration must be positive")
    args.clients = min(args.clients, args.concurrency)
    return args


def _interrupt(signum: int, frame: object) -> None:
    """A plain ``kill`` unwinds like Ctrl-C, so the servers are stopped either way."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    cpus = sorted(os.sched_getaffinity(0))
    server_cpus = client_cpus = None
    if args.pin and len(cpus) >= 2:
        server_cpus, client_cpus = set(cpus[:-1]), {cpus[-1]}
    apps = dict(APPS, real=LIVE_APP) if args.clock == "live" else APPS
    print(f"{len(cpus)} CPUs; workload {args.workload}; gunicorn -w {args.workers} --threads "
          f"{args.threads} for each; "
          f"{args.concurrency} connections over {args.clients} client process(es); "
          f"{args.seconds:g} s measured in {args.slices} slices (+{args.warmup:g} s warm-up) per "
          f"server; clock {args.clock}; pinned: {'yes' if server_cpus else 'no'}", flush=True)

    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        return run(args, args.logs, apps, server_cpus, client_cpus)
    with tempfile.TemporaryDirectory(prefix="callflow-bench-") as tmp:
        return run(args, Path(tmp), apps, server_cpus, client_cpus)


def run(args: argparse.Namespace, workdir: Path, apps: dict[str, str],
        server_cpus: set[int] | None, client_cpus: set[int] | None) -> int:
    """Start everything, measure in turns, report; stop everything whatever happens."""
    services: list[Service] = []
    pool: Pool | None = None
    try:
        redis = start_redis(workdir, server_cpus)
        services.append(redis)
        servers = {}
        for name, app in apps.items():
            servers[name] = start_gunicorn(name, app, f"redis://127.0.0.1:{redis.port}/0",
                                           args, workdir, server_cpus)
            services.append(servers[name])
        for service in servers.values():
            wait_until_serving(service)
        wait_until_idle(services)
        if client_cpus:
            os.sched_setaffinity(0, client_cpus)
        if args.clients > 1:
            pool = multiprocessing.get_context("fork").Pool(args.clients, initializer=_client_init)
        results = {name: Measure() for name in servers}
        for service in servers.values():
            warm_up(service, args, pool)
        names = list(servers)
        for turn in range(args.slices):
            # Each server first as often as last, so a noisy moment hits them alike.
            order = names[turn % len(names):] + names[:turn % len(names)]
            for name in order if turn % 2 == 0 else reversed(order):
                measure(servers[name], redis, args, pool, results[name])
            if sys.stdout.isatty():
                print(f"\rmeasured {turn + 1}/{args.slices} slices", end="", flush=True)
        for service in services:
            if service.proc.poll() is not None:
                print(f"{service.name} died during the run:\n{service.tail()}")
        return 0 if report(results, args.workload) else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        # A second Ctrl-C must not cut the clean-up short and leave servers running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if pool is not None:
                pool.terminate()
                pool.join()
        finally:
            for service in reversed(services):
                service.stop()


if __name__ == "__main__":
    sys.exit(main())
