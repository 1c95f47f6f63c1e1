"""What a step knows about the call it serves: one turn of the call, and the call's state.

Steps never see a request: only a :class:`Turn`, which holds no caller data by construction.

Before the bridge a caller's state is small (notice heard, monitoring declined, tries at the
current menu) and changes only when Twilio calls back, so it travels in the callback URLs the
service hands Twilio. Twilio signs the whole URL it calls with the auth token and calls only
the URLs it was given, so the state comes back authenticated: nobody without the token can
forge or alter it. Nothing is written anywhere until the caller reaches the bridge, so a Redis
outage cannot touch a caller who is still in the menu, and any web process can serve any turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from callflow.language.flow import Flow, FlowSet
    from callflow.platform.links import Links

# Two digits are plenty: a menu repeats its prompt at most five times.
MAX_TRIES_DIGITS = 2


@dataclass(frozen=True)
class CallState:
    """A caller's progress through the menu; never anything about the caller."""

    notice_heard: bool = False
    declined: bool = False  # the caller asked for the call not to be monitored
    tries: int = 0  # prompts already heard at the menu the callback names

    # The URL parameters, kept short (Twilio's limit on a URL is 4,096 characters).
    PARAMS = ("n", "d", "t")

    def query(self) -> dict[str, str]:
        """The state as URL parameters; a default is left out, so most URLs carry none."""
        query = {}
        if self.notice_heard:
            query["n"] = "1"
        if self.declined:
            query["d"] = "1"
        if self.tries:
            query["t"] = str(self.tries)
        return query

    @classmethod
    def from_query(cls, get: Callable[[str], str]) -> CallState:
        """Read the state back from a signed URL's parameters (``get(name)`` is '' if absent).

        Only URLs the service built can arrive signed, so anything odd is a link from an
        older release: read it as the state that says least ("notice not heard")."""
        tries = get("t")
        valid = tries.isascii() and tries.isdigit() and len(tries) <= MAX_TRIES_DIGITS
        return cls(notice_heard=get("n") == "1", declined=get("d") == "1",
                   tries=int(tries) if valid else 0)

    def heard_notice(self, *, declined: bool = False) -> CallState:
        return CallState(notice_heard=True, declined=self.declined or declined)

    def with_tries(self, tries: int) -> CallState:
        return CallState(notice_heard=self.notice_heard, declined=self.declined, tries=tries)


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
