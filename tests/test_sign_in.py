"""Signing in, web and phone, below the web app: refusals that say nothing about which names
exist, locks an outsider can only bring on their own address, slow-downs that bound guessing
from anywhere, the owner's ways back in, and PINs checked against one account only."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from callflow.platform import keys
from callflow.platform.errors import LockedOut, SignInRefusal, SignInRefused
from callflow.staff.accounts import Role, StaffStore
from callflow.staff.lockout import Lockout
from callflow.staff.pin_sign_in import PinSignIn
from callflow.staff.sign_in import (
    ACCOUNT_FREE_FAILURES,
    ADDRESS_FAILURES,
    DEVICE_FAILURES,
    PAIR_FAILURES,
    WebSignIn,
    audit_tallies,
    unlock,
)
from tests.conftest import Clock
from tests.staff_support import (
    CALL_SID,
    HERE,
    OTHER_PASSWORD,
    PASSWORD,
    PHONE,
    PIN,
    AuditRecorder,
    call_sid,
    cheap_hasher,
)


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(redis, audit) -> StaffStore:
    return StaffStore(redis, audit, hasher=cheap_hasher())


@pytest.fixture
def web(store, clock) -> WebSignIn:
    return WebSignIn(store, clock=clock)


@pytest.fixture
def phone(store, clock) -> PinSignIn:
    return PinSignIn(store, line="manager-line", allowed=lambda m: m.role is Role.MANAGER,
                     clock=clock)


@pytest.fixture
def alice(store):
    """A manager with a password, a PIN (staff number 1001) and a phone."""
    store.add("alice", PASSWORD, Role.MANAGER)
    store.set_pin("alice", PIN)
    store.set_phone("alice", PHONE)
    return store.get("alice")


def refused(web: WebSignIn, name: str, password: str, where: str = HERE, device: str = ""):
    with pytest.raises(SignInRefused) as caught:
        web.attempt(name, password, where, device)
    return caught.value


# -- the web ----------------------------------------------------------------------------------


def test_the_right_password_signs_in_is_audited_and_the_browser_is_given_a_token(web, audit,
                                                                                 alice):
    signed = web.attempt("alice", PASSWORD, HERE)

    assert signed.member == alice
    assert len(signed.device) >= 43
    assert audit.entries[-1] == ("login", "alice", {"channel": "web", "address": HERE})


def test_the_name_is_read_as_typed_on_a_form(web, alice):
    assert web.attempt(" Alice ", PASSWORD, HERE).member.name == "alice"


def test_a_wrong_password_and_an_unknown_name_get_the_same_refusal(web, audit, alice):
    refusals = [refused(web, name, password) for name, password in [
        ("alice", OTHER_PASSWORD), ("nobody", PASSWORD), ("Not A Name!", PASSWORD),
        ("alice", "x" * 5000)]]

    assert {(r.reason, str(r)) for r in refusals} == {
        (SignInRefusal.BAD_CREDENTIALS, "unknown name or wrong password")}
    assert [actor for actor, _ in audit.of("login_failed")] == ["alice", "unknown", "unknown",
                                                                "alice"]
    assert "nobody" not in audit.text() and "Not A Name" not in audit.text()


def test_a_disabled_account_is_refused_even_with_the_right_password(web, store, audit, alice):
    store.disable("alice")

    assert refused(web, "alice", PASSWORD).reason is SignInRefusal.DISABLED
    assert audit.entries[-1] == ("login_failed", "alice",
                                 {"reason": "disabled", "channel": "web", "address": HERE})
    assert refused(web, "alice", OTHER_PASSWORD).reason is SignInRefusal.BAD_CREDENTIALS


def test_failures_from_one_address_lock_only_that_address_out_of_the_account(web, audit,
                                                                             alice):
    for _ in range(PAIR_FAILURES - 1):
        assert refused(web, "alice", OTHER_PASSWORD).reason is SignInRefusal.BAD_CREDENTIALS
    assert isinstance(refused(web, "alice", OTHER_PASSWORD), LockedOut)

    assert isinstance(refused(web, "alice", PASSWORD), LockedOut)
    assert web.attempt("alice", PASSWORD, "198.51.100.7").member.name == "alice"
    assert audit.of("lockout") == [("alice", {"scope": "pair", "account": "alice",
                                              "seconds": 900, "channel": "web",
                                              "address": HERE})]


def test_failures_at_many_accounts_lock_the_address(web, store, audit, alice):
    store.add("carol", OTHER_PASSWORD)
    for n in range(ADDRESS_FAILURES - 1):
        refused(web, f"guess-{n}", PASSWORD)
    assert isinstance(refused(web, "guess-last", PASSWORD), LockedOut)

    assert isinstance(refused(web, "carol", OTHER_PASSWORD), LockedOut)
    assert web.attempt("carol", OTHER_PASSWORD, "198.51.100.7").member.name == "carol"
    assert audit.of("lockout") == [("unknown", {"scope": "address", "seconds": 900,
                                                "channel": "web", "address": HERE})]


def test_strangers_at_an_account_are_slowed_whatever_their_address(web, audit, alice, clock):
    for n in range(ACCOUNT_FREE_FAILURES + 1):
        refused(web, "alice", OTHER_PASSWORD, f"203.0.113.{n}")
    last = audit.of("login_failed")[-1][1]
    assert (last["failures"], last["pause_seconds"]) == (ACCOUNT_FREE_FAILURES + 1, 2)

    with pytest.raises(LockedOut) as caught:
        web.attempt("alice", PASSWORD, "192.0.2.1")
    assert caught.value.retry_after == 2
    clock.now += timedelta(seconds=2)
    assert web.attempt("alice", PASSWORD, "192.0.2.1").member.name == "alice"


def test_the_owners_own_browser_is_not_slowed_by_strangers(web, alice):
    device = web.attempt("alice", PASSWORD, "192.0.2.10").device
    for n in range(30):
        with pytest.raises(SignInRefused):
            web.attempt("alice", OTHER_PASSWORD, f"203.0.113.{n}")
    with pytest.raises(LockedOut):
        web.attempt("alice", PASSWORD, "192.0.2.11")  # a stranger's browser waits

    signed = web.attempt("alice", PASSWORD, "192.0.2.11", device)

    assert (signed.member.name, signed.device) == ("alice", device)


def test_a_token_is_no_use_to_another_account_or_after_its_own_failures(web, store, alice):
    store.add("carol", OTHER_PASSWORD)
    device = web.attempt("alice", PASSWORD, HERE).device
    assert not web.devices.known(device, "carol")
    for n in range(DEVICE_FAILURES):
        refused(web, "alice", OTHER_PASSWORD, f"192.0.2.{n}", device)
    assert not web.devices.known(device, "alice")


def test_an_admin_unlock_lifts_every_limit_and_is_audited(web, phone, store, audit, alice):
    for n in range(30):
        with pytest.raises(SignInRefused):
            web.attempt("alice", OTHER_PASSWORD, "203.0.113.9" if n < 5 else f"192.0.2.{n}")
    phone.attempt("1001", "135790", CALL_SID)

    unlock(store, "alice", actor="cli:root")

    assert audit.entries[-1] == ("staff_changed", "cli:root", {"name": "alice",
                                                               "change": "unlocked"})
    assert web.attempt("alice", PASSWORD, "203.0.113.9").member.name == "alice"
    assert phone.attempt("1001", PIN, call_sid(2)).member.name == "alice"


def test_an_unlock_that_cannot_be_audited_lifts_nothing(web, store, audit, alice):
    for _ in range(PAIR_FAILURES):
        with pytest.raises(SignInRefused):
            web.attempt("alice", OTHER_PASSWORD, HERE)
    audit.fail_on.add("staff_changed")

    with pytest.raises(RuntimeError):
        unlock(store, "alice")

    assert isinstance(refused(web, "alice", PASSWORD), LockedOut)


def test_a_locked_address_is_refused_unchecked_and_tallied_not_audited_singly(
        web, store, audit, alice, clock, monkeypatch):
    for n in range(ADDRESS_FAILURES):
        with pytest.raises(SignInRefused):
            web.attempt(f"guess-{n}", PASSWORD, HERE)
    written = len(audit.entries)
    checked = []
    monkeypatch.setattr(store, "verify", lambda *a: checked.append(1))

    for _ in range(150):
        assert isinstance(refused(web, "alice", PASSWORD), LockedOut)

    assert (checked, len(audit.entries)) == ([], written)
    clock.now += timedelta(minutes=16)
    assert audit_tallies(web.tally, audit) == 1
    [(actor, data)] = audit.of("login_throttled")
    assert (actor, data["scope"], data["address"], data["count"]) == (
        "unknown", "address", HERE, 150)
    assert audit_tallies(web.tally, audit) == 0


def test_a_lock_lifts_after_the_window(store, clock, alice):
    web = WebSignIn(store, clock=clock)
    web.pairs = Lockout(store.client, PAIR_FAILURES, window_seconds=1)
    for _ in range(PAIR_FAILURES):
        with pytest.raises(SignInRefused):
            web.attempt("alice", OTHER_PASSWORD, HERE)
    with pytest.raises(LockedOut):
        web.attempt("alice", PASSWORD, HERE)
    time.sleep(1.1)
    assert web.attempt("alice", PASSWORD, HERE).member.name == "alice"


def test_signing_in_forgets_the_earlier_failures_at_that_address(web, alice):
    for _ in range(PAIR_FAILURES - 1):
        refused(web, "alice", OTHER_PASSWORD)
    web.attempt("alice", PASSWORD, HERE)
    for _ in range(PAIR_FAILURES - 1):
        assert refused(web, "alice", OTHER_PASSWORD).reason is SignInRefusal.BAD_CREDENTIALS


def test_a_sign_in_that_cannot_be_audited_is_not_granted(web, audit, alice):
    audit.fail_on.add("login")
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        web.attempt("alice", PASSWORD, HERE)


def test_failures_count_even_when_the_audit_log_is_down(web, audit, alice):
    audit.fail_on.add("login_failed")
    for _ in range(PAIR_FAILURES):
        with pytest.raises(RuntimeError):
            web.attempt("alice", OTHER_PASSWORD, HERE)
    assert isinstance(refused(web, "alice", PASSWORD), LockedOut)


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(redis, clock):
    StaffStore(redis, hasher=cheap_hasher()).add("alice", PASSWORD)
    stronger = StaffStore(redis, hasher=PasswordHasher(time_cost=2, memory_cost=16,
                                                       parallelism=1))
    WebSignIn(stronger, clock=clock).attempt("alice", PASSWORD, HERE)
    assert "m=16,t=2" in redis.hget(keys.staff("alice"), "password")


def test_a_phone_number_in_place_of_an_address_is_refused_not_kept(web, redis, alice):
    with pytest.raises(ValueError, match="phone number"):
        web.attempt("alice", PASSWORD, "+447700900123")
    assert "447700900123" not in "".join(redis.scan_iter("callflow:lockout:*"))


# -- phone lines --------------------------------------------------------------------------------


def test_the_right_staff_number_and_pin_sign_in(phone, audit, alice):
    result = phone.attempt("1001", PIN, CALL_SID)

    assert (result.member, result.pause) == (alice, 0)
    assert audit.entries[-1] == ("login", "alice", {"channel": "phone", "line": "manager-line",
                                                    "call_sid": CALL_SID})


@pytest.mark.parametrize(("number", "pin"), [("1001", "135790"), ("1001", ""), ("1001", None),
                                             ("1001", "48291"), ("1001", PIN + "#"),
                                             ("1002", PIN), ("", PIN), ("+4477009", PIN)])
def test_a_wrong_pin_or_staff_number_is_refused_alike(phone, alice, number, pin):
    result = phone.attempt(number, pin, CALL_SID)

    assert result.member is None
    assert result.pause == 2


def test_each_failure_makes_the_staff_number_wait_longer_and_is_audited(phone, audit, alice,
                                                                        clock):
    pauses = []
    for n in range(5):
        pauses.append(phone.attempt("1001", "135790", call_sid(n)).pause)
        clock.now += timedelta(seconds=pauses[-1])

    assert pauses == [2, 4, 8, 16, 32]
    assert [d["failures"] for _, d in audit.of("login_failed")] == [1, 2, 3, 4, 5]
    assert audit.of("login_failed")[0] == ("alice", {
        "reason": "bad_credentials", "channel": "phone", "line": "manager-line",
        "call_sid": call_sid(0), "staff_number": "1001", "failures": 1, "pause_seconds": 2})
    assert audit.of("lockout") == []  # nothing is ever locked for everyone


def test_during_the_wait_a_pin_is_not_checked_and_the_attempt_is_tallied(phone, store, audit,
                                                                          alice, clock,
                                                                          monkeypatch):
    phone.attempt("1001", "135790", call_sid(0))
    checked = []
    verify = store.verify
    monkeypatch.setattr(store, "verify", lambda *a: checked.append(1) or verify(*a))

    result = phone.attempt("1001", PIN, call_sid(1))

    assert (result.member, result.pause, checked) == (None, 2, [])
    clock.now += timedelta(minutes=16)
    audit_tallies(phone.tally, audit)
    [(actor, data)] = audit.of("login_throttled")
    assert (actor, data["staff_number"], data["count"]) == ("alice", "1001", 1)


def test_one_accounts_failures_never_slow_another(phone, store, alice):
    store.add("carol", OTHER_PASSWORD)
    store.set_pin("carol", "593720")
    for n in range(10):
        phone.attempt("1001", "135790", call_sid(n))

    assert phone.attempt("1002", "593720", CALL_SID).member.name == "carol"


def test_an_account_not_of_this_line_is_as_good_as_unknown(phone, store, redis, alice):
    store.add("root", OTHER_PASSWORD, Role.ADMIN)
    # Even a PIN hash written behind the store's back does not make an admin a listener.
    redis.hset(keys.staff("root"), mapping={"pin": cheap_hasher().hash("602817"),
                                            "phone_monitoring": "1"})
    assert phone.attempt("1002", "602817", CALL_SID).member is None


def test_a_disabled_managers_pin_is_refused(phone, store, audit, alice):
    store.disable("alice")

    assert phone.attempt("1001", PIN, CALL_SID).member is None
    assert audit.entries[-1][2]["reason"] == "disabled"


def test_an_old_pin_that_proves_six_digits_is_marked_current(phone, store, redis, alice):
    redis.hdel(keys.staff("alice"), "pin_rules")
    assert not store.get("alice").pin_current

    phone.attempt("1001", PIN, CALL_SID)

    assert store.get("alice").pin_current


def test_a_four_digit_pin_from_before_can_never_sign_in(phone, store, redis, alice):
    redis.hset(keys.staff("alice"), "pin", cheap_hasher().hash("4826"))
    redis.hdel(keys.staff("alice"), "pin_rules")

    assert phone.attempt("1001", "4826", CALL_SID).member is None


def test_no_secret_reaches_the_audit_log(web, phone, audit, alice, caplog):
    phone.attempt("1001", PIN, CALL_SID)
    phone.attempt("1001", "135790", call_sid(1))
    web.attempt("alice", PASSWORD, HERE)
    with pytest.raises(SignInRefused):
        web.attempt("alice", OTHER_PASSWORD, HERE)
    for secret in (PASSWORD, OTHER_PASSWORD, PIN, "135790", PHONE, "447700900123"):
        assert secret not in audit.text()
        assert secret not in caplog.text
