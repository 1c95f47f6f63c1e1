"""Reading YAML so that every value remembers where it was written.

Admins edit flows by hand, so an error must point at the file, line and column. PyYAML's
node marks carry that; this module keeps them beside the plain Python values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from callflow.errors import FlowError, Where


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
# the same nodes and marks; the pure-Python one is the fallback.
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _where(path: str, node: yaml.Node) -> Where:
    return Where(path, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(path: str, loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        result = Mapping()
        result.where, result.key_where, result.value_where = _where(path, node), {}, {}
        own = {id(key_node) for key_node, _ in node.value}
        loader.flatten_mapping(node)
        # Keys merged in with ``<<: *anchor`` come first and may be overridden; only a key
        # written twice in this mapping itself is a mistake.
        merged: set[Any] = set()
        for key_node, value_node in node.value:
            key = _convert(path, loader, key_node)
            if isinstance(key, (Mapping, Sequence)):
                raise FlowError(_where(path, key_node), "a key must be a plain word or number")
            if key in result and key not in merged:
                raise FlowError(
                    _where(path, key_node),
                    f"'{key}' is written twice here",
                    f"the first is at line {result.key_where[key].line}; keep one",
                )
            if id(key_node) in own:
                merged.discard(key)
            else:
                merged.add(key)
            result.key_where[key] = _where(path, key_node)
            result.value_where[key] = _where(path, value_node)
            result[key] = _convert(path, loader, value_node)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = Sequence(_convert(path, loader, item) for item in node.value)
        items.where = _where(path, node)
        items.item_where = [_where(path, item) for item in node.value]
        return items
    return loader.construct_object(node, deep=True)


def load_text(text: str, path: str) -> Any:
    """Parse one YAML document, keeping marks; a syntax error becomes a ``FlowError``.

    A file libyaml refuses is read again by the pure-Python parser, whose messages are the
    ones an admin sees: a mistake costs a second parse, a good file never does."""
    if LOADER is not yaml.SafeLoader:
        try:
            return _load(text, path, LOADER)
        except yaml.MarkedYAMLError:
            pass
    return _load(text, path, yaml.SafeLoader)


def _load(text: str, path: str, loader_class: type) -> Any:
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise FlowError(Where(path, 1, 1), "the file is empty", "write a flow or remove it")
        return _convert(path, loader, node)
    except yaml.MarkedYAMLError as exc:
        if loader_class is not yaml.SafeLoader:
            raise
        mark = exc.problem_mark or exc.context_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path)
        raise FlowError(where, f"this is not valid YAML: {exc.problem}", _unclosed(exc)) from None
    finally:
        loader.dispose()


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


def load_file(path: Path) -> Any:
    return load_text(path.read_text(encoding="utf-8"), str(path))
