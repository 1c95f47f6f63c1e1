"""What spoken text may hold between braces, and the one way it is filled in.

An admin writes ``{helpline}`` where the helpline's name is said, ``{next_open}`` (in what a
closed line says before it hangs up) where it says when the line opens next, and ``{{`` or
``}}`` for a brace itself. Nothing else between braces means anything: no format spec, conversion,
attribute or index. ``str.format`` would honour them, so ``{helpline:>50000000}`` would make
every call render fifty megabytes and ``{helpline.__class__}`` would reach into the value; here
a text's filled length is its own length plus the values', and the validator holds that to
what Twilio's ``<Say>`` takes.
"""

from __future__ import annotations

import re

# The placeholders spoken text may use, and what each is filled with. A new one is one line
# here, its value where texts are filled in, and its longest value in ``LONGEST`` when the
# flow does not fix it (for the length a text may grow to).
PLACEHOLDERS = {
    "helpline": "the helpline's name",
    "next_open": "when the line opens next, e.g. 'on Monday 28 December at 9am'",
}
# What every text may say, and what a closed line's words may say besides.
SPOKEN = frozenset({"helpline"})
CLOSING = SPOKEN | {"next_open"}
# The longest each placeholder the flow does not fix can be once filled in.
LONGEST = {"next_open": "on Wednesday 30 September at 12:30pm"}

# Doubled braces, a placeholder-like piece (closed or not), or a lone closing brace.
_PIECE = re.compile(r"\{\{|\}\}|\{[^{}]*\}?|\}")
_BRACES = {"{{": "{", "}}": "}"}


def _name(piece: str, allowed=PLACEHOLDERS) -> str | None:
    """The placeholder a piece names, or None if it is no placeholder (of ``allowed``)."""
    name = piece[1:-1]
    return name if piece.endswith("}") and name in allowed else None


def stray_braces(text: str, allowed=SPOKEN) -> list[str]:
    """Each brace piece of ``text`` that is neither a placeholder ``allowed`` there nor a
    doubled brace, once."""
    stray = (m.group() for m in _PIECE.finditer(text))
    return list(dict.fromkeys(p for p in stray
                              if p not in _BRACES and _name(p, allowed) is None))


def fill(text: str, **values: str) -> str:
    """``text`` with each placeholder replaced by its value and doubled braces made single.

    Anything else between braces is left as written (the validator refuses it), so filling in
    costs one pass over the text, whatever the text says."""
    def piece(match: re.Match) -> str:
        found = match.group()
        name = _name(found)
        return _BRACES.get(found) or values.get(name, found)

    return _PIECE.sub(piece, text)


def describe(allowed=SPOKEN) -> str:
    """The placeholders ``allowed`` in words, for the hint of an error."""
    return ", ".join(f"{{{name}}} ({PLACEHOLDERS[name]})" for name in PLACEHOLDERS
                     if name in allowed)


def says_next_open(text: str) -> bool:
    """Whether ``text`` says when the line opens next (so what it says depends on the time)."""
    return any(_name(m.group()) == "next_open" for m in _PIECE.finditer(text))
