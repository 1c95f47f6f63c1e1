"""``/readyz`` and ``/metrics``: readiness says "degraded" when Redis is down; metrics count
requests by URL rule, calls by outcome, degraded answers and monitoring decisions, read shared
figures from Redis, need the bearer token, and hold no caller data."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from callflow.platform import keys, metrics
from callflow.records.audit import AuditKind
from tests.bridge_support import Caller, dead_store, verbs
from tests.conftest import CANARY_NUMBER, FLOWS, RESPECT, assert_no_canary
from tests.monitoring_support import connected_caller, signed_in
from webhooks import create_app
from webhooks.simulator import ACCOUNT_SID, Keypad, TwilioSim, new_call_sid

pytest_plugins = ("tests.monitoring_fixtures",)

TOKEN = "metrics-token-for-tests-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HELPLINE = "respect-phoneline"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Delta:
    """How much a sample grew while the ``with`` block ran (the registry lives for the whole
    test session, so tests compare before and after)."""

    def __init__(self, name: str, **labels: str) -> None:
        self.name, self.labels = name, labels

    def __enter__(self) -> Delta:
        self.before = sample(self.name, **self.labels)
        return self

    def __exit__(self, *exc) -> None:
        self.value = sample(self.name, **self.labels) - self.before


def calls(outcome: str) -> Delta:
    return Delta("callflow_calls_total", helpline=HELPLINE, outcome=outcome)


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    """These tests read this process's registry: no multiprocess directory."""
    monkeypatch.delenv(metrics.MULTIPROC_ENV, raising=False)


@pytest.fixture
def metrics_app(settings, redis, clock):
    settings = dataclasses.replace(settings, metrics_token=TOKEN)
    return create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock})


def scrape(app) -> dict[str, list]:
    response = app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200
    return {family.name: family.samples
            for family in text_string_to_metric_families(response.get_data(as_text=True))}


# -- /readyz ----------------------------------------------------------------------------------


def test_ready_when_flows_are_loaded_and_redis_answers(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ready", "checks": {"flows": "ok", "store": "ok"}}


def test_degraded_when_redis_is_down(settings, clock):
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": dead_store(),
                      "CLOCK": clock})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["checks"] == {"flows": "ok", "store": "unreachable"}
    assert "degraded path" in body["detail"]
    assert app.test_client().get("/healthz").status_code == 200  # still alive


def flows_copy(tmp_path):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    return folder


def test_degraded_while_the_files_on_disk_are_broken_and_ready_again_once_fixed(
        settings, redis, clock, tmp_path):
    folder = flows_copy(tmp_path)
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(
        settings, flows_dir=str(folder)), "STORE": redis, "CLOCK": clock})
    teams = (folder / "teams.yaml").read_text(encoding="utf-8")
    (folder / "teams.yaml").write_text(teams.replace('"+447700900201"', '"07700900201"'),
                                       encoding="utf-8")
    assert app.extensions["callflow"]["registry"].reload() is False
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "degraded", "checks": {"flows": "last good", "store": "ok"},
        "broken": ["teams.yaml"],
        "detail": "serving the last good flows: teams.yaml is broken (`callflow validate` "
                  "names each mistake; a good edit is loaded by itself)"}
    assert "07700900201" not in response.get_data(as_text=True)  # the error's words stay out
    (folder / "teams.yaml").write_text(teams, encoding="utf-8")
    assert app.extensions["callflow"]["registry"].reload() is True
    assert app.test_client().get("/readyz").status_code == 200


def test_a_process_started_on_a_broken_folder_serves_the_last_good_flows_and_says_so(
        settings, redis, clock, tmp_path):
    folder = flows_copy(tmp_path)
    config = {"TESTING": True, "SETTINGS": dataclasses.replace(settings, flows_dir=str(folder)),
              "STORE": redis, "CLOCK": clock}
    create_app(config)  # a process that ran on these flows kept them
    (folder / "respect-phoneline.yaml").write_text("steps: &a [*a]\n", encoding="utf-8")
    app = create_app(config)
    body = app.test_client().get("/readyz").get_json()
    assert body["checks"]["flows"] == "last good"
    assert body["broken"] == ["respect-phoneline.yaml"]
    assert body["detail"].startswith("serving the last good flows")
    heard = TwilioSim(app).call(RESPECT, Keypad(["", "1"], [])).heard()
    assert heard[0].startswith("Thank you for calling Respect Phoneline")


# -- /metrics: who may read it ------------------------------------------------------------------


def test_metrics_do_not_exist_without_a_token(client):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN,
                                    f"Bearer {TOKEN}x"])
def test_metrics_need_the_bearer_token(metrics_app, header):
    headers = {"Authorization": header} if header else {}
    response = metrics_app.test_client().get("/metrics", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "callflow_" not in response.get_data(as_text=True)


def test_metrics_are_prometheus_text(metrics_app):
    response = metrics_app.test_client().get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert response.headers["Cache-Control"] == "no-store"


def test_openmetrics_is_one_document_when_asked_for(metrics_app):
    response = metrics_app.test_client().get(
        "/metrics", headers={**AUTH, "Accept": "application/openmetrics-text; version=1.0.0"})
    text = response.get_data(as_text=True)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.count("# EOF") == 1 and text.endswith("# EOF\n")
    assert "callflow_store_up" in text and "callflow_http_requests_total" in text


# -- /metrics: what it says ---------------------------------------------------------------------


def test_requests_are_counted_by_url_rule_never_by_raw_path(metrics_app):
    sim = TwilioSim(metrics_app)
    incoming = Delta("callflow_http_requests_total", endpoint="/voice/incoming",
                     method="POST", status="200")
    menu = Delta("callflow_http_request_duration_seconds_count", endpoint="/voice/menu")
    with incoming, menu:
        assert sim.call(RESPECT, Keypad(["", "1"], [])).heard()
    assert incoming.value == 1
    assert menu.value == 1  # /voice/menu?flow=...&step=... is counted as /voice/menu
    scraped = scrape(metrics_app)
    endpoints = {s.labels["endpoint"] for s in scraped["callflow_http_requests"]}
    assert all("?" not in e and "flow=" not in e for e in endpoints)


def test_unknown_paths_share_one_label(metrics_app):
    with Delta("callflow_http_requests_total", endpoint="unmatched", method="GET",
               status="404") as unmatched:
        metrics_app.test_client().get("/wp-login.php")
        metrics_app.test_client().get(f"/{CANARY_NUMBER}")
    assert unmatched.value == 2
    text = metrics_app.test_client().get("/metrics", headers=AUTH).get_data(as_text=True)
    assert "wp-login" not in text
    assert_no_canary(text)


def test_odd_methods_do_not_mint_labels(metrics_app):
    metrics_app.test_client().open("/healthz", method="BREW")
    scraped = scrape(metrics_app)
    assert "BREW" not in {s.labels.get("method") for s in scraped["callflow_http_requests"]}


def test_a_refused_signature_is_counted_as_403(metrics_app):
    with Delta("callflow_http_requests_total", endpoint="/voice/incoming", method="POST",
               status="403") as refused:
        metrics_app.test_client().post("/voice/incoming", data={"CallSid": "CA" + "0" * 32})
    assert refused.value == 1


def test_degraded_answers_are_counted_by_helpline(settings, clock):
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": dead_store(),
                      "CLOCK": clock})
    fields = {"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID, "To": RESPECT,
              "Called": RESPECT, "CallStatus": "ringing", "Direction": "inbound"}
    with Delta("callflow_degraded_responses_total", helpline=HELPLINE) as degraded:
        TwilioSim(app).post("/voice/fallback", fields)  # Twilio's fallback URL
    assert degraded.value == 1


def test_shared_figures_are_read_from_redis(metrics_app, redis):
    rt = metrics_app.extensions["callflow"]["runtime"]
    rt.audit.append(AuditKind.LOGIN, "maria")
    rt.audit.append(AuditKind.LOGIN, "maria")
    scraped = scrape(metrics_app)
    value = {name: samples[0].value for name, samples in scraped.items()
             if name in ("callflow_store_up", "callflow_audit_entries", "callflow_flows_loaded")}
    assert value == {"callflow_store_up": 1, "callflow_audit_entries": 2,
                     "callflow_flows_loaded": 2}
    assert redis.llen(keys.audit_entries()) == 2
    assert scraped["callflow_queue_depth"][0].labels == {"queue": "callflow"}
    assert "callflow_queue_failed_jobs" in scraped


def test_a_dead_store_is_reported_not_raised(settings, clock):
    app = create_app({"TESTING": True, "SETTINGS": dataclasses.replace(settings,
                                                                      metrics_token=TOKEN),
                      "STORE": dead_store(), "CLOCK": clock})
    scraped = scrape(app)
    assert scraped["callflow_store_up"][0].value == 0
    assert "callflow_queue_depth" not in scraped
    assert "callflow_audit_entries" not in scraped


# -- calls by outcome, on the bridge --------------------------------------------------------------


@pytest.fixture
def caller(bridge_sim, twilio_api) -> Caller:
    return Caller(bridge_sim, twilio_api, to=RESPECT, number=CANARY_NUMBER)


def test_a_worker_accepting_is_counted_connected_once(caller):
    with calls("connected") as connected:
        caller.enter()
        caller.press(0, "1")
        caller.press_again(0)  # Twilio retrying the keypress
    assert connected.value == 1


def test_a_caller_hanging_up_while_workers_ring_is_abandoned(caller):
    with calls("abandoned") as abandoned, calls("connected") as connected:
        caller.enter()
        caller.conference("participant-leave")
        caller.status("completed")
    assert (abandoned.value, connected.value) == (1, 0)


def test_a_connected_call_ending_is_not_abandoned(caller):
    with calls("abandoned") as abandoned:
        caller.enter()
        caller.press(0, "1")
        caller.status("completed")
    assert abandoned.value == 0


def test_nobody_accepting_is_a_fallback(caller, bridge_app, clock):
    """Nobody accepts: the caller waits in the line until the team's max_wait, then goes on
    to the flow's no-answer step, counted by why (max_wait), once, and never as connected or
    abandoned."""
    team = bridge_app.extensions["callflow"]["registry"].current.teams["respect-workers"]
    with (calls("max_wait") as max_wait, calls("connected") as connected,
          calls("abandoned") as abandoned):
        caller.enter()
        for index in range(len(caller.legs())):
            caller.leg_status(index, "no-answer")
        clock.now += timedelta(seconds=team.max_wait)
        assert [v.tag for v in verbs(caller.hold())] == ["Leave"]
        caller.hold()  # a hold turn repeated: counted once
        caller.leave()
        caller.status("completed")
    assert (max_wait.value, connected.value, abandoned.value) == (1, 0, 0)


def test_metrics_hold_no_caller_data(bridge_app, caller):
    caller.enter()
    caller.press(0, "1")
    caller.status("completed")
    body, _ = metrics.exposition(bridge_app.extensions["callflow"]["runtime"])
    assert_no_canary(body.decode("utf-8"))


# -- monitoring decisions ---------------------------------------------------------------------


def test_monitoring_decisions_are_counted_by_reason(monitor_app, sim, rest):
    call = connected_caller(sim, rest)
    manager = signed_in(monitor_app)
    refused = Delta("callflow_monitoring_requests_total", decision="refused",
                    reason="purpose_not_allowed")
    granted = Delta("callflow_monitoring_requests_total", decision="granted", reason="none")
    with refused, granted:
        assert manager.listen(call.call_id, purpose="curiosity").status_code == 403
        assert manager.listen(call.call_id).status_code == 202
    assert (refused.value, granted.value) == (1, 1)


def test_counting_never_breaks_a_call(monkeypatch, caller):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(metrics.CALLS, "labels", broken)
    caller.enter()
    assert "Connecting you now." in caller.press(0, "1")
