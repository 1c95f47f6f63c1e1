"""Redis memory per live call on the bridge, against the 1 KiB target.

Starts a private redis-server, opens N live calls as the service does (a caller in the team's
waiting line, told their place and an announcement, accepted by a worker, moved into the room,
the conference started, a manager listening) and measures ``used_memory`` before and after, and
``MEMORY USAGE`` of one call's keys; the caller's entry in the line is counted while it waits. The
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

from callflow.bridge.waiting_line import WaitingLine  # noqa: E402
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


def open_calls(client: redis.Redis, count: int) -> tuple[list[str], float]:
    """N calls at their fullest; returns their ids and the line's bytes per waiting caller."""
    live, line = LiveCalls(client, "bench-secret"), WaitingLine(client)
    now = datetime.now(UTC)
    ids = []
    for n in range(count):
        call = live.open(flow="respect-phoneline", step="connect", team="respect-workers",
                         helpline_number="+441632960001", caller_sid=f"CA{n:032x}", now=now)
        line.join("respect-workers", call.id, now.timestamp())
        live.mark(call.id, said_place="60", said_message="90", message_turn="2")
        ids.append(call.id)
    line_bytes = client.memory_usage(keys.waiting_line("respect-workers")) / count
    for n, call_id in enumerate(ids):
        client.zrem(keys.waiting_line("respect-workers"), call_id)  # as a worker's accept does
        client.hset(keys.live_call(call_id), mapping={
            "state": "connected", "accepted": "0", "connected_at": now.isoformat(
                timespec="seconds"), "leg:0": f"CA{n + 1:032x}", "joined": "1",
            "conference_sid": f"CF{n:032x}", "monitor_session": "s" * 16,
            "monitor_leg": f"CA{n + 3:032x}"})
    return ids, line_bytes


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
        ids, line_bytes = open_calls(client, args.calls)
        per_call = (used(client) - before) / args.calls + line_bytes
        one_key = client.memory_usage(keys.live_call(ids[0]))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"live calls measured:        {args.calls}")
    print(f"Redis bytes per live call:  {per_call:,.0f} (index entry and the line's entry "
          f"of {line_bytes:,.0f} included)")
    print(f"MEMORY USAGE of one call:   {one_key:,} bytes")
    print(f"baseline one-field hash:    {baseline:,.0f} bytes")
    print(f"ratio to baseline:          {per_call / baseline:.2f}x")
    print(f"ratio to the 1 KiB target:  {per_call / TARGET_BYTES:.2f} "
          f"({'within' if per_call <= TARGET_BYTES else 'OVER'} target)")


if __name__ == "__main__":
    main()
