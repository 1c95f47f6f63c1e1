"""The README's scripted examples are what the commands print: each ``console`` block's ``$``
line is run and its output compared, line for line, with the README's; and, run under two
different clocks (one when the helplines are open, one in the middle of the night), each prints
the same, because a scripted example pins the time with ``--at``."""

from __future__ import annotations

import logging
import re
import shlex
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from callflow import runtime
from tests.conftest import FLOWS
from webhooks.cli import cli

README = FLOWS.parent / "README.md"
CLOCKS = {"open": datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
          "night": datetime(2026, 11, 29, 3, 0, tzinfo=UTC)}  # a Sunday, 3am


@dataclass(frozen=True)
class Example:
    line: int
    command: str
    output: list[str]

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.command)


def examples() -> list[Example]:
    """Each ``$ command`` of a ``console`` block, with the lines after it, up to the next."""
    found: list[Example] = []
    text = README.read_text(encoding="utf-8")
    for block in re.finditer(r"^```console\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        first = text.count("\n", 0, block.start()) + 2
        for offset, line in enumerate(block[1].splitlines()):
            if line.startswith("$ "):
                found.append(Example(first + offset, line[2:], []))
            else:
                found[-1].output.append(line)
    return found


EXAMPLES = examples()


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path, redis_url, redis):
    for name in ("CALLFLOW_PUBLIC_URL", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID",
                 "CALLFLOW_POLICY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLFLOW_FLOWS", str(FLOWS))
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("SECRET_KEY", "readme-test-secret")
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()  # `simulate` builds a real app, which configures logging
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_readme_has_scripted_examples():
    assert len(EXAMPLES) >= 4
    assert all(e.output for e in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"README.md:{e.line}")
def test_every_scripted_simulation_pins_the_time(example):
    argv = example.argv
    assert argv[0] == "callflow"
    if argv[1] == "simulate":
        assert "--digits" in argv, "a shown output needs the keys scripted"
        assert "--at" in argv, "without --at the output depends on the time of day"


def test_no_scripted_simulation_anywhere_in_the_readme_leaves_the_time_to_the_clock():
    for number, line in enumerate(README.read_text(encoding="utf-8").splitlines(), 1):
        if "callflow simulate" in line and "--digits" in line:
            assert "--at" in line, f"README.md:{number}: {line}"


@pytest.mark.parametrize("clock", CLOCKS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"README.md:{e.line}")
def test_each_example_prints_what_the_readme_shows_whatever_the_clock(runner, monkeypatch,
                                                                        example, clock):
    monkeypatch.setattr(runtime, "utc_now", lambda: CLOCKS[clock])
    result = runner.invoke(cli, example.argv[1:], prog_name="callflow")
    refused = any(line.startswith("Error: ") for line in example.output)
    assert (result.exit_code != 0) is refused, result.output
    assert [line.rstrip() for line in result.output.splitlines()] == example.output
