"""Flow diagrams as Mermaid or Graphviz dot text, or SVG, from the edges the validator proves."""

from __future__ import annotations

from callflow.language import svg
from callflow.language.flow import Flow

FORMATS = ("mermaid", "dot", "svg")
SHAPES = {"notice": ("[[", "]]"), "menu": ("{", "}"), "hours": ("{{", "}}"),
          "connect": ("([", "])"), "message": ("[/", "/]"), "hangup": ("((", "))")}


def _label(text: str) -> str:
    return text.replace('"', "'")


def draw(flow: Flow, fmt: str = "mermaid") -> str:
    if fmt == "dot":
        return _dot(flow)
    if fmt == "svg":
        return svg.render(flow)
    # Mermaid ids are positional: step names like 'a-b' and 'a_b' must stay two nodes.
    ids = {name: f"s{index}" for index, name in enumerate(flow.steps)}
    lines = ["flowchart TD", f'  start(("{_label(flow.helpline)}")) --> {ids[flow.start]}']
    for name, step in flow.steps.items():
        left, right = SHAPES.get(step.kind, ("[", "]"))
        lines.append(f'  {ids[name]}{left}"{_label(name)}: {step.kind}"{right}')
    for name, step in flow.steps.items():
        for label, target in step.edges().items():
            lines.append(f'  {ids[name]} -->|"{_label(label)}"| {ids[target]}')
    return "\n".join(lines) + "\n"


def _dot(flow: Flow) -> str:
    lines = [f'digraph "{flow.id}" {{', "  rankdir=TB;", '  node [fontname="sans-serif"];',
             f'  "__start" [shape=circle, label="{_label(flow.helpline)}"];',
             f'  "__start" -> "{flow.start}";']
    for name, step in flow.steps.items():
        shape = {"menu": "diamond", "hours": "hexagon", "notice": "box3d",
                 "connect": "doubleoctagon"}.get(step.kind, "box")
        lines.append(f'  "{name}" [shape={shape}, label="{name}\\n({step.kind})"];')
        for label, target in step.edges().items():
            lines.append(f'  "{name}" -> "{target}" [label="{_label(label)}"];')
    return "\n".join(lines) + "\n}\n"

