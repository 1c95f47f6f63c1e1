"""Typed keys of the flow language: the policy word check, conversions, and their schema."""

from __future__ import annotations

import dataclasses

import pytest

from callflow.language.fields import did_you_mean, forbidden, json_schema, option, read, specs
from callflow.language.flow import Degraded, Flow, Team, Worker
from callflow.language.loader import load_flowset
from callflow.language.source import load_text
from callflow.language.steps import STEP_KINDS
from callflow.platform.errors import FlowError
from tests.conftest import FLOWS

# Every spelling an admin (or a copied Twilio example) might use to ask for what the policy
# forbids: recording, voicemail, transcription, media streams, caller lookup, answering machines.
FORBIDDEN = [
    "record", "Record", "RECORD", "recording", "recordingStatusCallback", "record_calls",
    "dual-channel-record", "voicemail", "VoiceMail", "voice_mail", "voice-mail", "voicemailbox",
    "transcribe", "transcribeCallback", "transcription", "Transcript", "stream", "streams",
    "media_stream", "MediaStream", "mediaStream", "caller_id", "callerId", "CallerID",
    "callerid", "caller-id-lookup", "caller_id_lookup", "callerName", "caller_name",
    "CallerNameLookup", "lookup", "phone_lookup", "cnam", "CNAM", "voice_caller_id_lookup",
    "machineDetection", "machine_detection", "answeringMachineDetection", "answering-machine",
    "amd", "AMD", "asyncAmd", "siprec", "Siprec",
]

# Words that only look alike: the shipped flows' names and keys, and near misses.
ALLOWED = [
    "camden-office", "welcome", "main-menu", "open-now", "connect", "busy", "closed", "website",
    "respect-workers", "mal-workers", "helpline", "numbers", "timezone", "voice", "language",
    "prompt", "options", "on_no_input", "on_invalid", "on_no_answer", "whisper", "policy_digit",
    "caller", "called", "caller-support", "id", "mail", "email-us", "machine", "detection",
    "media", "recap", "recovery", "receptionist", "upstream", "mainstream", "lookout",
    "transit", "translate", "amdahl", "camden", "streetwise", "correct", "corded-phone",
    "identity", "answering", "voice-menu", "default",
]


@pytest.mark.parametrize("word", FORBIDDEN)
def test_forbidden_words(word):
    assert forbidden(word)


@pytest.mark.parametrize("word", ALLOWED)
def test_words_that_are_allowed(word):
    assert not forbidden(word)


def test_no_declared_key_or_kind_is_forbidden():
    names = set(STEP_KINDS)
    for cls in (Flow, Team, Worker, Degraded, *STEP_KINDS.values()):
        names.update(specs(cls))
    assert [name for name in sorted(names) if forbidden(name)] == []


def test_nothing_in_the_shipped_flows_looks_forbidden():
    """The check runs on every key and kind; the shipped flows must pass it untouched."""
    flowset = load_flowset(FLOWS)
    words = set(flowset.teams)
    for flow in flowset.flows.values():
        words.update(flow.steps)
        words.update(step.kind for step in flow.steps.values())
    assert [word for word in sorted(words) if forbidden(word)] == []


@pytest.mark.parametrize(("word", "choices", "expected"), [
    ("conect", ["welcome", "connect", "busy"], "did you mean 'connect'?"),
    ("mesage", ["message", "menu"], "did you mean 'message'?"),
    ("zzz", ["message", "menu"], ""),
    (3, ["3", "4"], "did you mean '3'?"),
])
def test_did_you_mean(word, choices, expected):
    assert did_you_mean(word, choices) == expected


# -- conversions --------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, kw_only=True)
class Sample:
    text: str = option("text", "Some text")
    count: int = option("int", "A count", 3, minimum=1, maximum=9)
    flag: bool = option("bool", "A flag", False)
    key: str = option("digit", "A key", "9")
    phone: str | None = option("number", "A phone", None)
    url: str | None = option("url", "An address", None)
    target: str | None = option("step", "A step", None)


def sample(yaml_text: str):
    return read(Sample, load_text(yaml_text, "s.yaml"), "the sample")


def test_read_fills_defaults_and_converts():
    assert sample("text: ' hello '\nkey: 1\n") == {"text": "hello", "key": "1"}
    assert sample("text: 42\ncount: 9\nflag: true\nphone: '+15005550006'\n") == {
        "text": "42", "count": 9, "flag": True, "phone": "+15005550006"}


@pytest.mark.parametrize(("text", "expected"), [
    ("count: 2\n", "s.yaml:1:1: the sample is missing 'text' (Some text)"),
    ("text: hi\ncolor: red\n", "s.yaml:2:1: the sample has no setting 'color' (the sample "
     "takes: text, count, flag, key, phone, url, target)"),
    ("text: hi\ncont: 2\n", "s.yaml:2:1: the sample has no setting 'cont' (did you mean "
     "'count'?)"),
    ("text: hi\nrecordCall: true\n", "s.yaml:2:1: 'recordCall' in the sample is not allowed: "
     "the policy says \"We do not use technology to identify callers or call recording "
     "equipment.\" (remove it; callers are never recorded, sent to voicemail or looked up)"),
    ("text: ''\n", "s.yaml:1:7: this should be some text (write it in quotes if in doubt)"),
    ("text: [a]\n", "s.yaml:1:7: this should be some text (write it in quotes if in doubt)"),
    ("text: hi\ncount: 0\n", "s.yaml:2:8: 0 is too small (use at least 1)"),
    ("text: hi\ncount: 10\n", "s.yaml:2:8: 10 is too large (use at most 9)"),
    ("text: hi\ncount: true\n", "s.yaml:2:8: 'True' should be a whole number"),
    ("text: hi\ncount: 2.5\n", "s.yaml:2:8: '2.5' should be a whole number"),
    ("text: hi\nflag: 'yes'\n", "s.yaml:2:7: 'yes' should be true or false"),
    ("text: hi\nkey: 12\n", "s.yaml:2:6: '12' is not a single key on a phone keypad (use one of "
     "0-9, * or #)"),
    ("text: hi\nkey: a\n", "s.yaml:2:6: 'a' is not a single key on a phone keypad (use one of "
     "0-9, * or #)"),
    ("text: hi\nphone: '+0123456789'\n", "s.yaml:2:8: '+0123456789' is not a phone number in "
     "international form (write it as \"+447700900123\", in quotes)"),
    ("text: hi\nphone: '+123456'\n", "s.yaml:2:8: '+123456' is not a phone number in "
     "international form (write it as \"+447700900123\", in quotes)"),
    ("text: hi\nphone: '+1234567890123456'\n", "s.yaml:2:8: '+1234567890123456' is not a phone "
     "number in international form (write it as \"+447700900123\", in quotes)"),
    ("text: hi\nurl: www.example.org/a.mp3\n", "s.yaml:2:6: 'www.example.org/a.mp3' is not a "
     "web address (start it with https://)"),
    ("text: hi\ntarget: 2go\n", "s.yaml:2:9: '2go' is not a usable name (use letters, digits, "
     "'-' and '_', starting with a letter)"),
    ("text: hi\ntarget: " + "a" * 65 + "\n", "s.yaml:2:9: '" + "a" * 65 + "' is not a usable "
     "name (use letters, digits, '-' and '_', starting with a letter)"),
])
def test_read_refuses_with_file_line_and_column(text, expected):
    with pytest.raises(FlowError) as caught:
        sample(text)
    assert str(caught.value) == expected


@pytest.mark.parametrize("key", list("0123456789*#"))
def test_every_keypad_key_is_a_digit(key):
    assert sample(f"text: hi\nkey: '{key}'\n")["key"] == key


@pytest.mark.parametrize("number", ["+4477009", "+447700900123", "+15005550006",
                                    "+441632960001", "+123456789012345"])
def test_international_numbers(number):
    assert sample(f"text: hi\nphone: '{number}'\n")["phone"] == number


# -- schema of one key ----------------------------------------------------------------------

def test_json_schema_of_each_key_kind():
    declared = specs(Sample)
    assert json_schema(declared["text"]) == {"type": "string", "minLength": 1,
                                             "maxLength": 4096, "description": "Some text"}
    assert json_schema(declared["count"]) == {"type": "integer", "description": "A count",
                                              "minimum": 1, "maximum": 9, "default": 3}
    assert json_schema(declared["flag"]) == {"type": "boolean", "description": "A flag",
                                             "default": False}
    assert json_schema(declared["key"])["default"] == "9"
    assert json_schema(declared["phone"])["pattern"] == r"^\+[1-9][0-9]{6,14}$"
    assert "default" not in json_schema(declared["phone"])


def test_required_keys_have_no_default_in_the_schema():
    spec = specs(Sample)["text"]
    assert spec.required and "default" not in json_schema(spec)
