"""Staff accounts: hashed secrets, staff numbers, PIN rules, every change audited (and undone
when it cannot be), and an audit trail without secrets. Signing in is in test_sign_in.py."""

from __future__ import annotations

import pytest
import redis as redis_lib

from callflow.platform import keys
from callflow.platform.errors import (
    ConfigError,
    DuplicateStaff,
    StaffError,
    UnknownStaff,
)
from callflow.staff.accounts import Role, StaffStore, check_pin
from tests.conftest import store_dump
from tests.staff_support import (
    OTHER_PASSWORD,
    PASSWORD,
    PHONE,
    PIN,
    AuditRecorder,
    cheap_hasher,
)


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


@pytest.mark.parametrize("pin", ["4826", "48261", "1234567890123", "12a456", "", "000000",
                                 "123456", "987654", "7777777", "890123", "121212", "112211"])
def test_short_long_or_guessable_pins_are_refused(pin):
    """Four- and five-digit PINs fall to patient guessing: six digits at least."""
    with pytest.raises(StaffError, match="PIN"):
        check_pin(pin)


@pytest.mark.parametrize("pin", ["482915", "30571946", "918273645501"])
def test_six_to_twelve_digits_without_a_pattern_are_pins(pin):
    assert check_pin(pin) == pin


def test_setting_a_pin_never_says_whether_another_account_has_it(store):
    """PINs are checked against the account whose staff number comes first, so they need not
    be unique; refusing a taken one told an admin another manager's PIN."""
    store.add("alice", PASSWORD)
    store.add("carol", OTHER_PASSWORD)
    store.set_pin("alice", PIN)
    assert store.set_pin("carol", PIN).has_pin


def test_a_pin_set_now_meets_the_six_digit_rule_and_an_older_one_may_not(store, redis):
    store.add("alice", PASSWORD)
    assert store.set_pin("alice", PIN).pin_current
    redis.hdel(keys.staff("alice"), "pin_rules")  # as a PIN from before the rule is stored
    assert not store.get("alice").pin_current


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
    lambda s: s.enable("nobody"),
    lambda s: s.set_password("nobody", PASSWORD),
    lambda s: s.set_pin("nobody", PIN),
    lambda s: s.remove_pin("nobody"),
    lambda s: s.set_phone_monitoring("nobody", False),
    lambda s: s.set_phone("nobody", PHONE),
    lambda s: s.set_staff_number("nobody", "4321"),
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
    assert store.verify(store.record("alice")["password"], PASSWORD)


def test_staff_changes_are_audited_by_kind_and_change(store, audit):
    store.add("alice", PASSWORD, actor="cli:root")
    store.set_password("alice", OTHER_PASSWORD, actor="cli:root")
    store.set_pin("alice", PIN, actor="cli:root")
    store.set_phone("alice", PHONE, actor="cli:root")
    store.set_phone_monitoring("alice", False, actor="cli:root")
    store.set_phone_monitoring("alice", True, actor="cli:root")
    store.set_staff_number("alice", "4321", actor="cli:root")
    store.remove_pin("alice", actor="cli:root")
    store.disable("alice", actor="cli:root")
    store.enable("alice", actor="cli:root")
    assert [(actor, data) for _, actor, data in audit.entries] == [
        ("cli:root", {"name": "alice", "change": "added", "role": "manager",
                      "staff_number": "1001"}),
        ("cli:root", {"name": "alice", "change": "password_set"}),
        ("cli:root", {"name": "alice", "change": "pin_set"}),
        ("cli:root", {"name": "alice", "change": "phone_set", "label": "alice's phone"}),
        ("cli:root", {"name": "alice", "change": "phone_monitoring_off"}),
        ("cli:root", {"name": "alice", "change": "phone_monitoring_on"}),
        ("cli:root", {"name": "alice", "change": "staff_number_set", "staff_number": "4321"}),
        ("cli:root", {"name": "alice", "change": "pin_removed"}),
        ("cli:root", {"name": "alice", "change": "disabled"}),
        ("cli:root", {"name": "alice", "change": "enabled"}),
    ]
    assert set(audit.kinds()) == {"staff_changed"}


CHANGES = {
    "add": lambda s: s.add("bob", PASSWORD),
    "disable": lambda s: s.disable("alice"),
    "enable": lambda s: s.enable("alice"),
    "set_password": lambda s: s.set_password("alice", OTHER_PASSWORD),
    "set_pin": lambda s: s.set_pin("alice", "593720"),
    "remove_pin": lambda s: s.remove_pin("alice"),
    "phone_monitoring": lambda s: s.set_phone_monitoring("alice", False),
    "set_phone": lambda s: s.set_phone("alice", "+447700900124", label="alice's desk"),
    "set_staff_number": lambda s: s.set_staff_number("alice", "4321"),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_a_change_that_cannot_be_audited_is_undone(store, audit, alice, redis, change):
    """No audit entry, no change: the accounts and the staff numbers are as they were (only
    the cursor that gives out staff numbers may have moved on)."""
    before = accounts(redis)
    audit.fail_on.add("staff_changed")

    with pytest.raises(RuntimeError, match="audit log unavailable"):
        change(store)

    assert accounts(redis) == before


def accounts(redis) -> dict:
    """Every staff key and its value, as Python values (a hash's field order aside)."""
    found = {}
    for key in redis.scan_iter("callflow:staff*"):
        kind = redis.type(key)
        if kind == "hash":
            found[key] = redis.hgetall(key)
        elif kind == "set":
            found[key] = redis.smembers(key)
    return found


def test_the_next_account_gets_a_staff_number_nobody_has(store):
    numbers = [store.add(name, PASSWORD).staff_number for name in ("alice", "bob")]
    store.set_staff_number("bob", "1003")

    assert numbers == ["1001", "1002"]
    assert store.add("carol", PASSWORD).staff_number == "1004"
    assert store.by_staff_number("1003") == "bob"
    assert store.by_staff_number("1002") is None  # bob's old number is free again
    assert store.set_staff_number("alice").staff_number == "1005"


@pytest.mark.parametrize("number", ["12", "1234567", "12a4", "+4477", ""])
def test_a_staff_number_is_four_to_six_digits(store, number):
    store.add("alice", PASSWORD)
    with pytest.raises(StaffError, match="staff number"):
        store.set_staff_number("alice", number)
    assert store.get("alice").staff_number == "1001"


def test_a_staff_number_belongs_to_one_account(store):
    store.add("alice", PASSWORD)
    store.add("bob", PASSWORD)
    with pytest.raises(StaffError, match="belongs to another account"):
        store.set_staff_number("bob", "1001")
    assert store.by_staff_number("1001") == "alice"


def test_phone_monitoring_needs_a_pin_and_removing_the_pin_ends_it(store):
    store.add("alice", PASSWORD)
    with pytest.raises(StaffError, match="no PIN"):
        store.set_phone_monitoring("alice", True)
    store.set_pin("alice", PIN)
    member = store.remove_pin("alice")
    assert not (member.has_pin or member.phone_monitoring or member.pin_current)


def test_a_disabled_account_can_be_enabled_again(store):
    store.add("alice", PASSWORD)
    store.disable("alice")
    assert not store.enable("alice").disabled


def test_no_secret_or_phone_reaches_the_audit_log_or_logs(store, audit, alice, caplog):
    store.set_password("alice", OTHER_PASSWORD)
    store.set_phone("alice", "+447700900124")
    for secret in (PASSWORD, OTHER_PASSWORD, PIN, PHONE, "447700900123", "447700900124"):
        assert secret not in audit.text()
        assert secret not in caplog.text


def test_a_change_without_an_actor_names_the_command_line(store, audit):
    store.add("alice", PASSWORD)
    assert audit.entries[0][1].startswith("cli")


