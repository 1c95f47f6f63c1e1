"""``callflow manager``: accounts from the command line, with clear failures and hidden secrets."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from callflow import keys
from callflow.cli import cli
from callflow.cli import staff as staff_cli
from callflow.config import Settings
from callflow.staff import StaffStore
from callflow.store import connect
from tests.conftest import free_port, store_dump
from tests.staff_support import store_state

PASSWORD = "correct horse battery staple"
PIN = "482915"
PHONE = "+447700900123"


@pytest.fixture
def env(redis_url) -> dict[str, str]:
    return {"REDIS_URL": redis_url}


@pytest.fixture
def cheap(monkeypatch):
    """The commands' own store, on the configured Redis, with cheap argon2 to keep tests fast."""
    def open_store() -> StaffStore:
        return StaffStore(connect(Settings.from_env()),
                          hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))

    monkeypatch.setattr(staff_cli, "open_store", open_store)


@pytest.fixture
def manager(runner, env, redis, cheap):
    """Run ``callflow manager ...``."""
    def run(*args: str, input: str | None = None):
        return runner.invoke(cli, ["manager", *args], input=input, env=env)

    return run


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
    assert lines[0].split() == ["name", "role", "disabled", "pin", "phone"]
    assert lines[1].split() == ["alice", "manager", "no", "yes", "+44••••••0123"]
    assert lines[2].split() == ["root", "admin", "yes", "no", "-"]
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
    env = {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
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
