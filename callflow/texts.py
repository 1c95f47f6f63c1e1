"""What spoken text may hold between braces, and the one way it is filled in.

An admin writes ``{helpline}`` where the helpline's name is said, and ``{{`` or ``}}`` for a
brace itself. Nothing else between braces means anything: no format spec, conversion,
attribute or index. ``str.format`` would honour them, so ``{helpline:>50000000}`` would make
every call render fifty megabytes and ``{helpline.__class__}`` would reach into the value; here
a text's filled length is its own length plus the values', and the validator holds that to
what Twilio's ``<Say>`` takes.
"""

from __future__ import annotations

import re

# The placeholders spoken text may use, and what each is filled with. A new one is one line
# here, its value where texts are filled in, and (for the length a text may grow to) in the
# validator's ``_placeholders``.
PLACEHOLDERS = {"helpline": "the helpline's name"}

# Doubled braces, a placeholder-like piece (closed or not), or a lone closing brace.
_PIECE = re.compile(r"\{\{|\}\}|\{[^{}]*\}?|\}")
_BRACES = {"{{": "{", "}}": "}"}


def _name(piece: str) -> str | None:
    """The placeholder a piece names, or None if it is no placeholder."""
    name = piece[1:-1]
    return name if piece.endswith("}") and name in PLACEHOLDERS else None


def stray_braces(text: str) -> list[str]:
    """Each brace piece of ``text`` that is neither a placeholder nor a doubled brace, once."""
    stray = (m.group() for m in _PIECE.finditer(text))
    return list(dict.fromkeys(p for p in stray if p not in _BRACES and _name(p) is None))


def fill(text: str, **values: str) -> str:
    """``text`` with each placeholder replaced by its value and doubled braces made single.

    Anything else between braces is left as written (the validator refuses it), so filling in
    costs one pass over the text, whatever the text says."""
    def piece(match: re.Match) -> str:
        found = match.group()
        name = _name(found)
        return _BRACES.get(found) or values.get(name, found)

    return _PIECE.sub(piece, text)


def describe() -> str:
    """The placeholders in words, for the hint of an error."""
    return ", ".join(f"{{{name}}} ({meaning})" for name, meaning in PLACEHOLDERS.items())
