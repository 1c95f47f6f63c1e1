"""The confidentiality policy the service enforces, and the words callers hear from it."""

from __future__ import annotations

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


def spoken_paragraphs(text: str, limit: int = 3000) -> list[str]:
    """Split the policy into pieces short enough for one ``<Say>`` each.

    Footnote markers and the reference URL are dropped: they mean nothing read aloud.
    """
    pieces: list[str] = []
    for block in text.replace("\r", "").split("\n\n"):
        line = " ".join(block.split())
        if not line or line.startswith("http") or line.isdigit():
            continue
        line = line.replace("¹", "").replace("²", "").replace("³", "")
        while len(line) > limit:
            cut = line.rfind(". ", 0, limit) + 1 or limit
            pieces.append(line[:cut].strip())
            line = line[cut:].strip()
        pieces.append(line)
    return pieces
