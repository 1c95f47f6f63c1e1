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
from tests.test_deployment import (
    ALWAYS_OPEN,
    NOTICE,
    Call,
    Server,
    service_env,
    stop,
    wait_until_up,
)

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


def serve(tmp_path: Path, redis_url: str, broken: bool = False,
          **extra: str) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    log = tmp_path / "serve.log"
    env = service_env(redis_url, tmp_path, **extra)  # writes the test flow afresh
    if broken:
        break_the_flow(tmp_path)
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


# -- a process that starts while the files are broken starts on the last good set ----------------

def break_the_flow(tmp_path: Path) -> None:
    (tmp_path / "flows" / "test-line.yaml").write_text("a: &x [*x]\n", encoding="utf-8")


def readiness(base: str) -> tuple[int, dict]:
    response = requests.get(f"{base}/readyz", timeout=5, headers={"Connection": "close"})
    return response.status_code, response.json()


def test_sighup_to_gunicorn_while_a_flow_is_broken_keeps_serving_the_last_good_flows(
        redis, redis_url, tmp_path):
    """gunicorn's master replaces every worker on SIGHUP, and halts when a worker cannot boot:
    the new workers start on the last good flows instead, and say they are degraded."""
    proc, base, log = gunicorn(tmp_path, redis_url, workers=2)
    try:
        break_the_flow(tmp_path)
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT_SECONDS
        while readiness(base)[1]["checks"]["flows"] != "last good":
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        for _ in range(4):  # every new worker
            status, body = readiness(base)
            assert status == 503 and body["broken"] == ["test-line.yaml"]
            assert body["detail"].startswith("serving the last good flows")
        call = Call(Server(base, log), "CA" + "1" * 32)
        first, last = call.through_the_menu()
        assert NOTICE in first and "<Dial" in last
        assert proc.poll() is None
    finally:
        stop(proc)


def test_callflow_serve_started_on_a_broken_folder_serves_the_last_good_flows(
        redis, redis_url, tmp_path):
    proc, base, log = serve(tmp_path, redis_url)
    stop(proc)  # a process that ran on these flows kept them
    proc, base, log = serve(tmp_path, redis_url, broken=True)
    try:
        status, body = readiness(base)
        assert status == 503 and body["broken"] == ["test-line.yaml"]
        assert flows_named(base) == ["test-line"]
    finally:
        stop(proc)


def test_the_first_start_on_a_broken_folder_refuses_with_the_errors(redis, redis_url, tmp_path):
    env = service_env(redis_url, tmp_path)
    break_the_flow(tmp_path)
    result = subprocess.run([str(Path(sys.executable).parent / "callflow"), "serve", "--port",
                             str(free_port())], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=WAIT_SECONDS)
    assert result.returncode != 0
    assert "test-line.yaml:1:4: '&x' is a YAML anchor" in result.stderr


def test_sighup_reloads_callflow_worker_and_it_lives_on(redis, redis_url, tmp_path):
    log = tmp_path / "worker.log"
    env = service_env(redis_url, tmp_path)
    with log.open("wb") as out:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "callflow"), "runner"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def logged(text: str) -> None:
            deadline = time.monotonic() + WAIT_SECONDS
            while text not in log.read_text():
                assert proc.poll() is None, f"exited {proc.returncode}:\n{log.read_text()}"
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.1)

        logged("Acquired scheduler lock")  # the job runner is running
        add_flow(tmp_path)
        proc.send_signal(signal.SIGHUP)
        logged('"event": "reloaded"')
        assert proc.poll() is None
    finally:
        stop(proc)
