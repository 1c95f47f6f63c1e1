"""Shifts on the web: a worker's "My shift" page, the managers' Workers page and API, and a
worker's account refused every other page and API."""

from __future__ import annotations

import pytest

from callflow.records.audit import AuditKind
from callflow.staff.accounts import Role
from callflow.staff.shifts import WorkerState
from tests.test_dashboard import PAGES, PASSWORD, TOKEN, rt, sign_in
from tests.test_shift_desk import ring

API = [("GET", "/manager/api/session"), ("GET", "/manager/api/calls"),
       ("POST", "/manager/api/calls/abc/listen"), ("POST", "/manager/api/sessions/abc/stop"),
       ("GET", "/manager/api/audit"), ("GET", "/manager/api/audit/verify"),
       ("GET", "/manager/api/exceptions"), ("POST", "/manager/api/exceptions"),
       ("GET", "/manager/api/workers"), ("POST", "/manager/api/workers/end"),
       ("POST", "/manager/api/workers/resume")]
NUMBERS = ("+447700900101", "447700900101", "+447700900201", "447700900201")


@pytest.fixture
def worker(app):
    """Alice of the shipped roster, signed in (her account is named as the roster names her,
    in lowercase)."""
    return sign_in(app, "alice", Role.WORKER)


@pytest.fixture
def manager(app):
    return sign_in(app)


def shifts(app):
    return rt(app).shifts


def shift_entries(app) -> list[tuple[str, str, dict]]:
    kinds = {AuditKind.SHIFT_STARTED, AuditKind.SHIFT_ENDED, AuditKind.WORKER_PAUSED,
             AuditKind.WORKER_RESUMED}
    return [(e.kind, e.actor, e.data) for e in rt(app).audit.entries() if e.kind in kinds]


def queued(app) -> list[tuple[str, list]]:
    return [(job.func_name.rsplit(".", 1)[-1], list(job.args)) for job in rt(app).queue.jobs]


# -- a worker's own shift ----------------------------------------------------------------------

def test_a_worker_signs_in_to_their_own_shift(app):
    app.extensions["callflow"]["staff"].add("alice", PASSWORD, Role.WORKER, actor="test")
    client = app.test_client()
    token = TOKEN.search(client.get("/manager/login").get_data(as_text=True)).group(1)
    response = client.post("/manager/login", data={"csrf_token": token, "username": "alice",
                                                   "password": PASSWORD})
    assert response.headers["Location"].endswith("/manager/shift")
    page = client.get("/manager/shift").get_data(as_text=True)
    assert "Off shift" in page and "Sign on" in page
    assert "Live calls" not in page and "Audit trail" not in page


def test_a_worker_signs_on_and_off_on_the_web(app, worker):
    response = worker.post("/manager/shift", data={"csrf_token": worker.csrf,
                                                   "action": "start"})
    assert response.status_code == 302
    page = worker.get(response.headers["Location"]).get_data(as_text=True)
    assert "You are on shift." in page and "Sign off" in page
    assert shifts(app).status("Alice").state is WorkerState.AVAILABLE
    assert queued(app) == [("dispatch", ["respect-workers"])]

    worker.post("/manager/shift", data={"csrf_token": worker.csrf, "action": "end"})
    assert shifts(app).status("Alice").state is WorkerState.OFF
    assert shift_entries(app) == [
        ("shift_started", "alice", {"worker": "Alice", "channel": "web"}),
        ("shift_ended", "alice", {"worker": "Alice", "channel": "web", "was": "available"})]


def test_my_shift_says_nothing_about_callers_or_numbers(app, worker):
    worker.post("/manager/shift", data={"csrf_token": worker.csrf, "action": "start"})
    ring(shifts(app), "Alice", "respect-workers")
    page = worker.get("/manager/shift").get_data(as_text=True)
    assert "your phone is ringing" in page
    assert "call7" not in page
    for number in NUMBERS:
        assert number not in page


def test_signing_off_while_rung_queues_the_withdrawal(app, worker):
    worker.post("/manager/shift", data={"csrf_token": worker.csrf, "action": "start"})
    ring(shifts(app), "Alice", "respect-workers")
    worker.post("/manager/shift", data={"csrf_token": worker.csrf, "action": "end"})
    assert ("withdraw_offer", ["Alice"]) in queued(app)


def test_my_shift_needs_the_csrf_token(app, worker):
    response = worker.post("/manager/shift", data={"action": "start"})
    assert response.status_code == 403
    assert shifts(app).status("Alice").state is WorkerState.OFF


@pytest.mark.parametrize("action", ["", "pause", "start; end", "1"])
def test_my_shift_refuses_an_unknown_action(app, worker, action):
    response = worker.post("/manager/shift", data={"csrf_token": worker.csrf,
                                                   "action": action})
    assert response.status_code == 400
    assert "Choose to sign on or to sign off." in response.get_data(as_text=True)
    assert shift_entries(app) == []


def test_a_worker_account_not_on_the_roster(app):
    client = sign_in(app, "zed", Role.WORKER)
    page = client.get("/manager/shift").get_data(as_text=True)
    assert "Your account is not on the roster" in page
    response = client.post("/manager/shift", data={"csrf_token": client.csrf,
                                                   "action": "start"})
    assert response.status_code == 409
    assert shift_entries(app) == []


def test_an_inactive_worker_cannot_sign_on(app):
    client = sign_in(app, "chris", Role.WORKER)
    assert "not active on any team" in client.get("/manager/shift").get_data(as_text=True)
    response = client.post("/manager/shift", data={"csrf_token": client.csrf,
                                                   "action": "start"})
    assert response.status_code == 409
    assert shifts(app).status("Chris").state is WorkerState.OFF


@pytest.mark.parametrize("role", [Role.MANAGER, Role.ADMIN])
def test_my_shift_is_for_workers_only(app, role):
    client = sign_in(app, "someone", role)
    assert client.get("/manager/shift").status_code == 403
    response = client.post("/manager/shift", data={"csrf_token": client.csrf,
                                                   "action": "start"})
    assert response.status_code == 403


def test_my_shift_signed_out_goes_to_sign_in(client):
    response = client.get("/manager/shift")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")


# -- a worker's account opens nothing else -------------------------------------------------------

@pytest.mark.parametrize("path", [*PAGES, "/manager/workers", "/manager/reports",
                                  "/manager/reports/export.csv"])
def test_a_worker_is_refused_every_manager_page(worker, path):
    response = worker.get(path)
    assert response.status_code == 403
    assert "Back to my shift" in response.get_data(as_text=True)


@pytest.mark.parametrize("method, path", API)
def test_a_worker_is_refused_every_manager_api(worker, method, path):
    response = worker.open(path, method=method, json={"worker": "Alice", "purpose": "quality"},
                           headers={"X-CSRF-Token": worker.csrf})
    assert response.status_code == 403
    assert response.get_json()["reason"] == "forbidden"


@pytest.mark.parametrize("path", ["/manager/workers/end", "/manager/workers/resume"])
def test_a_worker_cannot_end_or_resume_anyone(app, worker, path):
    shifts(app).start("Dan")
    response = worker.post(path, data={"csrf_token": worker.csrf, "worker": "Dan"})
    assert response.status_code == 403
    assert shifts(app).status("Dan").state is WorkerState.AVAILABLE


def test_a_worker_signed_in_goes_to_their_shift_not_live_calls(worker):
    response = worker.get("/manager/login")
    assert response.headers["Location"].endswith("/manager/shift")


# -- the managers' view of every worker ----------------------------------------------------------

def test_a_manager_sees_every_worker_and_their_state(app, manager):
    shifts(app).start("Dan")
    shifts(app).start("Erin")
    shifts(app).pause("Erin", "missed 3 offers in a row")
    page = manager.get("/manager/workers").get_data(as_text=True)
    for name in ("Alice", "Bilal", "Chris", "Dan", "Erin"):
        assert f'data-worker="{name}"' in page
    assert "mal-workers" in page and "Paused" in page and "missed 3 offers in a row" in page
    for number in NUMBERS:
        assert number not in page
    assert "/manager/workers" in manager.get("/manager/audit").get_data(as_text=True)


def test_a_manager_ends_a_forgotten_shift(app, manager):
    shifts(app).start("Dan")
    ring(shifts(app), "Dan", "mal-workers")
    response = manager.post("/manager/workers/end", data={"csrf_token": manager.csrf,
                                                          "worker": "Dan"})
    assert response.status_code == 302
    assert "Dan&#39;s shift has ended." in manager.get(response.headers["Location"]).get_data(
        as_text=True)
    assert shifts(app).status("Dan").state is WorkerState.OFF
    assert shift_entries(app) == [("shift_ended", "maria", {"worker": "Dan", "channel": "web",
                                                            "was": "offered"})]
    assert queued(app) == [("withdraw_offer", ["Dan"])]


def test_a_manager_resumes_a_paused_worker(app, manager):
    shifts(app).start("Erin")
    shifts(app).pause("Erin", "missed 3 offers in a row")
    response = manager.post("/manager/workers/resume", data={"csrf_token": manager.csrf,
                                                             "worker": "erin"})
    assert response.status_code == 302
    assert shifts(app).status("Erin").state is WorkerState.AVAILABLE
    assert shift_entries(app) == [("worker_resumed", "maria", {
        "worker": "Erin", "channel": "web", "reason": "missed 3 offers in a row"})]
    assert queued(app) == [("dispatch", ["mal-workers"])]


def test_resuming_someone_not_paused_changes_nothing(app, manager):
    response = manager.post("/manager/workers/resume", data={"csrf_token": manager.csrf,
                                                             "worker": "Dan"})
    assert response.status_code == 409
    assert "Dan is not paused." in response.get_data(as_text=True)
    assert shift_entries(app) == []


@pytest.mark.parametrize("name", ["Zed", "", "+447700900666"])
def test_ending_a_name_not_on_the_roster_is_a_404_that_does_not_say_it_back(app, manager,
                                                                             name):
    response = manager.post("/manager/workers/end", data={"csrf_token": manager.csrf,
                                                          "worker": name})
    assert response.status_code == 404
    assert "There is no such worker in the team file." in response.get_data(as_text=True)
    assert "447700900666" not in response.get_data(as_text=True)


def test_ending_a_shift_needs_the_csrf_token(app, manager):
    shifts(app).start("Dan")
    assert manager.post("/manager/workers/end", data={"worker": "Dan"}).status_code == 403
    assert shifts(app).status("Dan").state is WorkerState.AVAILABLE


# -- the workers API -------------------------------------------------------------------------

def test_the_workers_api_lists_names_teams_and_states_and_no_number(app, manager):
    shifts(app).start("Dan")
    shifts(app).start("Erin")
    shifts(app).pause("Erin", "a break")
    response = manager.get("/manager/api/workers")
    assert response.status_code == 200
    workers = {w["name"]: w for w in response.get_json()["workers"]}
    assert set(workers) == {"Alice", "Bilal", "Chris", "Dan", "Erin"}
    assert workers["Dan"]["state"] == "available" and workers["Dan"]["teams"] == ["mal-workers"]
    assert workers["Erin"]["reason"] == "a break"
    assert workers["Alice"]["state"] == "off" and "reason" not in workers["Alice"]
    body = response.get_data(as_text=True)
    for number in NUMBERS:
        assert number not in body


def test_the_api_ends_and_resumes_with_the_csrf_header(app, manager):
    shifts(app).start("Dan")
    assert manager.post("/manager/api/workers/end", json={"worker": "Dan"}).status_code == 403
    response = manager.post("/manager/api/workers/end", json={"worker": "Dan"},
                            headers={"X-CSRF-Token": manager.csrf})
    assert response.status_code == 200
    assert response.get_json()["worker"]["state"] == "off"
    again = manager.post("/manager/api/workers/end", json={"worker": "Dan"},
                         headers={"X-CSRF-Token": manager.csrf})
    assert again.status_code == 409 and again.get_json()["reason"] == "not_changed"
    for body in ({"worker": 7}, ["Dan"], {"worker": "Nobody"}):
        refused = manager.post("/manager/api/workers/resume", json=body,
                               headers={"X-CSRF-Token": manager.csrf})
        assert refused.status_code == 404, body


def test_the_workers_api_signed_out_is_a_401(client):
    assert client.get("/manager/api/workers").status_code == 401


def test_shift_changes_read_as_words_in_the_audit_trail(app, manager):
    shifts(app).start("Dan")
    manager.post("/manager/workers/end", data={"csrf_token": manager.csrf, "worker": "Dan"})
    page = manager.get("/manager/audit").get_data(as_text=True)
    assert "Shift ended" in page
