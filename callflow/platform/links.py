"""The webhook URLs Twilio is told to call next, built from the web app's own routes.

The paths are not written here: the web app hands over its URL map (endpoint -> path) when it
builds the runtime, so a URL the service gives Twilio is always one a route answers (a test
builds every link and matches it against the map). With a public base URL the links are
absolute, so Twilio signs exactly what the edge checks.

Before the bridge, a caller's state travels in these URLs (``CallState.query``): Twilio signs
the whole URL it calls, so the state comes back authenticated, and nothing is kept anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from callflow.language.turn import CallState


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

    # The worker's links name the flow too, so a worker is told the right helpline even when
    # the store cannot say which call this is.
    def worker(self, call: str, leg: int, flow: str) -> str:
        return self.url("bridge.worker", call=call, leg=str(leg), flow=flow)

    def worker_answer(self, call: str, leg: int, flow: str) -> str:
        return self.url("bridge.worker_answer", call=call, leg=str(leg), flow=flow)

    def worker_status(self, call: str, leg: int) -> str:
        return self.url("bridge.worker_status", call=call, leg=str(leg))

    def monitor_status(self, session: str) -> str:
        return self.url("bridge.monitor_status", session=session)

    # -- the manager line ----------------------------------------------------------------------

    def manager_line(self, stage: str, **query: str) -> str:
        return self.url(f"manager_line.{stage}", **query)
