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


def _where(path: str, node: yaml.Node) -> Where:
    return Where(path, node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(path: str, loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.MappingNode):
        result = Mapping()
        result.where, result.key_where, result.value_where = _where(path, node), {}, {}
        loader.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = _convert(path, loader, key_node)
            if isinstance(key, (Mapping, Sequence)):
                raise FlowError(_where(path, key_node), "a key must be a plain word or number")
            if key in result:
                raise FlowError(
                    _where(path, key_node),
                    f"'{key}' is written twice here",
                    f"the first is at line {result.key_where[key].line}; keep one",
                )
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
    """Parse one YAML document, keeping marks; a syntax error becomes a ``FlowError``."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise FlowError(Where(path, 1, 1), "the file is empty", "write a flow or remove it")
        return _convert(path, loader, node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Where(path, mark.line + 1, mark.column + 1) if mark else Where(path)
        raise FlowError(where, f"this is not valid YAML: {exc.problem}") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    return load_text(path.read_text(encoding="utf-8"), str(path))
