"""Promise 1 at the edge: which webhook fields the service may ever see.

Twilio sends the caller's number, name and location with every webhook. After the signature
is checked (it covers every field) only the fields below survive; everything else, including
any field Twilio adds in future, is dropped before a handler, log line or store sees it.
"""

from __future__ import annotations

from typing import Protocol

# What the service needs, and nothing that names the caller. ``To``/``Called`` are the
# helpline's own number on a caller's leg (and a worker's on a worker's leg).
ALLOWED_FIELDS = frozenset({
    "AccountSid",
    "ApiVersion",
    "CallSid",
    "ParentCallSid",
    "CallStatus",
    "Direction",
    "To",
    "Called",
    "Digits",
    "FinishedOnKey",
    "DialCallStatus",
    "DialCallSid",
    "DialCallDuration",
    "CallDuration",
    "ErrorCode",
    "Timestamp",
    "SequenceNumber",
    # conference callbacks
    "ConferenceSid",
    "FriendlyName",
    "StatusCallbackEvent",
    "Muted",
    "Hold",
    "Coaching",
    "EndConferenceOnExit",
    "StartConferenceOnEnter",
    "ReasonConferenceEnded",
    "CallSidEndingConference",
    "ParticipantLabel",
    "Reason",
    # <Enqueue>'s action: why the caller left Twilio's queue, and how long they were in it
    "QueueResult",
    "QueueTime",
})


class MultiValued(Protocol):
    def getlist(self, key: str) -> list[str]: ...
    def keys(self): ...


def strip_caller_data(form: MultiValued) -> dict[str, str]:
    """Keep only the allow-listed fields (first value of each); drop everything else."""
    kept = {}
    for name in form:
        if name in ALLOWED_FIELDS:
            values = form.getlist(name)
            if values:
                kept[name] = values[0]
    return kept
