"""The confidentiality policy the service enforces, and the words callers hear from it."""

from __future__ import annotations

import pytest

from callflow.language.loader import load_flowset
from callflow.language.policy import (
    DEFAULT_NOTICE,
    NO_IDENTIFICATION_OR_RECORDING,
    POLICY_OFFER,
    policy_text,
    shipped_policy_text,
    spoken_paragraphs,
)
from callflow.language.steps import Notice
from tests.conftest import FLOWS

# What the notice must say (issue 3, the notice step); each is a phrase a caller would hear.
NOTICE_PROMISES = ["This call is confidential", "We do not use technology to identify callers",
                   "we do not record calls",
                   "Calls may be monitored occasionally for quality and training"]


def test_the_sentence_every_refusal_quotes_is_the_policys_own():
    assert NO_IDENTIFICATION_OR_RECORDING in shipped_policy_text()


@pytest.mark.parametrize("promise", NOTICE_PROMISES)
def test_the_default_notice_says_what_the_policy_promises(promise):
    assert promise in DEFAULT_NOTICE


@pytest.mark.parametrize("flow_id", ["respect-phoneline", "mens-advice-line"])
def test_every_shipped_notice_says_it_and_names_its_helpline(flow_id):
    flow = load_flowset(FLOWS).flows[flow_id]
    notices = [flow.steps[name] for name in flow.reachable()
               if isinstance(flow.steps[name], Notice)]
    assert notices, "a shipped flow has no notice"
    for notice in notices:
        spoken = notice.text.format(helpline=flow.helpline)
        assert flow.helpline in spoken
        for promise in NOTICE_PROMISES:
            assert promise in spoken
    assert flow.notice_text == notices[0].text.format(helpline=flow.helpline)


def test_the_offer_names_the_key():
    assert POLICY_OFFER.format(digit="9") == ("To hear our full confidentiality policy, press 9 "
                                              "now.")


def test_the_spoken_policy_keeps_every_sentence_and_drops_what_means_nothing_aloud():
    pieces = spoken_paragraphs(shipped_policy_text())
    spoken = " ".join(pieces)
    assert NO_IDENTIFICATION_OR_RECORDING in spoken
    # The footnote on monitoring is heard where its marker was.
    assert ("Calls are monitored occasionally for quality or training purposes. The Helplines "
            "Manager occasionally monitors calls by listening in to calls.") in spoken
    # The list is read as a list, each item ended.
    assert ("verbally attacked by callers; a caller interferes with the delivery of our "
            "service.") in spoken
    assert "Domestic Violence Contexts'." in spoken
    for unspeakable in ("http", "www", "euowrc", ".pdf", "read below", "Exceptions apply",
                        "¹", "²", "³", "- "):
        assert unspeakable not in spoken, unspeakable
    assert all(piece.strip() for piece in pieces)
    assert not any(piece.strip().isdigit() for piece in pieces)
    assert pieces.count("Training") == 1


def test_an_admins_footnotes_are_read_in_place_or_left_out():
    text = ("We keep nothing¹. We share only when the law says so².\n\n"
            "¹ Except the audit log, kept six months\n\n"
            "² See below for the cases.\n\n"
            "4\n\nhttps://example.org/policy.pdf")
    assert spoken_paragraphs(text) == [
        "We keep nothing. Except the audit log, kept six months. We share only when the law "
        "says so."]


@pytest.mark.parametrize("limit", [80, 200, 3000])
def test_long_paragraphs_are_cut_at_a_sentence_within_the_limit(limit):
    text = " ".join(f"Sentence number {i} says something about confidentiality." for i in range(60))
    pieces = spoken_paragraphs(text, limit=limit)
    assert all(len(piece) <= limit for piece in pieces)
    assert all(piece.endswith(".") for piece in pieces)
    assert " ".join(pieces) == text


def test_a_paragraph_with_no_full_stop_is_still_cut():
    pieces = spoken_paragraphs("word " * 100, limit=50)
    assert all(len(piece) <= 50 for piece in pieces)
    assert "".join(pieces).replace(" ", "") == "word" * 100


def test_windows_line_endings():
    assert spoken_paragraphs("One.\r\n\r\nTwo\r\nlines.") == ["One.", "Two lines."]


def test_an_admins_policy_file_replaces_the_shipped_one(tmp_path):
    path = tmp_path / "policy.txt"
    path.write_text("Our own policy.\n\nSecond paragraph.\n", encoding="utf-8")
    assert policy_text(str(path)) == "Our own policy.\n\nSecond paragraph.\n"
    assert policy_text("") == shipped_policy_text()
    assert policy_text(None) == shipped_policy_text()
