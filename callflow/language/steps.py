"""The step kinds of the flow language: one class each, and the registry that names them.

A step kind is the whole of its life in a call: its keys (declared with
:func:`callflow.language.fields.option`), its checks, its graph edges, the TwiML it renders, which
step follows it within the same answer, and — for a kind Twilio calls back after (a key pressed, a
dial ended) — the name of that callback and what it decides then (``answer``). The web app serves
one route per callback name, so adding a step kind is one class and one registry line.

``render`` depends on nothing but the flow and the call's state, so the engine serves the
answers of most turns as bytes rendered once; a step whose TwiML depends on the moment says so
with ``dynamic``, and one that puts the caller through may put them on the bridge instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from twilio.twiml.voice_response import VoiceResponse

from callflow.language import fields
from callflow.language.dialling import dial_team
from callflow.language.fields import option
from callflow.language.hours import spoken_opening
from callflow.language.policy import DEFAULT_NOTICE, OPT_OUT_OFFER, OPTED_OUT, POLICY_OFFER
from callflow.language.texts import fill, says_next_open
from callflow.language.turn import Answer
from callflow.platform.errors import FlowError, Where

if TYPE_CHECKING:
    from callflow.language.flow import FlowSet
    from callflow.language.turn import Reply, Turn

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
    # The turn (one answer to Twilio) ends here: it waits for Twilio or ends the call. Every
    # other kind goes straight on (``follow``); the validator counts chains by this.
    ends_turn: ClassVar[bool] = True
    # The webhook Twilio calls after this step (``/voice/<callback>``), if any.
    callback: ClassVar[str | None] = None
    # Whether the TwiML depends on more than the flow and the call's state (the clock); a
    # step that puts the caller through (``contacts_person``) may also put them on the bridge.
    dynamic: ClassVar[bool] = False

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

    def render(self, response: VoiceResponse, turn: Turn) -> None:
        """Add this step's TwiML (nothing, for a step that only decides where to go)."""

    def follow(self, turn: Turn) -> str | None:
        """The step that comes next in the same answer, or None when this one waits for
        Twilio (a gather, a dial) or ends the call."""
        return None

    def answer(self, reply: Reply, turn: Turn) -> Answer:
        """What happens when Twilio calls back after this step (kinds with a ``callback``)."""
        raise NotImplementedError(f"a {self.kind} step has no callback")

    def callback_url(self, turn: Turn, **extra: str) -> str:
        return turn.links.answer(self.callback, turn.flow.id, self.name, turn.state, **extra)


@dataclass(frozen=True, kw_only=True)
class Spoken(Step):
    """A step that speaks; voice and language default to the flow's."""

    voice: str | None = option("text", "Twilio voice for this step (default: the flow's)", None)
    language: str | None = option("text", "Language for this step (default: the flow's)", None)

    def say(self, response, turn: Turn, text: str, **filled: str) -> None:
        """Say one of this step's texts, its placeholders filled in."""
        self.speak(response, turn, fill(text, helpline=turn.flow.helpline, **filled))

    def speak(self, response, turn: Turn, text: str) -> None:
        """Say ``text`` as it is, in this step's voice."""
        response.say(text, voice=self.voice or turn.flow.voice,
                     language=self.language or turn.flow.language)


@dataclass(frozen=True, kw_only=True)
class Notice(Spoken):
    kind = "notice"
    summary = "Play the confidentiality notice; a key offers the full policy."
    is_notice = True
    callback = "notice"

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

    def render(self, response, turn):
        # The notice is said outside the <Gather>, so no key press can cut it short; only the
        # offers after it listen for keys. No finishOnKey: '#' may be a choice like any key.
        self.say(response, turn, self.text)
        gather = response.gather(num_digits=1, timeout=2, finish_on_key="",
                                 action=self.callback_url(turn), action_on_empty_result=True)
        offer = POLICY_OFFER.format(digit=self.policy_digit)
        if self.monitoring_opt_out:
            offer += " " + OPT_OUT_OFFER.format(digit=self.monitoring_opt_out)
        self.say(gather, turn, offer)

    def answer(self, reply, turn):
        """The notice has been heard; a key may ask for the policy or decline monitoring."""
        if reply.digits == self.policy_digit:
            return Answer(self.next, turn.state.heard_notice(), turn.policy(), "policy")
        if reply.digits and reply.digits == self.monitoring_opt_out:
            return Answer(self.next, turn.state.heard_notice(declined=True), (OPTED_OUT,),
                          "declined_monitoring")
        return Answer(self.next, turn.state.heard_notice(), event="heard")


@dataclass(frozen=True, kw_only=True)
class Say(Spoken):
    kind = "say"
    ends_turn = False
    summary = "Speak some text, then go on."

    text: str = option("text", "What is said")
    next: str = option("step", "The step after this one")

    def edges(self):
        return {"next": self.next}

    def render(self, response, turn):
        self.say(response, turn, self.text)

    def follow(self, turn):
        return self.next


@dataclass(frozen=True, kw_only=True)
class Play(Step):
    kind = "play"
    ends_turn = False
    summary = "Play an audio file, then go on."

    url: str = option("url", "Address of the audio file (https)")
    next: str = option("step", "The step after this one")

    def edges(self):
        return {"next": self.next}

    def render(self, response, turn):
        response.play(self.url)

    def follow(self, turn):
        return self.next


@dataclass(frozen=True, kw_only=True)
class Menu(Spoken):
    kind = "menu"
    summary = "Ask the caller to press a key; re-prompt, then a named step, if they do not."
    takes_input = True
    callback = "menu"

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

    def render(self, response, turn):
        gather = response.gather(num_digits=1, timeout=self.timeout, finish_on_key="",
                                 action=self.callback_url(turn), action_on_empty_result=True)
        self.say(gather, turn, self.prompt)

    def answer(self, reply, turn):
        """A key, or none: an option, the prompt again (tries counted in the URL), a fallback."""
        tries = turn.state.tries + 1
        target, apology = self.choose(reply.digits, tries)
        say = (apology.format(helpline=turn.flow.helpline),) if apology else ()
        if target is None:
            return Answer(self.name, turn.state.with_tries(tries), say, "retry")
        event = "chosen" if reply.digits in self.options else "fallback"
        return Answer(target, turn.state.with_tries(0), say, event)

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
    ends_turn = False
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

    def follow(self, turn):
        hours = turn.flow.hours
        if hours.is_open(turn.now):
            return self.open
        return self.closure if self.closure and hours.is_closure(turn.now) else self.closed


@dataclass(frozen=True, kw_only=True)
class Connect(Spoken):
    kind = "connect"
    summary = "Put the caller through to a team of workers, each screened first."
    contacts_person = True
    callback = "dial"

    team: str = option("team", "The team of workers to ring")
    on_no_answer: str = option("step", "Where to go when nobody accepts the call")
    on_max_wait: str | None = option("step", "Where a caller goes who has waited the team's "
                                     "max_wait (default: on_no_answer)", None)
    on_no_workers: str | None = option("step", "Where a caller goes, without waiting, when "
                                       "nobody of the team is on shift (default: "
                                       "on_no_answer)", None)
    timeout: int = option("int", "Seconds to ring before giving up", 25, minimum=5,
                          maximum=120)
    whisper: str = option("text", "What the worker hears before accepting",
                          DEFAULT_WHISPER)

    def edges(self):
        found = {"on_no_answer": self.on_no_answer}
        if self.on_max_wait:
            found["on_max_wait"] = self.on_max_wait
        if self.on_no_workers:
            found["on_no_workers"] = self.on_no_workers
        return found

    @property
    def max_wait_step(self) -> str:
        return self.on_max_wait or self.on_no_answer

    @property
    def no_workers_step(self) -> str:
        return self.on_no_workers or self.on_no_answer

    def check(self, flowset):
        if self.team not in flowset.teams:
            hint = fields.did_you_mean(self.team, flowset.teams) or "define it in teams.yaml"
            return [FlowError(self.where, f"step '{self.name}' names team '{self.team}', "
                              "which does not exist", hint)]
        return []

    def render(self, response, turn):
        if turn.put_through is not None and turn.put_through(response, self, turn.state):
            return  # the caller waits on the conference bridge
        self.dial_directly(response, turn)

    def dial_directly(self, response, turn) -> None:
        """Ring the team's numbers straight from the caller's call (no bridge)."""
        dial_team(response, turn.flowset.teams[self.team], helpline_number=turn.helpline_number,
                  timeout=self.timeout, action=self.callback_url(turn),
                  screen=turn.links.screen(turn.flow.id, self.name))

    def answer(self, reply, turn):
        """The dial (or the waiting room) ended: done if a worker took the call."""
        if reply.connected:
            return Answer(None, turn.state, event="connected")
        return Answer(self.on_no_answer, turn.state, event="no_answer")


@dataclass(frozen=True, kw_only=True)
class Message(Spoken):
    kind = "message"
    summary = "Speak a message, then end the call (e.g. out of hours, with emergency advice)."

    text: str = option("text", "The message; {next_open} says when the line opens next, "
                       "e.g. 'on Monday 28 December at 9am'")

    def render(self, response, turn):
        hours = turn.flow.hours
        self.say(response, turn, self.text,
                 next_open=spoken_opening(hours.next_opening(turn.now), turn.now))
        response.hangup()

    @property
    def dynamic(self) -> bool:
        """A message that says when the line opens next says it as of now."""
        return says_next_open(self.text)


@dataclass(frozen=True, kw_only=True)
class Goto(Step):
    kind = "goto"
    ends_turn = False
    summary = "Go to another step."

    next: str = option("step", "The step to go to")

    def edges(self):
        return {"next": self.next}

    def follow(self, turn):
        return self.next


@dataclass(frozen=True, kw_only=True)
class Hangup(Step):
    kind = "hangup"
    summary = "End the call."

    def render(self, response, turn):
        response.hangup()


STEP_KINDS: dict[str, type[Step]] = {
    cls.kind: cls for cls in (Notice, Say, Play, Menu, Hours, Connect, Message, Goto, Hangup)
}
