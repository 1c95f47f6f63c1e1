"""Sign-in throttling: five failures lock a subject for the window, a slow-down grows with each
failure and never locks, refused attempts are tallied per window, numbers are never subjects."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from callflow.platform import keys
from callflow.platform.errors import LockedOut, SignInRefusal
from callflow.staff.lockout import (
    Lockout,
    Slowdown,
    Tally,
    account,
    address,
    pair,
    scope_of,
    staff_number,
)
from tests.conftest import Clock


@pytest.fixture
def lockout(redis) -> Lockout:
    return Lockout(redis)


def test_the_fifth_failure_locks_the_subject_for_the_window(lockout):
    subject = account("alice")
    for _ in range(4):
        assert lockout.fail(subject) == []
    lockout.check(subject)
    assert lockout.fail(subject) == [subject]
    with pytest.raises(LockedOut) as caught:
        lockout.check(subject)
    assert caught.value.reason is SignInRefusal.LOCKED_OUT
    assert 14 * 60 < caught.value.retry_after <= 15 * 60
    assert "15 minutes" in str(caught.value)


def test_a_lock_is_reported_once_and_further_failures_do_not_extend_it(lockout, redis):
    subject = address("203.0.113.5")
    for _ in range(5):
        lockout.fail(subject)
    assert lockout.fail(subject) == []
    assert lockout.locked(subject) > 0


def test_subjects_are_counted_separately(lockout):
    alice, here = account("alice"), address("203.0.113.5")
    for _ in range(5):
        lockout.fail(here)
    lockout.check(alice)
    with pytest.raises(LockedOut):
        lockout.check(alice, here)


def test_failing_several_subjects_at_once_counts_each(lockout):
    alice, here = account("alice"), address("203.0.113.5")
    for _ in range(4):
        lockout.fail(alice, here)
    assert sorted(lockout.fail(alice, here)) == sorted([alice, here])


def test_a_lock_lifts_after_the_window(redis):
    lockout = Lockout(redis, window_seconds=1)
    subject = account("alice")
    for _ in range(5):
        lockout.fail(subject)
    with pytest.raises(LockedOut):
        lockout.check(subject)
    time.sleep(1.1)
    lockout.check(subject)
    assert lockout.locked(subject) == 0


def test_failures_spread_over_more_than_the_window_do_not_add_up(redis):
    lockout = Lockout(redis, window_seconds=1)
    subject = account("alice")
    for _ in range(4):
        lockout.fail(subject)
    time.sleep(1.1)
    assert lockout.fail(subject) == []
    lockout.check(subject)


def test_success_forgets_the_count_but_never_lifts_a_lock(lockout):
    alice = account("alice")
    for _ in range(4):
        lockout.fail(alice)
    lockout.succeed(alice)
    for _ in range(4):
        assert lockout.fail(alice) == []
    assert lockout.fail(alice) == [alice]
    lockout.succeed(alice)
    with pytest.raises(LockedOut):
        lockout.check(alice)


def test_every_key_it_writes_expires(lockout, redis):
    for _ in range(5):
        lockout.fail(account("alice"))
    lockout.fail(address("203.0.113.5"), pair("alice", "203.0.113.5"), staff_number("1001"))
    written = list(redis.scan_iter("callflow:lockout:*"))
    assert keys.lockout_locked(account("alice")) in written
    assert len(written) == 4
    assert all(0 < redis.ttl(key) <= 15 * 60 for key in written)


def test_clear_lifts_a_lock_and_forgets_the_count(lockout):
    alice = pair("alice", "203.0.113.5")
    for _ in range(5):
        lockout.fail(alice)
    lockout.clear(alice)
    lockout.check(alice)
    assert lockout.failures(alice) == 0


# -- the slow-down ------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_each_failure_doubles_the_wait_up_to_the_cap(redis, clock):
    slow = Slowdown(redis, free=2, base=2, cap=30, clock=clock)
    subject = staff_number("1001")

    waits = [slow.fail(subject) for _ in range(8)]

    assert waits == [(1, 0), (2, 0), (3, 2), (4, 4), (5, 8), (6, 16), (7, 30), (8, 30)]
    assert slow.wait(subject) == 30


def test_a_wait_is_a_moment_not_a_lock(redis, clock):
    slow = Slowdown(redis, free=0, base=4, cap=60, clock=clock)
    subject = account("alice")
    slow.fail(subject)

    assert slow.wait(subject) == 4
    clock.now += timedelta(seconds=3)
    assert slow.wait(subject) == 1
    clock.now += timedelta(seconds=1)
    assert slow.wait(subject) == 0


def test_success_forgets_the_slow_down(redis, clock):
    slow = Slowdown(redis, free=0, base=4, cap=60, clock=clock)
    subject = account("alice")
    slow.fail(subject)
    slow.succeed(subject)

    assert slow.wait(subject) == 0
    assert slow.fail(subject) == (1, 4)


def test_the_slow_down_keeps_its_keys_no_longer_than_its_memory(redis, clock):
    slow = Slowdown(redis, free=0, base=4, cap=60, memory=3600, clock=clock)
    slow.fail(account("alice"))

    written = list(redis.scan_iter("callflow:lockout:*"))
    assert len(written) == 2 and all(0 < redis.ttl(key) <= 3600 for key in written)


# -- the tally ----------------------------------------------------------------------------------


def test_refused_attempts_are_tallied_per_window_and_due_once_it_closes(redis, clock):
    tally = Tally(redis, window_seconds=900, clock=clock)
    here = address("203.0.113.5")
    for _ in range(150):
        tally.note(here, "unknown", channel="web", address="203.0.113.5")
        clock.now += timedelta(seconds=1)

    assert tally.due() == []
    clock.now += timedelta(minutes=15)
    [due] = tally.due()
    assert (due.subject, due.count, due.actor) == (here, 150, "unknown")
    assert due.where == {"channel": "web", "address": "203.0.113.5"}
    assert due.first_at < due.last_at
    tally.done(due)
    assert tally.due() == []
    assert not list(redis.scan_iter(keys.lockout_tally("*")))


def test_scopes_and_values_are_kept_apart():
    assert scope_of(address("198.51.100.5")) == ("address", "198.51.100.5")
    assert scope_of(pair("alice", "2001:db8::1")) == ("pair", "alice@2001:db8::1")
    assert staff_number("") == "staff-number:none"


def test_the_limit_is_configurable(redis):
    lockout = Lockout(redis, max_failures=2)
    assert lockout.fail("account:bob") == []
    assert lockout.fail("account:bob") == ["account:bob"]


def test_nothing_is_locked_when_no_subject_is_given(lockout):
    assert lockout.locked() == 0
    lockout.check()


@pytest.mark.parametrize("value", ["203.0.113.5", "2001:db8::1", "::1"])
def test_addresses_are_subjects(value):
    assert address(value).endswith(value)
    assert pair("alice", value) == f"pair:alice@{value}"


@pytest.mark.parametrize("value", ["1001", "999999"])
def test_staff_numbers_are_subjects(value):
    assert staff_number(value) == f"staff-number:{value}"


@pytest.mark.parametrize("value", ["+447700900123", "447700900123", "07700 900123",
                                   "+44 (7700) 900-123", ""])
def test_a_phone_number_is_never_a_subject(value):
    for make in (address, account, lambda v: pair("alice", v)):
        with pytest.raises(ValueError):
            make(value)
    if value:  # typed where a staff number goes: refused, never kept
        with pytest.raises(ValueError):
            staff_number(value)


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window_seconds": 0}])
def test_nonsense_limits_are_refused(redis, kwargs):
    with pytest.raises(ValueError):
        Lockout(redis, **kwargs)
