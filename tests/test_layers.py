"""The folders of callflow/ are its layers, and imports run one way: down.

A module may import from its own package and from the packages below it, never from one above:
``platform`` at the bottom, then the flow ``language``, the ``records`` the service keeps, the
``staff`` accounts, the ``runtime`` that ties a process together, the ``bridge``, ``monitoring``,
the ``call`` engine, the ``jobs`` and the ``operations`` tools, and the ``cli`` on top. Imports
made only for type hints (under ``TYPE_CHECKING``) are not counted: they never run, so they can
tie no knot. Nothing in callflow/ imports Flask, and no import runs in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "callflow"
LAYERS = ["platform", "language", "records", "staff", "runtime", "bridge", "monitoring", "call",
          "jobs", "operations", "cli"]
# Modules that are not a layer's: the package's face and its data.
OUTSIDE = {"callflow", "callflow.data"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import that runs: at the top or inside a function, but not
    under ``if TYPE_CHECKING``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, typing_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            guarded = typing_only or (isinstance(child, ast.If)
                                      and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.ImportFrom) and child.module and not guarded:
                found.extend((child.lineno, f"{child.module}.{alias.name}")
                             for alias in child.names)
                found.append((child.lineno, child.module))
            elif isinstance(child, ast.Import) and not guarded:
                found.extend((child.lineno, alias.name) for alias in child.names)
            visit(child, guarded)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def test_every_module_belongs_to_a_layer():
    assert sorted(m for m in modules() if layer(m) is None and m not in OUTSIDE) == []


def test_imports_run_down_the_layers():
    known = modules()
    upward = []
    for name, path in known.items():
        here = layer(name)
        for line, target in imports(path):
            if target in known and target != name and here is not None:
                there = layer(target)
                if there is not None and there > here:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert upward == []


def test_nothing_in_callflow_imports_flask():
    flask = [f"{path.relative_to(ROOT)}:{line}" for name, path in modules().items()
             for line, target in imports(path) if target.split(".")[0] in ("flask", "werkzeug")]
    assert flask == []


def test_no_import_runs_in_a_circle():
    known = modules()
    graph = {name: {t for _, t in imports(path) if t in known and t != name
                    and not name.startswith(t + ".")}  # a module's own package face
             for name, path in known.items()}
    state: dict[str, int] = {}
    circles = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(" -> ".join(trail[trail.index(target):] + [target]))
            elif target not in state:
                walk(target, [*trail, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert circles == []
