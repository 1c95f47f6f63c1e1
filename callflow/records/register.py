"""The confidentiality exceptions register: each time information about a call left the helpline.

The policy keeps every call confidential except on a short list of grounds, and asks that the
caller be told of the intention to share "where it is possible and safe to do so". Each
exception is an audit entry like any other, so it sits in the same tamper-evident chain as the
monitoring it may be read beside. The checks here make an entry say enough to be accountable:
which ground, which agency, whether the caller was told and, if not, why not.

What is recorded is the decision, never the caller: no number, no name, no content of the call.
So an entry is made of choices (the grounds, the agency, whether the caller was told and, if not,
whether it was not safe or not possible), and its one piece of free text, an optional detail of
why not, is short and refused when it is shaped like a phone number, a postcode, an email
address, a street address, a person's name or a date of birth. The checks catch what people
write, not every way of writing it: the form says, before anything is typed, never who or where.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable
from enum import Enum, StrEnum

from callflow.records.audit import AuditKind, AuditLog, Entry, refuse_caller_data

log = logging.getLogger(__name__)

# Opaque call ids (a CallSid, or the service's own): letters, digits, ``_`` and ``-``.
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_DETAIL = 140
NEVER_WHO = ("the register records why, never who or where: leave out names, addresses, "
             "postcodes, email addresses and numbers")
# Street words that say "address" whatever their case, and those that do only as a name does.
STREET = r"street|road|lane|avenue|crescent|terrace|gardens|grove|mews|boulevard|st|rd|ave"
NAMED_STREET = (r"Street|Road|Lane|Avenue|Close|Drive|Crescent|Terrace|Gardens|Grove|Square|"
                r"Mews|Way|Court|Place|Green|Park|Hill|Rise|Parade")
# (shape, pattern): what the register's free text must not look like.
IDENTIFYING = [
    ("a postcode", re.compile(r"\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b", re.IGNORECASE)),
    ("a postcode (a ZIP code)", re.compile(r"(?<![\d:.-])\b\d{5}(?:-\d{4})?\b(?![\d:.-])")),
    ("an email address", re.compile(r"[\w.+-]+\s*(?:@|\(at\)|\[at\])\s*[\w-]+(?:\.[\w-]+)+",
                                    re.IGNORECASE)),
    ("an email address", re.compile(r"\b[\w.+-]+\s+at\s+[\w-]+(?:\s+dot\s+[\w-]+)+\b",
                                    re.IGNORECASE)),
    ("an address", re.compile(rf"\b\d{{1,4}}[a-z]?,?\s+(?:[a-z][\w'-]*\s+){{0,3}}(?:{STREET})\b",
                              re.IGNORECASE)),
    ("an address", re.compile(r"\b(?:flat|apartment|apt|unit)\s+(?:no\.?\s*)?\d+",
                              re.IGNORECASE)),
    ("an address", re.compile(rf"\b[A-Z][a-z]+\s+(?:{NAMED_STREET})\b")),
    ("a name", re.compile(r"\b(?i:mr|mrs|ms|miss|mx|dr|sir)\.?\s+[A-Z][\w'-]+")),
    ("a name", re.compile(r"\b(?:name|named|called|surname|forename)\s+(?:is\s+|was\s+)?"
                          r"[A-Z][\w'-]+")),
    ("a date of birth", re.compile(r"\b(?:d\.?o\.?b\b|date of birth|born (?:on|in)\b)",
                                   re.IGNORECASE)),
]


class Ground(StrEnum):
    """The policy's grounds for sharing information, each tied to its sentence below."""

    CALLER_CONSENT = "caller_consent"
    TERRORISM_OR_BOMB_WARNING = "terrorism_or_bomb_warning"
    THREAT_TO_WORKER = "threat_to_worker"
    SERVICE_INTERFERENCE = "service_interference"
    SAFEGUARDING_CHILD_OR_VULNERABLE_ADULT = "safeguarding_child_or_vulnerable_adult"
    PERPETRATOR_RISK = "perpetrator_risk"


POLICY_GROUNDS = {
    Ground.CALLER_CONSENT: "a caller has requested or consented on information being passed on",
    Ground.TERRORISM_OR_BOMB_WARNING: "we have information about acts of terrorism or bomb "
                                      "warnings",
    Ground.THREAT_TO_WORKER: "helpline workers are threatened or verbally attacked by callers",
    Ground.SERVICE_INTERFERENCE: "a caller interferes with the delivery of our service",
    Ground.SAFEGUARDING_CHILD_OR_VULNERABLE_ADULT: "a risk to the welfare or safety of a child or "
                                                   "vulnerable adult",
    Ground.PERPETRATOR_RISK: "a perpetrator poses a particular risk to the safety of any persons",
}


class WhyNot(StrEnum):
    """Why the caller was not told: the policy's "where it is possible and safe to do so"."""

    NOT_SAFE = "not_safe"  # telling them would put someone at risk
    NOT_POSSIBLE = "not_possible"  # the call had ended, or they could not be reached


WHY_NOT = {
    WhyNot.NOT_SAFE: "it was not safe: telling them would have put someone at risk",
    WhyNot.NOT_POSSIBLE: "it was not possible: the call had ended or they could not be reached",
}


class Agency(StrEnum):
    """Who the information went to: the agencies the policy names, and anyone else."""

    SOCIAL_SERVICES = "social_services"
    POLICE = "police"
    PARTNER = "partner"
    OTHER = "other"


def _choice(enum: type[Enum], value: object, what: str) -> Enum:
    """``value`` as a member of ``enum``, or a ValueError listing the choices (and a near miss)."""
    try:
        return enum(value)
    except (ValueError, TypeError):
        names = [member.value for member in enum]
        near = difflib.get_close_matches(str(value), names, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ValueError(f"{what} {value!r} is not one the policy allows{hint}; one of: "
                         f"{', '.join(names)}") from None


def _grounds(grounds: str | Iterable[str]) -> list[str]:
    if isinstance(grounds, str):
        items = [grounds]
    elif isinstance(grounds, (list, tuple)):
        items = list(grounds)
    else:  # a number, true or an object where a ground or a list of grounds belongs
        raise ValueError("grounds: give one of the policy's grounds, or a list of them")
    if not items:
        raise ValueError("grounds: give at least one of the policy's grounds for sharing")
    chosen: list[str] = []
    for item in items:
        ground = _choice(Ground, item, "ground").value
        if ground not in chosen:
            chosen.append(ground)
    return chosen


def refuse_identifying_text(text: str, where: str) -> None:
    """Raise ValueError if free text is shaped like something that names or locates a person.

    The message names the shape, never the text: it may be the very thing not to write down.
    """
    refuse_caller_data(text, where)
    for shape, pattern in IDENTIFYING:
        if pattern.search(text):
            raise ValueError(f"{where} looks like it holds {shape}; {NEVER_WHO}")


def record_exception(audit: AuditLog, actor: str, call_id: str, grounds: str | Iterable[str],
                     agency: str, caller_informed: bool, why_not: str | None = None,
                     detail: str | None = None) -> Entry:
    """Record that information about ``call_id`` was shared, and why; return the audit entry.

    ``why_not`` (a :class:`WhyNot`) is required when the caller was not told; ``detail`` is an
    optional short line about it. Raises ValueError (nothing written) when the entry would not
    say enough or says too much, and AuditUnavailable when the log cannot be written.
    """
    if not isinstance(actor, str) or not actor.strip():
        raise ValueError("actor: the worker or manager recording the exception must be named")
    if not isinstance(call_id, str) or not CALL_ID.match(call_id):
        raise ValueError("call_id: give the call's opaque id (letters, digits, '_' or '-'), "
                         "never a phone number")
    refuse_caller_data(call_id, "call_id")
    chosen = _grounds(grounds)
    agency_value = _choice(Agency, agency, "agency").value
    if not isinstance(caller_informed, bool):
        raise ValueError("caller_informed must be true or false")
    why = (why_not or "").strip() if isinstance(why_not, str) else why_not
    text = (detail or "").strip() if isinstance(detail, str | type(None)) else detail
    if not isinstance(text, str):
        raise ValueError("detail must be text")
    if caller_informed and (why or text):
        raise ValueError("why_not and detail are only for when the caller was not informed")
    data: dict[str, object] = {"call": call_id, "grounds": chosen, "agency": agency_value,
                               "caller_informed": caller_informed}
    if not caller_informed:
        if Ground.CALLER_CONSENT.value in chosen:
            raise ValueError("the caller cannot have consented without being informed: set "
                             "caller_informed, or choose another ground")
        if not why:
            raise ValueError("why_not: say why it was not possible or safe to tell the caller "
                             f"({', '.join(w.value for w in WhyNot)}); the policy asks that "
                             "callers be told where it is")
        data["why_not"] = _choice(WhyNot, why, "why_not").value
        if len(text) > MAX_DETAIL:
            raise ValueError(f"detail is longer than {MAX_DETAIL} characters: say why in a line, "
                             "never who or where")
        if text:
            refuse_identifying_text(text, "detail")
            data["detail"] = text
    entry = audit.append(AuditKind.EXCEPTION_RECORDED, actor, **data)
    log.info("confidentiality exception recorded", extra={"call": call_id,
                                                          "kind": entry.kind})
    return entry
