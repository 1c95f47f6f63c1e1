"""Reading YAML with marks: what YAML offers beyond plain values is refused where it is written,
and no document, however careless or hostile, costs more than its size or escapes as anything
but a ``FlowError`` at file:line:col.

The property test in test_loader_properties feeds random and mutated files; these are the
named attacks, each one a row.
"""

from __future__ import annotations

import tracemalloc
from datetime import date

import pytest

from callflow.language.source import load_text
from callflow.platform.errors import FlowError
from callflow.platform.limits import MAX_DEPTH, MAX_VALUES

NO_REPEATS = "(write the value out in each place it is used)"
PLAIN_VALUES = "(remove it: a flow holds text, numbers, true or false, lists and mappings)"
IN_QUOTES = "(write it in quotes if it is meant as text)"
BILLION_LAUGHS = 'lol: &lol "lol"\n' + "".join(
    f"lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}' if n > 1 else '*lol'] * 9)}]\n"
    for n in range(1, 10))


def refusal(text: str) -> str:
    with pytest.raises(FlowError) as caught:
        load_text(text, "t.yaml")
    return str(caught.value)


def peak_bytes(text: str) -> int:
    """The most memory Python held while ``text`` was read (allocations, deterministic)."""
    tracemalloc.start()
    try:
        with pytest.raises(FlowError):
            load_text(text, "t.yaml")
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- anchors, aliases and merges ------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("a: &x [1]\nb: *x\n",
                 f"t.yaml:1:4: '&x' is a YAML anchor, which flows do not use {NO_REPEATS}",
                 id="anchor and alias"),
    pytest.param("a: &x [*x]\n",
                 f"t.yaml:1:4: '&x' is a YAML anchor, which flows do not use {NO_REPEATS}",
                 id="a list that holds itself"),
    pytest.param("a: &x\n  b: *x\n",
                 f"t.yaml:1:4: '&x' is a YAML anchor, which flows do not use {NO_REPEATS}",
                 id="a mapping that holds itself"),
    pytest.param("a: *x\n",
                 f"t.yaml:1:4: '*x' is a YAML alias, which flows do not use {NO_REPEATS}",
                 id="an alias of nothing"),
    pytest.param("a: {<<: {b: 1}}\n",
                 "t.yaml:1:5: '<<' merges one mapping into another, which flows do not do "
                 "(write the value out in each place it is used (quote it for the text '<<'))",
                 id="merge"),
    pytest.param(BILLION_LAUGHS,
                 f"t.yaml:1:6: '&lol' is a YAML anchor, which flows do not use {NO_REPEATS}",
                 id="billion laughs"),
])
def test_anchors_aliases_and_merges_are_refused(text, expected):
    assert refusal(text) == expected


def test_billion_laughs_cost_nothing_to_refuse():
    assert peak_bytes(BILLION_LAUGHS) < 100_000


def test_a_quoted_merge_key_is_plain_text():
    assert load_text("a: {'<<': b}\n", "t.yaml") == {"a": {"<<": "b"}}


# -- nesting and size -----------------------------------------------------------------------

def nested_lists(depth: int) -> str:
    return "a: " + "[" * (depth - 1) + "]" * (depth - 1) + "\n"


def nested_mappings(depth: int) -> str:
    return "".join("  " * level + "k:\n" for level in range(depth)) + "  " * depth + "v\n"


@pytest.mark.parametrize(("text", "where"), [
    pytest.param(nested_lists(20_000), "1:23", id="20,000 lists"),
    pytest.param(nested_mappings(20_000), "21:41", id="20,000 mappings"),
    pytest.param("a: " + "[" * 1_000_000, "1:23", id="a million unclosed lists"),
    pytest.param("a: " + "{b: " * 100_000, "1:80", id="mappings in flow style"),
])
def test_nesting_deeper_than_the_limit_is_refused_where_it_goes_too_deep(text, where):
    assert refusal(text) == (f"t.yaml:{where}: this nests deeper than {MAX_DEPTH} levels of "
                             "lists and mappings (a flow needs five at most; check the "
                             "indentation)")
    assert peak_bytes(text) < 5 * len(text) + 1_000_000


def depth(value) -> int:
    """Levels of lists and mappings, the file's own mapping the first."""
    inner = value.values() if isinstance(value, dict) else value
    return 1 + max(map(depth, inner), default=0) if isinstance(value, (dict, list)) else 0


def test_nesting_to_the_limit_is_read():
    assert depth(load_text(nested_lists(MAX_DEPTH), "t.yaml")) == MAX_DEPTH
    assert depth(load_text(nested_mappings(MAX_DEPTH), "t.yaml")) == MAX_DEPTH


def test_more_values_than_the_limit_are_refused():
    text = "a: [" + "1," * MAX_VALUES + "]\n"
    error = refusal(text)
    assert error.startswith("t.yaml:1:")
    assert error.endswith(f"the file holds more than {MAX_VALUES:,} values (split it: one "
                          "helpline per file, the teams in teams.yaml)")


# -- tags -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("a: !foo [1]\n", "t.yaml:1:4: the tag '!foo' means nothing in a flow (remove "
                 "it: this is a plain list)", id="a local tag on a list"),
    pytest.param("a: !foo {b: 1}\n", "t.yaml:1:4: the tag '!foo' means nothing in a flow "
                 "(remove it: this is a plain mapping)", id="a local tag on a mapping"),
    pytest.param("a: !!set {b}\n", "t.yaml:1:4: the tag '!!set' means nothing in a flow "
                 "(remove it: this is a plain mapping)", id="a set"),
    pytest.param("a: !!omap [b: 1]\n", "t.yaml:1:4: the tag '!!omap' means nothing in a flow "
                 "(remove it: this is a plain list)", id="an ordered mapping"),
    pytest.param("a: !!str [1]\n", "t.yaml:1:4: the tag '!!str' means nothing in a flow "
                 "(remove it: this is a plain list)", id="a text tag on a list"),
    pytest.param("a: !!python/object/apply:os.system [echo]\n", "t.yaml:1:4: the tag "
                 "'!!python/object/apply:os.system' means nothing in a flow (remove it: this is "
                 "a plain list)", id="python on a list"),
    pytest.param("a: !!python/object:os.system echo\n", "t.yaml:1:4: the tag "
                 f"'!!python/object:os.system' means nothing in a flow {PLAIN_VALUES}",
                 id="python on a value"),
    pytest.param("a: !foo x\n", f"t.yaml:1:4: the tag '!foo' means nothing in a flow "
                 f"{PLAIN_VALUES}", id="a local tag on a value"),
    pytest.param("a: !!binary aGk=\n", f"t.yaml:1:4: the tag '!!binary' means nothing in a "
                 f"flow {PLAIN_VALUES}", id="binary"),
    pytest.param("!foo {a: 1}\n", "t.yaml:1:1: the tag '!foo' means nothing in a flow (remove "
                 "it: this is a plain mapping)", id="on the whole file"),
])
def test_tags_that_mean_nothing_in_a_flow_are_refused(text, expected):
    assert refusal(text) == expected


@pytest.mark.parametrize(("text", "value"), [
    ("a: !!str 123\n", "123"),
    ("a: !!int '5'\n", 5),
    ("a: !!bool 'yes'\n", True),
    ("a: !!null ''\n", None),
    ("a: !!float '1.5'\n", 1.5),
    ("a: !!map {b: 1}\n", {"b": 1}),
    ("a: !!seq [1]\n", [1]),
    ("a: ! x\n", "x"),
    ("a: 2026-12-25\n", date(2026, 12, 25)),
])
def test_yaml_s_own_tags_for_plain_values_are_read(text, value):
    assert load_text(text, "t.yaml")["a"] == value


# -- values that cannot be read as what they look like ---------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    pytest.param("a: " + "1" * 5000 + "\n", "t.yaml:1:4: '1111111111111111111111111111111111111111"
                 f"…' cannot be read as a whole number {IN_QUOTES}", id="5,000 digits"),
    pytest.param("a: 2026-13-45\n", f"t.yaml:1:4: '2026-13-45' cannot be read as a date "
                 f"{IN_QUOTES}", id="month 13"),
    pytest.param("a: [2026-02-30]\n", f"t.yaml:1:5: '2026-02-30' cannot be read as a date "
                 f"{IN_QUOTES}", id="30 February"),
    pytest.param("a: !!int x\n", f"t.yaml:1:4: 'x' cannot be read as a whole number {IN_QUOTES}",
                 id="int tag on a word"),
    pytest.param("a: !!float x\n", f"t.yaml:1:4: 'x' cannot be read as a number {IN_QUOTES}",
                 id="float tag on a word"),
    pytest.param("a: !!timestamp x\n", f"t.yaml:1:4: 'x' cannot be read as a date {IN_QUOTES}",
                 id="timestamp tag on a word"),
    pytest.param("a: !!bool x\n", f"t.yaml:1:4: 'x' cannot be read as true or false {IN_QUOTES}",
                 id="bool tag on a word"),
])
def test_a_value_that_cannot_be_read_as_what_it_says_is_refused(text, expected):
    assert refusal(text) == expected


# -- characters -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    pytest.param('a: "Sorry\\0"\n', "t.yaml:1:4: this text holds the character U+0000, which "
                 "cannot be said or sent to Twilio (remove its escape)", id="an escaped NUL"),
    pytest.param('a: "\\ud800"\n', "t.yaml:1:4: this text holds the character U+D800, which "
                 "cannot be said or sent to Twilio (remove its escape)", id="a lone surrogate"),
    pytest.param('a: "\\e[31m"\n', "t.yaml:1:4: this text holds the character U+001B, which "
                 "cannot be said or sent to Twilio (remove its escape)", id="a terminal escape"),
    pytest.param("a: b\x00\n", "t.yaml:1:5: the character U+0000 is not allowed in YAML "
                 "(remove it; an editor may show it as a box, or as ^@)", id="a raw NUL"),
    pytest.param("é: 'ü'\nb: \x07\n", "t.yaml:2:4: the character U+0007 is not allowed in YAML "
                 "(remove it; an editor may show it as a box, or as ^@)", id="after accents"),
])
def test_characters_twilio_cannot_be_sent_are_refused(text, expected):
    assert refusal(text) == expected


def test_line_breaks_and_tabs_in_text_are_kept():
    assert load_text('a: "one\\ttwo\\nthree"\n', "t.yaml") == {"a": "one\ttwo\nthree"}
