"""The policy proof: checks over each flow's graph that no convention could guarantee.

- every step an edge names exists;
- no path from the start reaches a person without passing a notice (loops included);
- no loop traps a caller without ever waiting for them;
- no turn of a call runs more steps than the engine will (``MAX_STEPS_PER_TURN``);
- every step can still reach an end of the call (no menu without a way out);
- no number answers two flows; teams named exist;
- a worker named on two teams is one person, with one number (and one spelling of the name).
Unreachable steps are only warnings.
"""

from __future__ import annotations

from collections import deque

from callflow.language.fields import did_you_mean, specs
from callflow.language.flow import Degraded, Flow, FlowSet
from callflow.language.texts import CLOSING, LONGEST, SPOKEN, describe, fill, stray_braces
from callflow.platform.errors import FlowError
from callflow.platform.limits import MAX_STEPS_PER_TURN, MAX_TEXT_CHARS


def validate(flowset: FlowSet, *, check_teams: bool = True
             ) -> tuple[list[FlowError], list[FlowError]]:
    """Return (errors, warnings) for a parsed flow set.

    ``check_teams`` is off while the teams file itself is broken: every team would then look
    missing, and those errors would bury the one that matters.
    """
    errors: list[FlowError] = []
    warnings: list[FlowError] = []
    for flow in flowset.flows.values():
        missing = _missing_steps(flow)
        errors.extend(missing)
        if check_teams:
            for step in flow.steps.values():
                errors.extend(step.check(flowset))
        if check_teams and flow.degraded.team not in flowset.teams:
            hint = did_you_mean(flow.degraded.team, flowset.teams) or "define it in teams.yaml"
            errors.append(FlowError(flow.marks.get("degraded team", flow.where),
                                    f"the degraded team '{flow.degraded.team}' "
                                    "does not exist", hint))
        errors.extend(_placeholders(flow))
        if missing:
            continue  # the graph checks below need every edge to land somewhere
        errors.extend(_notice_first(flow))
        traps = _traps(flow)
        errors.extend(traps)
        if not traps:  # the turns below are measured on steps that form no loop
            errors.extend(_long_turns(flow))
        errors.extend(_dead_ends(flow))
        warnings.extend(_unreachable(flow))
    errors.extend(_numbers_bound_twice(flowset))
    if check_teams:
        errors.extend(_announcements(flowset))
    line = flowset.manager_line
    errors.extend(FlowError(line.where, f"number {n} is both the manager line and a helpline's",
                            "the manager line needs a number of its own")
                  for n in (line.numbers if line else []) if n in flowset.by_number)
    defaults = [f for f in flowset.flows.values() if f.default]
    errors.extend(FlowError(f.where, "more than one flow says 'default: true'",
                            "keep it on one flow only") for f in defaults[1:])
    errors.extend(_one_person_one_number(flowset))
    for team in flowset.teams.values():
        if not team.active_workers():
            warnings.append(FlowError(team.where, f"team '{team.name}' has no active workers; "
                                      "its calls will always go to the no-answer step"))
    return errors, warnings


def _one_person_one_number(flowset: FlowSet) -> list[FlowError]:
    """A name is a person: their shift is one state, whichever team rings them, so every team
    that names them must ring the same phone. Names that differ only in case would be one
    staff account (accounts are lowercase) for two rosters' entries, so they must match too."""
    errors: list[FlowError] = []
    seen: dict[str, tuple[str, str, str]] = {}  # casefolded name -> (name, number, team)
    for team in flowset.teams.values():
        for worker in team.workers:
            if not isinstance(worker.name, str):
                continue
            first = seen.setdefault(worker.name.casefold(),
                                    (worker.name, worker.number, team.name))
            name, number, other = first
            if other == team.name and (name, number) == (worker.name, worker.number):
                continue
            if name != worker.name:
                errors.append(FlowError(team.where, f"team '{team.name}' names a worker "
                                        f"'{worker.name}' and team '{other}' one '{name}'",
                                        "one person is spelled one way in every team; two "
                                        "people need names that differ by more than case"))
            elif number != worker.number:
                errors.append(FlowError(team.where, f"worker '{worker.name}' of team "
                                        f"'{team.name}' has another number than in team "
                                        f"'{other}'", "a name on two teams is one person with "
                                        "one phone: give both the same number, or give "
                                        "two people different names"))
    return errors


def _placeholders(flow: Flow) -> list[FlowError]:
    """Spoken text is filled in when a call reaches it: only the documented placeholders mean
    anything between braces, and the filled text must still fit in one ``<Say>``. What a
    closed line says before it hangs up (a message, the degraded closed message) may also say
    when it opens next."""
    texts = [(step.marks.get(key, step.where), f"step '{step.name}' {key}", getattr(step, key),
              CLOSING if step.kind == "message" else SPOKEN)
             for step in flow.steps.values() for key, spec in specs(type(step)).items()
             if spec.kind == "text"]
    texts += [(flow.where, f"the degraded {key}", getattr(flow.degraded, key),
               CLOSING if key == "closed_message" else SPOKEN)
              for key, spec in specs(Degraded).items() if spec.kind == "text"]
    errors = []
    for where, what, text, allowed in texts:
        if not isinstance(text, str):
            continue
        stray = stray_braces(text, allowed)
        if stray:
            pieces = " and ".join(repr(piece) for piece in stray)
            which = "is not a placeholder" if len(stray) == 1 else "are not placeholders"
            errors.append(FlowError(where, f"{what} has {pieces}, which {which} here",
                                    f"the placeholders are {describe(allowed)}; write {{{{ or "
                                    "}} for a brace itself"))
            continue
        filled = len(fill(text, helpline=flow.helpline, **LONGEST))
        if filled > MAX_TEXT_CHARS:
            errors.append(FlowError(where, f"{what} is {filled:,} characters once its "
                                    "placeholders are filled in; Twilio's <Say> takes at most "
                                    f"{MAX_TEXT_CHARS:,}",
                                    "shorten it, or split it over several steps"))
    return errors


def _announcements(flowset) -> list[FlowError]:
    """What a team says to its waiting callers may name the helpline (the caller's), and no
    other placeholder."""
    errors = []
    for team in flowset.teams.values():
        for text in team.announcements:
            stray = stray_braces(text, SPOKEN)
            if stray:
                pieces = " and ".join(repr(piece) for piece in stray)
                errors.append(FlowError(team.where, f"an announcement of team '{team.name}' "
                                        f"has {pieces}, which is not a placeholder here",
                                        f"the placeholders are {describe(SPOKEN)}; write {{{{ "
                                        "or }} for a brace itself"))
    return errors


def _missing_steps(flow: Flow) -> list[FlowError]:
    errors = []
    if flow.start not in flow.steps:
        errors.append(FlowError(flow.where, f"the start step '{flow.start}' does not exist",
                                did_you_mean(flow.start, flow.steps)))
    for step in flow.steps.values():
        reported = set()
        for label, target in step.edges().items():
            if target not in flow.steps:
                if label not in step.marks and target in reported:
                    continue  # a default (on_invalid = on_no_input): its source is reported
                reported.add(target)
                hint = did_you_mean(target, flow.steps) or "add that step or fix the name"
                errors.append(FlowError(step.marks.get(label, step.where),
                                        f"step '{step.name}' {label} goes to '{target}', "
                                        "which does not exist", hint))
    return errors


def _notice_first(flow: Flow) -> list[FlowError]:
    """Search from the start without passing through any notice; no person may be found."""
    parent: dict[str, str | None] = {flow.start: None}
    queue = deque([flow.start])
    errors = []
    while queue:
        name = queue.popleft()
        step = flow.steps[name]
        if step.is_notice:
            continue
        if step.contacts_person:
            path = []
            node: str | None = name
            while node is not None:
                path.append(node)
                node = parent[node]
            errors.append(FlowError(step.where, f"a caller can reach '{name}' without hearing "
                                    "the confidentiality notice: " + " → ".join(reversed(path)),
                                    "put a notice step on that path, e.g. start the flow with one"))
            continue
        for target in step.edges().values():
            if target not in parent:
                parent[target] = name
                queue.append(target)
    return errors


def _traps(flow: Flow) -> list[FlowError]:
    """Loops made only of steps that never wait for the caller (Tarjan's components)."""
    graph = {name: [t for t in step.edges().values() if not flow.steps[t].takes_input]
             for name, step in flow.steps.items() if not step.takes_input}
    errors = []
    for component in _strongly_connected(graph):
        looped = len(component) > 1 or component[0] in graph[component[0]]
        if looped:
            ordered = sorted(component)
            first = flow.steps[ordered[0]]
            errors.append(FlowError(first.where, "steps " + " → ".join(ordered + ordered[:1]) +
                                    " loop without ever waiting for the caller, who would be "
                                    "stuck forever",
                                    "put a menu in the loop, or end it with a message"))
    return errors


def _long_turns(flow: Flow) -> list[FlowError]:
    """Chains of steps that one turn would run, longer than the engine runs in one turn.

    Any reachable step may start a turn (the start, and every step after a gather or a dial),
    so each step's longest turn is measured, from the steps that end turns backwards; a chain
    is named once, from its first step. Steps on a loop are never measured: ``_traps`` has
    refused the flow already.
    """
    reached = flow.reachable()
    targets = {name: set() if flow.steps[name].ends_turn else set(flow.steps[name].edges()
                                                                   .values())
               for name in reached}
    callers: dict[str, list[str]] = {name: [] for name in reached}
    for name, after in targets.items():
        for target in after:
            callers[target].append(name)
    waiting = {name: len(after) for name, after in targets.items()}
    length: dict[str, int] = {}
    longest_next: dict[str, str | None] = {}
    ready = deque(name for name, count in waiting.items() if count == 0)
    while ready:
        name = ready.popleft()
        best = max(targets[name], key=length.__getitem__, default=None)
        length[name] = 1 + (length[best] if best else 0)
        longest_next[name] = best
        for caller in callers[name]:
            waiting[caller] -= 1
            if not waiting[caller]:
                ready.append(caller)
    too_long = {name for name, steps in length.items() if steps > MAX_STEPS_PER_TURN}
    errors = []
    for first in (name for name in reached if name in too_long):
        if any(caller in too_long for caller in callers[first]):
            continue  # inside a longer chain, named from where that one starts
        chain, node = [], first
        while node is not None:
            chain.append(node)
            node = longest_next[node]
        shown = chain if len(chain) <= 7 else [*chain[:3], "…", *chain[-3:]]
        errors.append(FlowError(flow.steps[first].where, f"steps {' → '.join(shown)} "
                                f"({len(chain)} steps) run one after another in one turn of a "
                                f"call; a turn runs at most {MAX_STEPS_PER_TURN} steps",
                                "put a menu among them, or shorten the chain"))
    return errors


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(component)
    return result


def _dead_ends(flow: Flow) -> list[FlowError]:
    """Steps from which the call can never end or reach a person (e.g. a menu looping on itself)."""
    exits = {n for n, s in flow.steps.items() if not s.edges() or s.contacts_person}
    incoming: dict[str, list[str]] = {name: [] for name in flow.steps}
    for name, step in flow.steps.items():
        for target in step.edges().values():
            incoming[target].append(name)
    can_finish, queue = set(exits), deque(exits)
    while queue:
        for source in incoming[queue.popleft()]:
            if source not in can_finish:
                can_finish.add(source)
                queue.append(source)
    return [FlowError(flow.steps[name].where, f"step '{name}' has no way out: from it a "
                      "caller can never reach a person or the end of the call",
                      "give its menu an option or fallback that leads on")
            for name in flow.reachable() if name not in can_finish]


def _unreachable(flow: Flow) -> list[FlowError]:
    reached = set(flow.reachable())
    return [FlowError(step.where, f"step '{name}' is never reached from '{flow.start}'",
                      "link to it or remove it")
            for name, step in flow.steps.items() if name not in reached]


def _numbers_bound_twice(flowset: FlowSet) -> list[FlowError]:
    owner: dict[str, Flow] = {}
    errors = []
    for flow in flowset.flows.values():
        for number in flow.numbers:
            if number in owner and owner[number] is not flow:
                where = flow.marks.get(f"number {number}", flow.where)
                errors.append(FlowError(where, f"number {number} is bound to both "
                                        f"'{owner[number].id}' and '{flow.id}'",
                                        "a number answers one flow; remove it from one"))
            owner.setdefault(number, flow)
    return errors
