"""Loading a flows folder: every mistake an admin can type, reported at file:line:col.

Each row edits a small valid flow (``tests.flowfiles.BASE``) and states the exact errors the
loader must report. The graph proofs (notice first, traps, dead ends) are in test_validate.
"""

from __future__ import annotations

import os

import pytest

from callflow.language.loader import load_flowset, skipped_files
from callflow.platform.errors import FlowSetInvalid
from callflow.platform.limits import MAX_FILE_BYTES
from tests.conftest import FLOWS
from tests.flowfiles import BASE, edit, errors_of, warnings_of, write_folder

POLICY = ('is not allowed: the policy says "We do not use technology to identify callers or '
          'call recording equipment." (remove it; callers are never recorded, sent to voicemail '
          'or looked up)')


def test_the_shipped_flows_load_with_no_errors_or_warnings():
    flowset = load_flowset(FLOWS)
    assert sorted(flowset.flows) == ["mens-advice-line", "respect-phoneline"]
    assert sorted(flowset.teams) == ["mal-workers", "respect-workers"]
    assert flowset.warnings == []
    assert flowset.flow_for("+441632960001").helpline == "Respect Phoneline"
    assert flowset.flow_for("+441632960002").helpline == "Men's Advice Line"


def test_the_base_flow_of_these_tests_is_valid(tmp_path):
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": BASE}))
    assert list(flowset.flows["test"].steps) == ["welcome", "menu1", "connect", "busy"]
    assert flowset.warnings == []


# -- the policy: no recording, voicemail, transcription, streams or caller lookup ------------

FORBIDDEN_KEYS = ["record", "Record", "recordingStatusCallback", "voicemail", "voice_mail",
                  "VoiceMail", "transcribe", "transcriptionCallback", "stream", "media_stream",
                  "caller_id_lookup", "callerId", "CallerName", "caller-name", "lookup", "cnam",
                  "machineDetection", "answeringMachineDetection", "amd", "asyncAmd", "siprec"]


@pytest.mark.parametrize("key", FORBIDDEN_KEYS)
def test_a_forbidden_key_in_a_step_quotes_the_policy(tmp_path, key):
    text = edit("    on_no_answer: busy\n", f"    on_no_answer: busy\n    {key}: true\n")
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        f"test.yaml:22:5: '{key}' {POLICY}"]


FORBIDDEN_KINDS = ["record", "Record", "voicemail", "VoiceMail", "voice-mail", "transcribe",
                   "transcription", "stream", "media-stream", "caller_id_lookup", "lookup",
                   "machineDetection", "siprec"]


@pytest.mark.parametrize("kind", FORBIDDEN_KINDS)
def test_a_forbidden_step_kind_quotes_the_policy(tmp_path, kind):
    text = edit("    kind: message\n", f"    kind: {kind}\n")
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        f"test.yaml:23:11: a '{kind}' step {POLICY}"]


@pytest.mark.parametrize(("old", "new", "where", "key"), [
    ("helpline: Test Line\n", "helpline: Test Line\nrecord: false\n", "2:1", "record"),
    ('  monday: "09:00-17:00"\n', '  monday: "09:00-17:00"\n  transcribe: true\n', "5:3",
     "transcribe"),
    ("  team: respect-workers\nstart", "  team: respect-workers\n  voicemail: true\nstart", "7:3",
     "voicemail"),
    ("      1: connect\n", "      1: connect\n      record: true\n", "17:7", "record"),
], ids=["header", "hours", "degraded", "inside options"])
def test_forbidden_keys_are_refused_anywhere_in_a_flow(tmp_path, old, new, where, key):
    text = edit(old, new)
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        f"test.yaml:{where}: '{key}' {POLICY}"]


def test_forbidden_keys_are_refused_in_the_teams_file(tmp_path):
    teams = (FLOWS / "teams.yaml").read_text().replace(
        '        number: "+447700900201"\n',
        '        number: "+447700900201"\n        callerIdLookup: true\n')
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": teams})
    assert errors_of(folder) == [f"teams.yaml:18:9: 'callerIdLookup' {POLICY}"]


def test_a_forbidden_key_in_a_merge_is_refused_with_the_merge(tmp_path):
    text = edit("  busy:\n    kind: message\n",
                "  busy:\n    <<: {record: true}\n    kind: message\n")
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        "test.yaml:23:5: '<<' merges one mapping into another, which flows do not do (write the "
        "value out in each place it is used (quote it for the text '<<'))"]


# -- YAML itself ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(edit("    text: Sorry, everyone", "    text: [Sorry, everyone"),
                 ["test.yaml:25:1: this is not valid YAML: expected ',' or ']', but got "
                  "'<stream end>' (the list '[' opened at line 24, column 11 is not closed)"],
                 id="unclosed list"),
    pytest.param(edit("    prompt: Press 1 to talk to someone\n",
                      "    prompt: 'Press 1 to talk to someone\n"),
                 ["test.yaml:25:1: this is not valid YAML: found unexpected end of stream "
                  "(the quote opened at line 14, column 13 is not closed)"],
                 id="unclosed quote"),
    pytest.param(edit("    text: Sorry", "\ttext: Sorry"),
                 ["test.yaml:24:1: this is not valid YAML: found character '\\t' that cannot "
                  "start any token"], id="tab"),
    pytest.param(edit("    kind: message\n", "    kind: message: now\n"),
                 ["test.yaml:23:18: this is not valid YAML: mapping values are not allowed here"],
                 id="colon in a plain value"),
    pytest.param(BASE + "---\nhelpline: Another\n",
                 ["test.yaml:25:1: a second YAML document starts here (a flow file is one "
                  "document: remove the '---' and what follows, or move it to a file of its "
                  "own)"], id="two documents"),
    pytest.param(edit("    text: Sorry, everyone is busy. In an emergency call 999.",
                      "    text: !!python/object:os.system echo"),
                 ["test.yaml:24:11: the tag '!!python/object:os.system' means nothing in a flow "
                  "(remove it: a flow holds text, numbers, true or false, lists and mappings)"],
                 id="python tag"),
    pytest.param(edit("    text: Sorry, everyone is busy. In an emergency call 999.",
                      '    text: "Sorry\\0, everyone is busy."'),
                 ["test.yaml:24:11: this text holds the character U+0000, which cannot be said "
                  "or sent to Twilio (remove its escape)"], id="an escaped NUL in a text"),
    pytest.param(edit("  busy:\n", "  busy: &busy\n"),
                 ["test.yaml:22:9: '&busy' is a YAML anchor, which flows do not use (write the "
                  "value out in each place it is used)"], id="an anchor"),
    pytest.param("", ["test.yaml:1:1: the file is empty (write a flow or remove it)"],
                 id="empty"),
    pytest.param("# only a comment\n",
                 ["test.yaml:1:1: the file is empty (write a flow or remove it)"],
                 id="only comments"),
    pytest.param("- welcome\n- connect\n",
                 ["test.yaml:1:1: a flow file should be a mapping of settings (start with "
                  "'helpline:' or 'teams:')"], id="a list"),
])
def test_yaml_mistakes(tmp_path, text, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == expected


def test_a_file_that_is_not_utf8_is_refused_at_the_bad_byte(tmp_path):
    folder = write_folder(tmp_path, {})
    (folder / "test.yaml").write_bytes(BASE.encode("utf-8") + "# café, ".encode() + b"caf\xe9\n")
    assert errors_of(folder) == [
        "test.yaml:25:12: the byte 0xE9 is not UTF-8 text (save the file as UTF-8 (an editor's "
        "'save with encoding'))"]


def test_a_file_bigger_than_a_flow_file_may_be_is_refused_unread(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE + "#" * MAX_FILE_BYTES + "\n"})
    assert errors_of(folder) == [
        f"test.yaml: the file is more than {MAX_FILE_BYTES:,} bytes, the most a flow file may "
        "hold (split it: one helpline per file, the teams in teams.yaml)"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("    kind: message\n", "    kind: message\n    kind: message\n",
                 "test.yaml:24:5: 'kind' is written twice here (the first is at line 23; keep "
                 "one)", id="key in a step"),
    pytest.param("  busy:\n", "  connect:\n    kind: hangup\n  busy:\n",
                 "test.yaml:22:3: 'connect' is written twice here (the first is at line 18; keep "
                 "one)", id="step name"),
    pytest.param("start: welcome\n", "start: welcome\nstart: menu1\n",
                 "test.yaml:8:1: 'start' is written twice here (the first is at line 7; keep one)",
                 id="header"),
    pytest.param("      1: connect\n", "      1: connect\n      \"1\": busy\n",
                 "test.yaml:17:7: option '1' is written twice here (the first is at line 16; "
                 "keep one)", id="option as number and as text"),
])
def test_something_written_twice(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


# -- kinds, keys and values ----------------------------------------------------------------

KINDS = "the kinds are: notice, say, play, menu, hours, connect, message, goto, hangup"


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("    kind: message\n", "    kind: mesage\n",
                 "test.yaml:23:11: step 'busy' has an unknown kind 'mesage' (did you mean "
                 "'message'?)", id="unknown kind, suggested"),
    pytest.param("    kind: message\n", "    kind: fax\n",
                 f"test.yaml:23:11: step 'busy' has an unknown kind 'fax' ({KINDS})",
                 id="unknown kind, listed"),
    pytest.param("    kind: message\n", "    kind: [message]\n",
                 f"test.yaml:23:11: step 'busy' has a 'kind' that is not a single word ({KINDS})",
                 id="kind is a list"),
    pytest.param("    kind: message\n", "    kind: {name: message}\n",
                 f"test.yaml:23:11: step 'busy' has a 'kind' that is not a single word ({KINDS})",
                 id="kind is a mapping"),
    pytest.param("    kind: message\n", "",
                 f"test.yaml:23:5: step 'busy' has no 'kind' ({KINDS})", id="no kind"),
    pytest.param("  busy:\n    kind: message\n    text: Sorry, everyone is busy. In an emergency "
                 "call 999.\n", "  busy: message\n",
                 "test.yaml:22:9: step 'busy' should be a mapping with a 'kind'",
                 id="step is a word"),
    pytest.param("    text: Sorry", "    txt: Sorry",
                 "test.yaml:24:5: step 'busy' (message) has no setting 'txt' (did you mean "
                 "'text'?)", id="unknown key, suggested"),
    pytest.param("    text: Sorry", "    colour: red\n    text: Sorry",
                 "test.yaml:24:5: step 'busy' (message) has no setting 'colour' (step 'busy' "
                 "(message) takes: voice, language, text)", id="unknown key, listed"),
    pytest.param("start: welcome\n", "start: welcome\nvoicee: Polly.Amy\n",
                 "test.yaml:8:1: flow test.yaml has no setting 'voicee' (did you mean "
                 "'voice'?)", id="unknown header key"),
    pytest.param("    team: respect-workers\n    on_no", "    on_no",
                 "test.yaml:19:5: step 'connect' (connect) is missing 'team' (The team of "
                 "workers to ring)", id="missing required key"),
    pytest.param("helpline: Test Line\n", "",
                 "test.yaml:1:1: flow test.yaml is missing 'helpline' (The helpline's name, as "
                 "callers and workers hear it)", id="missing helpline"),
    pytest.param('numbers: ["+441632960099"]', 'numbers: ["01632960099"]',
                 "test.yaml:2:11: '01632960099' is not a phone number in international form "
                 "(write it as \"+447700900123\", in quotes)", id="national number"),
    pytest.param('numbers: ["+441632960099"]', "numbers: [+441632960099]",
                 "test.yaml:2:11: '441632960099' is not a phone number in international form "
                 "(write it as \"+447700900123\", in quotes)", id="number without quotes"),
    pytest.param('numbers: ["+441632960099"]', 'numbers: ["+44 1632 960099"]',
                 "test.yaml:2:11: '+44 1632 960099' is not a phone number in international form "
                 "(write it as \"+447700900123\", in quotes)", id="number with spaces"),
    pytest.param('numbers: ["+441632960099"]', 'numbers: "+441632960099"',
                 "test.yaml:2:10: this should be a list of phone numbers (write e.g. "
                 "[\"+441632960001\"])", id="numbers not a list"),
    pytest.param("    text: Sorry, everyone is busy. In an emergency call 999.", "    text: yes",
                 "test.yaml:24:11: this should be some text (write it in quotes if in doubt)",
                 id="yes is not text"),
    pytest.param("      1: connect", "      10: connect",
                 "test.yaml:16:7: '10' is not a single key on a phone keypad (use one of 0-9, * "
                 "or #)", id="option of two digits"),
    pytest.param("    options:\n      1: connect\n", "    options: {}\n",
                 "test.yaml:15:14: a menu needs at least one option (write keypad digits and the "
                 "step each goes to, e.g. 1: connect)", id="no options"),
    pytest.param("    on_no_answer: busy\n", "    on_no_answer: busy\n    timeout: 500\n",
                 "test.yaml:22:14: 500 is too large (use at most 120)", id="timeout too large"),
    pytest.param("    on_no_answer: busy\n", "    on_no_answer: busy\n    timeout: ten\n",
                 "test.yaml:22:14: 'ten' should be a whole number", id="timeout not a number"),
    pytest.param("    on_no_input: connect\n", "    on_no_input: connect\n    timeout: 0\n",
                 "test.yaml:18:14: 0 is too small (use at least 1)", id="menu timeout zero"),
    pytest.param("  busy:\n", "  my busy:\n",
                 "test.yaml:22:3: 'my busy' is not a usable name (use letters, digits, '-' and "
                 "'_', starting with a letter)", id="step name with a space"),
    pytest.param("    kind: message\n    text: Sorry, everyone is busy. In an emergency call 999.",
                 "    kind: play\n    url: ftp://example.org/busy.mp3\n    next: busy",
                 "test.yaml:24:10: 'ftp://example.org/busy.mp3' is not a web address (start it "
                 "with https://)", id="url not https"),
])
def test_kind_key_and_value_mistakes(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


# -- opening hours and time zones ----------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param('"09:00-17:00"', '"9-5"',
                 "test.yaml:4:11: '9-5' is not a range of hours (write it as \"09:00-17:00\", in "
                 "quotes)", id="no minutes"),
    pytest.param('"09:00-17:00"', '"17:00-09:00"',
                 "test.yaml:4:11: '17:00-09:00' does not run forwards within one day (the end "
                 "must be after the start and no later than 24:00)", id="backwards"),
    pytest.param('"09:00-17:00"', '"09:00-09:00"',
                 "test.yaml:4:11: '09:00-09:00' does not run forwards within one day (the end "
                 "must be after the start and no later than 24:00)", id="empty range"),
    pytest.param('"09:00-17:00"', '"09:00-24:01"',
                 "test.yaml:4:11: '09:00-24:01' does not run forwards within one day (the end "
                 "must be after the start and no later than 24:00)", id="past midnight"),
    pytest.param('"09:00-17:00"', '"24:00-24:00"',
                 "test.yaml:4:11: '24:00-24:00' does not run forwards within one day (the end "
                 "must be after the start and no later than 24:00)", id="starts at 24:00"),
    pytest.param('"09:00-17:00"', '"09:60-17:00"',
                 "test.yaml:4:11: '09:60-17:00' is not a range of hours (write it as "
                 "\"09:00-17:00\", in quotes)", id="sixty minutes"),
    pytest.param('"09:00-17:00"', '["09:00-12:00", "13:00-1:00pm"]',
                 "test.yaml:4:27: '13:00-1:00pm' is not a range of hours (write it as "
                 "\"09:00-17:00\", in quotes)", id="second range of a list"),
    pytest.param('"09:00-17:00"', "540",
                 "test.yaml:4:11: a day's hours should be a range like \"09:00-17:00\", a list of "
                 "ranges, or closed", id="a number"),
    pytest.param("  monday:", "  mondy:",
                 "test.yaml:4:3: 'mondy' is not a day of the week (did you mean 'monday'?)",
                 id="day misspelt"),
    pytest.param("  monday:", "  lundi:",
                 "test.yaml:4:3: 'lundi' is not a day of the week (use the full English day "
                 "names)", id="day in French"),
    pytest.param('hours:\n  monday: "09:00-17:00"\n', "hours: weekdays\n",
                 "test.yaml:3:8: opening hours should list days, e.g. monday: \"09:00-17:00\"",
                 id="hours not a mapping"),
    pytest.param('hours:\n  monday: "09:00-17:00"\n', "",
                 "test.yaml:1:1: flow test.yaml has no opening hours (add 'hours:' with a range "
                 "for each open day, e.g. monday: \"09:00-17:00\")", id="no hours"),
    pytest.param("degraded:", 'closures: ["2026-12-25", "2026-13-01"]\ndegraded:',
                 "test.yaml:5:26: '2026-13-01' is not a date (write it as 2026-12-25)",
                 id="closure not a date"),
    pytest.param("degraded:", 'closures: "2026-12-25"\ndegraded:',
                 "test.yaml:5:11: closures should be a list of dates (write them as "
                 "[\"2026-12-25\", \"2026-12-26\"])", id="closures not a list"),
    pytest.param("hours:", "timezone: Europe/Londn\nhours:",
                 "test.yaml:3:11: 'Europe/Londn' is not a known time zone (did you mean "
                 "'Europe/London'?)", id="time zone misspelt"),
    pytest.param("hours:", "timezone: Middle/Earth\nhours:",
                 "test.yaml:3:11: 'Middle/Earth' is not a known time zone (use a name like "
                 "Europe/London)", id="time zone unknown"),
    pytest.param("hours:", "timezone: ../../etc/passwd\nhours:",
                 "test.yaml:3:11: '../../etc/passwd' is not a known time zone (use a name like "
                 "Europe/London)", id="time zone as a path"),
])
def test_hours_and_time_zone_mistakes(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


# -- teams ---------------------------------------------------------------------------------

TEAMS = (FLOWS / "teams.yaml").read_text()


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param('        number: "+447700900201"', '        number: "07700900201"',
                 "teams.yaml:17:17: '07700900201' is not a phone number in international form "
                 "(write it as \"+447700900123\", in quotes)", id="worker number"),
    pytest.param('      - name: Erin\n        number: "+447700900202"\n', "      - name: Erin\n",
                 "teams.yaml:18:9: a worker of team 'mal-workers' is missing 'number' (The "
                 "worker's phone, in international form)", id="worker without a number"),
    pytest.param("  mal-workers:\n    workers:\n      - name: Dan\n        number: "
                 "\"+447700900201\"\n      - name: Erin\n        number: \"+447700900202\"\n",
                 "  mal-workers:\n    workers: []\n",
                 "teams.yaml:15:14: team 'mal-workers' has no workers (list them under "
                 "'workers:' with a name and number each)", id="team without workers"),
    pytest.param("        active: false", "        active: maybe",
                 "teams.yaml:13:17: 'maybe' should be true or false", id="active not a bool"),
    pytest.param("      - name: Dan\n", "      - Dan\n      - name: Dan\n",
                 "teams.yaml:16:9: a worker should have a name and a number", id="worker a word"),
])
def test_teams_file_mistakes(tmp_path, old, new, expected):
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": edit(old, new, TEAMS)})
    assert errors_of(folder) == [expected]


def test_a_teams_file_holds_only_teams(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE,
                                     "teams.yaml": TEAMS + "helpline: Oops\n"})
    assert errors_of(folder) == [
        "teams.yaml:20:1: a teams file holds only 'teams', not 'helpline' (move flow settings "
        "into the helpline's own file)"]


def test_a_folder_without_flows(tmp_path):
    assert errors_of(write_folder(tmp_path, {})) == [
        f"{tmp_path}: there are no flows here (add a helpline's flow as a .yaml file)"]


def test_a_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FlowSetInvalid) as caught:
        load_flowset(missing)
    assert [str(e) for e in caught.value.errors] == [
        f"{missing}: there is no flows folder here (set CALLFLOW_FLOWS to the folder of .yaml "
        "flows)"]


def test_files_other_than_yaml_are_ignored(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE, "README.md": "- not: [yaml",
                                     "test.yaml.orig": "kind: record"})
    assert sorted(load_flowset(folder).flows) == ["test"]


# -- what editors leave in the folder ----------------------------------------------------------

EDITOR_FILES = {
    ".#test.yaml": None,  # Emacs' lock while the file is edited: a link to nowhere
    "#test.yaml#": "helpline: [autosave",  # Emacs' autosave
    "test.yaml~": "kind: record",  # a backup
    ".test.yaml.swp": "\x00binary",  # vim's swap file
    "test.yaml.swo": "\x00binary",
    "test.yaml.bak": "kind: record",
    ".hidden.yaml": "kind: record",
    ".~lock.test.yaml#": "locked",  # LibreOffice's lock
}


def write_editor_files(folder) -> None:
    for name, text in EDITOR_FILES.items():
        if text is None:
            (folder / name).symlink_to("admin@laptop.12345:1700000000")
        else:
            (folder / name).write_text(text, encoding="utf-8")


def test_editor_lock_files_backups_and_hidden_files_are_skipped_and_named(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE, "README.md": "notes"})
    write_editor_files(folder)
    assert sorted(load_flowset(folder).flows) == ["test"]
    assert skipped_files(folder) == sorted(EDITOR_FILES)


def test_the_dangling_lock_emacs_leaves_beside_a_shipped_flow_is_skipped(tmp_path):
    folder = write_folder(tmp_path, {"respect-phoneline.yaml":
                                     (FLOWS / "respect-phoneline.yaml").read_text()})
    (folder / ".#respect-phoneline.yaml").symlink_to("admin@laptop.4242:1700000000")
    assert sorted(load_flowset(folder).flows) == ["respect-phoneline"]


@pytest.mark.parametrize("make", [
    pytest.param(lambda path: path.symlink_to("nowhere.yaml"), id="a link to nothing"),
    pytest.param(lambda path: path.mkdir(), id="a folder"),
    pytest.param(lambda path: os.mkfifo(path), id="a pipe"),
])
def test_a_flow_file_that_is_not_a_file_is_an_error_not_a_crash_or_a_hang(tmp_path, make):
    folder = write_folder(tmp_path, {"test.yaml": BASE})
    make(folder / "other.yaml")
    [error] = errors_of(folder)
    assert error.startswith("other.yaml: ")
    assert "not a file" in error or "link to" in error


def test_a_link_to_a_flow_is_loaded(tmp_path):
    write_folder(tmp_path / "elsewhere", {"test.yaml": BASE}, teams=False)
    folder = write_folder(tmp_path / "flows", {})
    (folder / "test.yaml").symlink_to(tmp_path / "elsewhere" / "test.yaml")
    assert sorted(load_flowset(folder).flows) == ["test"]


# -- every error, in every file, at once ---------------------------------------------------

def test_every_error_in_one_flow_is_reported_at_once(tmp_path):
    text = edit("    kind: message\n", "    kind: mesage\n",
                edit("    on_no_answer: busy\n", "    on_no_answer: busy\n    colour: red\n",
                     edit("    prompt: Press 1 to talk to someone\n", "")))
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        "test.yaml:13:5: step 'menu1' (menu) is missing 'prompt' (What the caller hears, e.g. "
        "'Press 1 to speak to someone')",
        "test.yaml:21:5: step 'connect' (connect) has no setting 'colour' (step 'connect' "
        "(connect) takes: voice, language, team, on_no_answer, on_max_wait, on_no_workers, "
        "timeout, whisper)",
        "test.yaml:23:11: step 'busy' has an unknown kind 'mesage' (did you mean 'message'?)",
    ]


def test_every_error_in_several_files_is_reported_at_once(tmp_path):
    folder = write_folder(tmp_path, {
        "a.yaml": edit("    kind: message\n", "    kind: mesage\n"),
        "b.yaml": edit('"+441632960099"', '"+441632960008"',
                       edit("    text: Sorry", "    text: [Sorry")),
        "c.yaml": edit('"+441632960099"', '"+441632960007"',
                       edit("      1: connect", "      1: conect")),
        "d.yaml": edit('"+441632960099"', '"+441632960006"',
                       edit("start: welcome", "start: menu1")),
        "e.yaml": edit('"+441632960099"', '"+441632960005"',
                       edit("    on_no_answer: busy\n",
                            "    on_no_answer: busy\n    record: true\n")),
    })
    assert errors_of(folder) == [
        "b.yaml:25:1: this is not valid YAML: expected ',' or ']', but got '<stream end>' (the "
        "list '[' opened at line 24, column 11 is not closed)",
        f"e.yaml:22:5: 'record' {POLICY}",
        "a.yaml:23:11: step 'busy' has an unknown kind 'mesage' (did you mean 'message'?)",
        "c.yaml:16:10: step 'menu1' option '1' goes to 'conect', which does not exist (did you "
        "mean 'connect'?)",
        "d.yaml:18:3: a caller can reach 'connect' without hearing the confidentiality notice: "
        "menu1 → connect (put a notice step on that path, e.g. start the flow with one)",
    ]


def test_a_broken_teams_file_and_a_broken_flow_are_both_reported(tmp_path):
    folder = write_folder(tmp_path, {
        "test.yaml": edit("    kind: message\n", "    kind: mesage\n"),
        "teams.yaml": edit('        number: "+447700900201"', '        number: "07700900201"',
                           TEAMS)})
    assert errors_of(folder) == [
        "teams.yaml:17:17: '07700900201' is not a phone number in international form (write it "
        "as \"+447700900123\", in quotes)",
        "test.yaml:23:11: step 'busy' has an unknown kind 'mesage' (did you mean 'message'?)",
    ]


def test_each_bad_team_is_reported(tmp_path):
    teams = edit('        number: "+447700900201"', '        number: "07700900201"',
                 edit('        number: "+447700900101"', '        number: "+4477"', TEAMS))
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": teams})
    assert [e.split(":")[1] for e in errors_of(folder)] == ["8", "17"]


def test_warnings_do_not_stop_a_load(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE + "  spare:\n    kind: hangup\n"})
    flowset = load_flowset(folder)
    assert warnings_of(flowset, folder) == [
        "test.yaml:25:3: step 'spare' is never reached from 'welcome' (link to it or remove it)"]
