"""The console script: validate, schema, graph (the domain's) and simulate (the web app's)."""

from __future__ import annotations

import logging
import shutil

import pytest

from callflow import runtime
from callflow.language.graph import draw
from callflow.language.loader import load_flowset
from callflow.language.schema import render
from tests.conftest import FLOWS, MENS_ADVICE, OPEN_TIME, RESPECT
from tests.flowfiles import BASE, edit, write_folder
from webhooks.cli import cli

NOTICE = ("Thank you for calling Respect Phoneline. This call is confidential. We do not use "
          "technology to identify callers, and we do not record calls. Calls may be monitored "
          "occasionally for quality and training purposes.")
RESPECT_CLOSED = ("The Respect Phoneline is closed right now. We are open Monday to Friday, 9am "
                  "to 5pm. If you think someone is in immediate danger, call 999.")
ROOT = FLOWS.parent
QUIETENED = ("twilio.http_client", "werkzeug")  # loggers logs.configure may turn down


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path, redis_url, redis):
    """Every command sees the shipped flows and the test Redis, and runs in a scratch folder,
    so nothing (an embedded store, a local key) is ever written into the repository."""
    for name in ("CALLFLOW_PUBLIC_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID",
                 "CALLFLOW_POLICY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLFLOW_FLOWS", str(FLOWS))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SECRET_KEY", "cli-test-secret")
    monkeypatch.setenv("CALLFLOW_EMBEDDED_DB", str(tmp_path / "embedded" / "callflow.db"))
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in ROOT.iterdir())
    loggers = [logging.getLogger(), *map(logging.getLogger, QUIETENED)]
    saved = [(logger, logger.handlers[:], logger.level) for logger in loggers]
    yield
    for logger, handlers, level in saved:  # `simulate` builds a real app, which configures
        logger.handlers[:] = handlers      # logging for the whole process
        logger.setLevel(level)
    assert sorted(p.name for p in ROOT.iterdir()) == before


@pytest.fixture
def open_now(monkeypatch):
    monkeypatch.setattr(runtime, "utc_now", lambda: OPEN_TIME)


# -- validate --------------------------------------------------------------------------------

def test_validate_proves_the_shipped_flows(runner):
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"ok: {FLOWS}/mens-advice-line.yaml: Men's Advice Line (+441632960002), 7 steps; every "
        "path to a person passes the notice; nothing records, transcribes or identifies the "
        "caller",
        f"ok: {FLOWS}/respect-phoneline.yaml: Respect Phoneline (+441632960001), 8 steps; every "
        "path to a person passes the notice; nothing records, transcribes or identifies the "
        "caller",
        "2 flow(s), 2 team(s) valid",
    ]


def test_validate_takes_a_folder_argument(runner, tmp_path):
    folder = write_folder(tmp_path / "flows", {"test.yaml": BASE})
    result = runner.invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "1 flow(s), 2 team(s) valid"


def test_validate_refuses_a_bad_folder_naming_file_line_and_column(runner, tmp_path):
    folder = write_folder(tmp_path / "flows", {
        "test.yaml": edit("      1: connect", "      1: conect"),
        "other.yaml": edit('"+441632960099"', '"+441632960098"',
                           edit("    on_no_answer: busy\n",
                                "    on_no_answer: busy\n    record: true\n")),
    })
    result = runner.invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"error: {folder}/other.yaml:22:5: 'record' is not allowed: the policy says \"We do not "
        "use technology to identify callers or call recording equipment.\" (remove it; callers "
        "are never recorded, sent to voicemail or looked up)",
        f"error: {folder}/test.yaml:16:10: step 'menu1' option '1' goes to 'conect', which does "
        "not exist (did you mean 'connect'?)",
        "2 error(s); fix them and run `callflow validate` again",
    ]


def test_validate_names_the_editor_files_it_skipped_in_one_line(runner, tmp_path):
    folder = write_folder(tmp_path / "flows", {"test.yaml": BASE})
    (folder / ".#test.yaml").symlink_to("admin@laptop.12345:1700000000")
    (folder / "test.yaml~").write_text("kind: record", encoding="utf-8")
    result = runner.invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.stderr == ("skipped 2 files that are not flows: .#test.yaml, test.yaml~ "
                             "(editors' lock files, backups and hidden files are never loaded)\n")


def test_validate_names_the_skipped_files_beside_the_errors(runner, tmp_path):
    folder = write_folder(tmp_path / "flows", {"test.yaml": edit("start: welcome",
                                                                 "start: menu1")})
    (folder / ".#test.yaml").symlink_to("admin@laptop.12345:1700000000")
    result = runner.invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        "skipped 1 file that is not a flow: .#test.yaml (editors' lock files, backups and "
        "hidden files are never loaded)")
    assert "without hearing the confidentiality notice" in result.stderr


def test_validate_reads_the_folder_from_the_environment(runner, tmp_path, monkeypatch):
    folder = write_folder(tmp_path / "flows", {"test.yaml": edit("start: welcome",
                                                                 "start: menu1")})
    monkeypatch.setenv("CALLFLOW_FLOWS", str(folder))
    result = runner.invoke(cli, ["validate"])
    assert result.exit_code == 1
    assert "without hearing the confidentiality notice" in result.stderr


def test_validate_shows_warnings_but_passes(runner, tmp_path):
    folder = write_folder(tmp_path / "flows", {"test.yaml": BASE + "  spare:\n    kind: hangup\n"})
    result = runner.invoke(cli, ["validate", str(folder)])
    assert result.exit_code == 0
    assert result.stderr == (f"warning: {folder}/test.yaml:25:3: step 'spare' is never reached "
                             "from 'welcome' (link to it or remove it)\n")


def test_validate_a_missing_folder(runner, tmp_path):
    result = runner.invoke(cli, ["validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "there is no flows folder here" in result.stderr


# -- schema and graph ------------------------------------------------------------------------

def test_schema_prints_the_generated_schema(runner):
    result = runner.invoke(cli, ["schema"])
    assert result.exit_code == 0
    assert result.stdout == render()


def test_schema_writes_a_file(runner, tmp_path):
    target = tmp_path / "schema.json"
    result = runner.invoke(cli, ["schema", "-o", str(target)])
    assert result.exit_code == 0
    assert target.read_text(encoding="utf-8") == render()


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_graph_draws_a_flow(runner, fmt):
    result = runner.invoke(cli, ["graph", "respect-phoneline", "--format", fmt])
    assert result.exit_code == 0, result.output
    assert result.stdout == draw(load_flowset(FLOWS).flows["respect-phoneline"], fmt)
    first = {"mermaid": "flowchart TD", "dot": 'digraph "respect-phoneline" {'}[fmt]
    assert result.stdout.splitlines()[0] == first


def test_graph_defaults_to_mermaid(runner):
    result = runner.invoke(cli, ["graph", "mens-advice-line"])
    assert result.stdout.startswith("flowchart TD\n")


def test_graph_of_an_unknown_flow(runner):
    result = runner.invoke(cli, ["graph", "respect"])
    assert result.exit_code == 1
    assert "no flow 'respect'; the flows are: mens-advice-line, respect-phoneline" in result.stderr


def test_graph_of_an_unknown_format(runner):
    result = runner.invoke(cli, ["graph", "respect-phoneline", "--format", "png"])
    assert result.exit_code == 2


# -- simulate --------------------------------------------------------------------------------

def test_simulate_plays_a_call_to_a_worker(runner, open_now):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"🔊 {NOTICE}" in lines
    assert "🔊 To hear our full confidentiality policy, press 9 now." in lines
    assert any(line.startswith("✔ connected to Alice (respect-workers)") for line in lines)
    assert lines.index(next(line for line in lines if NOTICE in line)) < lines.index(
        next(line for line in lines if "connected" in line))
    assert "  worker Alice (respect-workers) hears: Respect Phoneline call. Press 1 to accept." \
        in lines


@pytest.mark.parametrize("at", ["2026-11-25 20:30", "2026-11-28 12:00",
                                "2026-11-25 16:30-05:00"],
                         ids=["evening", "Saturday", "an offset"])
def test_simulate_at_a_closed_time_hears_the_closed_message(runner, at):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1", "--at", at])
    assert result.exit_code == 0, result.output
    assert f"🔊 {RESPECT_CLOSED}" in result.stdout.splitlines()
    assert "connected" not in result.stdout


def test_simulate_on_a_closure_date_hears_that_today_is_one_and_when_the_line_opens(runner):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1", "--at",
                                 "2026-12-25 14:00"])
    assert result.exit_code == 0, result.output
    assert ("🔊 Today is one of the days the Respect Phoneline is closed, so there is nobody to "
            "take your call. We open again on Monday 28 December at 9am. If you think someone "
            "is in immediate danger, call 999.") in result.stdout.splitlines()
    assert "We are open Monday to Friday" not in result.stdout


def test_simulate_at_an_open_time_is_put_through(runner):
    result = runner.invoke(cli, ["simulate", "--to", MENS_ADVICE, "--digits", ",1", "--at",
                                 "2026-11-25 12:00"])
    assert result.exit_code == 0, result.output
    assert "✔ connected to Dan (mal-workers)" in result.stdout


def test_simulate_a_worker_who_does_not_accept(runner, open_now):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1",
                                 "--worker-digits", ",2"])
    assert result.exit_code == 0, result.output
    assert "connected" not in result.stdout
    assert "did not accept" in result.stdout
    assert "nobody took the call" in result.stdout  # the caller, in the line, gives up


def test_simulate_a_number_no_flow_answers_is_refused_with_the_numbers_that_are(runner):
    result = runner.invoke(cli, ["simulate", "--to", "+441632960555", "--digits", ""])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert ("Invalid value for --to: no flow answers +441632960555; the numbers answered are: "
            "+441632960002 (Men's Advice Line), +441632960001 (Respect Phoneline), "
            "+441632960009 (the manager line)") in " ".join(result.stderr.split())


def test_simulate_help_lists_the_numbers_answered(runner):
    result = runner.invoke(cli, ["simulate", "--help"])
    assert result.exit_code == 0
    help_text = result.stdout.split("Numbers answered")[1]
    assert help_text.splitlines()[1:] == ["  +441632960002  Men's Advice Line",
                                          "  +441632960001  Respect Phoneline",
                                          "  +441632960009  the manager line"]


def test_simulate_help_says_when_the_flows_do_not_load(runner, tmp_path, monkeypatch):
    monkeypatch.setenv("CALLFLOW_FLOWS", str(tmp_path / "nowhere"))
    result = runner.invoke(cli, ["simulate", "--help"])
    assert result.exit_code == 0
    assert "do not load" in result.stdout


@pytest.mark.parametrize(("option", "keys", "wrong"), [
    ("--digits", ",a", "'a' is not a key"), ("--digits", "1;2", "';' is not a key"),
    ("--digits", "1 x", "' ' 'x' are not keys"), ("--worker-digits", "yes", "'e' 's' 'y'"),
])
def test_simulate_refuses_keys_a_phone_does_not_have_with_a_hint(runner, option, keys, wrong):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, option, keys])
    assert result.exit_code == 2
    message = " ".join(result.stderr.split())
    assert f"Invalid value for {option}: {wrong}" in message
    assert "a phone has the keys 0-9, * and #" in message


def test_simulate_takes_every_key_a_phone_has(runner, open_now):
    result = runner.invoke(cli, ["simulate", "--to", MENS_ADVICE, "--digits", " ,*,#,0,1"])
    assert result.exit_code == 0, result.output
    assert "  ⌨ pressed *" in result.stdout


def test_simulate_interactively_asks_again_for_a_key_a_phone_does_not_have(runner, open_now):
    result = runner.invoke(cli, ["simulate", "--to", MENS_ADVICE, "--worker-digits", "1"],
                           input="\nq\n1\n")
    assert result.exit_code == 0, result.output
    assert "'q' is not a key on a phone" in result.output
    assert "✔ connected to Dan (mal-workers)" in result.output


def test_simulate_shows_a_simultaneous_ring_as_simultaneous(runner, open_now):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1",
                                 "--worker-digits", ",1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "worker" in line]
    assert lines == [
        "⏳ waiting in the line while workers on shift are offered the call",
        "☎ worker Alice (respect-workers) is ringing…",
        "☎ worker Bilal (respect-workers) is ringing…",
        "  worker Alice (respect-workers) hears: Respect Phoneline call. Press 1 to accept.",
        "  worker Alice (respect-workers) did not accept",
        "  worker Bilal (respect-workers) hears: Respect Phoneline call. Press 1 to accept.",
        "  worker Bilal (respect-workers) pressed 1",
        "✔ connected to Bilal (respect-workers)",
    ]


def test_simulate_refuses_a_time_it_cannot_read(runner):
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--at", "Christmas"])
    assert result.exit_code == 2
    assert "'Christmas' is not a time like \"2026-12-25 14:00\"" in result.output


def test_simulate_refuses_a_broken_flow_set(runner, tmp_path, monkeypatch):
    folder = tmp_path / "flows"
    shutil.copytree(FLOWS, folder)
    path = folder / "respect-phoneline.yaml"
    path.write_text(path.read_text().replace("kind: notice", "kind: voicemail"))
    monkeypatch.setenv("CALLFLOW_FLOWS", str(folder))
    result = runner.invoke(cli, ["simulate", "--to", RESPECT, "--digits", ",1"])
    assert result.exit_code == 1
    assert "a 'voicemail' step is not allowed" in result.output
