"""Load with faults: the webhooks under a bounded load while the flows are edited (a broken
save, then a good one) and redis-server is killed and restarted, beside a baseline run of the
same load without faults, in one run.

The script starts a private ``redis-server`` and the real app under gunicorn (the project's
``gunicorn.conf.py``; its clock pinned inside opening hours, ``bench/real_app.py``), both on free
ports on 127.0.0.1, with the flows read from a temporary copy that the app's folder watcher
reloads. Caller threads play whole calls as Twilio would (signed requests; the notice, then 1 at
the menu, following the TwiML), each on a keep-alive connection, for ``--seconds``: first the
baseline, then the same with faults at fixed points of the run:

  25%  the Respect Phoneline's file is replaced with a broken one (the last good flow must stay)
  40%  redis-server is killed (callers must still hear the notice and be put through)
  50%  redis-server is started again on the same port (the app must recover by itself)
  65%  the file is replaced with a good edit (a new menu prompt, which callers must then hear)

An error is a request that got no answer, a non-200, or a body that is not TwiML; a call the
app put through by its degraded path (the apology, the notice, a direct dial) is counted as
degraded, not as an error. Reported per run: calls, requests served, errors, degraded answers,
requests per second, p50/p99/max latency; and whether the caller's number reached the server
logs or Redis.

Run ``python bench/load.py`` (``--help`` for options). It stops by itself after about
2 x ``--seconds`` plus start-up, and kills every process it started, on Ctrl-C too.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from webhook import (  # noqa: E402  (bench/ is not a package: its modules import each other)
    ACCOUNT_SID,
    BENCH,
    CALLER,
    HELPLINE,
    ROOT,
    TOKEN,
    Caller,
    CallFailed,
    Service,
    Tally,
    audit_env,
    free_port,
    keep_calling,
    spawn,
    start_redis,
    wait_until_idle,
    wait_until_serving,
)
from webhook import _interrupt as stop_on_sigterm  # noqa: E402

APP = "real_app:create_app()"
FLOW_FILE = "respect-phoneline.yaml"
NEW_PROMPT = "To talk to someone about your behaviour now, press 1."
APOLOGY_START = "Sorry, we are having a technical problem."
RELOAD_INTERVAL = "0.5"  # seconds between the app's checks of the flows folder
FAULTS = ((0.25, "broken flow saved"), (0.40, "redis-server killed"),
          (0.50, "redis-server restarted"), (0.65, "good flow edit saved"))


# -- the servers ----------------------------------------------------------------------------------


def crash(service: Service) -> None:
    """kill -9, as a crash: no shutdown, connections refused at once."""
    try:
        os.killpg(service.proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    service.proc.wait(timeout=10)


def start_gunicorn(redis_port: int, flows: Path, args: argparse.Namespace,
                   workdir: Path) -> Service:
    port = free_port()
    env = dict(os.environ, **audit_env(workdir), TWILIO_AUTH_TOKEN=TOKEN,
               SECRET_KEY=secrets.token_hex(16),
               CALLFLOW_PUBLIC_URL=f"http://127.0.0.1:{port}",
               REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", CALLFLOW_FLOWS=str(flows),
               CALLFLOW_RELOAD_INTERVAL=RELOAD_INTERVAL, CALLFLOW_LOG_LEVEL="INFO")
    for name in ("PORT", "TWILIO_ACCOUNT_SID", "REDIS_SENTINELS", "TWILIO_API_URL"):
        env.pop(name, None)  # no REST account: callers are dialled directly, nothing leaves
    argv = [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"),
            "-b", f"127.0.0.1:{port}", "-w", str(args.workers), "--threads", str(args.threads),
            "--no-control-socket", "--pythonpath", f"{BENCH},{ROOT}", APP]
    return spawn("web", argv, port, workdir, env, None)


# -- the load -------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run's figures, added up over the caller threads."""

    name: str
    started: float = 0.0  # time.monotonic() at the start of the run
    seconds: float = 0.0
    tally: Tally = field(default_factory=Tally)
    degraded: int = 0
    degraded_span: list[float] = field(default_factory=list)  # first and last, into the run
    prompts: Counter = field(default_factory=Counter)  # which menu prompt callers heard
    first_new_prompt: float | None = None  # seconds into the run
    events: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def errors(self) -> int:
        return sum(self.tally.errors.values())

    def pct(self, q: int) -> float:
        data = self.tally.latencies
        if len(data) < 2:
            return float("nan")
        return statistics.quantiles(data, n=100, method="inclusive")[q - 1]


class FaultCaller(Caller):
    """The bench's signing caller, which also accepts the degraded path as a way through."""

    def call_once(self, run: Run, tally: Tally) -> None:
        base = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01",
                "CallSid": "CA" + secrets.token_hex(16), "CallStatus": "in-progress",
                "Direction": "inbound", "To": HELPLINE, "Called": HELPLINE, "ToCountry": "GB",
                "From": CALLER, "Caller": CALLER, "FromCountry": "GB", "CallerCountry": "GB"}
        url = f"{self.public}/voice/incoming"
        extra = [{"CallStatus": "ringing"}, {"msg": "Gather End"},
                 {"Digits": "1", "FinishedOnKey": "", "msg": "Gather End"}]
        for turn, fields in enumerate(extra):
            root = self.post(url, dict(base, **fields), tally)
            said = " ".join(e.text or "" for e in root.iter("Say"))
            dial, gather = root.find("Dial"), root.find("Gather")
            if said.startswith(APOLOGY_START):  # the degraded path: notice, then a direct dial
                if dial is None and root.find("Hangup") is None:
                    raise CallFailed("degraded answer without a dial")
                with run.lock:
                    run.degraded += 1
                    at = time.monotonic() - run.started
                    run.degraded_span[:] = [min([at, *run.degraded_span]),
                                            max([at, *run.degraded_span])]
                return
            if turn == 1:
                prompt = "new" if NEW_PROMPT in said else "old"
                with run.lock:
                    run.prompts[prompt] += 1
                    if prompt == "new" and run.first_new_prompt is None:
                        run.first_new_prompt = time.monotonic() - run.started
            if turn == 2:
                if dial is None:
                    raise CallFailed("the menu's answer has no <Dial>")
                tally.calls += 1
                return
            if gather is None or not gather.get("action"):
                raise CallFailed(f"no <Gather action> at turn {turn}")
            url = gather.get("action")


def drive(port: int, threads: int, seconds: float, run: Run) -> None:
    """Keep ``threads`` calls going for ``seconds`` from ``run.started``; bounded whatever the
    server does."""
    tallies = keep_calling(threads, run.started + seconds, lambda: FaultCaller(port),
                           lambda caller, tally: caller.call_once(run, tally))
    run.seconds = time.monotonic() - run.started
    for tally in tallies:
        run.tally.add(tally)


def good_edit(text: str) -> str:
    start = text.index("    prompt: >-")
    end = text.index("    options:", start)
    return text[:start] + f"    prompt: {NEW_PROMPT}\n" + text[end:]


def inject_faults(seconds: float, flow_file: Path, services: dict[str, Service],
                  workdir: Path, run: Run, stop: threading.Event) -> None:
    """The faults at their fixed points of the run (see the module's docstring)."""
    good = flow_file.read_text()
    for at, what in FAULTS:
        if stop.wait(max(0.0, run.started + at * seconds - time.monotonic())):
            return
        if what == "broken flow saved":
            flow_file.write_text(good.replace("start: welcome", "start: main-menu", 1))
        elif what == "redis-server killed":
            crash(services["redis"])
        elif what == "redis-server restarted":
            services["redis"] = start_redis(workdir, None, port=services["redis"].port,
                                            name="redis-again")
        elif what == "good flow edit saved":
            flow_file.write_text(good_edit(good))
        run.events.append((time.monotonic() - run.started, what))


def leaked(services: list[Service], redis_port: int) -> list[str]:
    """Where the caller's number turned up: the servers' logs, or any key or value in Redis."""
    digits = CALLER.lstrip("+")
    found = [s.name for s in services if digits in s.tail(10**6)]
    try:
        import redis

        client = redis.Redis(port=redis_port, socket_timeout=5, decode_responses=True)
        for key in client.scan_iter(count=1000):
            kind = client.type(key)
            value = {"string": client.get, "hash": client.hgetall, "list": lambda k:
                     client.lrange(k, 0, -1), "set": client.smembers, "zset": lambda k:
                     client.zrange(k, 0, -1)}.get(kind, lambda k: "")(key)
            if digits in key or digits in str(value):
                found.append(f"redis key {key[:40]}")
        client.close()
    except Exception as exc:  # reported, not hidden
        found.append(f"redis not checked: {type(exc).__name__}")
    return found


# -- reporting ------------------------------------------------------------------------------------


def reloads(web: Service) -> tuple[int, int]:
    """How many times a gunicorn worker refused a flow edit, and reloaded one (its log)."""
    log = web.tail(10**6)
    return log.count('"event": "reload_refused"'), log.count('"event": "reloaded"')


def report(runs: list[Run], leaks: list[str], reload_counts: tuple[int, int]) -> bool:
    print(f"\n{'run':<9} {'seconds':>7} {'calls':>6} {'requests':>8} {'req/s':>7} "
          f"{'errors':>6} {'degraded':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    for run in runs:
        rps = run.tally.requests / run.seconds if run.seconds else 0.0
        worst = max(run.tally.latencies, default=float("nan"))
        print(f"{run.name:<9} {run.seconds:7.1f} {run.tally.calls:6d} {run.tally.requests:8d} "
              f"{rps:7.1f} {run.errors:6d} {run.degraded:8d} {run.pct(50):7.2f} "
              f"{run.pct(99):7.2f} {worst:7.1f}")
    for run in runs:
        for error, count in run.tally.errors.most_common():
            print(f"  {run.name} error x{count}: {error}")
    faults = runs[-1]
    print("\nfaults (seconds into the run): "
          + "; ".join(f"{at:.1f} {what}" for at, what in faults.events))
    new_at = faults.first_new_prompt
    edited = next((at for at, what in faults.events if what == "good flow edit saved"), None)
    if faults.degraded_span:
        print(f"degraded answers from {faults.degraded_span[0]:.1f} s to "
              f"{faults.degraded_span[1]:.1f} s into the run, then the normal flow again")
    print(f"menu prompts heard: old {faults.prompts['old']}, new {faults.prompts['new']}; "
          + (f"the good edit was live {new_at - edited:.2f} s after it was saved"
             if new_at is not None and edited is not None else "the good edit was never heard"))
    print(f"flow reloads in the web log: {reload_counts[0]} errors refusing the broken save, "
          f"{reload_counts[1]} reloads of the good edit (one per gunicorn worker)")
    print("caller's number in server logs or Redis: " + (", ".join(leaks) or "nowhere"))
    return (all(run.errors == 0 for run in runs) and not leaks and new_at is not None
            and all(run.degraded == 0 for run in runs[:-1]))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="seconds of load per run: baseline, then faults (default 10)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="calls in flight, one keep-alive connection each (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    parser.add_argument("--threads", type=int, default=4,
                        help="gunicorn threads per worker (default 4)")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs here")
    args = parser.parse_args(argv)
    if min(args.seconds, args.concurrency, args.workers, args.threads) <= 0:
        parser.error("every count and duration must be positive")
    if args.seconds < 4:
        parser.error("--seconds must be at least 4, so the faults have room")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    print(f"{len(os.sched_getaffinity(0))} CPUs; gunicorn -w {args.workers} --threads "
          f"{args.threads}; {args.concurrency} callers; {args.seconds:g} s baseline, then "
          f"{args.seconds:g} s with faults", flush=True)
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
        return run_all(args, args.logs)
    with tempfile.TemporaryDirectory(prefix="callflow-load-") as tmp:
        return run_all(args, Path(tmp))


def run_all(args: argparse.Namespace, workdir: Path) -> int:
    flows = workdir / "flows"
    shutil.rmtree(flows, ignore_errors=True)
    shutil.copytree(ROOT / "flows", flows)
    services: dict[str, Service] = {}
    processes: list[Service] = []  # every one started, the killed redis-server included
    stop = threading.Event()
    injector: threading.Thread | None = None
    try:
        services["redis"] = start_redis(workdir, None)
        processes.append(services["redis"])
        services["web"] = start_gunicorn(services["redis"].port, flows, args, workdir)
        processes.append(services["web"])
        wait_until_serving(services["web"])
        wait_until_idle([services["web"]])
        runs = [Run("baseline"), Run("faults")]
        print("baseline ...", flush=True)
        runs[0].started = time.monotonic()
        drive(services["web"].port, args.concurrency, args.seconds, runs[0])
        print("faults ...", flush=True)
        runs[1].started = time.monotonic()
        injector = threading.Thread(target=inject_faults, daemon=True, args=(
            args.seconds, flows / FLOW_FILE, services, workdir, runs[1], stop))
        injector.start()
        drive(services["web"].port, args.concurrency, args.seconds, runs[1])
        injector.join(30)
        processes.extend(s for s in services.values() if s not in processes)
        for service in services.values():
            if service.proc.poll() is not None:
                print(f"{service.name} died during the run:\n{service.tail()}")
        clean = report(runs, leaked(processes, services["redis"].port), reloads(services["web"]))
        return 0 if clean else 1
    except KeyboardInterrupt:
        print("\ninterrupted; stopping servers", file=sys.stderr)
        return 130
    finally:
        stop.set()
        if injector is not None:
            injector.join(15)
        processes.extend(s for s in services.values() if s not in processes)
        for service in reversed(processes):
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
