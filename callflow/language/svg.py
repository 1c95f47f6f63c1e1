"""A flow as an SVG diagram, laid out in pure Python: no Graphviz, no browser script.

The layout is a small layered ("Sugiyama-style") drawing: edges that loop back (a menu that
returns to itself after "hear about our website") are set aside, every step is put on the row
of its longest path from the start, rows are ordered by the barycentre of their neighbours to
cut crossings, and each step is placed under the steps that lead to it. Back edges are drawn
round the right-hand side. A helpline's flow has a dozen steps at most, so the simple passes
here are plenty.

The drawing uses presentation attributes only (no ``style`` attributes, no script), so it can
be inlined in a page served with a strict Content-Security-Policy, and stands alone as a file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from callflow.language.flow import Flow

START = "__start"
FONT = "DejaVu Sans, Liberation Sans, Arial, sans-serif"
NAME_CHAR = 7.6  # average advance of a 13px bold character, for sizing boxes
KIND_CHAR = 6.4  # the same at 11px
LABEL_CHAR = 6.3
NODE_HEIGHT = 46
ROW_GAP = 54
COLUMN_GAP = 28
MARGIN = 16
BACK_ROOM = 44  # room to the right for edges that loop back

# kind -> (fill, stroke, words for the second line)
KINDS = {
    "notice": ("#e3f3e8", "#1d6b3e", "Confidentiality notice"),
    "menu": ("#e9effa", "#34558f", "Keypad menu"),
    "hours": ("#fdf1dc", "#8a5a00", "Opening hours"),
    "connect": ("#f1eafa", "#5e3991", "Puts the caller through"),
    "message": ("#f2f2f0", "#5b5b57", "Message, then hang up"),
    "say": ("#f2f2f0", "#5b5b57", "Says something"),
    "play": ("#f2f2f0", "#5b5b57", "Plays audio"),
    "goto": ("#f2f2f0", "#5b5b57", "Goes to"),
    "hangup": ("#fbe9e7", "#9c2f22", "Ends the call"),
}
DEFAULT_KIND = ("#f2f2f0", "#5b5b57", "")
START_COLOURS = ("#1f2a37", "#1f2a37")
EDGE_COLOUR = "#55606e"
TEXT_COLOUR = "#1f2a37"


def edge_words(label: str) -> str:
    """An edge's label as a reader says it: ``press 1`` rather than ``option '1'``."""
    if label == "next":
        return ""
    if match := re.fullmatch(r"option '(.+)'", label):
        return f"press {match.group(1)}"
    return {"on_no_input": "no key", "on_invalid": "wrong key",
            "on_no_answer": "no answer"}.get(label, label.replace("_", " "))


@dataclass
class Node:
    name: str
    title: str
    subtitle: str
    fill: str
    stroke: str
    notice: bool = False
    start: bool = False
    layer: int = 0
    order: float = 0.0
    x: float = 0.0  # centre
    y: float = 0.0  # top
    width: float = 0.0

    @property
    def left(self) -> float:
        return self.x - self.width / 2

    @property
    def right(self) -> float:
        return self.x + self.width / 2


@dataclass
class Edge:
    source: str
    target: str
    labels: list[str] = field(default_factory=list)
    back: bool = False

    @property
    def text(self) -> str:
        return " / ".join(label for label in self.labels if label)


def _nodes(flow: Flow) -> dict[str, Node]:
    nodes = {START: Node(START, flow.helpline, "incoming call", *START_COLOURS, start=True)}
    for name, step in flow.steps.items():
        fill, stroke, words = KINDS.get(step.kind, DEFAULT_KIND)
        if step.kind == "connect" and getattr(step, "team", None):
            words = f"Rings team {step.team}"
        nodes[name] = Node(name, name, words or step.kind, fill, stroke, notice=step.is_notice)
    for node in nodes.values():
        node.width = max(118.0, len(node.title) * NAME_CHAR + 28, len(node.subtitle) * KIND_CHAR
                         + 24)
    return nodes


def _edges(flow: Flow) -> list[Edge]:
    """Edges between steps, with the labels of parallel edges (same ends) merged."""
    merged: dict[tuple[str, str], Edge] = {(START, flow.start): Edge(START, flow.start)}
    for name, step in flow.steps.items():
        for label, target in step.edges().items():
            if target not in flow.steps:
                continue
            edge = merged.setdefault((name, target), Edge(name, target))
            words = edge_words(label)
            if words not in edge.labels:
                edge.labels.append(words)
    return list(merged.values())


def _mark_back_edges(nodes: dict[str, Node], edges: list[Edge]) -> list[str]:
    """Depth-first from the start: an edge into a step still on the stack loops back.
    Returns the steps in discovery order (unreachable ones last)."""
    out: dict[str, list[Edge]] = {name: [] for name in nodes}
    for edge in edges:
        out[edge.source].append(edge)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    order: list[str] = []

    def visit(root: str) -> None:
        stack = [(root, iter(out[root]))]
        state[root] = 1
        order.append(root)
        while stack:
            name, pending = stack[-1]
            edge = next(pending, None)
            if edge is None:
                state[name] = 2
                stack.pop()
                continue
            if state.get(edge.target) == 1 or edge.target == name:
                edge.back = True
            elif edge.target not in state:
                state[edge.target] = 1
                order.append(edge.target)
                stack.append((edge.target, iter(out[edge.target])))

    for name in nodes:
        if name not in state:
            visit(name)
    return order


def _assign_layers(nodes: dict[str, Node], edges: list[Edge], order: list[str]) -> None:
    """Longest path from the start over forward edges, so each step sits below all its causes."""
    forward = [e for e in edges if not e.back]
    for _ in range(len(nodes)):
        changed = False
        for edge in forward:
            wanted = nodes[edge.source].layer + 1
            if nodes[edge.target].layer < wanted:
                nodes[edge.target].layer = wanted
                changed = True
        if not changed:
            break
    for index, name in enumerate(order):
        nodes[name].order = index


def _rows(nodes: dict[str, Node]) -> list[list[Node]]:
    depth = max(node.layer for node in nodes.values())
    rows: list[list[Node]] = [[] for _ in range(depth + 1)]
    for node in nodes.values():
        rows[node.layer].append(node)
    for row in rows:
        row.sort(key=lambda n: n.order)
    return rows


def _reduce_crossings(rows: list[list[Node]], edges: list[Edge],
                      nodes: dict[str, Node]) -> None:
    """A few barycentre sweeps, down then up, over the forward edges."""
    forward = [e for e in edges if not e.back]
    parents: dict[str, list[str]] = {name: [] for name in nodes}
    children: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in forward:
        parents[edge.target].append(edge.source)
        children[edge.source].append(edge.target)

    def sweep(sequence: list[list[Node]], neighbours: dict[str, list[str]]) -> None:
        for row in sequence:
            for node in row:
                near = [nodes[n].order for n in neighbours[node.name]]
                node.order = sum(near) / len(near) if near else node.order
            row.sort(key=lambda n: n.order)
            for index, node in enumerate(row):
                node.order = index

    for row in rows:
        for index, node in enumerate(row):
            node.order = index
    for _ in range(4):
        sweep(rows[1:], parents)
        sweep(list(reversed(rows[:-1])), children)


def _place(rows: list[list[Node]], edges: list[Edge], nodes: dict[str, Node]) -> float:
    """x (centre) and y (top) of every node; returns the drawing's width."""
    parents: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in edges:
        if not edge.back:
            parents[edge.target].append(edge.source)
    for depth, row in enumerate(rows):
        wanted = []
        cursor = 0.0
        for node in row:
            above = [nodes[p].x for p in parents[node.name] if nodes[p].layer < depth]
            cursor += node.width / 2
            wanted.append(sum(above) / len(above) if above else cursor)
            cursor += node.width / 2 + COLUMN_GAP
        # Keep the order and the gaps; stay as close to where the parents are as possible.
        placed: list[float] = []
        for node, want in zip(row, wanted, strict=True):
            if placed:
                previous = row[len(placed) - 1]
                least = placed[-1] + previous.width / 2 + COLUMN_GAP + node.width / 2
                want = max(want, least)
            placed.append(want)
        shift = sum(w - p for w, p in zip(wanted, placed, strict=True)) / len(row)
        for node, x in zip(row, placed, strict=True):
            node.x = x + shift
            node.y = MARGIN + depth * (NODE_HEIGHT + ROW_GAP)
    left = min(node.left for node in nodes.values())
    for node in nodes.values():
        node.x += MARGIN - left
    right = max(node.right for node in nodes.values())
    return right + MARGIN + (BACK_ROOM if any(e.back for e in edges) else 0)


def layout(flow: Flow) -> tuple[dict[str, Node], list[Edge], float, float]:
    """Nodes placed, edges marked, and the drawing's width and height."""
    nodes = _nodes(flow)
    edges = _edges(flow)
    order = _mark_back_edges(nodes, edges)
    _assign_layers(nodes, edges, order)
    rows = _rows(nodes)
    _reduce_crossings(rows, edges, nodes)
    width = _place(rows, edges, nodes)
    height = MARGIN * 2 + len(rows) * NODE_HEIGHT + (len(rows) - 1) * ROW_GAP
    return nodes, edges, width, height


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _path(edge: Edge, nodes: dict[str, Node], spread: dict[tuple[str, str], float],
          right_edge: float) -> tuple[str, float, float]:
    """The edge's SVG path and where its label goes."""
    source, target = nodes[edge.source], nodes[edge.target]
    if edge.back:
        # Out of the right side, round the right of the drawing, and down into the target's
        # top (its right side may have a neighbour): corners rounded with radius r.
        r = 8.0
        x1, y1 = source.right, source.y + NODE_HEIGHT / 2
        x2, top = target.x + target.width / 4, target.y - 16
        bend = max(x1, right_edge) + BACK_ROOM * 0.6
        d = (f"M{_number(x1)},{_number(y1)} H{_number(bend - r)} "
             f"Q{_number(bend)},{_number(y1)} {_number(bend)},{_number(y1 - r)} "
             f"V{_number(top + r)} Q{_number(bend)},{_number(top)} {_number(bend - r)},"
             f"{_number(top)} H{_number(x2 + r)} Q{_number(x2)},{_number(top)} {_number(x2)},"
             f"{_number(top + r)} V{_number(target.y - 1)}")
        return d, bend, (y1 + top) / 2
    x1 = source.x + spread.get((edge.source, edge.target), 0.0)
    y1 = source.y + NODE_HEIGHT
    x2, y2 = target.x, target.y - 1
    middle = (y1 + y2) / 2
    d = f"M{_number(x1)},{_number(y1)} C{_number(x1)},{_number(middle)} " \
        f"{_number(x2)},{_number(middle)} {_number(x2)},{_number(y2)}"
    # The label sits where the curve crosses the gap between the rows.
    return d, (x1 + x2) / 2, y1 + min(ROW_GAP, y2 - y1) / 2


def _spread(edges: list[Edge], nodes: dict[str, Node]) -> dict[tuple[str, str], float]:
    """Where each forward edge leaves its step: spread along the bottom, in target order."""
    offsets: dict[tuple[str, str], float] = {}
    by_source: dict[str, list[Edge]] = {}
    for edge in edges:
        if not edge.back:
            by_source.setdefault(edge.source, []).append(edge)
    for source, group in by_source.items():
        group.sort(key=lambda e: nodes[e.target].x)
        usable = nodes[source].width * 0.6
        for index, edge in enumerate(group):
            if len(group) > 1:
                offsets[(source, edge.target)] = -usable / 2 + usable * index / (len(group) - 1)
    return offsets


def description(flow: Flow) -> str:
    """The diagram in words, for screen readers and for the SVG's ``<desc>``."""
    parts = [f"Calls to {flow.helpline} start at {flow.start}."]
    for edge in _edges(flow)[1:]:
        how = f" ({edge.text})" if edge.text else ""
        parts.append(f"{edge.source}{how} goes to {edge.target}.")
    return " ".join(parts)


def render(flow: Flow, *, id_prefix: str | None = None) -> str:
    """The flow as a standalone SVG document (without an XML declaration, so it can be inlined
    in HTML as it is). ``id_prefix`` keeps ids unique when several diagrams share a page."""
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", id_prefix or f"flow-{flow.id}")
    nodes, edges, width, height = layout(flow)
    spread = _spread(edges, nodes)
    right_edge = max(node.right for node in nodes.values())
    arrow = f"{prefix}-arrow"
    paths = [(edge, *_path(edge, nodes, spread, right_edge)) for edge in edges]
    labels = [(edge.text, lx, ly, len(edge.text) * LABEL_CHAR + 12)
              for edge, _, lx, ly in paths if edge.text]
    # A wide label may stick out past the steps: widen the view rather than clip it.
    left = min([0.0] + [lx - w / 2 - 4 for _, lx, _, w in labels])
    width = max([width] + [lx + w / 2 + 4 for _, lx, _, w in labels]) - left
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-diagram" '
        f'width="{_number(width)}" height="{_number(height)}" '
        f'viewBox="{_number(left)} 0 {_number(width)} {_number(height)}" role="img" '
        f'aria-labelledby="{prefix}-title {prefix}-desc" font-family={quoteattr(FONT)}>',
        f'<title id="{prefix}-title">Call flow of {escape(flow.helpline)}</title>',
        f'<desc id="{prefix}-desc">{escape(description(flow))}</desc>',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{EDGE_COLOUR}"/></marker></defs>',
        '<g class="edges">',
    ]
    for edge, d, _, _ in paths:
        dash = ' stroke-dasharray="5 4"' if edge.back else ""
        out.append(f'<path class="edge" d="{d}" fill="none" stroke="{EDGE_COLOUR}" '
                   f'stroke-width="1.6"{dash} marker-end="url(#{arrow})"/>')
    out.append("</g>")
    out.append('<g class="nodes">')
    for node in nodes.values():
        out.append(_node(node))
    out.append("</g>")
    out.append('<g class="edge-labels">')
    for text, lx, ly, w in labels:
        out.append(f'<rect x="{_number(lx - w / 2)}" y="{_number(ly - 9)}" width="{_number(w)}" '
                   f'height="18" rx="9" fill="#ffffff" stroke="#c9ced6"/>'
                   f'<text x="{_number(lx)}" y="{_number(ly + 4)}" text-anchor="middle" '
                   f'font-size="11" fill="{TEXT_COLOUR}">{escape(text)}</text>')
    out.append("</g></svg>")
    return "\n".join(out) + "\n"


def _node(node: Node) -> str:
    x, y, w, h = node.left, node.y, node.width, NODE_HEIGHT
    box = (f'x="{_number(x)}" y="{_number(y)}" width="{_number(w)}" height="{h}"')
    if node.start:
        shape = f'<rect {box} rx="{h / 2}" fill="{node.fill}"/>'
        colour, sub_colour = "#ffffff", "#d7dde6"
    else:
        width = "2.5" if node.notice else "1.4"
        shape = f'<rect {box} rx="8" fill="{node.fill}" stroke="{node.stroke}" ' \
                f'stroke-width="{width}"/>'
        if node.notice:  # a notice gets a second border: the step the policy proof needs
            shape += (f'<rect x="{_number(x + 4)}" y="{_number(y + 4)}" '
                      f'width="{_number(w - 8)}" height="{h - 8}" rx="5" fill="none" '
                      f'stroke="{node.stroke}" stroke-width="1"/>')
        colour, sub_colour = TEXT_COLOUR, node.stroke
    kind = "start" if node.start else ("notice" if node.notice else "step")
    return (f'<g class="node node-{kind}">{shape}'
            f'<text x="{_number(node.x)}" y="{_number(y + 20)}" text-anchor="middle" '
            f'font-size="13" font-weight="bold" fill="{colour}">{escape(node.title)}</text>'
            f'<text x="{_number(node.x)}" y="{_number(y + 36)}" text-anchor="middle" '
            f'font-size="11" fill="{sub_colour}">{escape(node.subtitle)}</text></g>')
