"""Staff accounts: hashed secrets, sign-in refusals, lockout, and an audit trail without secrets."""

from __future__ import annotations

import time

import pytest
import redis as redis_lib
from argon2 import PasswordHasher

from callflow import keys
from callflow.errors import (
    ConfigError,
    DuplicateStaff,
    LockedOut,
    Refusal,
    SignInRefused,
    StaffError,
    UnknownStaff,
)
from callflow.lockout import Lockout
from callflow.staff import Role, StaffStore, check_pin
from tests.conftest import store_dump

PASSWORD = "correct horse battery staple"
OTHER_PASSWORD = "a different long passphrase"
PIN = "482915"
PHONE = "+447700900123"
HERE = "203.0.113.5"
CALL_SID = "CA" + "0123456789abcdef" * 2


def cheap_hasher() -> PasswordHasher:
    """Argon2id with the smallest parameters, so the suite stays fast; production uses defaults."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


class AuditRecorder:
    """Stands in for the audit log: keeps what it is given, can be made to fail."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, dict]] = []
        self.fail_on: set[str] = set()

    def __call__(self, kind: str, actor: str, **data) -> None:
        if kind in self.fail_on:
            raise RuntimeError("audit log unavailable")
        self.entries.append((kind, actor, data))

    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.entries]

    def text(self) -> str:
        return repr(self.entries)


@pytest.fixture
def audit() -> AuditRecorder:
    return AuditRecorder()


@pytest.fixture
def store(redis, audit) -> StaffStore:
    return StaffStore(redis, audit, hasher=cheap_hasher())


@pytest.fixture
def alice(store):
    """A manager with a password, a PIN and a phone."""
    store.add("alice", PASSWORD, Role.MANAGER)
    store.set_pin("alice", PIN)
    store.set_phone("alice", PHONE)
    return store.get("alice")


# -- accounts -----------------------------------------------------------------------------------


def test_an_added_account_can_be_read_and_listed(store):
    added = store.add("alice", PASSWORD)
    store.add("bob.admin", OTHER_PASSWORD, "admin")
    assert added == store.get("alice")
    assert added.role is Role.MANAGER
    assert not (added.disabled or added.has_pin or added.phone_monitoring)
    assert added.phone is None
    assert added.may_listen
    assert [m.name for m in store.list()] == ["alice", "bob.admin"]
    assert store.get("bob.admin").role is Role.ADMIN
    assert not store.get("bob.admin").may_listen


def test_a_missing_or_impossible_name_reads_as_none(store):
    assert store.get("nobody") is None
    assert store.get("Not A Name") is None
    assert store.list() == []


def test_a_name_is_never_taken_twice(store):
    store.add("alice", PASSWORD)
    with pytest.raises(DuplicateStaff, match="already exists"):
        store.add("alice", OTHER_PASSWORD, Role.ADMIN)
    assert store.get("alice").role is Role.MANAGER


@pytest.mark.parametrize("name", ["Alice", "al ice", "", "-alice", "alice:x", "élise", "a" * 65,
                                  "alice/../bob"])
def test_unusable_names_are_refused(store, name):
    with pytest.raises(StaffError, match="not a usable staff name"):
        store.add(name, PASSWORD)


@pytest.mark.parametrize("name", ["alice", "a.smith", "j-doe_2", "7"])
def test_plain_names_are_accepted(store, name):
    assert store.add(name, PASSWORD).name == name


@pytest.mark.parametrize("password", ["short", "elevenchars", " " * 20, "x" * 1025])
def test_weak_or_absurd_passwords_are_refused(store, password):
    with pytest.raises(StaffError, match="password"):
        store.add("alice", password)
    assert store.get("alice") is None


def test_an_unknown_role_is_refused(store):
    with pytest.raises(StaffError, match="not a role"):
        store.add("alice", PASSWORD, "supervisor")


def test_disable_marks_the_account(store):
    store.add("alice", PASSWORD)
    assert store.disable("alice").disabled
    assert not store.get("alice").may_listen


def test_set_pin_enables_phone_monitoring(store):
    store.add("alice", PASSWORD)
    member = store.set_pin("alice", PIN)
    assert member.has_pin and member.phone_monitoring


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", "", "0000", "1234", "98765",
                                 "7777777", "8901"])
def test_short_long_or_guessable_pins_are_refused(pin):
    with pytest.raises(StaffError, match="PIN"):
        check_pin(pin)


def test_two_managers_never_share_a_pin(store):
    store.add("alice", PASSWORD)
    store.add("carol", OTHER_PASSWORD)
    store.set_pin("alice", PIN)
    with pytest.raises(StaffError, match="another manager has that PIN"):
        store.set_pin("carol", PIN)
    store.set_pin("alice", PIN)  # setting one's own PIN again is fine


def test_set_phone_validates_the_number(store):
    store.add("alice", PASSWORD)
    assert store.set_phone("alice", PHONE).phone == PHONE
    for bad in ["07700900123", "+44 7700 900123", "call me", "+0447700900123"]:
        with pytest.raises(StaffError, match="international form"):
            store.set_phone("alice", bad)
    assert store.get("alice").phone == PHONE


def test_the_phone_stays_out_of_the_repr(alice):
    assert PHONE not in repr(alice)


def test_a_phone_is_registered_with_a_label_that_is_audited_instead_of_the_number(store, audit):
    store.add("alice", PASSWORD)

    member = store.set_phone("alice", PHONE, label="alice's mobile", actor="cli:root")

    assert (member.phone, member.phone_label) == (PHONE, "alice's mobile")
    assert audit.entries[-1] == ("staff_changed", "cli:root", {
        "name": "alice", "change": "phone_set", "label": "alice's mobile"})
    # A new number keeps the label unless another is given.
    assert store.set_phone("alice", "+447700900124").phone_label == "alice's mobile"
    assert "447700900" not in audit.text()


@pytest.mark.parametrize("label", ["", "   ", "+447700900123", "mobile 07700 900123",
                                   "<script>", "x" * 41, "line\nbreak"])
def test_a_label_that_is_not_a_few_plain_words_is_refused(store, label):
    store.add("alice", PASSWORD)
    with pytest.raises(StaffError, match="label"):
        store.set_phone("alice", PHONE, label=label)
    assert store.get("alice").phone is None


def test_admins_get_neither_pin_nor_phone(store):
    store.add("root", PASSWORD, Role.ADMIN)
    with pytest.raises(StaffError, match="only managers"):
        store.set_pin("root", PIN)
    with pytest.raises(StaffError, match="only managers"):
        store.set_phone("root", PHONE)


@pytest.mark.parametrize("change", [
    lambda s: s.disable("nobody"),
    lambda s: s.set_password("nobody", PASSWORD),
    lambda s: s.set_pin("nobody", PIN),
    lambda s: s.set_phone("nobody", PHONE),
])
def test_changing_an_unknown_account_says_so_and_creates_nothing(store, redis, change):
    with pytest.raises(UnknownStaff, match="no staff account 'nobody'"):
        change(store)
    assert redis.dbsize() == 0


def test_a_client_that_returns_bytes_is_refused(redis_url):
    client = redis_lib.Redis.from_url(redis_url)
    with pytest.raises(ConfigError, match="decode_responses"):
        StaffStore(client)
    client.close()


# -- secrets ------------------------------------------------------------------------------------


def test_secrets_are_stored_only_as_argon2_hashes(store, redis, alice):
    store.set_password("alice", OTHER_PASSWORD)
    dump = store_dump(redis)
    for secret in (PASSWORD, OTHER_PASSWORD, PIN):
        assert secret not in dump
    record = redis.hgetall(keys.staff("alice"))
    assert record["password"].startswith("$argon2id$")
    assert record["pin"].startswith("$argon2id$")


def test_the_default_hasher_is_argon2id_at_full_strength(redis):
    store = StaffStore(redis)
    store.add("alice", PASSWORD)
    assert redis.hget(keys.staff("alice"), "password").startswith("$argon2id$v=19$m=65536,t=3")
    assert store.authenticate("alice", PASSWORD, HERE).name == "alice"


def test_a_hash_made_with_older_parameters_is_upgraded_at_sign_in(redis):
    StaffStore(redis, hasher=cheap_hasher()).add("alice", PASSWORD)
    stronger = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
    StaffStore(redis, hasher=stronger).authenticate("alice", PASSWORD, HERE)
    assert "m=16,t=2" in redis.hget(keys.staff("alice"), "password")


def test_no_secret_or_phone_reaches_the_audit_log_or_logs(store, audit, alice, caplog):
    store.set_password("alice", OTHER_PASSWORD)
    store.authenticate("alice", OTHER_PASSWORD, HERE)
    store.authenticate_pin(PIN, CALL_SID)
    for n in range(5):
        with pytest.raises(SignInRefused):
            store.authenticate_pin("135790", call_sid(n))
    for _ in range(5):
        with pytest.raises(SignInRefused):
            store.authenticate("alice", PASSWORD, HERE)
    for secret in (PASSWORD, OTHER_PASSWORD, PIN, "135790", PHONE, "447700900123"):
        assert secret not in audit.text()
        assert secret not in caplog.text
    assert set(audit.kinds()) == {"staff_changed", "login", "login_failed", "lockout"}


def test_staff_changes_are_audited_by_kind_and_change(store, audit):
    store.add("alice", PASSWORD, actor="cli:root")
    store.set_password("alice", OTHER_PASSWORD, actor="cli:root")
    store.set_pin("alice", PIN, actor="cli:root")
    store.set_phone("alice", PHONE, actor="cli:root")
    store.disable("alice", actor="cli:root")
    assert audit.entries == [
        ("staff_changed", "cli:root", {"name": "alice", "change": "added", "role": "manager"}),
        ("staff_changed", "cli:root", {"name": "alice", "change": "password_set"}),
        ("staff_changed", "cli:root", {"name": "alice", "change": "pin_set"}),
        ("staff_changed", "cli:root", {"name": "alice", "change": "phone_set",
                                       "label": "alice's phone"}),
        ("staff_changed", "cli:root", {"name": "alice", "change": "disabled"}),
    ]


def test_a_change_without_an_actor_names_the_command_line(store, audit):
    store.add("alice", PASSWORD)
    assert audit.entries[0][1].startswith("cli")


# -- web sign-in --------------------------------------------------------------------------------


def test_the_right_password_signs_in_and_is_audited(store, audit, alice):
    assert store.authenticate("alice", PASSWORD, HERE) == alice
    assert audit.entries[-1] == ("login", "alice", {"channel": "web", "address": HERE})


def test_the_name_is_read_as_typed_on_a_form(store, alice):
    assert store.authenticate(" Alice ", PASSWORD, HERE).name == "alice"


def test_a_wrong_password_and_an_unknown_name_get_the_same_refusal(store, audit, alice):
    refusals = []
    for name, password in [("alice", OTHER_PASSWORD), ("nobody", PASSWORD),
                           ("Not A Name!", PASSWORD), ("alice", "x" * 5000)]:
        with pytest.raises(SignInRefused) as caught:
            store.authenticate(name, password, HERE)
        refusals.append((caught.value.reason, str(caught.value)))
    assert set(refusals) == {(Refusal.BAD_CREDENTIALS, "unknown name or wrong password")}
    actors = [actor for kind, actor, _ in audit.entries if kind == "login_failed"]
    assert actors == ["alice", "unknown", "unknown", "alice"]
    assert "nobody" not in audit.text() and "Not A Name" not in audit.text()


def test_a_disabled_account_is_refused_even_with_the_right_password(store, audit, alice):
    store.disable("alice")
    with pytest.raises(SignInRefused) as caught:
        store.authenticate("alice", PASSWORD, HERE)
    assert caught.value.reason is Refusal.DISABLED
    assert audit.entries[-1] == ("login_failed", "alice",
                                 {"reason": "disabled", "channel": "web", "address": HERE})
    with pytest.raises(SignInRefused) as caught:
        store.authenticate("alice", OTHER_PASSWORD, HERE)
    assert caught.value.reason is Refusal.BAD_CREDENTIALS  # says nothing without the password


def test_five_failures_lock_the_account_from_every_address(store, audit, alice):
    for n in range(4):
        with pytest.raises(SignInRefused) as caught:
            store.authenticate("alice", OTHER_PASSWORD, f"203.0.113.{n}")
        assert caught.value.reason is Refusal.BAD_CREDENTIALS
    # The failure that locks the account says so.
    with pytest.raises(LockedOut) as caught:
        store.authenticate("alice", OTHER_PASSWORD, "203.0.113.4")
    assert caught.value.reason is Refusal.LOCKED_OUT
    lockout = ("lockout", "alice", {"scope": "account", "account": "alice", "seconds": 900,
                                    "channel": "web", "address": "203.0.113.4"})
    assert audit.entries[-2:] == [("login_failed", "alice", {"reason": "bad_credentials",
                                                             "channel": "web",
                                                             "address": "203.0.113.4"}),
                                  lockout]
    with pytest.raises(LockedOut) as caught:
        store.authenticate("alice", PASSWORD, "198.51.100.7")
    assert caught.value.reason is Refusal.LOCKED_OUT
    assert [entry for entry in audit.entries if entry[0] == "lockout"] == [lockout]
    assert audit.entries[-1] == ("login_failed", "alice", {"reason": "locked_out",
                                                           "channel": "web",
                                                           "address": "198.51.100.7"})


def test_five_failures_lock_the_address_for_every_account(store, audit, alice):
    store.add("carol", OTHER_PASSWORD)
    for name in ["bob", "dave", "erin", "frank"]:
        with pytest.raises(SignInRefused) as caught:
            store.authenticate(name, PASSWORD, HERE)
        assert caught.value.reason is Refusal.BAD_CREDENTIALS
    with pytest.raises(LockedOut):  # the fifth, which locks the address, says so
        store.authenticate("grace", PASSWORD, HERE)
    with pytest.raises(LockedOut):
        store.authenticate("carol", OTHER_PASSWORD, HERE)
    assert store.authenticate("carol", OTHER_PASSWORD, "198.51.100.7").name == "carol"
    lockouts = [(actor, data) for kind, actor, data in audit.entries if kind == "lockout"]
    # By scope; an address lockout names no account, and the address is kept as on every
    # failure, never as one "address:..." string.
    assert lockouts == [("unknown", {"scope": "address", "seconds": 900, "channel": "web",
                                     "address": HERE})]


def test_a_locked_account_stays_locked_with_the_right_password(store, alice):
    for _ in range(5):
        with pytest.raises(SignInRefused):
            store.authenticate("alice", OTHER_PASSWORD, HERE)
    for _ in range(3):
        with pytest.raises(LockedOut):
            store.authenticate("alice", PASSWORD, "198.51.100.7")


def test_a_lockout_lifts_after_the_window(redis, alice):
    store = StaffStore(redis, hasher=cheap_hasher(), lockout=Lockout(redis, window_seconds=1))
    for _ in range(5):
        with pytest.raises(SignInRefused):
            store.authenticate("alice", OTHER_PASSWORD, HERE)
    with pytest.raises(LockedOut):
        store.authenticate("alice", PASSWORD, HERE)
    time.sleep(1.1)
    assert store.authenticate("alice", PASSWORD, HERE).name == "alice"


def test_signing_in_forgets_the_accounts_earlier_failures(store, alice):
    for _ in range(4):
        with pytest.raises(SignInRefused):
            store.authenticate("alice", OTHER_PASSWORD, f"203.0.113.{_}")
    store.authenticate("alice", PASSWORD, "198.51.100.7")
    for n in range(4):
        with pytest.raises(SignInRefused) as caught:
            store.authenticate("alice", OTHER_PASSWORD, f"192.0.2.{n}")
        assert caught.value.reason is Refusal.BAD_CREDENTIALS


def test_a_sign_in_that_cannot_be_audited_is_not_granted(store, audit, alice):
    audit.fail_on.add("login")
    with pytest.raises(RuntimeError, match="audit log unavailable"):
        store.authenticate("alice", PASSWORD, HERE)


def test_failures_count_even_when_the_audit_log_is_down(store, audit, alice):
    audit.fail_on.add("login_failed")
    for _ in range(5):
        with pytest.raises(RuntimeError):
            store.authenticate("alice", OTHER_PASSWORD, HERE)
    with pytest.raises(LockedOut):
        store.lockout.check("account:alice")


# -- phone sign-in ------------------------------------------------------------------------------


def test_the_right_pin_signs_a_manager_in_by_phone(store, audit, alice):
    store.add("carol", OTHER_PASSWORD)
    store.set_pin("carol", "559013")
    assert store.authenticate_pin(PIN, CALL_SID) == alice
    assert store.authenticate_pin("559013", call_sid(9)).name == "carol"
    assert audit.entries[-2] == ("login", "alice", {"channel": "phone", "call_sid": CALL_SID})


@pytest.mark.parametrize("pin", ["135790", "", "48291", "482915#", None])
def test_a_wrong_pin_is_refused(store, alice, pin):
    with pytest.raises(SignInRefused) as caught:
        store.authenticate_pin(pin, CALL_SID)
    assert caught.value.reason is Refusal.BAD_CREDENTIALS
    assert str(caught.value) == "that PIN was not accepted"


def test_a_disabled_managers_pin_is_refused(store, audit, alice):
    store.disable("alice")
    with pytest.raises(SignInRefused) as caught:
        store.authenticate_pin(PIN, CALL_SID)
    assert caught.value.reason is Refusal.DISABLED
    assert audit.kinds()[-1] == "login_failed"


def test_pin_brute_force_locks_the_phone_line_across_calls(store, audit, alice):
    for n, guess in enumerate(["111222", "123321", "246810", "909090"]):
        with pytest.raises(SignInRefused) as caught:
            store.authenticate_pin(guess, call_sid(n))
        assert caught.value.reason is Refusal.BAD_CREDENTIALS
    # The fifth wrong PIN, on yet another call, locks the line and says so.
    with pytest.raises(LockedOut) as caught:
        store.authenticate_pin("135790", call_sid(4))
    assert caught.value.reason is Refusal.LOCKED_OUT
    # Redialling gives a fresh CallSid, and still no more guesses; not even the right PIN.
    with pytest.raises(LockedOut):
        store.authenticate_pin(PIN, call_sid(99))
    lockouts = [(actor, data) for kind, actor, data in audit.entries if kind == "lockout"]
    assert lockouts == [("unknown", {"scope": "phone-line", "seconds": 900, "channel": "phone",
                                     "call_sid": call_sid(4)})]
    assert audit.entries[-1] == ("login_failed", "unknown", {"reason": "locked_out",
                                                             "channel": "phone",
                                                             "call_sid": call_sid(99)})


def test_pin_guesses_within_one_call_lock_that_call(redis, alice):
    store = StaffStore(redis, hasher=cheap_hasher(), lockout=Lockout(redis, max_failures=3))
    for _ in range(3):
        with pytest.raises(SignInRefused):
            store.authenticate_pin("135790", CALL_SID)
    assert store.lockout.locked(f"phone-line:{CALL_SID}") > 0


def test_a_manager_locked_out_on_the_web_is_locked_out_by_phone(store, alice):
    for _ in range(5):
        with pytest.raises(SignInRefused):
            store.authenticate("alice", OTHER_PASSWORD, HERE)
    with pytest.raises(LockedOut):
        store.authenticate_pin(PIN, CALL_SID)


def test_the_pin_line_never_takes_a_phone_number_as_the_call(store, redis, alice):
    with pytest.raises(ValueError, match="phone number"):
        store.authenticate_pin(PIN, PHONE)
    assert "447700900123" not in "".join(redis.scan_iter("callflow:lockout:*"))


def test_an_admin_cannot_sign_in_by_phone(store, redis, alice):
    store.add("root", OTHER_PASSWORD, Role.ADMIN)
    # Even a PIN hash written behind the store's back does not make an admin a listener.
    root_hash = cheap_hasher().hash("602817")
    redis.hset(keys.staff("root"), mapping={"pin": root_hash, "phone_monitoring": "1"})
    with pytest.raises(SignInRefused):
        store.authenticate_pin("602817", CALL_SID)
