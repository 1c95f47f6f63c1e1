"""The compiled flow set: helplines, their steps and the teams of workers they ring.

Built once from YAML by :mod:`callflow.language.loader`, proven by
:mod:`callflow.language.validate`, then shared read-only by every request until a reload swaps in a
new one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from callflow.language.fields import option
from callflow.language.hours import OpeningHours
from callflow.language.policy import DEFAULT_NOTICE
from callflow.language.texts import fill
from callflow.platform.errors import FlowError, Where

if TYPE_CHECKING:
    from callflow.language.steps import Step

OUT_OF_HOURS = (
    "{helpline} is closed at the moment. We open again {next_open}. "
    "If you or anyone else is in immediate danger, call 999 now."
)
NOBODY_FREE = (
    "Sorry, nobody at {helpline} is free to take your call right now. Please try again "
    "later. If you or anyone else is in immediate danger, call 999 now."
)


@dataclass(frozen=True, kw_only=True)
class Worker:
    name: str = option("text", "The worker's name, as the simulator and staff see it")
    number: str = option("number", "The worker's phone, in international form")
    active: bool = option("bool", "Whether the worker is rung", True)


RING_STRATEGIES = ("simultaneous", "sequential", "longest_idle", "round_robin")
# Positions above this are said as "more than 5" (Asterisk's announce-position limit).
POSITION_LIMIT = 5


@dataclass(frozen=True, kw_only=True)
class Team:
    ring: str = option("choice", "How a waiting caller is offered to the free workers: all at "
                       "once (simultaneous), one after another in roster order (sequential), "
                       "the one idle longest first (longest_idle), or in turn, remembering "
                       "where it stopped (round_robin)", "simultaneous",
                       choices=RING_STRATEGIES)
    ring_timeout: int = option("int", "Seconds each worker's phone rings for an offer", 20,
                               minimum=5, maximum=60)
    max_wait: int = option("int", "Seconds a caller waits in the queue before the connect "
                           "step's on_max_wait step", 300, minimum=15, maximum=3600)
    position_every: int = option("int", "Seconds between announcements of the caller's place "
                                 "in the queue (0: never)", 60, minimum=0, maximum=3600)
    announce_every: int = option("int", "Seconds between the team's announcements, spoken in "
                                 "turn between the hold music", 90, minimum=10, maximum=3600)
    announcements: list = option("texts", "Messages spoken in turn to waiting callers, e.g. "
                                 "another way to get help", [])
    wrap_up: int = option("int", "Seconds after a call before the worker is offered another",
                          60, minimum=0, maximum=1800)
    autopause_after: int = option("int", "Pause a worker who lets so many offers in a row go "
                                  "unanswered (0: never)", 2, minimum=0, maximum=20)
    hold_music: str | None = option("url", "Audio played to a waiting caller between hold "
                                    "turns; keep it a short clip (under a minute): the "
                                    "line's announcements and its ways out come between "
                                    "plays (default: a spoken holding message)", None)

    name: str
    where: Where
    workers: tuple[Worker, ...]

    def active_workers(self) -> list[Worker]:
        return [w for w in self.workers if w.active]


@dataclass(frozen=True, kw_only=True)
class Degraded:
    """How the flow behaves when it cannot run: store down, flow broken, Twilio's fallback."""

    team: str = option("team", "The team dialled directly when the flow cannot run")
    closed_message: str = option("text", "Said out of hours on the degraded path; "
                                 "{next_open} says when the line opens next", OUT_OF_HOURS)
    no_answer_message: str = option("text", "Said when nobody answers on the degraded path",
                                    NOBODY_FREE)


@dataclass(frozen=True, kw_only=True)
class Flow:
    helpline: str = option("text", "The helpline's name, as callers and workers hear it")
    numbers: list = option("numbers", "The helpline numbers whose calls this flow answers")
    start: str = option("step", "The first step of every call")
    timezone: str = option("text", "Time zone of the opening hours", "Europe/London")
    voice: str = option("text", "Twilio voice for everything said", "Polly.Amy")
    language: str = option("text", "Language for everything said", "en-GB")
    default: bool = option("bool", "Answer calls to numbers no flow names", False)

    id: str
    path: str
    where: Where
    hours: OpeningHours
    degraded: Degraded
    steps: dict[str, Step] = field(default_factory=dict)
    # e.g. "number +441632960001" -> where it was written, for errors that point at it
    marks: dict[str, Where] = field(default_factory=dict, compare=False, repr=False)

    def reachable(self) -> list[str]:
        """Step names reachable from the start, breadth first."""
        seen, queue = {self.start}, deque([self.start])
        order = []
        while queue:
            name = queue.popleft()
            order.append(name)
            for target in self.steps[name].edges().values():
                if target in self.steps and target not in seen:
                    seen.add(target)
                    queue.append(target)
        return order

    @property
    def notice_text(self) -> str:
        """The first notice a caller hears, for the degraded path to repeat."""
        for name in self.reachable():
            step = self.steps[name]
            if step.is_notice:
                return fill(step.text, helpline=self.helpline)
        return fill(DEFAULT_NOTICE, helpline=self.helpline)


@dataclass(frozen=True, kw_only=True)
class ManagerLine:
    """The number the Helplines Manager rings to sign in by PIN and listen to a call."""

    numbers: list = option("numbers", "The manager line's numbers")
    voice: str = option("text", "Twilio voice for everything said", "Polly.Amy")
    language: str = option("text", "Language for everything said", "en-GB")

    where: Where


@dataclass(frozen=True)
class FlowSet:
    flows: dict[str, Flow]
    teams: dict[str, Team]
    files: dict[str, str]  # path -> sha256 of its bytes, for the reload log
    # path -> the text it was loaded from, so the set can be kept as the last good one
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    warnings: list[FlowError] = field(default_factory=list)
    manager_line: ManagerLine | None = None
    by_number: dict[str, Flow] = field(init=False)
    # What is worked out once from this set and served until a reload replaces it (TwiML).
    compiled: dict[str, object] = field(default_factory=dict, init=False, repr=False,
                                        compare=False)

    def __post_init__(self) -> None:
        index = {number: flow for flow in self.flows.values() for number in flow.numbers}
        object.__setattr__(self, "by_number", index)

    def answered_numbers(self) -> list[tuple[str, str]]:
        """(number, owner) for every number a flow or the manager line answers, once each."""
        seen: dict[str, str] = {}
        for flow_id in sorted(self.flows):
            for number in self.flows[flow_id].numbers:
                seen.setdefault(number, f"flow {flow_id}")
        if self.manager_line is not None:
            for number in self.manager_line.numbers:
                seen.setdefault(number, "the manager line")
        return list(seen.items())

    def is_manager_line(self, number: str | None) -> bool:
        return bool(self.manager_line and number in self.manager_line.numbers)

    def flow_for(self, number: str | None) -> Flow | None:
        return self.by_number.get(number or "")

    @property
    def default_flow(self) -> Flow:
        """The flow for calls whose dialled number no flow names."""
        marked = [f for f in self.flows.values() if f.default]
        return marked[0] if marked else self.flows[sorted(self.flows)[0]]
