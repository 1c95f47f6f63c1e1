"""The confidentiality policy the service enforces, and the words callers hear from it."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

# The sentence every refusal of recording or caller identification quotes.
NO_IDENTIFICATION_OR_RECORDING = (
    "We do not use technology to identify callers or call recording equipment."
)

DEFAULT_NOTICE = (
    "Thank you for calling {helpline}. This call is confidential. "
    "We do not use technology to identify callers, and we do not record calls. "
    "Calls may be monitored occasionally for quality and training purposes."
)

POLICY_OFFER = "To hear our full confidentiality policy, press {digit} now."
OPT_OUT_OFFER = "If you would rather this call is not monitored, press {digit}."
OPTED_OUT = "Thank you. This call will not be monitored."


@cache
def shipped_policy_text() -> str:
    """The policy text shipped with the package (the public copy)."""
    return resources.files("callflow.data").joinpath("confidentiality-policy.txt").read_text(
        encoding="utf-8"
    )


def policy_text(path: str | None = None) -> str:
    """The policy from an admin-controlled file, or the shipped copy."""
    if path:
        return Path(path).read_text(encoding="utf-8")
    return shipped_policy_text()


SUPERSCRIPTS = "¹²³⁴⁵⁶⁷⁸⁹⁰"
MARKER = re.compile(f"[{SUPERSCRIPTS}]+")
FOOTNOTE = re.compile(f"^([{SUPERSCRIPTS}]+)\\s*")
# A note that only sends the reader elsewhere on the page means nothing on the phone.
POINTS_ELSEWHERE = re.compile(r"\b(?:read|see)\s+(?:below|above|overleaf)\b", re.IGNORECASE)
LINK = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
BULLET = re.compile(r"^\s*[-•*]\s+", re.MULTILINE)
SENTENCE_END = re.compile(r"[.;:!?](?=\s|$)")


def spoken_paragraphs(text: str, limit: int = 3000) -> list[str]:
    """The policy as a caller hears it, in pieces short enough for one ``<Say>`` each.

    What only a reader can use is left out: footnote markers, bullet marks, links and the bare
    reference numbers beside them. A footnote is read after the sentence that carries its
    marker, unless it only points elsewhere on the page ("please read below"). ``/policy``
    keeps the full text.
    """
    notes: dict[str, str] = {}
    body: list[str] = []
    for block in text.replace("\r", "").split("\n\n"):
        line = " ".join(_list_as_speech(block).split())
        if not line or line.isdigit() or LINK.fullmatch(line):
            continue  # a reference number, or the link it stands for
        if note := FOOTNOTE.match(line):
            notes[note[1]] = line[note.end():]
            continue
        body.append(line)
    pieces: list[str] = []
    for line in body:
        line = " ".join(LINK.sub("", _read_notes(line, notes)).split())
        while len(line) > limit:
            cut = line.rfind(". ", 0, limit) + 1 or limit
            pieces.append(line[:cut].strip())
            line = line[cut:].strip()
        if line:
            pieces.append(line)
    return pieces


def _list_as_speech(block: str) -> str:
    """A bulleted list read as one sentence: the marks dropped, each item ended by a pause."""
    lines = block.split("\n")
    items = [n for n, line in enumerate(lines) if BULLET.match(line)]
    for position, n in enumerate(items):
        item = BULLET.sub("", lines[n]).rstrip()
        last = position == len(items) - 1
        if item and item[-1] not in ".;:,!?":
            item += "." if last else ";"
        lines[n] = item
    return "\n".join(lines)


def _read_notes(line: str, notes: dict[str, str]) -> str:
    """``line`` without its footnote markers, each note worth hearing said after the
    sentence that carries its marker."""
    while marker := MARKER.search(line):
        note = notes.get(marker[0], "")
        line = line[:marker.start()] + line[marker.end():]
        if not note or POINTS_ELSEWHERE.search(note) or LINK.search(note):
            continue
        end = SENTENCE_END.search(line, marker.start())
        at = end.end() if end else len(line)
        said = note if note.endswith((".", "!", "?")) else note + "."
        line = f"{line[:at]} {said}{line[at:]}"
    return line
