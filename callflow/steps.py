"""The step kinds of the flow language: one class each, and the registry that names them.

A step kind declares its keys (with :func:`callflow.fields.option`), its graph edges, and how
it renders TwiML. ``render`` returns the name of the step to run next within the same
response, or ``None`` when the response waits for Twilio (a gather, a dial) or ends the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from twilio.twiml.voice_response import VoiceResponse

from callflow import fields
from callflow.dialling import dial_team
from callflow.errors import FlowError, Where
from callflow.fields import option
from callflow.hours import spoken_opening
from callflow.policy import DEFAULT_NOTICE, OPT_OUT_OFFER, POLICY_OFFER
from callflow.texts import fill

if TYPE_CHECKING:
    from callflow.context import CallContext
    from callflow.flow import FlowSet

DEFAULT_WHISPER = "{helpline} call. Press 1 to accept."
# Words any notice text must contain (the default says all of them).
NOTICE_MUST_SAY = ("confidential", "identify", "record", "monitored", "quality", "training")
INVALID_CHOICE = "Sorry, that is not one of the options."


@dataclass(frozen=True, kw_only=True)
class Step:
    """A named node of a flow graph."""

    kind: ClassVar[str]
    summary: ClassVar[str]
    is_notice: ClassVar[bool] = False  # plays the confidentiality notice
    contacts_person: ClassVar[bool] = False  # puts the caller in contact with a person
    takes_input: ClassVar[bool] = False  # waits for the caller, so a loop through it is no trap

    name: str
    where: Where
    # edge label or key -> where its value was written, for errors that point at the edge
    marks: dict[str, Where] = field(default_factory=dict, compare=False, repr=False)

    def edges(self) -> dict[str, str]:
        """Outgoing edges: label -> step name."""
        return {}

    def check(self, flowset: FlowSet) -> list[FlowError]:
        """Checks that need the whole flow set (teams, for instance)."""
        return []

    def render(self, response: VoiceResponse, call: CallContext) -> str | None:
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class Spoken(Step):
    """A step that speaks; voice and language default to the flow's."""

    voice: str | None = option("text", "Twilio voice for this step (default: the flow's)", None)
    language: str | None = option("text", "Language for this step (default: the flow's)", None)

    def say(self, response, call: CallContext, text: str, **filled: str) -> None:
        response.say(fill(text, helpline=call.flow.helpline, **filled),
                     voice=self.voice or call.flow.voice,
                     language=self.language or call.flow.language)


@dataclass(frozen=True, kw_only=True)
class Notice(Spoken):
    kind = "notice"
    summary = "Play the confidentiality notice; a key offers the full policy."
    is_notice = True

    next: str = option("step", "The step after the notice")
    text: str = option("text", "The notice; it must say calls are confidential, not "
                       "identified, not recorded, and may be monitored occasionally for "
                       "quality and training", DEFAULT_NOTICE)
    policy_digit: str = option("digit", "Key that plays the full policy", "9")
    monitoring_opt_out: str | None = option("digit", "Key a caller presses so that the call is "
                                            "never monitored (default: not offered)", None)

    def edges(self):
        return {"next": self.next}

    def check(self, flowset):
        errors = []
        if self.monitoring_opt_out and self.monitoring_opt_out == self.policy_digit:
            errors.append(FlowError(self.marks.get("monitoring_opt_out", self.where),
                                    f"step '{self.name}' uses key {self.policy_digit} both for "
                                    "the policy and to opt out of monitoring",
                                    "choose another key"))
        # A notice in other words must still say what the policy promises callers.
        missing = [word for word in NOTICE_MUST_SAY if word not in self.text.lower()]
        if missing:
            errors.append(FlowError(self.marks.get("text", self.where),
                                    f"step '{self.name}' is a notice that does not say "
                                    f"{' or '.join(repr(w) for w in missing)}",
                                    "it must say calls are confidential, that callers are not "
                                    "identified or recorded, and that calls may be monitored "
                                    "occasionally for quality and training"))
        return errors

    def render(self, response, call):
        call.notice_heard = True
        # The notice is said outside the <Gather>, so no key press can cut it short; only the
        # offers after it listen for keys. No finishOnKey: '#' may be a choice like any key.
        self.say(response, call, self.text)
        gather = response.gather(num_digits=1, timeout=2, finish_on_key="",
                                 action=call.links.notice(call.flow.id, self.name),
                                 action_on_empty_result=True)
        offer = POLICY_OFFER.format(digit=self.policy_digit)
        if self.monitoring_opt_out:
            offer += " " + OPT_OUT_OFFER.format(digit=self.monitoring_opt_out)
        self.say(gather, call, offer)
        return None


@dataclass(frozen=True, kw_only=True)
class Say(Spoken):
    kind = "say"
    summary = "Speak some text, then go on."

    text: str = option("text", "What is said")
    next: str = option("step", "The step after this one")

    def edges(self):
        return {"next": self.next}

    def render(self, response, call):
        self.say(response, call, self.text)
        return self.next


@dataclass(frozen=True, kw_only=True)
class Play(Step):
    kind = "play"
    summary = "Play an audio file, then go on."

    url: str = option("url", "Address of the audio file (https)")
    next: str = option("step", "The step after this one")

    def edges(self):
        return {"next": self.next}

    def render(self, response, call):
        response.play(self.url)
        return self.next


@dataclass(frozen=True, kw_only=True)
class Menu(Spoken):
    kind = "menu"
    summary = "Ask the caller to press a key; re-prompt, then a named step, if they do not."
    takes_input = True

    prompt: str = option("text", "What the caller hears, e.g. 'Press 1 to speak to someone'")
    options: dict = option("options", "Keypad digit -> the step it leads to")
    on_no_input: str = option("step", "Where to go when the caller presses nothing, after "
                              "the retries")
    on_invalid: str | None = option("step", "Where to go after repeated wrong keys "
                                    "(default: on_no_input)", None)
    timeout: int = option("int", "Seconds to wait for a key", 6, minimum=1, maximum=30)
    retries: int = option("int", "How many times the prompt is repeated", 2, minimum=0,
                          maximum=5)
    invalid_prompt: str = option("text", "What is said after a wrong key", INVALID_CHOICE)

    def edges(self):
        edges = {f"option '{digit}'": target for digit, target in self.options.items()}
        edges["on_no_input"] = self.on_no_input
        edges["on_invalid"] = self.on_invalid or self.on_no_input
        return edges

    def render(self, response, call):
        gather = response.gather(num_digits=1, timeout=self.timeout, finish_on_key="",
                                 action=call.links.menu(call.flow.id, self.name),
                                 action_on_empty_result=True)
        self.say(gather, call, self.prompt)
        return None

    def choose(self, digits: str, attempt: int) -> tuple[str | None, str | None]:
        """The caller pressed ``digits`` on try ``attempt`` (1-based).

        Returns (next step, apology): a step to go to, or None to prompt again.
        """
        if digits in self.options:
            return self.options[digits], None
        apology = self.invalid_prompt if digits else None
        if attempt <= self.retries:
            return None, apology
        fallback = (self.on_invalid or self.on_no_input) if digits else self.on_no_input
        return fallback, apology


@dataclass(frozen=True, kw_only=True)
class Hours(Step):
    kind = "hours"
    summary = "Branch on whether the helpline is open now (closures included)."

    open: str = option("step", "Where to go when the helpline is open")
    closed: str = option("step", "Where to go when it is closed")
    closure: str | None = option("step", "Where to go on a closure date (default: closed)",
                                 None)

    def edges(self):
        edges = {"open": self.open, "closed": self.closed}
        if self.closure:
            edges["closure"] = self.closure
        return edges

    def render(self, response, call):
        hours = call.flow.hours
        if hours.is_open(call.now):
            return self.open
        return self.closure if self.closure and hours.is_closure(call.now) else self.closed


@dataclass(frozen=True, kw_only=True)
class Connect(Spoken):
    kind = "connect"
    summary = "Put the caller through to a team of workers, each screened first."
    contacts_person = True

    team: str = option("team", "The team of workers to ring")
    on_no_answer: str = option("step", "Where to go when nobody accepts the call")
    timeout: int = option("int", "Seconds to ring before giving up", 25, minimum=5,
                          maximum=120)
    whisper: str = option("text", "What the worker hears before accepting",
                          DEFAULT_WHISPER)

    def edges(self):
        return {"on_no_answer": self.on_no_answer}

    def check(self, flowset):
        if self.team not in flowset.teams:
            hint = fields.did_you_mean(self.team, flowset.teams) or "define it in teams.yaml"
            return [FlowError(self.where, f"step '{self.name}' names team '{self.team}', "
                              "which does not exist", hint)]
        return []

    def render(self, response, call):
        if call.put_through is not None and call.put_through(response, self):
            return None  # the caller waits on the conference bridge
        self.dial_directly(response, call)
        return None

    def dial_directly(self, response, call) -> None:
        """Ring the team's numbers straight from the caller's call (no bridge)."""
        dial_team(response, call.flowset.teams[self.team], helpline_number=call.helpline_number,
                  timeout=self.timeout, action=call.links.dial(call.flow.id, self.name),
                  screen=call.links.screen(call.flow.id, self.name))


@dataclass(frozen=True, kw_only=True)
class Message(Spoken):
    kind = "message"
    summary = "Speak a message, then end the call (e.g. out of hours, with emergency advice)."

    text: str = option("text", "The message; {next_open} says when the line opens next, "
                       "e.g. 'on Monday 28 December at 9am'")

    def render(self, response, call):
        hours = call.flow.hours
        self.say(response, call, self.text,
                 next_open=spoken_opening(hours.next_opening(call.now), call.now))
        response.hangup()
        return None


@dataclass(frozen=True, kw_only=True)
class Goto(Step):
    kind = "goto"
    summary = "Go to another step."

    next: str = option("step", "The step to go to")

    def edges(self):
        return {"next": self.next}

    def render(self, response, call):
        return self.next


@dataclass(frozen=True, kw_only=True)
class Hangup(Step):
    kind = "hangup"
    summary = "End the call."

    def render(self, response, call):
        response.hangup()
        return None


STEP_KINDS: dict[str, type[Step]] = {
    cls.kind: cls for cls in (Notice, Say, Play, Menu, Hours, Connect, Message, Goto, Hangup)
}
