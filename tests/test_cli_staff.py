"""``callflow manager``: accounts from the command line, with clear failures and hidden secrets."""

from __future__ import annotations

import getpass

import pytest
from argon2 import PasswordHasher

from callflow.cli import cli
from callflow.cli import staff as staff_cli
from callflow.platform import keys
from callflow.platform.config import Settings
from callflow.platform.errors import AuditUnavailable
from callflow.records.audit import AuditKind, AuditLog
from tests.audit_keys import KEYS
from tests.conftest import free_port, store_dump
from tests.staff_support import store_state

PASSWORD = "correct horse battery staple"
PIN = "482915"
PHONE = "+447700900123"


ACTOR = f"cli:{getpass.getuser()}"


@pytest.fixture
def env(redis_url) -> dict[str, str]:
    return {"REDIS_URL": redis_url, "SECRET_KEY": "test-secret"}


@pytest.fixture
def cheap(monkeypatch):
    """The commands' own store, built as they build it (on the configured Redis, auditing to
    its log), with cheap argon2 to keep tests fast."""
    hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    monkeypatch.setattr(staff_cli, "open_store",
                        lambda: staff_cli.build_store(Settings.from_env(), hasher=hasher))


def audit_log(redis) -> AuditLog:
    return AuditLog(redis, KEYS)


def staff_entries(redis) -> list[tuple[str, dict]]:
    return [(e.actor, e.data) for e in audit_log(redis).entries(kind=AuditKind.STAFF_CHANGED)]


@pytest.fixture
def manager(runner, env, redis, cheap):
    """Run ``callflow manager ...``."""
    def run(*args: str, input: str | None = None):
        return runner.invoke(cli, ["manager", *args], input=input, env=env)

    return run


# -- every change is audited, and undone when it cannot be ------------------------------------


def test_every_staff_change_from_the_command_line_is_audited_with_who_ran_it(manager, redis):
    """The hole: `callflow manager add|disable|set-pin|set-phone` wrote no audit entry."""
    steps = [
        (["add", "alice", "--password-stdin"], PASSWORD + "\n"),
        (["set-password", "alice", "--password-stdin"], "another long phrase\n"),
        (["set-pin", "alice", "--pin-stdin"], PIN + "\n"),
        (["set-phone", "alice", PHONE, "--label", "alice's mobile"], None),
        (["phone-monitoring", "alice", "off"], None),
        (["phone-monitoring", "alice", "on"], None),
        (["set-staff-number", "alice", "4321"], None),
        (["remove-pin", "alice"], None),
        (["unlock", "alice"], None),
        (["disable", "alice"], None),
        (["enable", "alice"], None),
    ]
    for args, stdin in steps:
        result = manager(*args, input=stdin)
        assert result.exit_code == 0, (args, result.output)

    assert staff_entries(redis) == [
        (ACTOR, {"name": "alice", "change": "added", "role": "manager", "staff_number": "1001"}),
        (ACTOR, {"name": "alice", "change": "password_set"}),
        (ACTOR, {"name": "alice", "change": "pin_set"}),
        (ACTOR, {"name": "alice", "change": "phone_set", "label": "alice's mobile"}),
        (ACTOR, {"name": "alice", "change": "phone_monitoring_off"}),
        (ACTOR, {"name": "alice", "change": "phone_monitoring_on"}),
        (ACTOR, {"name": "alice", "change": "staff_number_set", "staff_number": "4321"}),
        (ACTOR, {"name": "alice", "change": "pin_removed"}),
        (ACTOR, {"name": "alice", "change": "unlocked"}),
        (ACTOR, {"name": "alice", "change": "disabled"}),
        (ACTOR, {"name": "alice", "change": "enabled"}),
    ]
    assert audit_log(redis).verify().ok
    text = " ".join(e.to_json() for e in audit_log(redis).entries())
    for secret in (PASSWORD, "another long phrase", PIN, PHONE.lstrip("+")):
        assert secret not in text


CHANGES = {
    "add": (["add", "bob", "--password-stdin"], PASSWORD + "\n"),
    "disable": (["disable", "alice"], None),
    "enable": (["enable", "alice"], None),
    "set-password": (["set-password", "alice", "--password-stdin"], "another long phrase\n"),
    "set-pin": (["set-pin", "alice", "--pin-stdin"], "593720\n"),
    "remove-pin": (["remove-pin", "alice"], None),
    "phone-monitoring": (["phone-monitoring", "alice", "off"], None),
    "set-phone": (["set-phone", "alice", "+447700900124"], None),
    "set-staff-number": (["set-staff-number", "alice", "4321"], None),
    "unlock": (["unlock", "alice"], None),
}


@pytest.mark.parametrize(("args", "stdin"), CHANGES.values(), ids=CHANGES.keys())
def test_a_change_whose_audit_entry_cannot_be_written_is_undone(manager, redis, monkeypatch,
                                                                args, stdin):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    manager("set-pin", "alice", "--pin-stdin", input=PIN + "\n")
    manager("set-phone", "alice", PHONE)
    redis.set(keys.lockout_failures("account:alice"), 3)
    before = {k: v for k, v in store_state(redis).items() if "staff-number-next" not in k}

    def down(self, *args, **kwargs):
        raise AuditUnavailable("the audit log could not be written: test")

    monkeypatch.setattr(AuditLog, "append", down)
    result = manager(*args, input=stdin)

    assert result.exit_code == 1
    assert "audit log could not be written" in result.output
    assert "Traceback" not in result.output
    after = {k: v for k, v in store_state(redis).items() if "staff-number-next" not in k}
    assert after == before


def test_without_the_audit_signing_key_nothing_is_changed_unaudited(runner, redis, redis_url,
                                                                    cheap):
    result = runner.invoke(cli, ["manager", "add", "alice", "--password-stdin"],
                           input=PASSWORD + "\n", env={"REDIS_URL": redis_url, "SECRET_KEY": "",
                                                       "CALLFLOW_AUDIT_SIGNING_KEY": ""})

    assert result.exit_code == 1
    assert "CALLFLOW_AUDIT_SIGNING_KEY" in result.output
    assert not redis.exists(keys.staff("alice"))


def test_unlock_lets_the_owner_back_in_on_the_web_and_by_phone(manager, redis):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    for subject in ("account:alice", "pair:alice@203.0.113.5", "staff-number:1001"):
        redis.set(keys.lockout_locked(subject), 1, ex=900)
        redis.set(keys.lockout_wait(subject), "9999999999", ex=900)

    result = manager("unlock", "alice")

    assert result.exit_code == 0, result.output
    assert "alice" in result.output
    assert list(redis.scan_iter("callflow:lockout:*")) == []


def test_phone_monitoring_needs_a_pin(manager):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")

    result = manager("phone-monitoring", "alice", "on")

    assert result.exit_code == 1
    assert "no PIN" in result.output
    assert manager("phone-monitoring", "alice", "maybe").exit_code == 2


def test_a_staff_number_can_be_given_or_the_next_free_one_taken(manager, redis):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    manager("add", "bob", "--password-stdin", input=PASSWORD + "\n")

    assert "staff number 1001" in manager("set-staff-number", "bob", "1001").output
    result = manager("set-staff-number", "bob")

    assert result.exit_code == 0, result.output
    assert "staff number 1003" in result.output


def test_add_reads_the_password_from_stdin_with_the_real_hasher(runner, env, redis):
    result = runner.invoke(cli, ["manager", "add", "alice", "--password-stdin"],
                           input=PASSWORD + "\n", env=env)
    assert result.exit_code == 0, result.output
    assert "added manager 'alice'" in result.output
    assert redis.hget(keys.staff("alice"), "password").startswith("$argon2id$v=19$m=65536")
    assert PASSWORD not in store_dump(redis)


def test_add_prompts_twice_without_echoing(manager, redis):
    result = manager("add", "root", "--role", "admin", input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    assert redis.hget(keys.staff("root"), "role") == "admin"


def test_add_refuses_a_mistyped_confirmation(manager, redis):
    result = manager("add", "alice", input=f"{PASSWORD}\n{PASSWORD}x\n{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0
    assert "do not match" in result.output
    assert redis.exists(keys.staff("alice"))


@pytest.mark.parametrize("args, stdin, message", [
    (["add", "alice", "--password-stdin"], "short\n", "at least 12 characters"),
    (["add", "Alice", "--password-stdin"], PASSWORD + "\n", "not a usable staff name"),
    (["add", "alice", "--password-stdin"], "", "no password on stdin"),
    (["add", "alice", "--role", "owner", "--password-stdin"], PASSWORD + "\n", "owner"),
    (["disable", "nobody"], None, "no staff account 'nobody'"),
    (["set-password", "nobody", "--password-stdin"], PASSWORD + "\n", "no staff account"),
    (["set-pin", "nobody", "--pin-stdin"], PIN + "\n", "no staff account"),
    (["set-phone", "nobody", PHONE], None, "no staff account"),
])
def test_failures_exit_non_zero_with_a_clear_message(manager, redis, args, stdin, message):
    result = manager(*args, input=stdin)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert redis.dbsize() == 0


def test_a_duplicate_name_is_refused_before_asking_for_a_password(manager):
    assert manager("add", "alice", "--password-stdin", input=PASSWORD + "\n").exit_code == 0
    result = manager("add", "alice")
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Password" not in result.output


def test_a_name_that_cannot_be_used_is_refused_before_asking_for_a_password(manager, redis):
    result = manager("add", "Bad")
    assert result.exit_code == 1
    assert "'Bad' is not a usable staff name" in result.output
    assert "Password" not in result.output
    assert redis.dbsize() == 0


def test_set_pin_set_phone_disable_and_list(manager, redis):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    manager("add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    result = manager("set-pin", "alice", input=f"{PIN}\n{PIN}\n")
    assert result.exit_code == 0, result.output
    assert "phone monitoring is on" in result.output
    assert manager("set-phone", "alice", PHONE).exit_code == 0
    assert manager("disable", "root").exit_code == 0
    listing = manager("list")
    assert listing.exit_code == 0
    lines = listing.output.splitlines()
    assert lines[0].split() == ["name", "role", "staff", "no.", "disabled", "pin",
                                "by", "phone", "registered", "phone"]
    assert lines[1].split() == ["alice", "manager", "1001", "no", "yes", "on",
                                "+44••••••0123", "(alice's", "phone)"]
    assert lines[2].split() == ["root", "admin", "1002", "yes", "no", "-", "-"]
    assert PHONE not in listing.output
    assert PIN not in store_dump(redis)


def test_set_pin_and_password_from_stdin(manager, redis):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    before = redis.hget(keys.staff("alice"), "password")
    assert manager("set-pin", "alice", "--pin-stdin", input=PIN + "\n").exit_code == 0
    result = manager("set-password", "alice", "--password-stdin", input="another long phrase\n")
    assert result.exit_code == 0, result.output
    assert redis.hget(keys.staff("alice"), "password") != before


@pytest.mark.parametrize("args, stdin, message", [
    (["set-pin", "alice", "--pin-stdin"], "4826\n", "6 to 12 digits"),
    (["set-pin", "alice", "--pin-stdin"], "123456\n", "too easy to guess"),
    (["set-pin", "root", "--pin-stdin"], PIN + "\n", "only managers"),
    (["set-phone", "alice", "07700900123"], None, "international form"),
    (["set-phone", "root", PHONE], None, "only managers"),
    (["set-password", "alice", "--password-stdin"], "too short\n", "at least 12"),
])
def test_bad_changes_exit_non_zero_and_change_nothing(manager, redis, args, stdin, message):
    manager("add", "alice", "--password-stdin", input=PASSWORD + "\n")
    manager("add", "root", "--role", "admin", "--password-stdin", input=PASSWORD + "\n")
    before = store_state(redis)
    result = manager(*args, input=stdin)
    assert result.exit_code == 1
    assert message in result.output
    assert store_state(redis) == before


def test_an_empty_list_says_how_to_start(manager):
    result = manager("list")
    assert result.exit_code == 0
    assert "callflow manager add NAME" in result.output


def test_an_unreachable_store_is_a_clear_failure(runner, cheap):
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0", "SECRET_KEY": "test-secret"}
    result = runner.invoke(cli, ["manager", "list"], env=env)
    assert result.exit_code == 1
    assert "could not be reached" in result.output


@pytest.mark.parametrize("number, shown", [
    ("+447700900123", "+44••••••0123"),
    ("+4477009001", "set"),
    (None, "-"),
])
def test_phones_are_masked(number, shown):
    assert staff_cli.mask_phone(number) == shown
