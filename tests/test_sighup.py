"""SIGHUP reloads the flows in every mode and never stops the service, tried on real processes:
``callflow serve`` (with the folder watched and without), gunicorn's master (which replaces its
workers, each loading the flows afresh) and one gunicorn worker on its own.

Each test starts the service on a copy of the test flow, adds a second flow, sends SIGHUP and
waits until ``/healthz`` names both: the reload happened, and the process is still there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT, free_port
from tests.flowfiles import edit
from tests.test_deployment import ALWAYS_OPEN, service_env, stop, wait_until_up

SECOND_FLOW = edit('numbers: ["+441632960099"]', 'numbers: ["+441632960098"]', ALWAYS_OPEN)
WAIT_SECONDS = 30  # a bound against hangs, not a speed


def flows_named(base: str) -> list[str]:
    return requests.get(f"{base}/healthz", timeout=5, headers={"Connection": "close"}).json()[
        "flows"]


def wait_for_flows(base: str, proc: subprocess.Popen, log: Path, expected: list[str]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()[-3000:]}"
        try:
            if flows_named(base) == expected:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"flows never became {expected}:\n" + \
            log.read_text()[-3000:]
        time.sleep(0.1)


def start(command: list[str], env: dict[str, str], log: Path, port: int) -> subprocess.Popen:
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, log)
    return proc


def serve(tmp_path: Path, redis_url: str, **extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(redis_url, tmp_path, **extra)
    command = [str(Path(sys.executable).parent / "callflow"), "serve", "--port", str(port)]
    return start(command, env, log, port), f"http://127.0.0.1:{port}", log


def gunicorn(tmp_path: Path, redis_url: str, workers: int) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers",
               str(workers), "--threads", "2", "--bind", f"127.0.0.1:{port}",
               "tests.gunicorn_app:create_app()"]
    return (start(command, service_env(redis_url, tmp_path), log, port),
            f"http://127.0.0.1:{port}", log)


def add_flow(tmp_path: Path) -> None:
    (tmp_path / "flows" / "second-line.yaml").write_text(SECOND_FLOW, encoding="utf-8")


@pytest.mark.parametrize("interval", ["0", "2"], ids=["folder not watched", "folder watched"])
def test_sighup_reloads_callflow_serve_and_it_lives_on(redis, redis_url, tmp_path, interval):
    proc, base, log = serve(tmp_path, redis_url, CALLFLOW_RELOAD_INTERVAL=interval)
    try:
        add_flow(tmp_path)
        proc.send_signal(signal.SIGHUP)
        wait_for_flows(base, proc, log, ["second-line", "test-line"])
    finally:
        stop(proc)


def test_sighup_with_an_editors_lock_and_a_broken_edit_never_stops_callflow_serve(
        redis, redis_url, tmp_path):
    proc, base, log = serve(tmp_path, redis_url)
    flows = tmp_path / "flows"
    try:
        (flows / ".#test-line.yaml").symlink_to("admin@laptop.4242:1700000000")
        (flows / "test-line.yaml").write_text(edit("kind: notice", "kind: nótice", ALWAYS_OPEN),
                                              encoding="utf-8")
        for _ in range(3):
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert flows_named(base) == ["test-line"]  # the last good set
        (flows / "test-line.yaml").write_text(ALWAYS_OPEN, encoding="utf-8")
        add_flow(tmp_path)
        proc.send_signal(signal.SIGHUP)
        wait_for_flows(base, proc, log, ["second-line", "test-line"])
    finally:
        stop(proc)


def test_sighup_to_gunicorn_replaces_its_workers_on_the_new_flows(redis, redis_url, tmp_path):
    proc, base, log = gunicorn(tmp_path, redis_url, workers=2)
    try:
        add_flow(tmp_path)
        proc.send_signal(signal.SIGHUP)
        wait_for_flows(base, proc, log, ["second-line", "test-line"])
        for _ in range(4):  # every worker: the old ones are gone
            assert flows_named(base) == ["second-line", "test-line"]
    finally:
        stop(proc)


def test_sighup_to_one_gunicorn_worker_reloads_it_in_place(redis, redis_url, tmp_path):
    proc, base, log = gunicorn(tmp_path, redis_url, workers=1)
    try:
        worker = int(requests.get(f"{base}/healthz", timeout=5).headers["X-Served-By"])
        add_flow(tmp_path)
        os.kill(worker, signal.SIGHUP)
        wait_for_flows(base, proc, log, ["second-line", "test-line"])
        assert requests.get(f"{base}/healthz", timeout=5).headers["X-Served-By"] == str(worker)
    finally:
        stop(proc)
