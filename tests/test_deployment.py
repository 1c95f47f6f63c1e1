"""The deployment pieces, run for real: gunicorn with two worker processes sharing one call
through Redis (and adding up their metrics), ``honcho start`` running web and worker from the
Procfile, the gunicorn settings, and the configuration table covering every variable."""

from __future__ import annotations

import os
import re
import runpy
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis as redis_lib
import requests
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from twilio.request_validator import RequestValidator

from callflow.platform.config import Settings
from callflow.platform.jobspec import QUEUE_NAME
from tests.audit_keys import SIGNING_PEM
from tests.conftest import (
    CANARY_FIELDS,
    CANARY_NUMBER,
    ROOT,
    TOKEN,
    assert_no_canary,
    free_port,
)
from tests.flowfiles import BASE, write_folder

PUBLIC_URL = "https://calls.example.org"
LINE = "+441632960099"
METRICS_TOKEN = "deployment-test-metrics-token-0123"
NOTICE = "This call is confidential"
STARTUP_SECONDS = 20
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ALWAYS_OPEN = BASE.replace('hours:\n  monday: "09:00-17:00"\n', "hours:\n" + "".join(
    f'  {day}: "00:00-24:00"\n' for day in DAYS))


def service_env(redis_url: str, folder: Path, **extra: str) -> dict[str, str]:
    """The service's environment and nothing of the developer's own configuration."""
    own = ("CALLFLOW_", "TWILIO_", "REDIS_", "PROMETHEUS_", "WEB_", "SECRET_KEY", "PORT",
           "GUNICORN_CMD_ARGS")
    env = {k: v for k, v in os.environ.items() if not k.startswith(own)}
    flows = write_folder(folder / "flows", {"test-line.yaml": ALWAYS_OPEN})
    # The Procfile's commands from this interpreter's environment, activated or not.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, "REDIS_URL": redis_url, "TWILIO_AUTH_TOKEN": TOKEN,
            "CALLFLOW_PUBLIC_URL": PUBLIC_URL, "SECRET_KEY": "s" * 48,
            "CALLFLOW_FLOWS": str(flows), "CALLFLOW_RELOAD_INTERVAL": "0",
            "CALLFLOW_AUDIT_SIGNING_KEY": SIGNING_PEM,
            "CALLFLOW_AUDIT_WITNESS": str(folder / "audit-witness.jsonl"), **extra}


def wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:  # the port is bound before the workers have loaded the app: requests wait
            if requests.get(url, timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@dataclass
class Server:
    base: str
    log: Path


@pytest.fixture
def gunicorn(redis, redis_url, tmp_path):
    """The real config file, two job runners, the test Redis, metrics across processes."""
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = service_env(redis_url, tmp_path, CALLFLOW_METRICS_TOKEN=METRICS_TOKEN,
                      PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "2",
             "--threads", "2", "--bind", f"127.0.0.1:{port}",
             "tests.gunicorn_app:create_app()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield Server(f"http://127.0.0.1:{port}", log)
    finally:
        stop(proc)


@dataclass
class Call:
    """One caller, webhook by webhook, as Twilio sends them: signed on the public URL, sent
    to the local server, each on a fresh connection so any worker may take it."""

    server: Server
    sid: str
    served_by: list[str] = field(default_factory=list)

    def post(self, url: str, **extra: str) -> str:
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        fields = {"CallSid": self.sid, "AccountSid": "AC" + "0" * 32, "From": CANARY_NUMBER,
                  "Caller": CANARY_NUMBER, "To": LINE, "Called": LINE,
                  "CallStatus": "in-progress", "Direction": "inbound", **CANARY_FIELDS,
                  **extra}
        signature = RequestValidator(TOKEN).compute_signature(PUBLIC_URL + path, fields)
        response = requests.post(self.server.base + path, data=fields, timeout=5,
                                 headers={"X-Twilio-Signature": signature,
                                          "Connection": "close"})
        assert response.status_code == 200, response.text
        self.served_by.append(response.headers["X-Served-By"])
        return response.text

    def through_the_menu(self) -> tuple[str, str]:
        """The first answer, and the answer to pressing 1 at the menu."""
        first = self.post("/voice/incoming")
        notice = ET.fromstring(first).find("Gather").get("action")
        menu = ET.fromstring(self.post(notice)).find("Gather").get("action")
        return first, self.post(menu, Digits="1")


def test_two_gunicorn_workers_share_one_call(gunicorn):
    calls = []
    for n in range(40):
        call = Call(gunicorn, "CA" + format(n, "032x"))
        first, last = call.through_the_menu()
        assert NOTICE in first
        # The notice was heard, as the state saved by whichever process served the first
        # request says: had the state not been shared, the notice would be said again here.
        assert "<Dial" in last and NOTICE not in last
        calls.append(call)
        if len(set(call.served_by)) > 1:
            break
    else:
        pytest.fail(f"no call was served by two processes: {[c.served_by for c in calls]}")

    # Any worker answers /metrics with every worker's counts added up.
    incoming = []
    for _ in range(4):
        response = requests.get(gunicorn.base + "/metrics", timeout=5,
                                headers={"Authorization": f"Bearer {METRICS_TOKEN}",
                                         "Connection": "close"})
        families = {f.name: f for f in text_string_to_metric_families(response.text)}
        incoming.append(sum(s.value for s in families["callflow_http_requests"].samples
                            if s.name == "callflow_http_requests_total"
                            and s.labels["endpoint"] == "/voice/incoming"))
    assert incoming == [len(calls)] * 4

    log = gunicorn.log.read_text()
    assert_no_canary(log)
    access = [line for line in log.splitlines() if '"gunicorn.access"' in line]
    assert any('"path": "/voice/menu"' in line for line in access)
    assert not any("?" in line or "flow=" in line for line in access)
    assert {re.search(r'"pid": "<(\d+)>"', line)[1] for line in access} >= set(
        calls[-1].served_by)


def test_honcho_start_runs_web_and_the_job_runner(redis, redis_url, tmp_path):
    port = free_port()
    log = tmp_path / "honcho.log"
    no_env_file = tmp_path / "empty.env"  # not the developer's own .env
    no_env_file.write_text("", encoding="utf-8")
    queue = Queue(QUEUE_NAME, connection=redis_lib.Redis.from_url(redis_url),
                  serializer=JSONSerializer)
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", "Procfile",
                                 "-e", str(no_env_file), "-p", str(port)], cwd=ROOT,
                                env=service_env(redis_url, tmp_path, WEB_CONCURRENCY="1"),
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until_up(f"http://127.0.0.1:{port}/readyz", proc, log)
        # A job the job runner runs (for a call that does not exist: it does nothing).
        job = queue.enqueue("callflow.jobs.tasks.join_caller", "no-such-call")
        deadline = time.monotonic() + STARTUP_SECONDS
        while job.get_status(refresh=True) != JobStatus.FINISHED:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
    finally:
        stop(proc)
    output = log.read_text()
    assert "web.1 started" in output and "runner.1 started" in output
    assert "Booting worker" in output  # gunicorn's


# -- the settings -------------------------------------------------------------------------------


def gunicorn_settings(monkeypatch, **env: str) -> dict:
    for name in ("PORT", "WEB_CONCURRENCY", "WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


def test_gunicorn_answers_well_inside_twilios_limit(monkeypatch):
    conf = gunicorn_settings(monkeypatch)
    assert conf["timeout"] < 15 and conf["graceful_timeout"] < 15
    assert (conf["workers"], conf["threads"], conf["bind"]) == (2, 4, "0.0.0.0:5000")
    assert conf["preload_app"] is False


def test_gunicorn_reads_the_process_counts_from_the_environment(monkeypatch):
    conf = gunicorn_settings(monkeypatch, PORT="8123", WEB_CONCURRENCY="5", WEB_THREADS="8")
    assert (conf["workers"], conf["threads"], conf["bind"]) == (5, 8, "0.0.0.0:8123")


def test_the_access_log_has_no_query_string_body_or_address(monkeypatch):
    fmt = gunicorn_settings(monkeypatch)["access_log_format"]
    for atom in ("%(q)s", "%(r)s", "%(h)s", "%(a)s", "%(f)s", "%(u)s", "%(b)s", "{"):
        assert atom not in fmt.replace('{"logger"', "")
    assert "%(U)s" in fmt


def test_the_metrics_directory_is_emptied_at_start(monkeypatch, tmp_path):
    (tmp_path / "counter_1.db").write_bytes(b"old")
    (tmp_path / "keep.txt").write_text("not ours", encoding="utf-8")
    conf = gunicorn_settings(monkeypatch, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    conf["on_starting"](None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_the_procfile_runs_gunicorn_with_its_config_and_the_worker():
    lines = dict(line.split(": ", 1) for line in
                 (ROOT / "Procfile").read_text(encoding="utf-8").splitlines() if line)
    assert lines["web"].startswith("gunicorn -c gunicorn.conf.py ")
    assert lines["runner"] == "callflow runner"


# -- the documentation ------------------------------------------------------------------------


class Recorder(dict):
    """An environment that notes every variable the settings ask for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def get(self, key, default=None):
        self.asked.append(key)
        return default


def configuration_table(path: Path) -> dict[str, str]:
    """A document's configuration table: each variable and its default, as written."""
    text = path.read_text(encoding="utf-8")
    return {name: default.strip() for name, default in
            re.findall(r"^\| `([A-Z_]+)` \| ([^|]*) \|", text, flags=re.MULTILINE)}


@pytest.mark.parametrize("document", ["docs/configuration.md", "README.md"])
def test_the_configuration_table_lists_every_variable(document):
    env = Recorder()
    Settings.from_env(env)
    documented = configuration_table(ROOT / document)
    others = {"PORT", "WEB_CONCURRENCY", "WEB_THREADS", "PROMETHEUS_MULTIPROC_DIR",
              "GUNICORN_CMD_ARGS"}
    assert set(documented) == set(env.asked) | others
    assert len(env.asked) == len(Settings.__dataclass_fields__)


def test_the_readme_and_the_configuration_page_give_the_same_defaults():
    assert configuration_table(ROOT / "README.md") == configuration_table(
        ROOT / "docs" / "configuration.md")
