"""The webhook URLs Twilio is told to call next, built from the web app's own routes.

The paths are not written here: the web app hands over its URL map (endpoint -> path) when it
builds the runtime, so a URL the service gives Twilio is always one a route answers (a test
builds every link and matches it against the map). With a public base URL the links are
absolute, so Twilio signs exactly what the edge checks.

Before the bridge a caller's state is small (notice heard, monitoring declined, tries at the
current menu) and changes only when Twilio calls back, so it travels in these URLs
(:class:`CallState`). Twilio signs the whole URL it calls with the auth token and calls only the
URLs it was given, so the state comes back authenticated: nobody without the token can forge or
alter it. Nothing is written anywhere until the caller reaches the bridge, so a Redis outage
cannot touch a caller who is still in the menu, and any web process can serve any turn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode

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


class UnknownRoute(KeyError):
    """A link names an endpoint the web app does not serve."""


@dataclass(frozen=True)
class Links:
    base: str = ""
    # endpoint ("voice.notice") -> path ("/voice/notice"), from the web app's URL map
    paths: Mapping[str, str] = field(default_factory=dict)

    def url(self, endpoint: str, **query: str) -> str:
        try:
            path = self.paths[endpoint]
        except KeyError:
            raise UnknownRoute(f"no route serves {endpoint!r}") from None
        url = f"{self.base.rstrip('/')}{path}"
        return f"{url}?{urlencode(query)}" if query else url

    # -- a caller in a flow: the flow, the step, and the call's state --------------------------

    def step(self, flow: str, step: str, state: CallState) -> str:
        """Carry on at ``step`` (a redirect from the bridge)."""
        return self.url("voice.step", flow=flow, step=step, **state.query())

    def answer(self, callback: str, flow: str, step: str, state: CallState, **extra: str) -> str:
        """Where Twilio reports what happened at ``step`` (a key pressed, a dial's end)."""
        return self.url(f"voice.{callback}", flow=flow, step=step, **state.query(), **extra)

    def degraded_dial(self, flow: str) -> str:
        return self.url("voice.degraded_dial", flow=flow)

    # -- a worker's leg: the screening ---------------------------------------------------------

    def screen(self, flow: str, step: str = "") -> str:
        return self.url("voice.screen", flow=flow, step=step)

    def screen_answer(self, flow: str, step: str = "") -> str:
        return self.url("voice.screen_answer", flow=flow, step=step)

    # -- the bridge ----------------------------------------------------------------------------

    def hold(self, call: str) -> str:
        return self.url("bridge.hold", call=call)

    def conference(self, call: str) -> str:
        return self.url("bridge.conference", call=call)

    def waiting_left(self, call: str, flow: str, step: str, state: CallState) -> str:
        """The action of a caller's ``<Enqueue>``: where they go on when they leave the line
        (the flow and step too, so the degraded path knows the helpline without the store)."""
        return self.url("bridge.left", call=call, flow=flow, step=step, **state.query())

    def join(self, call: str) -> str:
        return self.url("bridge.join", call=call)

    # A worker's links name the team, their place in its roster and the offer; the flow too,
    # so a worker is told the right helpline even when the store cannot say which it is.
    def worker(self, team: str, leg: int, offer: str, flow: str) -> str:
        return self.url("bridge.worker", team=team, leg=str(leg), offer=offer, flow=flow)

    def worker_answer(self, team: str, leg: int, offer: str, flow: str) -> str:
        return self.url("bridge.worker_answer", team=team, leg=str(leg), offer=offer,
                        flow=flow)

    def worker_status(self, team: str, leg: int, offer: str, flow: str) -> str:
        return self.url("bridge.worker_status", team=team, leg=str(leg), offer=offer, flow=flow)

    def monitor_status(self, session: str) -> str:
        return self.url("bridge.monitor_status", session=session)

    # -- the manager line ----------------------------------------------------------------------

    def manager_line(self, stage: str, **query: str) -> str:
        return self.url(f"manager_line.{stage}", **query)

    # -- the staff line ------------------------------------------------------------------------

    def staff_line(self, stage: str) -> str:
        return self.url(f"staff_line.{stage}")
