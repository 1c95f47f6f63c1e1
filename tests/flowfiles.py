"""Small flow folders for loader and validator tests: a valid flow to edit, and its errors."""

from __future__ import annotations

import shutil
from pathlib import Path

from callflow.language.flow import FlowSet
from callflow.language.loader import load_flowset
from callflow.platform.errors import FlowSetInvalid
from tests.conftest import FLOWS

# A valid flow whose line numbers the tests point at (line 1 is "helpline:").
BASE = """\
helpline: Test Line
numbers: ["+441632960099"]
hours:
  monday: "09:00-17:00"
degraded:
  team: respect-workers
start: welcome
steps:
  welcome:
    kind: notice
    next: menu1
  menu1:
    kind: menu
    prompt: Press 1 to talk to someone
    options:
      1: connect
    on_no_input: connect
  connect:
    kind: connect
    team: respect-workers
    on_no_answer: busy
  busy:
    kind: message
    text: Sorry, everyone is busy. In an emergency call 999.
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    """``text`` with ``old`` replaced once; fails loudly if ``old`` is not there."""
    assert text.count(old) == 1, f"{old!r} should occur once"
    return text.replace(old, new)


def write_folder(folder: Path, files: dict[str, str], *, teams: bool = True) -> Path:
    """A flows folder holding ``files`` (name -> YAML) and, unless told not to, the shipped
    teams file."""
    folder.mkdir(parents=True, exist_ok=True)
    if teams:
        shutil.copy(FLOWS / "teams.yaml", folder / "teams.yaml")
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def errors_of(folder: Path) -> list[str]:
    """Every error loading ``folder`` reports, as an admin reads it, paths made relative."""
    try:
        load_flowset(folder)
    except FlowSetInvalid as exc:
        return [str(error).replace(f"{folder}/", "") for error in exc.errors]
    raise AssertionError(f"{folder} loaded without errors")


def warnings_of(flowset: FlowSet, folder: Path) -> list[str]:
    return [str(warning).replace(f"{folder}/", "") for warning in flowset.warnings]
