"""What a step needs to know about the call it is rendering for.

Steps never see a request: only this context, which holds no caller data by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

if TYPE_CHECKING:
    from callflow.flow import Flow, FlowSet


@dataclass(frozen=True)
class Links:
    """Builds the webhook URLs Twilio is told to call next.

    With a public base URL they are absolute, so Twilio signs exactly what the service checks.
    """

    base: str = ""

    def _url(self, path: str, **query: str) -> str:
        url = f"{self.base.rstrip('/')}{path}"
        return f"{url}?{urlencode(query)}" if query else url

    def step(self, flow: str, step: str) -> str:
        return self._url("/voice/step", flow=flow, step=step)

    def notice(self, flow: str, step: str) -> str:
        return self._url("/voice/notice", flow=flow, step=step)

    def menu(self, flow: str, step: str) -> str:
        return self._url("/voice/menu", flow=flow, step=step)

    def dial(self, flow: str, step: str) -> str:
        return self._url("/voice/dial", flow=flow, step=step)

    def screen(self, flow: str, step: str = "") -> str:
        return self._url("/voice/screen", flow=flow, step=step)

    def screen_answer(self, flow: str, step: str = "") -> str:
        return self._url("/voice/screen/answer", flow=flow, step=step)

    def degraded_dial(self, flow: str) -> str:
        return self._url("/voice/degraded/dial", flow=flow)

    def hold(self, call: str) -> str:
        return self._url("/voice/hold", call=call)

    def conference(self, call: str) -> str:
        return self._url("/voice/conference", call=call)

    # The worker's links name the flow too, so a worker is told the right helpline even when
    # the store cannot say which call this is.
    def worker(self, call: str, leg: int, flow: str) -> str:
        return self._url("/voice/worker", call=call, leg=str(leg), flow=flow)

    def worker_answer(self, call: str, leg: int, flow: str) -> str:
        return self._url("/voice/worker/answer", call=call, leg=str(leg), flow=flow)

    def worker_status(self, call: str, leg: int) -> str:
        return self._url("/voice/worker/status", call=call, leg=str(leg))

    def monitor_status(self, session: str) -> str:
        return self._url("/voice/monitor/status", session=session)

    def manager_line(self, stage: str, **query: str) -> str:
        return self._url(f"/voice/manager/{stage}", **query)


@dataclass
class CallContext:
    """One turn of one call: the flow, the number dialled, the time, and what the caller heard."""

    flowset: FlowSet
    flow: Flow
    helpline_number: str
    now: datetime
    links: Links
    notice_heard: bool = False
    visited: list[str] = field(default_factory=list)
    # Puts the caller on the conference bridge (True), or declines so the step dials directly.
    put_through: Callable[[Any, Any], bool] | None = None
