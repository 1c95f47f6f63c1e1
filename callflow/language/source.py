"""Reading YAML so that every value remembers where it was written, and no file can make reading
it costly.

Admins edit flows by hand, so an error must point at the file, line and column; PyYAML's event marks
carry that, and this module keeps them beside the plain Python values. The file may also be careless
or hostile, so the document is built here from the parser's events, in one pass and without
recursion, holding it to ``callflow.platform.limits``: its size, how deep it nests and how many
values it holds. What YAML offers beyond plain values is refused where it is written:

- anchors, aliases and merges (``&name``, ``*name``, ``<<``): an alias repeats a value, so a few
  lines of them expand to billions ("billion laughs"), and an error inside a repeated value
  would point at the anchor, not at the step a caller reaches. A flow writes each value where
  it applies.
- tags (``!!python/object``, ``!!set``, ``!custom``) other than YAML's own for plain values: a
  tag would give a value a meaning the language does not define, or silently none at all.
- characters XML cannot carry (``"\\0"`` in a double-quoted text): Twilio could not read the
  TwiML the text is said in.
"""

from __future__ import annotations

import re
from typing import Any, BinaryIO

import yaml
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import ScalarNode
from yaml.reader import ReaderError

from callflow.platform.errors import FlowError, Where
from callflow.platform.limits import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES


class Mapping(dict):
    """A YAML mapping that knows where it, each key and each value were written."""

    where: Where
    key_where: dict[Any, Where]
    value_where: dict[Any, Where]

    def at(self, key: Any) -> Where:
        """Where the value of ``key`` was written, or the mapping itself if it is absent."""
        return self.value_where.get(key, self.where)


class Sequence(list):
    """A YAML sequence that knows where it and each item were written."""

    where: Where
    item_where: list[Where]


# libyaml's parser (when PyYAML was built with it) is several times faster on big flows, with
# the same events and marks; the pure-Python one is the fallback, and words its errors better.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

CORE = "tag:yaml.org,2002:"
STR = CORE + "str"
# YAML's own tags for plain values, and what each reads as (for an error that says so).
SCALARS = {CORE + "int": "a whole number", CORE + "float": "a number",
           CORE + "bool": "true or false", CORE + "null": "nothing",
           CORE + "timestamp": "a date"}
MAPPING, SEQUENCE, MERGE = CORE + "map", CORE + "seq", CORE + "merge"
# XML 1.0 cannot carry these. The YAML reader refuses them raw; only a double-quoted escape
# ("\0", "\ud800") can write them.
UNSPEAKABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
NO_REPEATS = "write the value out in each place it is used"


def _where(path: str, mark) -> Where:
    return Where(path, mark.line + 1, mark.column + 1)


def _shown(value: str, limit: int = 40) -> str:
    """A value quoted for an error message, cut short: a hostile value can be a megabyte."""
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _tag(tag: str) -> str:
    return "!!" + tag[len(CORE):] if tag.startswith(CORE) else tag


def _scalar(loader, event: ScalarEvent, where: Where) -> Any:
    tag = event.tag
    if tag is None or tag == "!":
        tag = loader.resolve(ScalarNode, event.value, event.implicit)
    if tag == STR:
        bad = UNSPEAKABLE.search(event.value) if event.style == '"' else None
        if bad:
            raise FlowError(where, f"this text holds the character U+{ord(bad.group()):04X}, "
                            "which cannot be said or sent to Twilio", "remove its escape")
        return event.value
    if tag == MERGE:
        raise FlowError(where, "'<<' merges one mapping into another, which flows do not do",
                        f"{NO_REPEATS} (quote it for the text '<<')")
    what = SCALARS.get(tag)
    if what is None:
        raise FlowError(where, f"the tag '{_tag(tag)}' means nothing in a flow",
                        "remove it: a flow holds text, numbers, true or false, lists and "
                        "mappings")
    try:
        return loader.yaml_constructors[tag](
            loader, ScalarNode(tag, event.value, event.start_mark, event.end_mark))
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError, yaml.YAMLError):
        raise FlowError(where, f"{_shown(event.value)} cannot be read as {what}",
                        "write it in quotes if it is meant as text") from None


def _container(event, where: Where, depth: int) -> Mapping | Sequence:
    is_mapping = type(event) is MappingStartEvent
    if event.tag not in (None, "!", MAPPING if is_mapping else SEQUENCE):
        raise FlowError(where, f"the tag '{_tag(event.tag)}' means nothing in a flow",
                        f"remove it: this is a plain {'mapping' if is_mapping else 'list'}")
    if depth >= MAX_DEPTH:
        raise FlowError(where, f"this nests deeper than {MAX_DEPTH} levels of lists and "
                        "mappings", "a flow needs five at most; check the indentation")
    container: Mapping | Sequence
    if is_mapping:
        container = Mapping()
        container.key_where, container.value_where = {}, {}
    else:
        container = Sequence()
        container.item_where = []
    container.where = where
    return container


def _document(path: str, loader) -> Any:
    """The values of one document, built from its events; open containers are kept on a
    stack, beside the key each open mapping has read and waits to give a value."""
    open_: list[Mapping | Sequence] = []
    keys: list[tuple[Any, Where] | None] = []
    values = 0
    while True:
        event = loader.get_event()
        kind = type(event)
        if kind is MappingEndEvent or kind is SequenceEndEvent:
            done = open_.pop()
            keys.pop()
            if not open_:
                return done
            continue
        where = _where(path, event.start_mark)
        if kind is AliasEvent:
            raise FlowError(where, f"'*{event.anchor}' is a YAML alias, which flows do not use",
                            NO_REPEATS)
        if event.anchor is not None:
            raise FlowError(where, f"'&{event.anchor}' is a YAML anchor, which flows do not use",
                            NO_REPEATS)
        values += 1
        if values > MAX_VALUES:
            raise FlowError(where, f"the file holds more than {MAX_VALUES:,} values",
                            "split it: one helpline per file, the teams in teams.yaml")
        is_container = kind is MappingStartEvent or kind is SequenceStartEvent
        value = (_container(event, where, len(open_)) if is_container
                 else _scalar(loader, event, where))
        if open_:
            _place(open_[-1], keys, value, where, is_container)
        elif not is_container:
            return value
        if is_container:
            open_.append(value)
            keys.append(None)


def _place(parent: Mapping | Sequence, keys: list, value: Any, where: Where,
           is_container: bool) -> None:
    """Put a value into the open container: an item, a mapping's key, or that key's value."""
    if type(parent) is Sequence:
        parent.append(value)
        parent.item_where.append(where)
        return
    pending = keys[-1]
    if pending is not None:
        key, key_where = pending
        parent[key] = value
        parent.key_where[key] = key_where
        parent.value_where[key] = where
        keys[-1] = None
        return
    if is_container:
        raise FlowError(where, "a key must be a plain word or number")
    if value in parent:
        raise FlowError(where, f"'{value}' is written twice here",
                        f"the first is at line {parent.key_where[value].line}; keep one")
    keys[-1] = (value, where)


def _compose(path: str, loader) -> Any:
    loader.get_event()  # the stream's start
    if loader.check_event(StreamEndEvent):
        raise FlowError(Where(path, 1, 1), "the file is empty", "write a flow or remove it")
    loader.get_event()  # the document's start
    root = _document(path, loader)
    loader.get_event()  # the document's end
    if not loader.check_event(StreamEndEvent):
        second = loader.get_event()
        raise FlowError(_where(path, second.start_mark), "a second YAML document starts here",
                        "a flow file is one document: remove the '---' and what follows, or "
                        "move it to a file of its own")
    return root


def load_text(text: str, path: str) -> Any:
    """Parse one YAML document, keeping marks; any mistake becomes a ``FlowError``.

    A file libyaml refuses is read again by the pure-Python parser, whose messages read better,
    up to the mistake: a mistake costs a second parse, a good file never does. A mistake further
    than ``REWORDED_CHARS`` into the file would cost seconds of the reloading process's time,
    so libyaml's own words are given for it.
    """
    try:
        return _load(text, path, LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reword = LOADER is not yaml.SafeLoader and (mark is None
                                                     or mark.index <= REWORDED_CHARS)
        if not reword:
            raise _not_yaml(text, path, exc) from None
    try:
        return _load(text, path, yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise _not_yaml(text, path, exc) from None


# A quarter of a megabyte: the pure-Python parser reads that far again in about a second.
REWORDED_CHARS = 256 * 1024


def _load(text: str, path: str, loader_class: type) -> Any:
    loader = loader_class(text)  # the pure-Python reader checks every character here
    try:
        return _compose(path, loader)
    finally:
        loader.dispose()


def _not_yaml(text: str, path: str, exc: yaml.YAMLError) -> FlowError:
    if isinstance(exc, ReaderError):
        return _unreadable(text, path, exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = _where(path, mark) if mark else Where(path)
        return FlowError(where, f"this is not valid YAML: {exc.problem}", _unclosed(exc))
    return FlowError(Where(path), f"this is not valid YAML: {exc}")


def _unreadable(text: str, path: str, exc: ReaderError) -> FlowError:
    """A character YAML does not allow (a control character, say), at its line and column."""
    at = exc.position
    line_start = text.rfind("\n", 0, at) + 1
    where = Where(path, text.count("\n", 0, at) + 1, at - line_start + 1)
    return FlowError(where, f"the character U+{ord(text[at]):04X} is not allowed in YAML",
                     "remove it; an editor may show it as a box, or as ^@")


# What an unclosed bracket or quote looks like to PyYAML, in the words an admin would use.
UNCLOSED = {"while parsing a flow sequence": "the list '[' opened",
            "while parsing a flow mapping": "the '{' opened",
            "while scanning a quoted scalar": "the quote opened"}


def _unclosed(exc: yaml.MarkedYAMLError) -> str:
    """A hint that points back at the opening bracket or quote, often far above the error."""
    what, mark = UNCLOSED.get(exc.context or ""), exc.context_mark
    if not what or mark is None:
        return ""
    return f"{what} at line {mark.line + 1}, column {mark.column + 1} is not closed"


def decode(raw: bytes, path: str) -> str:
    """The text of a file's bytes; a file too big, or not UTF-8, is refused at the bad byte."""
    if len(raw) > MAX_FILE_BYTES:
        raise FlowError(Where(path), f"the file is more than {MAX_FILE_BYTES:,} bytes, the most "
                        "a flow file may hold", "split it: one helpline per file, the teams in "
                        "teams.yaml")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        column = len(raw[line_start:exc.start].decode("utf-8", errors="replace")) + 1
        where = Where(path, raw.count(b"\n", 0, exc.start) + 1, column)
        raise FlowError(where, f"the byte 0x{raw[exc.start]:02X} is not UTF-8 text",
                        "save the file as UTF-8 (an editor's 'save with encoding')") from None


def read_file(file: BinaryIO) -> bytes:
    """An open file's bytes, reading no more than one byte past what a flow file may hold."""
    return file.read(MAX_FILE_BYTES + 1)
