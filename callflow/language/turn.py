"""What a step knows about the call it serves: one turn of the call, what Twilio reported
after a step, and what the step decides then.

Steps never see a request: only a :class:`Turn`, which holds no caller data by construction.
The call's state (:class:`callflow.platform.links.CallState`) comes in the signed URL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from callflow.platform.links import CallState

if TYPE_CHECKING:
    from callflow.language.flow import Flow, FlowSet
    from callflow.platform.links import Links

@dataclass
class Turn:
    """One webhook's worth of a call: the flow, the number dialled, the time, the state.

    ``put_through`` is given only when the bridge can take the caller this turn; it puts them
    in the waiting room (True) or declines, so the connect step dials the team directly.
    """

    flowset: FlowSet
    flow: Flow
    helpline_number: str
    now: datetime
    links: Links
    state: CallState
    put_through: Callable[[Any, Any, CallState], bool] | None = None
    # The policy as speech, for the notice's "press 9" (read from its file when it changes).
    policy: Callable[[], tuple[str, ...]] = tuple


@dataclass(frozen=True)
class Reply:
    """What Twilio reports when it calls back after a step: only allow-listed fields."""

    digits: str = ""
    dial_status: str = ""
    connected: bool = False  # a worker took the call (the bridge's record, or the dial's status)


@dataclass(frozen=True)
class Answer:
    """What a step decides when Twilio calls back: what to say first, where to go, the state.

    ``next`` is None when the call should end."""

    next: str | None
    state: CallState
    say: tuple[str, ...] = ()
    event: str = ""  # one word for the log line: "chosen", "retry", "policy", ...
