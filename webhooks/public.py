"""The public confidentiality policy page: no sign-in, readable on a phone.

The policy says its text is public ("copies of it will be available to the general public"),
so ``/policy`` serves it from the file the admins control, with the helplines' numbers and
opening hours taken from the live flows, so the page can never disagree with what callers meet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from flask import Blueprint, Response, current_app, render_template, request

from callflow.language.flow import Flow, FlowSet
from callflow.language.policy import policy_text

bp = Blueprint("public", __name__)
SUPERSCRIPTS = str.maketrans("123456789", "¹²³⁴⁵⁶⁷⁸⁹")


def display_number(number: str) -> str:
    """A helpline number as people write it: ``+441632960001`` as ``01632 960001``."""
    if not number.startswith("+44") or len(number) != 13:
        return number
    national = "0" + number[3:]
    if national.startswith("02"):
        return f"{national[:3]} {national[3:7]} {national[7:]}"
    if national.startswith(("080", "03")):
        return f"{national[:4]} {national[4:7]} {national[7:]}"
    return f"{national[:5]} {national[5:]}"


def helplines(flowset: FlowSet, now: datetime) -> list[dict]:
    """Each helpline from the live flows, in name order; ``line`` tells the two apart in CSS."""
    ordered = sorted(flowset.flows.values(), key=lambda f: f.helpline)
    return [helpline(flow, index, now) for index, flow in enumerate(ordered)]


def helpline(flow: Flow, index: int, now: datetime) -> dict:
    return {"id": flow.id, "name": flow.helpline, "line": index % 4,
            "numbers": [(n, display_number(n)) for n in flow.numbers],
            "open": flow.hours.is_open(now), "hours": hours_table(flow),
            "timezone": str(flow.hours.zone),
            "closures": sorted(d for d in flow.hours.closures if d >= now.date())[:6]}


def hours_table(flow: Flow) -> list[tuple[str, str]]:
    """("Monday", "09:00-17:00") pairs; "Closed" for a day without hours."""
    pairs = []
    for line in flow.hours.describe():
        day, _, spans = line.partition(" ")
        pairs.append((day, "Closed" if spans == "closed" else spans.replace("-", "–")))
    return pairs


@dataclass
class Block:
    kind: str  # title, heading, para, list, footnote, link
    text: str = ""
    items: list[str] = field(default_factory=list)


def policy_blocks(text: str) -> list[Block]:
    """The plain-text policy as headings, paragraphs, lists and footnotes."""
    raw = [b.strip() for b in text.replace("\r", "").split("\n\n")]
    raw = [b for b in raw if b]
    blocks: list[Block] = []
    pending_mark = ""
    for index, block in enumerate(raw):
        lines = [line.strip() for line in block.split("\n") if line.strip()]
        joined = " ".join(lines)
        if index == 0:
            blocks.append(Block("title", joined))
        elif joined.isdigit() and len(joined) <= 2:
            pending_mark = joined.translate(SUPERSCRIPTS)  # a footnote number on its own line
        elif joined.startswith(("http://", "https://")):
            blocks.append(Block("link", joined, [pending_mark]))
            pending_mark = ""
        elif all(line.startswith(("- ", "• ")) for line in lines):
            blocks.append(Block("list", items=[line[2:].strip() for line in lines]))
        elif joined[:1] in "¹²³⁴⁵⁶⁷⁸⁹":
            blocks.append(Block("footnote", joined))
        elif len(joined) < 70 and joined[-1:] not in ".;:,!?":
            blocks.append(Block("heading", joined))
        else:
            blocks.append(Block("para", joined))
    return blocks


@bp.get("/policy")
def policy():
    ext = current_app.extensions["callflow"]
    text = policy_text(ext["settings"].policy_file)
    if request.accept_mimetypes.best_match(["text/html", "text/plain"]) == "text/plain":
        return Response(text, mimetype="text/plain; charset=utf-8")
    now = ext["runtime"].clock()
    return render_template("policy.html", blocks=policy_blocks(text),
                           helplines=helplines(ext["registry"].current, now))
