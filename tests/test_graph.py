"""Flow diagrams, drawn from the same edges the validator proves."""

from __future__ import annotations

import re

import pytest

from callflow.language.graph import draw
from callflow.language.loader import load_flowset
from tests.conftest import FLOWS
from tests.flowfiles import BASE, edit, write_folder


@pytest.fixture(scope="module")
def respect():
    return load_flowset(FLOWS).flows["respect-phoneline"]


NODE = re.compile(r'^  (\w+)(\[\[|\{\{|\{|\(\[|\[/|\(\(|\[)"([^"]+): (\w+)"'
                  r"(\]\]|\}\}|\}|\]\)|/\]|\)\)|\])$")
EDGE = re.compile(r'^  (\w+) -->\|"([^"]+)"\| (\w+)$')


def mermaid(text: str) -> tuple[dict[str, tuple[str, str]], set[tuple[str, str, str]], str]:
    """(node id -> (step, kind), edges as (step, label, step), the start step) of a diagram."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    nodes = {m[1]: (m[3], m[4]) for m in map(NODE.match, lines) if m}
    assert len(nodes) == sum(1 for line in lines if NODE.match(line)), "a node id is used twice"
    edges = {(nodes[m[1]][0], m[2], nodes[m[3]][0]) for m in map(EDGE.match, lines) if m}
    [start] = [line.split("--> ")[1] for line in lines if line.startswith("  start((")]
    return nodes, edges, nodes[start][0]


def flow_edges(flow) -> set[tuple[str, str, str]]:
    return {(name, label, target) for name, step in flow.steps.items()
            for label, target in step.edges().items()}


def test_mermaid_has_every_step_and_edge(respect):
    text = draw(respect, "mermaid")
    nodes, edges, start = mermaid(text)
    assert sorted(nodes.values()) == sorted((n, s.kind) for n, s in respect.steps.items())
    assert edges == flow_edges(respect)
    assert start == "welcome"
    assert '  start(("Respect Phoneline")) --> ' in text
    shapes = {kind: line for line in text.splitlines() for kind in ("notice", "menu", "connect")
              if line.endswith(f': {kind}"' + {"notice": "]]", "menu": "}",
                                                "connect": "])"}[kind])}
    assert set(shapes) == {"notice", "menu", "connect"}


def test_dot_has_every_step_and_edge(respect):
    text = draw(respect, "dot")
    assert text.startswith('digraph "respect-phoneline" {\n')
    assert text.endswith("}\n")
    assert '  "__start" -> "welcome";' in text
    assert '  "connect" [shape=doubleoctagon, label="connect\\n(connect)"];' in text
    assert '  "main-menu" -> "website" [label="option \'2\'"];' in text
    edges = sum(len(step.edges()) for step in respect.steps.values())
    assert text.count("[label=") == edges


def test_quotes_in_a_name_do_not_break_a_diagram(tmp_path):
    text = edit("helpline: Test Line", 'helpline: The "Test" Line')
    flow = load_flowset(write_folder(tmp_path, {"test.yaml": text})).flows["test"]
    assert '"The \'Test\' Line"' in draw(flow, "mermaid")
    assert 'label="The \'Test\' Line"' in draw(flow, "dot")


def test_steps_named_alike_stay_apart_in_mermaid(tmp_path):
    text = edit("    on_no_answer: busy", "    on_no_answer: all-busy",
                BASE + "  all-busy:\n    kind: goto\n    next: all_busy\n"
                       "  all_busy:\n    kind: message\n    text: Goodbye.\n")
    flow = load_flowset(write_folder(tmp_path, {"test.yaml": text})).flows["test"]
    nodes, edges, _ = mermaid(draw(flow, "mermaid"))
    assert sorted(name for name, _ in nodes.values()) == sorted(flow.steps)
    assert edges == flow_edges(flow)
