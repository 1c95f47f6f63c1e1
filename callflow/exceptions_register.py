"""The confidentiality exceptions register: each time information about a call left the helpline.

The policy keeps every call confidential except on a short list of grounds, and asks that the
caller be told of the intention to share "where it is possible and safe to do so". Each
exception is an audit entry like any other, so it sits in the same tamper-evident chain as the
monitoring it may be read beside. The checks here make an entry say enough to be accountable:
which ground, which agency, whether the caller was told and, if not, why not.

What is recorded is the decision, never the caller: no number, no name, no content of the call.
The audit log refuses anything phone-like; free text should name no one.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable
from enum import Enum, StrEnum

from callflow.audit import AuditKind, AuditLog, Entry, refuse_caller_data

log = logging.getLogger(__name__)

# Opaque call ids (a CallSid, or the service's own): letters, digits, ``_`` and ``-``.
CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
MAX_REASON = 1000


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
    items = [grounds] if isinstance(grounds, str) else list(grounds)
    if not items:
        raise ValueError("grounds: give at least one of the policy's grounds for sharing")
    chosen: list[str] = []
    for item in items:
        ground = _choice(Ground, item, "ground").value
        if ground not in chosen:
            chosen.append(ground)
    return chosen


def record_exception(audit: AuditLog, actor: str, call_id: str, grounds: str | Iterable[str],
                     agency: str, caller_informed: bool,
                     not_informed_reason: str | None = None) -> Entry:
    """Record that information about ``call_id`` was shared, and why; return the audit entry.

    Raises ValueError (nothing written) when the entry would not say enough or says too much,
    and AuditUnavailable when the log cannot be written.
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
    reason = (not_informed_reason or "").strip()
    if caller_informed and reason:
        raise ValueError("not_informed_reason is only for when the caller was not informed")
    if not caller_informed:
        if Ground.CALLER_CONSENT.value in chosen:
            raise ValueError("the caller cannot have consented without being informed: set "
                             "caller_informed, or choose another ground")
        if not reason:
            raise ValueError("not_informed_reason: say why it was not possible or safe to tell "
                             "the caller (the policy asks that callers be told where it is)")
        if len(reason) > MAX_REASON:
            raise ValueError(f"not_informed_reason is longer than {MAX_REASON} characters")
    data: dict[str, object] = {"call": call_id, "grounds": chosen, "agency": agency_value,
                               "caller_informed": caller_informed}
    if not caller_informed:
        data["not_informed_reason"] = reason
    entry = audit.append(AuditKind.EXCEPTION_RECORDED, actor, **data)
    log.info("confidentiality exception recorded", extra={"call": call_id,
                                                          "kind": entry.kind})
    return entry
