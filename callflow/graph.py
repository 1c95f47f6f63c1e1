"""Flow diagrams as Mermaid or Graphviz dot text, from the same edges the validator proves."""

from __future__ import annotations

from callflow.flow import Flow

FORMATS = ("mermaid", "dot")
SHAPES = {"notice": ("[[", "]]"), "menu": ("{", "}"), "hours": ("{{", "}}"),
          "connect": ("([", "])"), "message": ("[/", "/]"), "hangup": ("((", "))")}


def _label(text: str) -> str:
    return text.replace('"', "'")


def draw(flow: Flow, fmt: str = "mermaid") -> str:
    if fmt == "dot":
        return _dot(flow)
    lines = ["flowchart TD", f'  start(("{_label(flow.helpline)}")) --> {_id(flow.start)}']
    for name, step in flow.steps.items():
        left, right = SHAPES.get(step.kind, ("[", "]"))
        lines.append(f'  {_id(name)}{left}"{_label(name)}: {step.kind}"{right}')
    for name, step in flow.steps.items():
        for label, target in step.edges().items():
            lines.append(f'  {_id(name)} -->|"{_label(label)}"| {_id(target)}')
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


def _id(name: str) -> str:
    return "s_" + name.replace("-", "_")
