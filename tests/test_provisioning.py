"""``callflow twilio sync``: each helpline number pointed at the service with CNAM off, against a
mocked account whose every request is checked against Twilio's OpenAPI description."""

from __future__ import annotations

import pytest

from callflow.cli import cli
from callflow.language.loader import load_flowset
from callflow.operations import provisioning
from callflow.platform.errors import ConfigError
from tests.bridge_support import ACCOUNT_SID, MOCK_API
from tests.conftest import FLOWS, MENS_ADVICE, RESPECT
from tests.twilio_numbers import PUBLIC_URL, TwilioNumbers, wanted

MANAGER_LINE = "+441632960009"
ALL_NUMBERS = (MENS_ADVICE, RESPECT, MANAGER_LINE)
APPLICATION = "AP" + "a" * 32
TRUNK = "TK" + "b" * 32


@pytest.fixture
def account():
    with TwilioNumbers() as numbers:
        yield numbers


@pytest.fixture
def env() -> dict[str, str]:
    return {"TWILIO_ACCOUNT_SID": ACCOUNT_SID, "TWILIO_AUTH_TOKEN": "test-token",
            "TWILIO_API_URL": MOCK_API, "CALLFLOW_PUBLIC_URL": PUBLIC_URL,
            "CALLFLOW_FLOWS": str(FLOWS)}


def sync(runner, env, *args: str):
    return runner.invoke(cli, ["twilio", "sync", *args], env=env)


def rows(output: str) -> list[list[str]]:
    """The table's data rows, split on the column gaps."""
    lines = [line for line in output.splitlines() if line.startswith("+")]
    return [line.split() for line in lines]


# -- what is wanted ---------------------------------------------------------------------------


def test_every_flow_number_and_the_manager_line_are_provisioned():
    numbers = dict(load_flowset(FLOWS).answered_numbers())
    assert numbers == {MENS_ADVICE: "flow mens-advice-line", RESPECT: "flow respect-phoneline",
                       MANAGER_LINE: "the manager line"}


def test_the_wanted_settings_point_at_the_public_url_with_cnam_off():
    settings = provisioning.wanted_settings(PUBLIC_URL + "/")
    assert settings["VoiceUrl"] == f"{PUBLIC_URL}/voice/incoming"
    assert settings["VoiceFallbackUrl"] == f"{PUBLIC_URL}/voice/fallback"
    assert settings["StatusCallback"] == f"{PUBLIC_URL}/voice/status"
    assert {settings[k] for k in ("VoiceMethod", "VoiceFallbackMethod",
                                  "StatusCallbackMethod")} == {"POST"}
    assert settings["VoiceCallerIdLookup"] == "false"
    assert settings["VoiceApplicationSid"] == settings["TrunkSid"] == ""


@pytest.mark.parametrize("url", ["", "http://calls.example.org", "calls.example.org",
                                 "https://calls.example.org/?x=1", "https://"])
def test_a_public_url_twilio_should_not_be_given_is_refused(url):
    with pytest.raises(ConfigError, match="CALLFLOW_PUBLIC_URL"):
        provisioning.wanted_settings(url)


# -- --dry-run --------------------------------------------------------------------------------


def test_dry_run_shows_every_difference_and_changes_nothing(runner, env, account):
    account.own(RESPECT)
    account.own(MENS_ADVICE, voice_application_sid=APPLICATION)
    account.own(MANAGER_LINE, wanted(), trunk_sid=TRUNK)
    result = sync(runner, env, "--dry-run")
    assert result.exit_code == 1, result.output
    assert account.updates() == []
    table = rows(result.stdout)
    assert ["+441632960001", "VoiceUrl", "https://demo.twilio.com/welcome/voice/",
            f"{PUBLIC_URL}/voice/incoming"] in table
    assert ["+441632960001", "VoiceCallerIdLookup", "true", "false"] in table
    assert ["+441632960001", "StatusCallback", "(none)", f"{PUBLIC_URL}/voice/status"] in table
    assert ["+441632960002", "VoiceApplicationSid", APPLICATION, "(none)"] in table
    assert ["+441632960009", "TrunkSid", TRUNK, "(none)"] in table
    assert [r[1] for r in table if r[0] == MANAGER_LINE] == ["TrunkSid"]
    assert result.stdout.splitlines()[0].split() == ["number", "field", "current", "wanted"]
    assert "run `callflow twilio sync`" in result.stderr


def test_dry_run_exits_0_when_every_number_is_in_sync(runner, env, account):
    for number in ALL_NUMBERS:
        account.own(number, wanted(), voice_method="post")  # Twilio's case is not a change
    result = sync(runner, env, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "field" not in result.stdout
    assert all(f"ok: {n} is configured for this service" in result.stdout for n in ALL_NUMBERS)


def test_numbers_are_looked_up_by_phone_number(runner, env, account):
    for number in ALL_NUMBERS:
        account.own(number, wanted())
    sync(runner, env, "--dry-run")
    asked = [s.query["PhoneNumber"] for s in account.sent if s.method == "GET"]
    assert sorted(asked) == sorted([n] for n in ALL_NUMBERS)


def test_the_staff_lines_numbers_are_provisioned_with_the_rest(runner, env, account):
    staff_line = "+441632960004"
    for number in ALL_NUMBERS:
        account.own(number, wanted())
    account.own(staff_line)

    result = sync(runner, {**env, "CALLFLOW_STAFF_LINE_NUMBERS": staff_line}, "--dry-run")

    assert result.exit_code == 1, result.output
    assert ["+441632960004", "VoiceUrl", "https://demo.twilio.com/welcome/voice/",
            f"{PUBLIC_URL}/voice/incoming"] in rows(result.stdout)
    assert {r[0] for r in rows(result.stdout)} == {staff_line}


# -- sync -------------------------------------------------------------------------------------


def test_sync_sends_only_what_differs_then_all_is_in_sync(runner, env, account):
    account.own(RESPECT)
    account.own(MENS_ADVICE, wanted(), voice_application_sid=APPLICATION)
    account.own(MANAGER_LINE, wanted())
    result = sync(runner, env)
    assert result.exit_code == 0, result.output
    updates = {s.path.rsplit("/", 1)[1]: s.form for s in account.updates()}
    assert set(updates) == {account.numbers[RESPECT]["sid"] + ".json",
                            account.numbers[MENS_ADVICE]["sid"] + ".json"}
    respect = updates[account.numbers[RESPECT]["sid"] + ".json"]
    assert respect == {"VoiceUrl": [f"{PUBLIC_URL}/voice/incoming"],
                       "VoiceFallbackUrl": [f"{PUBLIC_URL}/voice/fallback"],
                       "StatusCallback": [f"{PUBLIC_URL}/voice/status"],
                       "VoiceCallerIdLookup": ["false"]}
    assert updates[account.numbers[MENS_ADVICE]["sid"] + ".json"] == {
        "VoiceApplicationSid": [""]}
    assert f"updated: {RESPECT}: VoiceUrl, VoiceFallbackUrl, StatusCallback, " \
           "VoiceCallerIdLookup" in result.stdout
    assert sync(runner, env, "--dry-run").exit_code == 0


def test_nothing_is_sent_when_all_is_in_sync(runner, env, account):
    for number in ALL_NUMBERS:
        account.own(number, wanted())
    assert sync(runner, env).exit_code == 0
    assert account.updates() == []


def test_a_number_the_account_does_not_own_is_a_clear_error(runner, env, account):
    account.own(RESPECT)
    account.own(MANAGER_LINE, wanted())
    # Twilio's PhoneNumber filter is a pattern: a longer number containing it is not this one.
    account.own(MENS_ADVICE + "9")
    result = sync(runner, env)
    assert result.exit_code == 1
    assert (f"error: {MENS_ADVICE} (flow mens-advice-line) is not a number of Twilio account "
            f"{ACCOUNT_SID}") in result.stderr
    assert "buy or port it" in result.stderr
    assert len(account.updates()) == 1  # the numbers it does own are still put right
    assert sync(runner, env, "--dry-run").exit_code == 1


def test_refused_credentials_say_which_variables_to_check(runner, env, account):
    account.own(RESPECT)
    account.fail_with["list"] = (401, 20003)
    result = sync(runner, env, "--dry-run")
    assert result.exit_code == 1
    assert "Twilio refused the credentials (HTTP 401)" in result.stderr
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in result.stderr
    assert len(account.sent) == 1  # not once per number


def test_a_failed_update_is_reported_and_exits_1(runner, env, account):
    for number in ALL_NUMBERS:
        account.own(number)
    account.fail_with["update"] = (400, 21502)
    result = sync(runner, env)
    assert result.exit_code == 1
    assert f"error: {RESPECT}: not updated: Twilio answered HTTP 400 (error 21502)" \
        in result.stderr


def test_twilio_unreachable_is_an_error_not_a_traceback(runner, env):
    result = sync(runner, {**env, "TWILIO_API_URL": "http://127.0.0.1:9"}, "--dry-run")
    assert result.exit_code == 1
    assert "could not reach Twilio's API" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("unset", "message"), [
    ("TWILIO_ACCOUNT_SID", "set TWILIO_ACCOUNT_SID"),
    ("TWILIO_AUTH_TOKEN", "set TWILIO_AUTH_TOKEN"),
    ("CALLFLOW_PUBLIC_URL", "set CALLFLOW_PUBLIC_URL"),
])
def test_missing_configuration_is_named(runner, env, account, unset, message):
    result = sync(runner, {**env, unset: ""}, "--dry-run")
    assert result.exit_code == 1
    assert message in result.stderr
    assert account.sent == []


def test_broken_flows_are_reported_and_nothing_is_changed(runner, env, account, tmp_path):
    (tmp_path / "broken.yaml").write_text("helpline: [\n", encoding="utf-8")
    result = sync(runner, {**env, "CALLFLOW_FLOWS": str(tmp_path)})
    assert result.exit_code == 1
    assert "broken.yaml" in result.stderr
    assert "nothing was changed" in result.stderr
    assert account.sent == []
