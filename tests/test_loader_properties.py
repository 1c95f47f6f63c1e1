"""Whatever the flows folder holds, loading it gives a proven set or ``FlowSetInvalid``: nothing
else escapes, no load hangs, and none takes more memory than its bytes allow.

Hypothesis feeds the loader the shipped flows with random edits (characters, lines, the YAML
an attacker would reach for), random bytes, and deep and wide documents; the named attacks
(billion laughs, 20,000 levels, a file past the size limit) are examples every run tries.
Memory is Python's peak allocation while loading (tracemalloc: the same for the same input on
any machine). Time is bounded only against a hang, never as a speed.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import tracemalloc
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from callflow.language.fields import specs
from callflow.language.loader import load_flowset
from callflow.language.texts import fill
from callflow.platform.errors import FlowSetInvalid
from callflow.platform.limits import MAX_FILE_BYTES, MAX_TEXT_CHARS, MAX_VALUES
from tests.conftest import FLOWS

SHIPPED = {path.name: path.read_text(encoding="utf-8") for path in sorted(FLOWS.glob("*.yaml"))}
HANG_SECONDS = 120  # far beyond any load; only a load that never ends reaches it
# Python's own start-up of a load (modules' caches, zone data) plus a generous share per byte.
BASE_BYTES = 8 * 1024 * 1024
PER_BYTE = 80

# What a careless or hostile edit types: YAML's syntax, the attacker's YAML, odd characters.
TOKENS = st.sampled_from([
    "[", "]", "{", "}", ":", ": ", ",", "-", "- ", "&a ", "*a", "!!python/object:os.system ",
    "!foo ", "!!set ", "!!binary ", "<<: ", "? ", "|", ">", "'", '"', "#", "%", "@", "`",
    "\n", "\t", "  ", "    ", "\x00", "\x85", "\u2028", "\ufeff", "é", "\\0", '"\\ud800"',
    "{helpline:>99999}", "{helpline.__class__}", "{{", "}}", "kind: record", "kind: goto",
    "next: welcome", "start: ", "steps:", "teams:", "1" * 5000, "2026-13-45", "~", "null",
    "yes", "0x1F", ".inf", "---", "...", "x" * 5000,
])


@st.composite
def edited(draw) -> tuple[str, bytes]:
    """A shipped file with a few random edits: tokens or characters typed, lines removed,
    duplicated or re-indented."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    text = SHIPPED[name]
    for _ in range(draw(st.integers(1, 6))):
        lines = text.split("\n")
        at = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["type", "type", "type", "drop", "copy", "indent"]))
        if action == "type":
            where = draw(st.integers(0, len(text)))
            typed = draw(TOKENS | st.text(min_size=1, max_size=8))
            text = text[:where] + typed + text[where:]
        elif action == "drop":
            text = "\n".join(lines[:at] + lines[at + 1:])
        elif action == "copy":
            text = "\n".join(lines[:at + 1] + lines[at:])
        else:
            lines[at] = draw(st.sampled_from(["", " ", "  ", "      "])) + lines[at].lstrip()
            text = "\n".join(lines)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "latin-1"]))
    return name, text.encode(encoding, errors="replace")


PLAIN = st.none() | st.booleans() | st.integers() | st.text(max_size=20) | st.floats()
VALUES = st.recursive(PLAIN, lambda inner: st.lists(inner, max_size=8) | st.dictionaries(
    st.text(max_size=8), inner, max_size=8), max_leaves=200)


@st.composite
def documents(draw) -> tuple[str, bytes]:
    """Deep and wide YAML documents, some shaped a little like a flow, in either style."""
    value = draw(VALUES)
    if draw(st.booleans()):
        value = {"helpline": "Test", "numbers": ["+441632960099"], "start": "a",
                 "hours": {"monday": "09:00-17:00"}, "degraded": {"team": "respect-workers"},
                 "steps": {"a": value if isinstance(value, dict) else {"kind": value}}}
    depth = draw(st.integers(0, 60))
    for _ in range(depth):
        value = draw(st.sampled_from([[value], {"k": value}]))
    text = yaml.safe_dump(value, default_flow_style=draw(st.booleans()), allow_unicode=True)
    return draw(st.sampled_from(sorted(SHIPPED))), text.encode("utf-8")


def billion_laughs() -> bytes:
    rows = ['lol: &lol "lol"'] + [
        f"lol{n}: &lol{n} [{', '.join([f'*lol{n - 1}' if n > 1 else '*lol'] * 9)}]"
        for n in range(1, 10)]
    return ("\n".join(rows) + "\n").encode()


def load_within_bounds(name: str, content: bytes) -> None:
    """Load the shipped folder with ``name`` replaced by ``content``, in a thread so that a hang
    fails the test; only a proven set or FlowSetInvalid may come out."""
    with tempfile.TemporaryDirectory(prefix="callflow-fuzz-") as tmp:
        folder = Path(tmp)
        for shipped in FLOWS.glob("*.yaml"):
            shutil.copy(shipped, folder / shipped.name)
        (folder / name).write_bytes(content)
        outcome: dict[str, object] = {}

        def load() -> None:
            tracemalloc.start()
            try:
                outcome["flowset"] = load_flowset(folder)
            except FlowSetInvalid as exc:
                outcome["refused"] = exc
            except BaseException as exc:  # anything else is the failure this test looks for
                outcome["escaped"] = exc
            finally:
                outcome["peak"] = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        worker.join(HANG_SECONDS)
        assert not worker.is_alive(), f"the load of {name} never ended"
    assert "escaped" not in outcome, repr(outcome["escaped"])
    assert outcome["peak"] <= BASE_BYTES + PER_BYTE * len(content), outcome["peak"]
    if "refused" in outcome:
        errors = outcome["refused"].errors
        assert errors and all(str(error) for error in errors)
        return
    flowset = outcome["flowset"]
    for flow in flowset.flows.values():  # what was accepted is cheap to say, on every call
        for step in flow.steps.values():
            for key, spec in specs(type(step)).items():
                text = getattr(step, key)
                if spec.kind == "text" and isinstance(text, str):
                    assert len(fill(text, helpline=flow.helpline)) <= MAX_TEXT_CHARS


SLOW = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                       HealthCheck.data_too_large])


@settings(SLOW, max_examples=300)
@given(edited())
def test_shipped_flows_with_random_edits(case):
    load_within_bounds(*case)


@settings(SLOW, max_examples=100)
@given(st.sampled_from(sorted(SHIPPED)), st.binary(max_size=4096))
@example("respect-phoneline.yaml", b"\xff\xfe" + "helpline: x\n".encode("utf-16-le"))
@example("teams.yaml", b"teams:\n  a: \x00\x01\x02\n")
def test_random_bytes(name, content):
    load_within_bounds(name, content)


@settings(SLOW, max_examples=100)
@given(documents())
@example(("respect-phoneline.yaml", billion_laughs()))
@example(("respect-phoneline.yaml", ("a: " + "[" * 20_000 + "]" * 20_000 + "\n").encode()))
@example(("teams.yaml", "".join("  " * n + "k:\n" for n in range(20_000)).encode()))
@example(("respect-phoneline.yaml", ("a: [" + "1," * (MAX_VALUES + 10) + "]\n").encode()))
@example(("mens-advice-line.yaml", b"a: b\n" + b"#" * MAX_FILE_BYTES))
@example(("respect-phoneline.yaml", b"a: &x [*x]\n"))
def test_deep_and_wide_documents(case):
    load_within_bounds(*case)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_shipped_flows_load_within_the_bounds(name):
    load_within_bounds(name, SHIPPED[name].encode("utf-8"))
