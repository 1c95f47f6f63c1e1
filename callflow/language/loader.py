"""Loading a folder of YAML into a proven :class:`~callflow.language.flow.FlowSet`.

Every error in every file is collected, not only the first, so an admin fixes them in one go.
A file with a top-level ``teams:`` key holds teams of workers; every other file is one flow.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TypeVar

from callflow.language import fields
from callflow.language.fields import did_you_mean, forbidden, policy_refusal
from callflow.language.flow import Degraded, Flow, FlowSet, ManagerLine, Team, Worker
from callflow.language.hours import parse_hours, parse_zone
from callflow.language.source import Mapping, Sequence, decode, load_text, read_file
from callflow.language.steps import STEP_KINDS, Step
from callflow.language.validate import validate
from callflow.platform.errors import FlowError, FlowSetInvalid, Where

FLOW_SECTIONS = ("hours", "closures", "steps", "degraded")
T = TypeVar("T")


# What editors leave beside a file while and after it is edited: lock files (Emacs' ".#name",
# a link to nowhere; LibreOffice's ".~lock.name#"), autosaves ("#name#"), swap files
# (".name.swp"), backups ("name~", "name.bak") and merge leftovers ("name.orig"). None is a
# flow, and loading one would crash the load or bring back an old version of a flow.
EDITOR_PREFIXES = (".", "#")
EDITOR_SUFFIXES = ("~", "#", ".swp", ".swo", ".swx", ".bak", ".orig", ".rej", ".tmp")


def is_editor_file(name: str) -> bool:
    """Whether a file in the flows folder is an editor's artefact or hidden, never a flow."""
    return name.startswith(EDITOR_PREFIXES) or name.endswith(EDITOR_SUFFIXES)


def flow_files(directory: Path) -> list[Path]:
    """The files of the folder that are loaded: .yaml and .yml, but no editor's artefact."""
    return sorted(p for p in directory.iterdir()
                  if p.suffix in (".yaml", ".yml") and not is_editor_file(p.name))


def skipped_files(directory: Path) -> list[str]:
    """The names of the editors' artefacts and hidden files in the folder, which are skipped."""
    try:
        return sorted(p.name for p in Path(directory).iterdir() if is_editor_file(p.name))
    except OSError:
        return []


def describe_skipped(names: list[str]) -> str:
    """One line that says which files were skipped, and why."""
    files = "file that is not a flow" if len(names) == 1 else "files that are not flows"
    return (f"skipped {len(names)} {files}: {', '.join(names)} (editors' lock files, backups "
            "and hidden files are never loaded)")


def _read(path: Path) -> bytes:
    """A flow file's bytes. Opened without blocking, so a pipe named like a flow cannot hang
    the load, and read only if it is a plain file (or a link to one)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        if path.is_symlink():
            raise FlowError(Where(str(path)), f"this is a link to {os.readlink(path)}, which "
                            "does not exist", "point it at a flow file, or remove it") from None
        raise FlowError(Where(str(path)), "the file went away while it was read",
                        "the next reload reads the folder again") from None
    except OSError as exc:
        raise FlowError(Where(str(path)), f"the file cannot be read ({exc.strerror})",
                        "check that the service may read it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FlowError(Where(str(path)), "this is not a file (a folder, a pipe or a device)",
                        "remove it, or rename it without .yaml")
    with os.fdopen(fd, "rb") as file:
        return read_file(file)


def load_flowset(directory: str | Path) -> FlowSet:
    """Load, parse and prove every flow in ``directory``; raise ``FlowSetInvalid`` if any fail."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FlowSetInvalid([FlowError(Where(str(directory)), "there is no flows folder here",
                                        "set CALLFLOW_FLOWS to the folder of .yaml flows")])
    try:
        paths = flow_files(directory)
    except OSError as exc:
        raise FlowSetInvalid([FlowError(Where(str(directory)), f"the flows folder cannot be read "
                                        f"({exc.strerror})", "check that the service may read "
                                        "it")]) from None
    files: list[tuple[Path, bytes]] = []
    unread: list[FlowError] = []
    for path in paths:
        try:
            files.append((path, _read(path)))
        except FlowError as exc:
            unread.append(exc)
    return load_files(directory, files, unread)


def load_files(directory: Path, files: list[tuple[Path, bytes]],
               unread: list[FlowError] | None = None) -> FlowSet:
    """Parse and prove the files of a flows folder, given as (path, bytes): read from the folder,
    or kept from the last good set (``callflow.language.lastgood``). ``unread`` are the files of the
    folder that could not be read; they count as broken."""
    errors: list[FlowError] = list(unread or [])
    hashes: dict[str, str] = {}
    sources: dict[str, str] = {}
    flow_docs: list[tuple[Path, Mapping]] = []
    team_docs: list[tuple[Path, Mapping]] = []
    line_docs: list[tuple[Path, Mapping]] = []
    teams_in_doubt = bool(errors)  # a file that failed early might have been the teams file
    for path, raw in files:
        hashes[str(path)] = hashlib.sha256(raw).hexdigest()
        try:
            sources[str(path)] = decode(raw, str(path))
            doc = load_text(sources[str(path)], str(path))
        except FlowError as exc:
            errors.append(exc)
            teams_in_doubt = True
            continue
        if not isinstance(doc, Mapping):
            errors.append(FlowError(Where(str(path), 1, 1), "a flow file should be a mapping of "
                                    "settings", "start with 'helpline:' or 'teams:'"))
            teams_in_doubt = True
            continue
        refusals = _policy_refusals(doc)
        if refusals:
            errors.extend(refusals)
            teams_in_doubt = teams_in_doubt or "teams" in doc
            continue
        kind = "teams" if "teams" in doc else "line" if "manager_line" in doc else "flow"
        {"teams": team_docs, "line": line_docs, "flow": flow_docs}[kind].append((path, doc))

    team_errors: list[FlowError] = []
    teams = [team for path, doc in team_docs for team in _teams(doc, team_errors)]
    errors.extend(team_errors)
    flows = _collect(errors, (partial(_flow, path, doc) for path, doc in flow_docs))
    if not flow_docs and not errors:
        errors.append(FlowError(Where(str(directory)), "there are no flows here",
                                "add a helpline's flow as a .yaml file"))
    lines = _collect(errors, (partial(_manager_line, path, doc) for path, doc in line_docs))
    errors.extend(FlowError(line.where, "only one file may define the manager line",
                            "merge them") for line in lines[1:])
    flowset = FlowSet(flows={f.id: f for f in flows}, teams={t.name: t for t in teams},
                      files=hashes, sources=sources, manager_line=lines[0] if lines else None)
    # Prove the flows that did parse, so one broken file does not hide another's mistakes; while
    # the teams file may be broken, a team "not found" would be noise, so those checks wait.
    problems, warnings = validate(flowset, check_teams=not (teams_in_doubt or team_errors))
    errors.extend(problems)
    flowset.warnings.extend(warnings)
    if errors:
        raise FlowSetInvalid(errors)
    return flowset


def _collect(errors: list[FlowError], parses: Iterable[Callable[[], T]]) -> list[T]:
    """Run each parse, keeping the good results and every error.

    Each parse is a separate call: an error raised inside a generator would end it, and with it
    every later parse, so an admin would see only the first mistake.
    """
    kept = []
    for parse in parses:
        try:
            kept.append(parse())
        except FlowSetInvalid as exc:
            errors.extend(exc.errors)
        except FlowError as exc:
            errors.append(exc)
    return kept


def _policy_refusals(doc: Mapping) -> list[FlowError]:
    """Every key or step kind anywhere in a document that asks for what the policy forbids.

    A walk with a list of what is left to see, not a recursion: the document's depth is
    bounded when it is read, and this needs no bound of its own."""
    refusals, left = [], [doc]
    while left:
        node = left.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if isinstance(key, str) and forbidden(key):
                    refusals.append(policy_refusal(node.key_where[key], f"'{key}'"))
                elif key == "kind" and isinstance(value, str) and forbidden(value):
                    refusals.append(policy_refusal(node.at(key), f"a '{value}' step"))
            left.extend(reversed(node.values()))
        elif isinstance(node, Sequence):
            left.extend(reversed(node))
    return sorted(refusals, key=lambda error: (error.where.line, error.where.column))


def _teams(doc: Mapping, errors: list[FlowError]) -> list[Team]:
    teams = doc["teams"]
    for key in doc:
        if key != "teams":
            errors.append(FlowError(doc.key_where[key], f"a teams file holds only 'teams', not "
                                    f"'{key}'", "move flow settings into the helpline's own file"))
    if not isinstance(teams, Mapping) or not teams:
        errors.append(FlowError(doc.at("teams"), "'teams' should name at least one team"))
        return []
    return _collect(errors, (partial(_team, teams, name) for name in teams))


def _team(teams: Mapping, name) -> Team:
    where, spec = teams.key_where[name], teams[name]
    if not isinstance(spec, Mapping):
        raise FlowError(teams.at(name), f"team '{name}' should list its workers")
    settings = fields.read(Team, spec, f"team '{name}'", skip=("workers",))
    workers = spec.get("workers")
    if not isinstance(workers, Sequence) or not workers:
        raise FlowError(spec.at("workers"), f"team '{name}' has no workers",
                        "list them under 'workers:' with a name and number each")
    parsed = []
    for item, item_where in zip(workers, workers.item_where, strict=True):
        if not isinstance(item, Mapping):
            raise FlowError(item_where, "a worker should have a name and a number")
        parsed.append(Worker(**fields.read(Worker, item, f"a worker of team '{name}'")))
    return Team(name=fields.read_name(name, where), where=where, workers=tuple(parsed),
                **settings)


def _manager_line(path: Path, doc: Mapping) -> ManagerLine:
    for key in doc:
        if key != "manager_line":
            raise FlowError(doc.key_where[key], f"the manager line's file holds only "
                            f"'manager_line', not '{key}'")
    spec = doc["manager_line"]
    if not isinstance(spec, Mapping):
        raise FlowError(doc.at("manager_line"), "'manager_line' should list its numbers")
    return ManagerLine(where=spec.where, **fields.read(ManagerLine, spec, "the manager line"))


def _flow(path: Path, doc: Mapping) -> Flow:
    what = f"flow {path.name}"
    header = fields.read(Flow, doc, what, skip=FLOW_SECTIONS)
    zone = parse_zone(header.get("timezone", "Europe/London"), doc.at("timezone"))
    if "hours" not in doc:
        raise FlowError(doc.where, f"{what} has no opening hours",
                        "add 'hours:' with a range for each open day, e.g. monday: \"09:00-17:00\"")
    hours = parse_hours(zone, doc["hours"], doc.get("closures"), doc.at("hours"),
                        closures_where=doc.at("closures"))
    if not isinstance(doc.get("degraded"), Mapping):
        raise FlowError(doc.at("degraded"), f"{what} has no 'degraded' settings",
                        "add 'degraded:' with the 'team' to dial when the flow cannot run")
    degraded = Degraded(**fields.read(Degraded, doc["degraded"], "the degraded settings"))
    steps = doc.get("steps")
    if not isinstance(steps, Mapping) or not steps:
        raise FlowError(doc.at("steps"), f"{what} has no steps",
                        "add 'steps:' with the named steps of the call")
    errors: list[FlowError] = []
    parsed = _collect(errors, (partial(_step, name, steps) for name in steps))
    names = [step.name for step in parsed]
    if not errors and header["start"] not in names:  # here, where 'start:' was written
        errors.append(FlowError(doc.at("start"), f"the start step '{header['start']}' does not "
                                "exist", did_you_mean(header["start"], names)
                                or "name one of the steps below"))
    if errors:
        raise FlowSetInvalid(errors)
    numbers = doc["numbers"]
    marks = {f"number {n}": w for n, w in zip(numbers, numbers.item_where, strict=True)}
    marks["degraded team"] = doc["degraded"].at("team")
    return Flow(id=path.stem, path=str(path), where=doc.where, hours=hours, degraded=degraded,
                steps={s.name: s for s in parsed}, marks=marks, **header)


def _step(name, steps: Mapping) -> Step:
    name = fields.read_name(name, steps.key_where[name])
    spec = steps[name]
    if not isinstance(spec, Mapping):
        raise FlowError(steps.at(name), f"step '{name}' should be a mapping with a 'kind'")
    kind = spec.get("kind")
    if not isinstance(kind, str) or kind not in STEP_KINDS:
        kinds = f"the kinds are: {', '.join(STEP_KINDS)}"
        if kind is None:
            problem, hint = "has no 'kind'", kinds
        elif not isinstance(kind, str):
            problem, hint = "has a 'kind' that is not a single word", kinds
        else:
            problem, hint = f"has an unknown kind '{kind}'", did_you_mean(kind, STEP_KINDS) or kinds
        raise FlowError(spec.at("kind"), f"step '{name}' {problem}", hint)
    cls = STEP_KINDS[kind]
    values = fields.read(cls, spec, f"step '{name}' ({kind})", skip=("kind",))
    marks = {key: spec.at(key) for key in spec}
    if isinstance(spec.get("options"), Mapping):
        options = spec["options"]
        marks.update({f"option '{key}'": options.at(key) for key in options})
    return cls(name=name, where=steps.key_where[name], marks=marks, **values)
