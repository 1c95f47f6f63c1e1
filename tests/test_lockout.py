"""Lockout: five failures lock a subject for the window, counts expire, numbers are refused."""

from __future__ import annotations

import time

import pytest

from callflow import keys
from callflow.errors import LockedOut, Refusal
from callflow.lockout import PHONE_LINE, Lockout, account, address, phone_call

CALL_SID = "CA" + "0123456789abcdef" * 2


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
    assert caught.value.reason is Refusal.LOCKED_OUT
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
    lockout.fail(address("203.0.113.5"), PHONE_LINE, phone_call(CALL_SID))
    written = list(redis.scan_iter("callflow:lockout:*"))
    assert keys.lockout_locked(account("alice")) in written
    assert len(written) == 4
    assert all(0 < redis.ttl(key) <= 15 * 60 for key in written)


def test_the_limit_is_configurable(redis):
    lockout = Lockout(redis, max_failures=2)
    assert lockout.fail("account:bob") == []
    assert lockout.fail("account:bob") == ["account:bob"]


def test_nothing_is_locked_when_no_subject_is_given(lockout):
    assert lockout.locked() == 0
    lockout.check()


@pytest.mark.parametrize("value", ["203.0.113.5", "2001:db8::1", "::1", CALL_SID])
def test_addresses_and_call_sids_are_subjects(value):
    assert address(value).endswith(value)
    assert phone_call(value).startswith(f"{PHONE_LINE}:")


@pytest.mark.parametrize("value", ["+447700900123", "447700900123", "07700 900123",
                                   "+44 (7700) 900-123", ""])
def test_a_phone_number_is_never_a_subject(value):
    with pytest.raises(ValueError):
        address(value)
    with pytest.raises(ValueError):
        phone_call(value)


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window_seconds": 0}])
def test_nonsense_limits_are_refused(redis, kwargs):
    with pytest.raises(ValueError):
        Lockout(redis, **kwargs)
