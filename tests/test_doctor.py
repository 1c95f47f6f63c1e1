"""``callflow doctor``: each check passes on a good deployment and fails (or warns) with a fix."""

from __future__ import annotations

import dataclasses
import os
import shutil
from datetime import UTC, datetime

import pytest
import redis as redis_lib

from callflow.cli import cli
from callflow.language.lastgood import LastGoodFlows
from callflow.language.loader import load_flowset
from callflow.operations import doctor
from callflow.operations.doctor import Status, run_checks
from callflow.platform.config import Settings
from callflow.platform.twilio_api import make_client
from tests.audit_keys import SIGNING_PEM
from tests.bridge_support import ACCOUNT_SID, MOCK_API, dead_store
from tests.conftest import FLOWS, MENS_ADVICE, RESPECT
from tests.twilio_numbers import PUBLIC_URL, TwilioNumbers, wanted

MANAGER_LINE = "+441632960009"
STRONG = "k" * 48


class Store:
    """A Redis that answers PING and CONFIG GET as configured (the real test server is never
    persistent, and turning persistence on would write files into the working directory)."""

    def __init__(self, appendonly: str = "yes", save: str = "", config: bool = True) -> None:
        self.values = {"appendonly": appendonly, "save": save}
        self.config = config

    def ping(self) -> bool:
        return True

    def get(self, key: str) -> None:
        return None  # no last good flows kept

    def config_get(self, name: str) -> dict[str, str]:
        if not self.config:
            raise redis_lib.ResponseError("unknown command 'CONFIG'")
        return {name: self.values[name]}


@pytest.fixture
def account():
    with TwilioNumbers() as numbers:
        for number in (MENS_ADVICE, RESPECT, MANAGER_LINE):
            numbers.own(number, wanted())
        yield numbers


@pytest.fixture
def good(tmp_path) -> Settings:
    return Settings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token="test-token",
                    twilio_api_url=MOCK_API, public_url=PUBLIC_URL, secret_key=STRONG,
                    redis_url="redis://redis.internal:6379/0", flows_dir=str(FLOWS),
                    audit_signing_key=SIGNING_PEM,
                    audit_witness=str(tmp_path / "witness" / "audit-witness.jsonl"))


def checks(settings: Settings, store=None) -> dict[str, doctor.Check]:
    store = Store() if store is None else store
    return {c.name: c for c in run_checks(settings, connect_store=lambda _: store)}


def failed(results: dict[str, doctor.Check]) -> list[str]:
    return [name for name, check in results.items() if check.status == Status.FAIL]


def test_a_good_deployment_passes_every_check(good, account):
    results = checks(good)
    assert {c.status for c in results.values()} == {Status.OK}
    assert list(results) == ["environment", "public URL", "secret key", "audit signing key",
                             "audit witness", "Twilio call log", "Redis", "flows",
                             "Twilio account", "numbers"]
    assert "AOF persistence on" in results["Redis"].detail


def test_missing_variables_are_named(account):
    results = checks(Settings(flows_dir=str(FLOWS), redis_url="redis://redis.internal:6379/0"))
    env = results["environment"]
    assert env.status == Status.FAIL
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "CALLFLOW_PUBLIC_URL",
                 "SECRET_KEY"):
        assert name in env.detail
    # The rest cannot be checked, so they are not failed again; the signing key Redis needs is
    # missing too, which is a failure of its own.
    assert failed(results) == ["environment", "audit signing key"]
    assert results["numbers"].status == Status.SKIP


def test_local_mode_says_so_and_what_real_calls_need(account, tmp_path):
    local = Settings(flows_dir=str(FLOWS), embedded_db=str(tmp_path / "data" / "callflow.db"))
    results = checks(local)
    env = results["environment"]
    assert env.status == Status.WARN
    assert env.detail.startswith("local mode: the embedded store")
    assert "audit log signed with the local key" in env.detail
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "CALLFLOW_PUBLIC_URL",
                 "SECRET_KEY", "REDIS_URL or REDIS_SENTINELS"):
        assert name in env.fix
    assert failed(results) == []
    assert results["secret key"].status == Status.SKIP  # serve has not made one yet
    assert not (tmp_path / "data").exists()  # the doctor writes nothing
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "secret-key").write_text("k" * 64)
    assert checks(local)["secret key"].status == Status.OK


def test_the_command_in_local_mode_exits_0(account, runner, tmp_path):
    result = runner.invoke(cli, ["doctor"], env={
        "CALLFLOW_FLOWS": str(FLOWS), "REDIS_URL": "", "REDIS_SENTINELS": "", "SECRET_KEY": "",
        "TWILIO_ACCOUNT_SID": "", "TWILIO_AUTH_TOKEN": "", "CALLFLOW_PUBLIC_URL": "",
        "CALLFLOW_EMBEDDED_DB": str(tmp_path / "data" / "callflow.db")})
    assert result.exit_code == 0, result.output
    assert "[FAIL]" not in result.stdout
    assert "[warn] environment: local mode" in result.stdout
    assert "       fix: to take real calls set TWILIO_ACCOUNT_SID" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("all checks passed for local mode")


def test_a_sentinel_setup_counts_as_a_redis(good, account):
    results = checks(dataclasses.replace(good, redis_url="",
                                         redis_sentinels="sentinel-1:26379"))
    assert results["environment"].status == Status.OK


@pytest.mark.parametrize(("url", "status"), [
    ("http://calls.example.org", Status.FAIL),
    ("https://calls.example.org", Status.OK),
    ("http://127.0.0.1:5000", Status.OK),
    ("http://localhost:5000", Status.OK),
])
def test_the_public_url_must_be_https_unless_loopback(good, account, url, status):
    result = checks(dataclasses.replace(good, public_url=url))["public URL"]
    assert result.status == status
    if status == Status.FAIL:
        assert "https://" in result.fix


def test_numbers_are_not_checked_against_a_loopback_url(good, account):
    results = checks(dataclasses.replace(good, public_url="http://127.0.0.1:5000"))
    assert "Twilio cannot reach it" in results["public URL"].detail
    assert results["numbers"].status == Status.SKIP


def test_a_short_secret_key_fails(good, account):
    result = checks(dataclasses.replace(good, secret_key="dev"))["secret key"]
    assert result.status == Status.FAIL
    assert "3 characters" in result.detail
    assert "token_urlsafe" in result.fix
    assert "signed the old way" in result.fix


def test_an_unreachable_redis_fails(good, account):
    result = checks(good, store=dead_store())["Redis"]
    assert result.status == Status.FAIL
    assert "degraded path" in result.detail


def test_the_real_test_redis_is_reachable_but_not_persistent(good, account, redis):
    result = checks(good, store=redis)["Redis"]
    assert result.status == Status.FAIL
    assert "not persistent" in result.detail
    assert "appendonly yes" in result.fix


def test_rdb_snapshots_alone_are_a_warning(good, account):
    results = checks(good, store=Store(appendonly="no", save="3600 1 300 100"))
    assert results["Redis"].status == Status.WARN
    assert "appendonly yes" in results["Redis"].fix
    assert failed(results) == []


def test_config_disabled_is_tolerated_with_a_warning(good, account):
    result = checks(good, store=Store(config=False))["Redis"]
    assert result.status == Status.WARN
    assert "CONFIG is disabled" in result.detail


def test_a_malformed_sentinel_list_fails(good, account):
    settings = dataclasses.replace(good, redis_sentinels="sentinel-1")
    results = {c.name: c for c in run_checks(settings)}
    assert results["Redis"].status == Status.FAIL
    assert "sentinel-1" in results["Redis"].detail


def test_invalid_flows_fail_with_where_and_how(good, account, tmp_path):
    (tmp_path / "broken.yaml").write_text("helpline: [\n", encoding="utf-8")
    results = checks(dataclasses.replace(good, flows_dir=str(tmp_path)))
    assert results["flows"].status == Status.FAIL
    assert "broken.yaml:" in results["flows"].detail
    assert f"callflow validate {tmp_path}" in results["flows"].fix
    assert results["numbers"].status == Status.SKIP


def test_broken_flows_with_a_last_good_set_kept_are_degraded_not_down(good, account, redis,
                                                                      tmp_path):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    LastGoodFlows(redis, lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC)).save(
        load_flowset(folder))
    (folder / "mens-advice-line.yaml").write_text("helpline: [\n", encoding="utf-8")
    results = checks(dataclasses.replace(good, flows_dir=str(folder)), store=redis)
    flows = results["flows"]
    assert flows.status == Status.WARN
    assert flows.detail.startswith("degraded: serving the last good flows (kept "
                                   "2026-11-25T12:00:00+00:00); broken: mens-advice-line.yaml: ")
    assert f"{folder}/mens-advice-line.yaml:2:1: this is not valid YAML" in flows.detail
    assert results["numbers"].status == Status.OK  # the numbers of the set that is served


def test_broken_flows_without_a_last_good_set_fail(good, account, redis, tmp_path):
    (tmp_path / "broken.yaml").write_text("helpline: [\n", encoding="utf-8")
    results = checks(dataclasses.replace(good, flows_dir=str(tmp_path)), store=redis)
    assert results["flows"].status == Status.FAIL
    assert results["flows"].detail.endswith("no last good set is kept, so a process that starts "
                                            "now refuses to start")


def test_refused_credentials_fail(good, account):
    account.fail_with["account"] = (401, 20003)
    results = checks(good)
    assert results["Twilio account"].status == Status.FAIL
    assert "TWILIO_AUTH_TOKEN" in results["Twilio account"].detail
    assert results["numbers"].status == Status.SKIP


def test_a_suspended_account_fails(good, account):
    account.account_status = "suspended"
    result = checks(good)["Twilio account"]
    assert result.status == Status.FAIL
    assert "suspended" in result.detail


def test_numbers_out_of_sync_fail_and_name_the_command(good, account):
    account.numbers[RESPECT]["voice_caller_id_lookup"] = True
    result = checks(good)["numbers"]
    assert result.status == Status.FAIL
    assert RESPECT in result.detail and "VoiceCallerIdLookup" in result.detail
    assert "callflow twilio sync" in result.fix
    assert account.updates() == []  # the doctor changes nothing


def test_a_number_the_account_does_not_own_fails(good, account):
    del account.numbers[MENS_ADVICE]
    result = checks(good)["numbers"]
    assert result.status == Status.FAIL
    assert f"{MENS_ADVICE} (flow mens-advice-line) is not a number" in result.detail


def test_the_client_is_reused_when_given(good, account):
    results = run_checks(good, store=Store(), client=make_client(good))
    assert {c.status for c in results} == {Status.OK}


def env_of(settings: Settings) -> dict[str, str]:
    return {"TWILIO_ACCOUNT_SID": settings.twilio_account_sid,
            "TWILIO_AUTH_TOKEN": settings.twilio_auth_token,
            "TWILIO_API_URL": settings.twilio_api_url,
            "CALLFLOW_PUBLIC_URL": settings.public_url, "SECRET_KEY": settings.secret_key,
            "REDIS_URL": settings.redis_url, "REDIS_SENTINELS": "",
            "CALLFLOW_FLOWS": settings.flows_dir,
            "CALLFLOW_AUDIT_SIGNING_KEY": settings.audit_signing_key,
            "CALLFLOW_AUDIT_WITNESS": settings.audit_witness}


def test_the_command_prints_a_checklist_and_exits_0(good, account, runner, monkeypatch):
    monkeypatch.setattr(doctor, "connect", lambda settings: Store())
    result = runner.invoke(cli, ["doctor"], env=env_of(good))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[-1] == "all checks passed"
    assert all(line.startswith("[ok]") for line in lines[:-1])
    assert "all checks passed" in result.stdout


def test_the_command_exits_1_with_what_to_fix(good, account, runner, monkeypatch):
    monkeypatch.setattr(doctor, "connect", lambda settings: Store(appendonly="no"))
    result = runner.invoke(cli, ["doctor"], env={**env_of(good), "SECRET_KEY": "short"})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    failing = [line for line in lines if line.startswith("[FAIL]")]
    assert [line.split(":")[0] for line in failing] == ["[FAIL] secret key", "[FAIL] Redis"]
    assert sum(1 for line in lines if line.strip().startswith("fix:")) == 2
    assert "2 check(s) failed: secret key, Redis" in result.stderr


# -- the audit log's key and witness -------------------------------------------------------------

def test_a_shared_store_without_an_audit_signing_key_fails(good, account):
    result = checks(dataclasses.replace(good, audit_signing_key=""))["audit signing key"]
    assert result.status == Status.FAIL
    assert "will not start" in result.detail
    assert "openssl genpkey -algorithm ed25519" in result.fix


def test_the_audit_signing_key_is_named_by_its_fingerprint(good, account):
    from tests.audit_keys import KEYS

    result = checks(good)["audit signing key"]
    assert result.status == Status.OK
    assert KEYS.fingerprint() in result.detail


@pytest.mark.parametrize("value, words", [
    ("/nowhere/audit-signing-key.pem", "cannot be read"),
    ("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----", "not an "),
])
def test_an_unusable_audit_signing_key_fails(good, account, value, words):
    result = checks(dataclasses.replace(good, audit_signing_key=value))["audit signing key"]
    assert result.status == Status.FAIL
    assert words in result.detail


def test_doctor_makes_no_key_in_local_mode(tmp_path, account):
    local = Settings(flows_dir=str(FLOWS), embedded_db=str(tmp_path / "data" / "callflow.db"))
    result = checks(local)["audit signing key"]
    assert result.status == Status.SKIP
    assert not (tmp_path / "data").exists()


def test_a_witness_that_cannot_be_written_fails(good, account, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        settings = dataclasses.replace(good, audit_witness=str(folder / "w.jsonl"))
        result = checks(settings)["audit witness"]
    finally:
        folder.chmod(0o700)
    assert result.status == Status.FAIL


def test_a_shared_store_with_the_default_witness_is_a_warning(good, account):
    result = checks(dataclasses.replace(good, audit_witness=""))["audit witness"]
    assert result.status == Status.WARN
    assert "ship the JSON logs" in result.fix


# -- Twilio's call log ---------------------------------------------------------------------------

def test_turning_the_twilio_log_purge_off_is_warned_of(good, account):
    result = checks(dataclasses.replace(good, purge_twilio_logs=False))["Twilio call log"]
    assert result.status == Status.WARN
    assert "every caller's number" in result.detail
    assert "unset CALLFLOW_PURGE_TWILIO_LOGS" in result.fix


# -- behind a trusted proxy, gunicorn must be reachable through it only ----------------------


@pytest.mark.parametrize(("args", "status"), [
    ("", Status.FAIL),  # gunicorn.conf.py's default: 0.0.0.0:$PORT
    ("--bind 0.0.0.0:8000", Status.FAIL),
    ("--bind=[::]:5000", Status.FAIL),
    ("-b 203.0.113.5:5000", Status.FAIL),
    ("--bind 127.0.0.1:5000", Status.OK),
    ("-b [::1]:5000 --workers 3", Status.OK),
    ("--bind 10.0.0.5:5000", Status.OK),
    ("--bind unix:/run/callflow/web.sock", Status.OK),
    ("--bind 127.0.0.1:5000 --bind 0.0.0.0:5001", Status.FAIL),
    ("--bind web.internal:5000", Status.WARN),
])
def test_behind_a_trusted_proxy_gunicorn_must_not_be_reachable_directly(good, args, status):
    """Anyone who reaches gunicorn without the proxy can write X-Forwarded-For, and so pick the
    address every sign-in limit counts."""
    settings = dataclasses.replace(good, trusted_proxies=1)

    check = doctor.check_proxy_binding(settings, {"GUNICORN_CMD_ARGS": args, "PORT": "5000"})

    assert check.status == status, check.detail
    if status != Status.OK:
        assert "X-Forwarded-For" in check.detail
        assert "--bind 127.0.0.1" in check.fix


def test_without_trusted_proxies_the_binding_is_not_checked(good):
    assert doctor.check_proxy_binding(good, {}).status == Status.SKIP
    assert "proxy binding" not in {c.name for c in run_checks(
        good, connect_store=lambda _: Store(), client=None)}


# -- staff accounts from before the PIN and staff number rules --------------------------------


def test_pins_from_before_the_six_digit_rule_and_missing_staff_numbers_are_named(redis):
    from callflow.platform import keys
    from callflow.staff.accounts import StaffStore
    from tests.staff_support import PASSWORD, PIN, cheap_hasher

    staff = StaffStore(redis, hasher=cheap_hasher())
    for name in ("alice", "bob", "carol"):
        staff.add(name, PASSWORD)
        staff.set_pin(name, PIN)
    # As accounts made before this version are stored: no PIN rule, no staff number.
    redis.hdel(keys.staff("alice"), "pin_rules")
    redis.hdel(keys.staff("bob"), "staff_number")

    check = doctor.check_staff(redis)

    assert check.status == Status.WARN
    assert "alice" in check.detail and "6 digits" in check.detail
    assert "bob" in check.detail and "staff number" in check.detail
    assert "carol" not in check.detail
    assert "callflow manager set-pin alice" in check.fix
    assert "callflow manager set-staff-number bob" in check.fix


def test_staff_accounts_that_meet_the_rules_pass(redis):
    from callflow.staff.accounts import StaffStore
    from tests.staff_support import PASSWORD, PIN, cheap_hasher

    staff = StaffStore(redis, hasher=cheap_hasher())
    staff.add("alice", PASSWORD)
    staff.set_pin("alice", PIN)

    assert doctor.check_staff(redis).status == Status.OK
