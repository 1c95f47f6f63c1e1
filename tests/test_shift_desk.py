"""The shift desk: every way of signing workers on and off goes through it, is audited before
it is made, and tells the waiting line (withdraw a ringing offer, dispatch a team)."""

from __future__ import annotations

import pytest

from callflow.language.loader import load_flowset
from callflow.platform import keys
from callflow.platform.errors import AuditUnavailable
from callflow.platform.jobspec import Job
from callflow.staff.desk import Channel, NotOnRoster, ShiftDesk
from callflow.staff.shifts import Shifts, WorkerState
from tests.conftest import FLOWS
from tests.flowfiles import BASE, write_folder

TEAMS = """\
teams:
  respect-workers:
    workers:
      - name: Alice
        number: "+447700900101"
      - name: Chris
        number: "+447700900103"
        active: false
  mal-workers:
    workers:
      - name: Alice
        number: "+447700900101"
      - name: Dan
        number: "+447700900201"
"""


# An offer lasts its ring time and a grace; these tests' offers are still ringing.
OFFER_ENDS = str(2 ** 40)


def ring(shifts: Shifts, name: str, team: str, offer: str = "c.1") -> None:
    """Put a worker on shift into ``offered``, as the waiting line's own script does when it
    offers them a caller (the engine's business, not the desk's: only the state matters)."""
    shifts.client.hset(keys.worker(name), mapping={"state": "offered", "offer": offer,
                                                   "team": team, "until": OFFER_ENDS})


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.entries, self.jobs, self.fail = [], [], fail

    def audit(self, kind, actor, **data):
        if self.fail:
            raise AuditUnavailable("the audit log is down")
        self.entries.append((kind, actor, data))

    def enqueue(self, job, *args, job_id):
        self.jobs.append((job, args))


@pytest.fixture
def teams(tmp_path):
    return load_flowset(write_folder(tmp_path / "flows", {"test.yaml": BASE,
                                                          "teams.yaml": TEAMS})).teams


@pytest.fixture
def record():
    return Recorder()


@pytest.fixture
def desk(redis, clock, teams, record):
    return ShiftDesk(Shifts(redis, clock), lambda: teams, record.audit, record.enqueue)


def test_signing_on_is_audited_and_dispatches_each_active_team(desk, record):
    assert desk.start("alice", actor="alice", channel=Channel.WEB)
    assert desk.status("Alice").state is WorkerState.AVAILABLE
    assert record.entries == [("shift_started", "alice",
                               {"worker": "Alice", "channel": "web"})]
    assert record.jobs == [(Job.DISPATCH, ("respect-workers",)),
                           (Job.DISPATCH, ("mal-workers",))]


def test_signing_on_twice_changes_and_audits_nothing(desk, record):
    desk.start("Dan", actor="cli:admin", channel=Channel.CLI)
    assert not desk.start("Dan", actor="cli:admin", channel=Channel.CLI)
    assert len(record.entries) == 1 and len(record.jobs) == 1


def test_signing_off_while_rung_withdraws_the_offer(desk, record):
    desk.start("Dan", actor="dan", channel=Channel.PHONE)
    ring(desk.shifts, "Dan", "mal-workers")
    record.jobs.clear()
    before = desk.end("Dan", actor="dan", channel=Channel.PHONE)
    assert before.state is WorkerState.OFFERED
    assert desk.status("Dan").state is WorkerState.OFF
    assert record.entries[-1] == ("shift_ended", "dan",
                                  {"worker": "Dan", "channel": "phone", "was": "offered"})
    assert record.jobs == [(Job.WITHDRAW_OFFER, ("Dan",))]


def test_signing_off_when_free_withdraws_nothing(desk, record):
    desk.start("Dan", actor="dan", channel=Channel.PHONE)
    record.jobs.clear()
    desk.end("Dan", actor="maria", channel=Channel.WEB)
    assert record.jobs == []
    assert record.entries[-1][1] == "maria"


def test_signing_off_someone_off_shift_changes_nothing(desk, record):
    assert not desk.end("Dan", actor="dan", channel=Channel.WEB).on_shift
    assert record.entries == [] and record.jobs == []


def test_pausing_while_rung_withdraws_and_resuming_dispatches(desk, record):
    desk.start("Dan", actor="dan", channel=Channel.WEB)
    ring(desk.shifts, "Dan", "mal-workers")
    record.jobs.clear()
    assert desk.pause("Dan", "a break", actor="maria", channel=Channel.WEB)
    status = desk.status("Dan")
    assert (status.state, status.reason) == (WorkerState.PAUSED, "a break")
    assert record.jobs == [(Job.WITHDRAW_OFFER, ("Dan",))]
    record.jobs.clear()
    assert desk.resume("Dan", actor="maria", channel=Channel.WEB)
    assert desk.status("Dan").state is WorkerState.AVAILABLE
    assert record.jobs == [(Job.DISPATCH, ("mal-workers",))]
    assert [e[0] for e in record.entries] == ["shift_started", "worker_paused",
                                               "worker_resumed"]
    assert not desk.resume("Dan", actor="maria", channel=Channel.WEB)


@pytest.mark.parametrize("name", ["Zed", "", "+447700900101", "  "])
def test_a_name_not_on_the_roster_is_refused_without_saying_it_back(desk, record, name):
    with pytest.raises(NotOnRoster) as refused:
        desk.start(name, actor="cli:admin", channel=Channel.CLI)
    assert "callflow shift list" in str(refused.value)
    assert record.entries == [] and record.jobs == []


def test_a_worker_active_on_no_team_cannot_sign_on(desk, record):
    with pytest.raises(NotOnRoster, match="not active on any team"):
        desk.start("Chris", actor="cli:admin", channel=Channel.CLI)
    assert desk.status("Chris").state is WorkerState.OFF
    assert record.entries == []


def test_no_audit_no_change(redis, clock, teams):
    down = Recorder(fail=True)
    desk = ShiftDesk(Shifts(redis, clock), lambda: teams, down.audit, down.enqueue)
    with pytest.raises(AuditUnavailable):
        desk.start("Dan", actor="dan", channel=Channel.WEB)
    assert desk.status("Dan").state is WorkerState.OFF and down.jobs == []


def test_rows_are_the_roster_once_each_never_a_number(desk):
    desk.start("Dan", actor="dan", channel=Channel.WEB)
    ring(desk.shifts, "Dan", "mal-workers")
    desk.shifts.settle("Dan", "c.1", missed=True, autopause_after=1)
    rows = [row.to_dict() for row in desk.rows()]
    assert [r["name"] for r in rows] == ["Alice", "Chris", "Dan"]
    assert rows[0]["teams"] == ["respect-workers", "mal-workers"]
    assert rows[2]["state"] == "paused" and rows[2]["reason"] == "missed 1 offers in a row"
    assert "reason" not in rows[0]
    assert "+4477" not in repr(rows)


def test_the_shipped_roster_loads_into_a_desk(redis, clock, record):
    teams = load_flowset(FLOWS).teams
    desk = ShiftDesk(Shifts(redis, clock), lambda: teams, record.audit, record.enqueue)
    assert {w.name for w in desk.roster()} == {"Alice", "Bilal", "Chris", "Dan", "Erin"}
