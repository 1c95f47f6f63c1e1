"""Typed fields for the flow language: conversion with file:line:col errors, and JSON Schema.

A step kind, the flow header and a team all declare their keys once, as dataclass fields made
with :func:`option`. The same declaration converts the YAML, refuses what is wrong in words an
admin understands, and generates the JSON Schema editors use.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any

from callflow.language.policy import NO_IDENTIFICATION_OR_RECORDING
from callflow.language.source import Mapping, Sequence
from callflow.platform.errors import FlowError
from callflow.platform.limits import MAX_TEXT_CHARS

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
STEP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
KEYPAD = "0123456789*#"

# Words that would ask for recording, voicemail, transcription, media streams or caller lookup.
# None may appear in a key or a step kind anywhere in a flow: the policy forbids them all.
FORBIDDEN_PREFIXES = ("record", "voicemail", "transcri", "stream", "lookup", "cnam", "callerid",
                      "callername", "siprec")
FORBIDDEN_WORDS = {"amd"}
FORBIDDEN_PAIRS = {("caller", "id"), ("caller", "name"), ("machine", "detection"),
                   ("media", "stream"), ("answering", "machine"), ("voice", "mail")}


def forbidden(word: str) -> bool:
    """Whether a key or kind asks for something the policy forbids (any spelling case)."""
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(word)).lower()
    tokens = [t for t in re.split(r"[^a-z0-9]+", snake) if t]
    if any(t.startswith(FORBIDDEN_PREFIXES) or t in FORBIDDEN_WORDS for t in tokens):
        return True
    return any(pair in FORBIDDEN_PAIRS for pair in zip(tokens, tokens[1:], strict=False))


def policy_refusal(where, what: str) -> FlowError:
    return FlowError(
        where,
        f"{what} is not allowed: the policy says \"{NO_IDENTIFICATION_OR_RECORDING}\"",
        "remove it; callers are never recorded, sent to voicemail or looked up",
    )


def did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1)
    return f"did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Spec:
    """What one key holds: its type, whether it is required, and its documentation."""

    kind: str
    doc: str
    required: bool
    default: Any = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()


_MISSING = object()


def option(kind: str, doc: str, default: Any = _MISSING, *, minimum=None, maximum=None,
           choices: tuple[str, ...] = ()):
    """Declare a flow-language key as a dataclass field."""
    required = default is _MISSING
    spec = Spec(kind, doc, required, None if required else default, minimum, maximum, choices)
    if required:
        return dataclasses.field(metadata={"spec": spec})
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"spec": spec})
    return dataclasses.field(default=default, metadata={"spec": spec})


def specs(cls) -> dict[str, Spec]:
    """The declared keys of a dataclass, in declaration order."""
    return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}


def _text(value, where, spec):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise FlowError(where, "this should be some text", "write it in quotes if in doubt")
    value = value.strip()
    if len(value) > MAX_TEXT_CHARS:
        raise FlowError(where, f"this text is {len(value):,} characters; at most "
                        f"{MAX_TEXT_CHARS:,} are allowed", f"Twilio's <Say> takes at most "
                        f"{MAX_TEXT_CHARS:,} characters: shorten it, or split it over several "
                        "steps")
    return value


def _name(value, where, spec):
    value = _text(value, where, spec)
    if not STEP_NAME.match(value):
        raise FlowError(where, f"'{value}' is not a usable name",
                        "use letters, digits, '-' and '_', starting with a letter")
    return value


def read_name(value, where) -> str:
    """A step or team name: it appears in webhook URLs, so it is kept plain."""
    return _name(value, where, None)


def _integer(value, where, spec):
    if isinstance(value, bool) or not isinstance(value, int):
        raise FlowError(where, f"'{value}' should be a whole number")
    if spec.minimum is not None and value < spec.minimum:
        raise FlowError(where, f"{value} is too small", f"use at least {spec.minimum}")
    if spec.maximum is not None and value > spec.maximum:
        raise FlowError(where, f"{value} is too large", f"use at most {spec.maximum}")
    return value


def _boolean(value, where, spec):
    if not isinstance(value, bool):
        raise FlowError(where, f"'{value}' should be true or false")
    return value


def _choice(value, where, spec):
    value = _text(value, where, spec)
    if value not in spec.choices:
        hint = did_you_mean(value, spec.choices) or f"use one of: {', '.join(spec.choices)}"
        raise FlowError(where, f"'{value}' is not one of the choices", hint)
    return value


def _url(value, where, spec):
    value = _text(value, where, spec)
    if not value.startswith(("https://", "http://")):
        raise FlowError(where, f"'{value}' is not a web address", "start it with https://")
    return value


def _digit(value, where, spec):
    value = _text(value, where, spec)
    if len(value) != 1 or value not in KEYPAD:
        raise FlowError(where, f"'{value}' is not a single key on a phone keypad",
                        "use one of 0-9, * or #")
    return value


def _number(value, where, spec):
    if not isinstance(value, str) or not E164.match(value):
        raise FlowError(where, f"'{value}' is not a phone number in international form",
                        "write it as \"+447700900123\", in quotes")
    return value


def _numbers(value, where, spec):
    if not isinstance(value, Sequence) or not value:
        raise FlowError(where, "this should be a list of phone numbers",
                        "write e.g. [\"+441632960001\"]")
    return [_number(v, w, spec) for v, w in zip(value, value.item_where, strict=True)]


def _options(value, where, spec):
    if not isinstance(value, Mapping) or not value:
        raise FlowError(where, "a menu needs at least one option",
                        "write keypad digits and the step each goes to, e.g. 1: connect")
    result: dict[str, str] = {}
    first: dict[str, Any] = {}
    for key, target in value.items():
        digit = _digit(str(key), value.key_where[key], spec)
        if digit in result:  # 1 and "1" are different YAML keys but the same key on a phone
            raise FlowError(value.key_where[key], f"option '{digit}' is written twice here",
                            f"the first is at line {value.key_where[first[digit]].line}; "
                            "keep one")
        first[digit] = key
        result[digit] = _name(target, value.at(key), spec)
    return result


def _texts(value, where, spec):
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise FlowError(where, "this should be a list of texts", "write one '- text' a line")
    wheres = getattr(value, "item_where", [where] * len(value))
    return [_text(item, item_where, spec) for item, item_where in zip(value, wheres,
                                                                       strict=True)]


_CONVERTERS = {
    "text": _text,
    "texts": _texts,
    "step": _name,
    "team": _name,
    "int": _integer,
    "bool": _boolean,
    "url": _url,
    "choice": _choice,
    "digit": _digit,
    "number": _number,
    "numbers": _numbers,
    "options": _options,
}


def read(cls, mapping: Mapping, what: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Convert ``mapping`` to keyword arguments for ``cls``, refusing unknown keys by name."""
    declared = specs(cls)
    values: dict[str, Any] = {}
    for key in mapping:
        if key in skip:
            continue
        if not isinstance(key, str) or key not in declared:
            if isinstance(key, str) and forbidden(key):
                raise policy_refusal(mapping.key_where[key], f"'{key}' in {what}")
            hint = did_you_mean(key, declared) or f"{what} takes: {', '.join(declared)}"
            raise FlowError(mapping.key_where[key], f"{what} has no setting '{key}'", hint)
    for key, spec in declared.items():
        if key in mapping:
            values[key] = _CONVERTERS[spec.kind](mapping[key], mapping.at(key), spec)
        elif spec.required:
            raise FlowError(mapping.where, f"{what} is missing '{key}'", spec.doc)
    return values


def json_schema(spec: Spec) -> dict[str, Any]:
    """The JSON Schema for one declared key."""
    digit = {"type": ["string", "integer"], "pattern": r"^[0-9*#]$"}
    shapes: dict[str, dict[str, Any]] = {
        "text": {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS},
        "texts": {"type": "array", "items": {"type": "string", "minLength": 1,
                                             "maxLength": MAX_TEXT_CHARS}},
        "step": {"type": "string", "pattern": STEP_NAME.pattern},
        "team": {"type": "string", "pattern": STEP_NAME.pattern},
        "int": {"type": "integer"},
        "bool": {"type": "boolean"},
        "url": {"type": "string", "pattern": "^https?://", "maxLength": MAX_TEXT_CHARS},
        "choice": {"enum": list(spec.choices)},
        "digit": digit,
        "number": {"type": "string", "pattern": E164.pattern},
        "numbers": {"type": "array", "minItems": 1,
                    "items": {"type": "string", "pattern": E164.pattern}},
        "options": {"type": "object", "minProperties": 1,
                    "propertyNames": {"pattern": r"^[0-9*#]$"},
                    "additionalProperties": {"type": "string", "pattern": STEP_NAME.pattern}},
    }
    schema = dict(shapes[spec.kind], description=spec.doc)
    if spec.minimum is not None:
        schema["minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    if not spec.required and spec.default not in (None, [], {}):
        schema["default"] = spec.default
    return schema
