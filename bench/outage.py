"""How fast callers are put through while Redis is down, as a share of Twilio's webhook limit.

The reliability tests prove what a caller hears while Redis is refused or hung: the menu as
always (its state is in the signed URLs, so it never waits on Redis), then a direct dial where
the bridge would have taken them. How long the answer takes depends on the machine, so it is
measured here instead. One run starts a private ``redis-server`` and the real app with a Twilio
account (so the connect step asks the bridge, which asks Redis), signed webhooks through
Flask's test client, the service's own Redis client and its one-second timeouts, and times the
menu's answer to "1", the one turn of a call that needs Redis:

  up        Redis answering: the baseline of the same run
  refused   Redis killed: connection refused, answered at once by a direct dial
  hung      Redis frozen (SIGSTOP): it accepts connections and never answers; several callers
            at once, each waiting out the client's socket timeouts
  sentinel  no sentinel listening: how long ``REDIS_SENTINELS`` takes to give up

Each figure is printed against Twilio's 15 s limit and against the baseline; the targets are
the bounds the tests used to hold: refused ≤ 3 s (0.2 of the limit), hung ≤ 6 s (0.4: below
gunicorn's 10 s worker timeout), a dead sentinel ≤ 3 socket timeouts.

Run ``python bench/outage.py`` (``--help`` for options). It stops every process it started,
on Ctrl-C or ``kill`` too.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from webhook import (  # noqa: E402
    ACCOUNT_SID,
    CALLER,
    HELPLINE,
    ROOT,
    TOKEN,
    audit_signing_key,
    free_port,
    start_redis,
)
from webhook import _interrupt as stop_on_sigterm  # noqa: E402

TWILIO_LIMIT = 15.0  # seconds Twilio waits for a webhook's answer
TARGETS = {"refused": 3.0, "hung": 6.0}


def build_app(redis_url: str):
    from datetime import UTC, datetime

    from callflow.platform.config import Settings
    from callflow.platform.store import connect
    from webhooks import create_app

    settings = Settings(twilio_auth_token=TOKEN, twilio_account_sid=ACCOUNT_SID,
                        public_url="https://bench.callflow.invalid",
                        secret_key=secrets.token_hex(16), redis_url=redis_url,
                        audit_signing_key=audit_signing_key(),
                        audit_witness=os.path.join(tempfile.mkdtemp(prefix="callflow-bench-"),
                                                   "audit-witness.jsonl"),
                        flows_dir=str(ROOT / "flows"), reload_interval=0, log_level="ERROR")
    noon = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # a Wednesday: both helplines open
    from webhooks.twilio_double import TwilioDouble

    return create_app({"TESTING": True, "PROPAGATE_EXCEPTIONS": False, "SETTINGS": settings,
                       "STORE": connect(settings), "CLOCK": lambda: noon,
                       "TWILIO_HTTP_CLIENT": TwilioDouble()})


# The menu's answer to 1, as Twilio sends it after the notice: the turn that reaches connect.
CONNECT_TURN = "/voice/menu?flow=respect-phoneline&step=main-menu&n=1"


def incoming(sim) -> tuple[float, str]:
    """Seconds to answer one call's connect turn, and its TwiML."""
    fields = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": ACCOUNT_SID,
              "From": CALLER, "Caller": CALLER, "To": HELPLINE, "Called": HELPLINE,
              "CallStatus": "in-progress", "Direction": "inbound", "ApiVersion": "2010-04-01",
              "Digits": "1"}
    started = time.perf_counter()
    response = sim.post(CONNECT_TURN, fields)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"the app answered HTTP {response.status_code}")
    return elapsed, response.get_data(as_text=True)


def at_once(sim, callers: int) -> list[tuple[float, str]]:
    results: list[tuple[float, str]] = []
    lock = threading.Lock()

    def one() -> None:
        result = incoming(sim)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=one) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def sentinel_seconds() -> float:
    import redis

    from callflow.platform.config import Settings
    from callflow.platform.store import connect

    store = connect(Settings(redis_sentinels=f"127.0.0.1:{free_port()}"))
    started = time.perf_counter()
    try:
        store.ping()
    except redis.ConnectionError:
        return time.perf_counter() - started
    raise SystemExit("a sentinel answered on a free port")


def dialled_directly(body: str) -> bool:
    """A <Dial> of the team's numbers, not the bridge's room."""
    return "<Dial" in body and "<Number" in body and "<Conference" not in body


def report(name: str, seconds: list[float], baseline: float, direct: bool) -> bool:
    worst = max(seconds)
    target = TARGETS.get(name)
    met = target is None or worst <= target
    verdict = "" if target is None else f"  target ≤ {target:g} s: {'met' if met else 'NOT MET'}"
    print(f"{name:<9} median {statistics.median(seconds) * 1000:8.1f} ms  max {worst * 1000:8.1f}"
          f" ms  = {worst / TWILIO_LIMIT:.3f} of Twilio's limit, "
          f"{worst / baseline:7.1f}x the baseline  put through by a direct dial: "
          f"{'yes' if direct else 'no'}{verdict}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=50, help="calls timed per state")
    parser.add_argument("--hung-callers", type=int, default=3,
                        help="callers at once while Redis is frozen")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    logging.disable(logging.ERROR)  # "store unavailable at the bridge", once a request

    from callflow.platform.store import TIMEOUT_SECONDS
    from webhooks.simulator import TwilioSim

    with tempfile.TemporaryDirectory(prefix="callflow-outage-") as folder:
        redis_server = start_redis(Path(folder), None)
        try:
            sim = TwilioSim(build_app(f"redis://127.0.0.1:{redis_server.port}/0"))
            incoming(sim)  # warm up: the first request builds the app's lazy parts
            up = [incoming(sim) for _ in range(args.calls)]
            baseline = statistics.median(s for s, _ in up)
            all_met = report("up", [s for s, _ in up], baseline,
                             all(dialled_directly(body) for _, body in up))

            os.killpg(redis_server.proc.pid, signal.SIGSTOP)
            hung = at_once(sim, args.hung_callers)
            all_met &= report("hung", [s for s, _ in hung], baseline,
                              all(dialled_directly(body) for _, body in hung))
            os.killpg(redis_server.proc.pid, signal.SIGCONT)

            redis_server.stop()
            refused = [incoming(sim) for _ in range(args.calls)]
            all_met &= report("refused", [s for s, _ in refused], baseline,
                              all(dialled_directly(body) for _, body in refused))
        finally:
            redis_server.stop()
    dead = sentinel_seconds()
    met = dead <= 3 * TIMEOUT_SECONDS
    all_met &= met
    print(f"sentinel  gave up after {dead * 1000:8.1f} ms = {dead / TIMEOUT_SECONDS:.2f} socket "
          f"timeouts  target ≤ 3: {'met' if met else 'NOT MET'}")
    print("every target met" if all_met else "a target was not met (see above)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
