"""The policy proof over each flow's graph: what no convention could guarantee.

Each row edits the small valid flow of ``tests.flowfiles`` and states every error the validator
must report, with file:line:col. Unreachable steps are warnings, never errors.
"""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from twilio.twiml.voice_response import VoiceResponse

from callflow.call.degraded import APOLOGY
from callflow.language.loader import load_flowset
from callflow.language.steps import STEP_KINDS
from callflow.language.texts import fill
from callflow.language.turn import Turn
from callflow.platform.limits import MAX_STEPS_PER_TURN, MAX_TEXT_CHARS
from callflow.platform.links import CallState, Links
from tests.conftest import OPEN_TIME
from tests.flowfiles import BASE, edit, errors_of, warnings_of, write_folder
from webhooks import create_app, routes
from webhooks.simulator import Keypad, TwilioSim

NOTICE_HINT = "(put a notice step on that path, e.g. start the flow with one)"
TRAP_HINT = "(put a menu in the loop, or end it with a message)"
NO_WAY_OUT = ("has no way out: from it a caller can never reach a person or the end of the call "
              "(give its menu an option or fallback that leads on)")


# -- every step an edge names exists -------------------------------------------------------

@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("      1: connect", "      1: conect",
                 "test.yaml:16:10: step 'menu1' option '1' goes to 'conect', which does not "
                 "exist (did you mean 'connect'?)", id="menu option"),
    pytest.param("    on_no_input: connect", "    on_no_input: connct",
                 "test.yaml:17:18: step 'menu1' on_no_input goes to 'connct', which does not "
                 "exist (did you mean 'connect'?)", id="menu fallback"),
    pytest.param("    next: menu1", "    next: menu",
                 "test.yaml:11:11: step 'welcome' next goes to 'menu', which does not exist (did "
                 "you mean 'menu1'?)", id="notice next"),
    pytest.param("    on_no_answer: busy", "    on_no_answer: voicemal-box",
                 "test.yaml:21:19: step 'connect' on_no_answer goes to 'voicemal-box', which "
                 "does not exist (add that step or fix the name)", id="no suggestion"),
    pytest.param("start: welcome", "start: welcom",
                 "test.yaml:7:8: the start step 'welcom' does not exist (did you mean "
                 "'welcome'?)", id="start"),
])
def test_a_missing_step_is_named_with_a_suggestion(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


def test_every_missing_step_is_reported(tmp_path):
    text = edit("      1: connect", "      1: conect", edit("    next: menu1", "    next: menu"))
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        "test.yaml:11:11: step 'welcome' next goes to 'menu', which does not exist (did you mean "
        "'menu1'?)",
        "test.yaml:16:10: step 'menu1' option '1' goes to 'conect', which does not exist (did "
        "you mean 'connect'?)",
    ]


# -- no path reaches a person without the notice --------------------------------------------

HOURS_FIRST = edit("start: welcome", "start: check", edit("steps:\n", """\
steps:
  check:
    kind: hours
    open: welcome
    closed: connect
"""))

CLOSURE_FIRST = edit("start: welcome", "start: check", edit("steps:\n", """\
steps:
  check:
    kind: hours
    open: welcome
    closed: welcome
    closure: connect
"""))

LOOP_AROUND = edit("start: welcome", "start: first", edit("steps:\n", """\
steps:
  first:
    kind: menu
    prompt: Press 1 for the notice, 2 for information
    options:
      1: welcome
      2: info
    on_no_input: welcome
  info:
    kind: say
    text: Some information.
    next: second
  second:
    kind: menu
    prompt: Press 1 to go back, 2 to talk to someone
    options:
      1: first
      2: connect
    on_no_input: first
"""))

INVALID_KEY = edit("    on_no_input: connect\n", "    on_no_input: connect\n"
                   "    on_invalid: direct\n", edit("  busy:\n", """\
  direct:
    kind: connect
    team: respect-workers
    on_no_answer: busy
  busy:
"""))


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(edit("start: welcome", "start: menu1"),
                 ["test.yaml:18:3: a caller can reach 'connect' without hearing the "
                  f"confidentiality notice: menu1 → connect {NOTICE_HINT}"],
                 id="the flow starts after the notice"),
    pytest.param(HOURS_FIRST,
                 ["test.yaml:22:3: a caller can reach 'connect' without hearing the "
                  f"confidentiality notice: check → connect {NOTICE_HINT}"],
                 id="the hours' closed branch skips it"),
    pytest.param(CLOSURE_FIRST,
                 ["test.yaml:23:3: a caller can reach 'connect' without hearing the "
                  f"confidentiality notice: check → connect {NOTICE_HINT}"],
                 id="the hours' closure branch skips it"),
    pytest.param(LOOP_AROUND,
                 ["test.yaml:36:3: a caller can reach 'connect' without hearing the "
                  f"confidentiality notice: first → info → second → connect {NOTICE_HINT}"],
                 id="a loop around it"),
    pytest.param(edit("start: welcome", "start: menu1", INVALID_KEY),
                 ["test.yaml:19:3: a caller can reach 'connect' without hearing the "
                  f"confidentiality notice: menu1 → connect {NOTICE_HINT}",
                  "test.yaml:23:3: a caller can reach 'direct' without hearing the "
                  f"confidentiality notice: menu1 → direct {NOTICE_HINT}"],
                 id="every person reached is reported"),
])
def test_a_person_reachable_without_the_notice_is_refused(tmp_path, text, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == expected


def test_the_notice_on_every_path_passes(tmp_path):
    text = edit("    on_no_answer: busy", "    on_no_answer: again", BASE + """\
  again:
    kind: menu
    prompt: Press 1 to try again
    options:
      1: connect
    on_no_input: busy
""")
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": text}))
    assert flowset.warnings == []


# -- no loop traps a caller without waiting for them ---------------------------------------

SAY_GOTO_LOOP = edit("  busy:\n    kind: message\n    text: Sorry, everyone is busy. In an "
                     "emergency call 999.\n", """\
  busy:
    kind: say
    text: Please hold.
    next: again
  again:
    kind: goto
    next: busy
""")

NOTICE_LOOP = edit("    next: menu1", "    next: repeat", BASE + """\
  repeat:
    kind: goto
    next: welcome
""")


@pytest.mark.parametrize(("text", "expected"), [
    pytest.param(SAY_GOTO_LOOP, [
        "test.yaml:26:3: steps again → busy → again loop without ever waiting for the caller, "
        f"who would be stuck forever {TRAP_HINT}",
        f"test.yaml:22:3: step 'busy' {NO_WAY_OUT}",
        f"test.yaml:26:3: step 'again' {NO_WAY_OUT}",
    ], id="say and goto"),
    pytest.param(edit("    kind: message\n    text: Sorry, everyone is busy. In an emergency call "
                      "999.", "    kind: goto\n    next: busy"), [
        "test.yaml:22:3: steps busy → busy loop without ever waiting for the caller, who would "
        f"be stuck forever {TRAP_HINT}",
        f"test.yaml:22:3: step 'busy' {NO_WAY_OUT}",
    ], id="goto itself"),
    pytest.param(NOTICE_LOOP, [
        "test.yaml:25:3: steps repeat → welcome → repeat loop without ever waiting for the "
        f"caller, who would be stuck forever {TRAP_HINT}",
        f"test.yaml:9:3: step 'welcome' {NO_WAY_OUT}",
        f"test.yaml:25:3: step 'repeat' {NO_WAY_OUT}",
    ], id="the notice over and over"),
])
def test_a_loop_without_input_is_refused(tmp_path, text, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == expected


def test_a_loop_through_a_menu_is_no_trap(tmp_path):
    text = edit("      1: connect\n", "      1: connect\n      2: info\n", BASE + """\
  info:
    kind: say
    text: We are here to help.
    next: menu1
""")
    assert load_flowset(write_folder(tmp_path, {"test.yaml": text})).warnings == []


def test_a_menu_with_no_way_out_is_refused(tmp_path):
    text = edit("      1: connect\n    on_no_input: connect\n",
                "      1: menu1\n      2: info\n    on_no_input: menu1\n", BASE + """\
  info:
    kind: say
    text: We are here to help.
    next: menu1
""")
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        f"test.yaml:9:3: step 'welcome' {NO_WAY_OUT}",
        f"test.yaml:12:3: step 'menu1' {NO_WAY_OUT}",
        f"test.yaml:26:3: step 'info' {NO_WAY_OUT}",
    ]


# -- spoken text: only the placeholders the language documents, and no longer than a <Say> ----

BRACES_HINT = ("(the placeholders are {helpline} (the helpline's name); write {{ or }} for a "
               "brace itself)")
MESSAGE_HINT = ("(the placeholders are {helpline} (the helpline's name), {next_open} (when the "
                "line opens next, e.g. 'on Monday 28 December at 9am'); write {{ or }} for a "
                "brace itself)")
BUSY_TEXT = "    text: Sorry, everyone is busy. In an emergency call 999."


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param(BUSY_TEXT, "    text: Sorry {caller}, call 999.",
                 "test.yaml:24:11: step 'busy' text has '{caller}', which is not a placeholder "
                 f"here {MESSAGE_HINT}", id="unknown name"),
    pytest.param("    prompt: Press 1 to talk to someone", "    prompt: Press 1 {to talk",
                 "test.yaml:14:13: step 'menu1' prompt has '{to talk', which is not a "
                 f"placeholder here {BRACES_HINT}", id="unclosed"),
    pytest.param("    on_no_answer: busy", "    on_no_answer: busy\n    whisper: Call {0}",
                 "test.yaml:22:14: step 'connect' whisper has '{0}', which is not a placeholder "
                 f"here {BRACES_HINT}", id="a position"),
    pytest.param("  team: respect-workers\nstart",
                 "  team: respect-workers\n  closed_message: Closed {today}.\nstart",
                 "test.yaml:1:1: the degraded closed_message has '{today}', which is not a "
                 f"placeholder here {MESSAGE_HINT}", id="degraded message"),
    pytest.param("    prompt: Press 1 to talk to someone",
                 "    prompt: We open {next_open}. Press 1",
                 "test.yaml:14:13: step 'menu1' prompt has '{next_open}', which is not a "
                 f"placeholder here {BRACES_HINT}", id="next_open in a prompt"),
    pytest.param(BUSY_TEXT, "    text: '{helpline:>50000000}'",
                 "test.yaml:24:11: step 'busy' text has '{helpline:>50000000}', which is not a "
                 f"placeholder here {MESSAGE_HINT}", id="a width of fifty million"),
    pytest.param(BUSY_TEXT, "    text: '{helpline.__class__}'",
                 "test.yaml:24:11: step 'busy' text has '{helpline.__class__}', which is not a "
                 f"placeholder here {MESSAGE_HINT}", id="an attribute"),
    pytest.param(BUSY_TEXT, "    text: '{helpline[0]} and {helpline!r}'",
                 "test.yaml:24:11: step 'busy' text has '{helpline[0]}' and '{helpline!r}', "
                 f"which are not placeholders here {MESSAGE_HINT}",
                 id="an index and a conversion"),
    pytest.param(BUSY_TEXT, "    text: 'Call {helpline:}'",
                 "test.yaml:24:11: step 'busy' text has '{helpline:}', which is not a "
                 f"placeholder here {MESSAGE_HINT}", id="an empty format spec"),
    pytest.param(BUSY_TEXT, "    text: 'Call } now'",
                 "test.yaml:24:11: step 'busy' text has '}', which is not a placeholder "
                 f"here {MESSAGE_HINT}", id="a lone closing brace"),
])
def test_spoken_text_with_stray_braces_is_refused(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


def test_a_message_may_say_when_the_line_opens_next(tmp_path):
    text = edit(BUSY_TEXT,
                "    text: We open again {next_open}. In an emergency call 999.")
    text = text.replace("  team: respect-workers\nstart",
                        "  team: respect-workers\n  closed_message: Open {next_open}.\nstart")
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": text}))
    assert flowset.warnings == []


def test_spoken_text_may_name_the_helpline_and_write_braces_doubled(tmp_path):
    text = edit(BUSY_TEXT, "    text: '{helpline}: {{sorry}}, call 999.'")
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": text}))
    assert flowset.warnings == []
    assert fill(flowset.flows["test"].steps["busy"].text, helpline="Test Line") == (
        "Test Line: {sorry}, call 999.")


def test_a_text_longer_than_a_say_is_refused_where_it_is_written(tmp_path):
    text = edit(BUSY_TEXT, f"    text: {'a' * MAX_TEXT_CHARS}b")
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        "test.yaml:24:11: this text is 4,097 characters; at most 4,096 are allowed (Twilio's "
        "<Say> takes at most 4,096 characters: shorten it, or split it over several steps)"]


def test_a_text_of_exactly_a_say_is_accepted(tmp_path):
    text = edit(BUSY_TEXT, f"    text: {'a' * MAX_TEXT_CHARS}")
    assert load_flowset(write_folder(tmp_path, {"test.yaml": text})).warnings == []


def test_a_text_that_grows_past_a_say_once_filled_in_is_refused(tmp_path):
    """The helpline's name, filled in 200 times, would make every call that reaches the step
    send Twilio a <Say> it refuses."""
    text = edit(BUSY_TEXT, "    text: '" + "{helpline} " * 200 + "'",
                edit("helpline: Test Line", "helpline: A Rather Long Test Line Name"))
    assert errors_of(write_folder(tmp_path, {"test.yaml": text})) == [
        "test.yaml:24:11: step 'busy' text is 5,799 characters once its placeholders are filled "
        "in; Twilio's <Say> takes at most 4,096 (shorten it, or split it over several steps)"]


# -- one turn of a call runs at most MAX_STEPS_PER_TURN steps, in the validator as in the engine -

def chained(gotos: int) -> str:
    """The base flow with ``gotos`` goto steps between the notice and the menu: a caller who
    lets the notice pass runs all of them, and the menu, in one turn."""
    chain = "".join(f"  g{n}:\n    kind: goto\n"
                    f"    next: {f'g{n + 1}' if n + 1 < gotos else 'menu1'}\n"
                    for n in range(gotos))
    return edit("    next: menu1\n  menu1:\n", f"    next: g0\n{chain}  menu1:\n")


def test_a_chain_longer_than_one_turn_is_refused_and_named(tmp_path):
    assert errors_of(write_folder(tmp_path, {"test.yaml": chained(150)})) == [
        "test.yaml:12:3: steps g0 → g1 → g2 → … → g148 → g149 → menu1 (151 steps) run one "
        f"after another in one turn of a call; a turn runs at most {MAX_STEPS_PER_TURN} steps "
        "(put a menu among them, or shorten the chain)"]


def test_the_longest_chain_accepted_is_one_turn_of_exactly_the_limit(tmp_path):
    assert errors_of(write_folder(tmp_path, {"test.yaml": chained(MAX_STEPS_PER_TURN)}))[0] \
        .startswith(f"test.yaml:12:3: steps g0 → g1 → g2 → … → g{MAX_STEPS_PER_TURN - 2} → "
                    f"g{MAX_STEPS_PER_TURN - 1} → menu1 "
                    f"({MAX_STEPS_PER_TURN + 1} steps)")
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": chained(MAX_STEPS_PER_TURN - 1)}))
    assert flowset.warnings == []


def test_each_overlong_chain_is_named_once_from_where_it_starts(tmp_path):
    """The menu ends one turn; its fallback starts another, with a chain of its own."""
    says = "".join(f"  h{n}:\n    kind: say\n    text: Part {n}.\n"
                   f"    next: {f'h{n + 1}' if n + 1 < 120 else 'connect'}\n" for n in range(120))
    text = edit("    on_no_input: connect\n", "    on_no_input: h0\n", chained(120)) + says
    errors = errors_of(write_folder(tmp_path, {"test.yaml": text}))
    assert [error.split(": steps ")[1].split(" → ")[0] for error in errors] == ["g0", "h0"]
    assert "h118 → h119 → connect (121 steps)" in errors[1]


EVERY_KIND = edit("  welcome:\n    kind: notice\n    next: menu1\n", """\
  welcome:
    kind: notice
    next: say1
  say1:
    kind: say
    text: Hello.
    next: play1
  play1:
    kind: play
    url: https://audio.example.org/hello.mp3
    next: hours1
  hours1:
    kind: hours
    open: menu1
    closed: busy
  goto1:
    kind: goto
    next: end
  end:
    kind: hangup
""", edit("      1: connect\n", "      1: connect\n      2: goto1\n"))


@pytest.mark.parametrize("kind", list(STEP_KINDS))
def test_a_turn_ends_where_the_engine_ends_it(tmp_path, kind):
    """``ends_turn``, which the chain limit counts by, says of each kind what the engine does:
    no step follows in the same answer (the turn ends), or the next step's name does."""
    flowset = load_flowset(write_folder(tmp_path, {"test.yaml": EVERY_KIND}))
    flow = flowset.flows["test"]
    [step] = [step for step in flow.steps.values() if step.kind == kind]
    turn = Turn(flowset=flowset, flow=flow, helpline_number="+441632960099", now=OPEN_TIME,
                links=Links("https://calls.example.org", routes()), state=CallState())
    step.render(VoiceResponse(), turn)
    assert (step.follow(turn) is None) is step.ends_turn


def test_the_limit_the_validator_accepts_is_served_to_a_caller(settings, redis, clock, tmp_path):
    """The validator and the engine agree: the longest turn a flow may have is run, not
    answered with an apology and the degraded path."""
    always_open = chained(MAX_STEPS_PER_TURN - 1).replace(
        'monday: "09:00-17:00"', 'wednesday: "00:00-24:00"')
    folder = write_folder(tmp_path, {"test.yaml": always_open})
    app = create_app({"TESTING": True, "SETTINGS": replace(settings, flows_dir=str(folder)),
                      "STORE": redis, "CLOCK": clock})
    heard = TwilioSim(app).call("+441632960099", Keypad(["", "1"])).heard()
    assert APOLOGY not in heard
    assert "Press 1 to talk to someone" in heard


# -- numbers, defaults, teams ---------------------------------------------------------------

def test_a_number_bound_to_two_flows_is_refused_where_the_second_names_it(tmp_path):
    folder = write_folder(tmp_path, {
        "a.yaml": BASE,
        "b.yaml": edit('numbers: ["+441632960099"]', 'numbers: ["+441632960098", "+441632960099"]'),
    })
    assert errors_of(folder) == [
        "b.yaml:2:28: number +441632960099 is bound to both 'a' and 'b' (a number answers one "
        "flow; remove it from one)"]


def test_only_one_flow_may_be_the_default(tmp_path):
    folder = write_folder(tmp_path, {
        "a.yaml": edit("start:", "default: true\nstart:"),
        "b.yaml": edit('"+441632960099"', '"+441632960008"',
                       edit("start:", "default: true\nstart:")),
    })
    assert errors_of(folder) == ["b.yaml:1:1: more than one flow says 'default: true' (keep it "
                                 "on one flow only)"]


@pytest.mark.parametrize(("old", "new", "expected"), [
    pytest.param("    team: respect-workers\n    on_no_answer", "    team: respect-worker\n"
                 "    on_no_answer",
                 "test.yaml:18:3: step 'connect' names team 'respect-worker', which does not "
                 "exist (did you mean 'respect-workers'?)", id="a connect step's team"),
    pytest.param("  team: respect-workers\nstart", "  team: night-shift\nstart",
                 "test.yaml:6:9: the degraded team 'night-shift' does not exist (define it in "
                 "teams.yaml)", id="the degraded team"),
])
def test_a_team_that_does_not_exist_is_refused(tmp_path, old, new, expected):
    assert errors_of(write_folder(tmp_path, {"test.yaml": edit(old, new)})) == [expected]


# -- warnings ------------------------------------------------------------------------------

def test_an_unreachable_step_is_a_warning_not_an_error(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE + "  spare:\n    kind: hangup\n"})
    flowset = load_flowset(folder)
    assert warnings_of(flowset, folder) == [
        "test.yaml:25:3: step 'spare' is never reached from 'welcome' (link to it or remove it)"]


def test_an_unreachable_connect_without_a_notice_is_only_a_warning(tmp_path):
    folder = write_folder(tmp_path, {"test.yaml": BASE + """\
  spare:
    kind: connect
    team: respect-workers
    on_no_answer: busy
"""})
    flowset = load_flowset(folder)
    assert warnings_of(flowset, folder) == [
        "test.yaml:25:3: step 'spare' is never reached from 'welcome' (link to it or remove it)"]


def test_a_team_with_nobody_active_is_a_warning(tmp_path):
    teams = """\
teams:
  respect-workers:
    workers:
      - name: Alice
        number: "+447700900101"
        active: false
"""
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": teams})
    assert warnings_of(load_flowset(folder), folder) == [
        "teams.yaml:2:3: team 'respect-workers' has no active workers; its calls will always go "
        "to the no-answer step"]


TWO_TEAMS = """\
teams:
  respect-workers:
    workers:
      - name: Alice
        number: "+447700900101"
  mal-workers:
    workers:
      - name: {name}
        number: "{number}"
"""


def test_a_worker_on_two_teams_with_one_number_is_one_person(tmp_path):
    teams = TWO_TEAMS.format(name="Alice", number="+447700900101")
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": teams})
    assert len(load_flowset(folder).teams) == 2


@pytest.mark.parametrize("name, number, error", [
    ("Alice", "+447700900102", "teams.yaml:6:3: worker 'Alice' of team 'mal-workers' has "
     "another number than in team 'respect-workers' (a name on two teams is one person with "
     "one phone: give both the same number, or give two people different names)"),
    ("alice", "+447700900101", "teams.yaml:6:3: team 'mal-workers' names a worker 'alice' and "
     "team 'respect-workers' one 'Alice' (one person is spelled one way in every team; two "
     "people need names that differ by more than case)"),
], ids=["another number", "another spelling"])
def test_a_worker_on_two_teams_must_be_one_person(tmp_path, name, number, error):
    """One name is one shift: two teams ringing two phones for it would split one person."""
    teams = TWO_TEAMS.format(name=name, number=number)
    folder = write_folder(tmp_path, {"test.yaml": BASE, "teams.yaml": teams})
    found = errors_of(folder)
    assert found == [error]
    assert "+4477" not in " ".join(found)


# -- the notice-first proof agrees with walking every path -----------------------------------

def _random_flow(rng: random.Random, size: int) -> tuple[str, dict[str, list[str]], set[str]]:
    """A parse-valid flow of ``size`` steps; returns its YAML, its edges and its notices."""
    names = [f"s{i}" for i in range(size)]
    lines, edges, notices = [], {}, set()
    for name in names:
        kind = rng.choice(["notice", "say", "menu", "menu", "hours", "connect", "message"])
        pick = lambda: rng.choice(names)  # noqa: E731
        if kind == "notice":
            targets = [pick()]
            body = f"    next: {targets[0]}\n"
            notices.add(name)
        elif kind == "say":
            targets = [pick()]
            body = f"    text: Hello.\n    next: {targets[0]}\n"
        elif kind == "menu":
            targets = [pick(), pick(), pick()]
            body = (f"    prompt: Press 1 or 2.\n    options:\n      1: {targets[0]}\n"
                    f"      2: {targets[1]}\n    on_no_input: {targets[2]}\n")
        elif kind == "hours":
            targets = [pick(), pick()]
            body = f"    open: {targets[0]}\n    closed: {targets[1]}\n"
        elif kind == "connect":
            targets = [pick()]
            body = f"    team: respect-workers\n    on_no_answer: {targets[0]}\n"
        else:
            targets = []
            body = "    text: Goodbye.\n"
        edges[name] = targets
        lines.append(f"  {name}:\n    kind: {kind}\n{body}")
    header = edit("start: welcome\nsteps:\n", "start: s0\nsteps:\n", BASE.split("  welcome:")[0])
    return header + "".join(lines), edges, notices


def _exposed(edges: dict[str, list[str]], notices: set[str], connects: set[str]) -> set[str]:
    """People reachable on some path from s0 that passes no notice, by walking every path."""
    found: set[str] = set()

    def walk(node: str, on_path: frozenset[str]) -> None:
        if node in notices or node in on_path:
            return
        if node in connects:
            found.add(node)
            return
        for target in edges[node]:
            walk(target, on_path | {node})

    walk("s0", frozenset())
    return found


@pytest.mark.parametrize("seed", range(40))
def test_the_notice_proof_agrees_with_every_path(tmp_path, seed):
    rng = random.Random(seed)
    text, edges, notices = _random_flow(rng, rng.randint(3, 9))
    connects = {name for name in edges if f"  {name}:\n    kind: connect\n" in text}
    folder = write_folder(tmp_path, {"test.yaml": text})
    try:
        errors = errors_of(folder)
    except AssertionError:  # loaded cleanly
        errors = []
    reported = {e.split("can reach '")[1].split("'")[0] for e in errors
                if "without hearing the confidentiality notice" in e}
    assert reported == _exposed(edges, notices, connects)


@pytest.mark.parametrize("text, missing", [
    ("Hello, this line is confidential.", "'identify' or 'record' or 'monitored' or 'quality' or "
                                          "'training'"),
    ("Welcome. We do not identify or record callers; calls may be monitored for quality and "
     "training.", "'confidential'"),
], ids=["says little", "not confidential"])
def test_a_notice_in_other_words_must_still_say_what_the_policy_promises(tmp_path, text,
                                                                        missing):
    flow = edit("    kind: notice\n", f"    kind: notice\n    text: \"{text}\"\n")
    [error] = errors_of(write_folder(tmp_path, {"test.yaml": flow}))
    assert error.startswith("test.yaml:")
    assert f"step 'welcome' is a notice that does not say {missing}" in error
