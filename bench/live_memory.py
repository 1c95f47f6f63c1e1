"""Redis memory per live call on the bridge, against the 1 KiB target.

Starts a private redis-server, opens N live calls as the service does (a call on the bridge
with two worker legs rung, one accepted, the conference started, a manager listening) and
measures ``used_memory`` before and after, and ``MEMORY USAGE`` of one call's keys. The
baseline, measured in the same run, is the same number of one-field hashes: Redis's own
per-key cost, which no design can go below.

    python bench/live_memory.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callflow.platform import keys  # noqa: E402
from callflow.records.live import LiveCalls  # noqa: E402

TARGET_BYTES = 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, redis.Redis]:
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port",
                             str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                             "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, decode_responses=True)
    for _ in range(100):
        try:
            client.ping()
            return proc, client
        except redis.ConnectionError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def open_calls(client: redis.Redis, count: int) -> list[str]:
    live = LiveCalls(client, "bench-secret")
    now = datetime.now(UTC)
    ids = []
    for n in range(count):
        call = live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                         helpline_number="+441632960001", caller_sid=f"CA{n:032x}", now=now)
        live.note(call.id, leg_count="2", conference_sid=f"CF{n:032x}")
        live.set_leg(call.id, 0, f"CA{n + 1:032x}")
        live.set_leg(call.id, 1, f"CA{n + 2:032x}")
        live.accept(call.id, 0, now)
        live.set_leg_status(call.id, 1, "canceled")
        client.hset(keys.live_call(call.id), mapping={"monitor_session": "s" * 16,
                                                      "monitor_leg": f"CA{n + 3:032x}"})
        for leg in (0, 1):  # the claims that stop a retried job ringing a worker twice
            live.claim_leg(call.id, leg)
        ids.append(call.id)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    proc, client = start_server()
    try:
        before = used(client)
        for n in range(args.calls):
            client.hset(f"baseline:{n:016d}", "state", "waiting")
        baseline = (used(client) - before) / args.calls
        client.flushdb()

        before = used(client)
        ids = open_calls(client, args.calls)
        per_call = (used(client) - before) / args.calls
        one_key = client.memory_usage(keys.live_call(ids[0]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"live calls measured:        {args.calls}")
    print(f"Redis bytes per live call:  {per_call:,.0f} (index entry and leg claims "
          "included)")
    print(f"MEMORY USAGE of one call:   {one_key:,} bytes")
    print(f"baseline one-field hash:    {baseline:,.0f} bytes")
    print(f"ratio to baseline:          {per_call / baseline:.2f}x")
    print(f"ratio to the 1 KiB target:  {per_call / TARGET_BYTES:.2f} "
          f"({'within' if per_call <= TARGET_BYTES else 'OVER'} target)")


if __name__ == "__main__":
    main()
