"""Spoken text: the placeholders it may use, and filling them in at a cost set by the text.

The validator refuses any text with ``stray_braces``; every other text fills in exactly as
``str.format`` would, in one pass, to its own length plus the values'.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from callflow.language.texts import CLOSING, LONGEST, PLACEHOLDERS, SPOKEN, fill, stray_braces

# Text made mostly of the characters that matter here.
TEXTS = st.text(alphabet=st.sampled_from("{}helpin:.[]!r0 >"), max_size=40) | st.text()


@pytest.mark.parametrize(("text", "stray"), [
    ("Thank you for calling {helpline}.", []),
    ("{{not a placeholder}}", []),
    ("{helpline:>50000000}", ["{helpline:>50000000}"]),
    ("{helpline.__class__.__mro__}", ["{helpline.__class__.__mro__}"]),
    ("{helpline[0]}{helpline!r}{helpline!s:10}", ["{helpline[0]}", "{helpline!r}",
                                                   "{helpline!s:10}"]),
    ("{}{0}{ helpline }", ["{}", "{0}", "{ helpline }"]),
    ("{caller} and {caller}", ["{caller}"]),
    ("open { and }", ["{ and }"]),
    ("{helpline", ["{helpline"]),
    ("}", ["}"]),
    ("{{{helpline}}}", []),
])
def test_stray_braces(text, stray):
    assert stray_braces(text) == stray


def test_the_documented_placeholders():
    assert list(PLACEHOLDERS) == ["helpline", "next_open"]
    assert {"helpline"} == SPOKEN and {"helpline", "next_open"} == CLOSING
    assert set(LONGEST) == CLOSING - SPOKEN  # what the flow does not fix has a longest value


def test_next_open_is_a_placeholder_only_where_a_closed_line_speaks():
    assert stray_braces("We open {next_open}.") == ["{next_open}"]
    assert stray_braces("We open {next_open}.", CLOSING) == []


def test_fill_names_the_helpline_and_halves_doubled_braces():
    assert fill("{{{helpline}}} says {{hello}}", helpline="Respect") == "{Respect} says {hello}"


def test_fill_leaves_anything_else_as_written_and_never_pads():
    text = "{helpline:>50000000}{helpline.__class__}{caller}"
    assert fill(text, helpline="Respect") == text


@given(TEXTS, st.text(max_size=30))
def test_an_accepted_text_fills_in_as_str_format_would_and_no_longer(text, helpline):
    if stray_braces(text):
        return
    filled = fill(text, helpline=helpline)
    assert filled == text.format(helpline=helpline)
    assert len(filled) <= len(text) + text.count("{helpline}") * len(helpline)


@given(TEXTS, st.text(max_size=30))
def test_any_text_fills_in_to_at_most_its_length_plus_the_values(text, helpline):
    assert len(fill(text, helpline=helpline)) <= (len(text)
                                                  + text.count("{helpline}") * len(helpline))
