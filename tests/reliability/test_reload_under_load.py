"""A flow file replaced with a broken one while calls are in progress (promise 6): under load,
not one request fails, every caller hears the notice, the last good flow stays live through
every bad edit, and a good edit is then picked up.

Caller threads drive whole signed calls through the app while an editor thread rewrites the
Respect Phoneline's file in a copy of the flows folder (a syntax error, a half-written save, an
empty file, a step kind that records, a flow whose menu comes before the notice, a dangling
option) and reloads after each, as SIGHUP or the folder watcher would. Each edit waits until
a call has been completed since it, so calls run through every edit whatever the machine's
speed; the callers are stopped when the test ends, whether it passes or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter

from callflow.records.audit import AuditKind
from tests.conftest import FLOWS, OPEN_TIME, RESPECT, TOKEN, Clock
from tests.reliability.support import Caller, Line, assert_clean, log_text
from webhooks import create_app

FLOW_FILE = "respect-phoneline.yaml"
NEW_PROMPT = "To talk to someone about your behaviour now, press 1."
CALLERS = 4
ROUNDS = 3  # times every broken edit is saved while calls run
# Only a guard against a stuck test: calls take milliseconds, however busy the machine.
STUCK_SECONDS = 60


def broken_versions(good: str) -> dict[str, str]:
    """Edits an admin could save by mistake; each must be refused by the loader."""
    return {
        "syntax error": good.replace("steps:", "steps: [unclosed", 1),
        "half-written save": good[: len(good) // 2],
        "empty file": "",
        "a step that records": good.replace("kind: say", "kind: record", 1),
        "menu before the notice": good.replace("start: welcome", "start: main-menu", 1),
        "dangling option": good.replace("2: website", "2: nowhere", 1),
    }


def good_edit(good: str) -> str:
    prompt_start = good.index("    prompt: >-")
    prompt_end = good.index("    options:", prompt_start)
    return good[:prompt_start] + f"    prompt: {NEW_PROMPT}\n" + good[prompt_end:]


@dataclasses.dataclass
class Tally:
    requests: int = 0
    calls: int = 0
    failures: Counter = dataclasses.field(default_factory=Counter)
    prompts: Counter = dataclasses.field(default_factory=Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def fail(self, why: str) -> None:
        with self.lock:
            self.failures[why] += 1


def one_call(line: Line, notice: str, tally: Tally) -> None:
    """Incoming, the notice heard to its end, 1 at the menu: every answer a 200 of TwiML, the
    notice in the first, a <Dial> in the last."""
    caller = Caller(line, RESPECT)
    steps = [("/voice/incoming", {}), (None, {}), (None, {"Digits": "1"})]
    for index, (url, extra) in enumerate(steps):
        response = caller.send(url or caller.action(), **extra)
        with tally.lock:
            tally.requests += 1
        if response.status_code != 200:
            return tally.fail(f"HTTP {response.status_code}")
        try:
            root = ET.fromstring(response.get_data(as_text=True))
        except ET.ParseError:
            return tally.fail("not XML")
        if root.tag != "Response":
            return tally.fail("not TwiML")
        said = " ".join(e.text or "" for e in root.iter("Say"))
        if index == 0 and notice not in said:
            return tally.fail("no notice")
        if "technical problem" in said:
            return tally.fail("degraded")
        if index == 1:
            with tally.lock:
                tally.prompts[said] += 1
        if index < 2 and (root.find("Gather") is None or not root.find("Gather").get("action")):
            return tally.fail("no gather")
        if index == 2 and root.find("Dial") is None:
            return tally.fail("not put through")
    with tally.lock:
        tally.calls += 1


@contextlib.contextmanager
def load(line: Line, notice: str, tally: Tally):
    """Callers playing call after call until the block ends; stopped however it ends."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                one_call(line, notice, tally)
            except Exception as exc:  # counted: the test fails on any
                tally.fail(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=loop, name=f"caller-{n}", daemon=True)
               for n in range(CALLERS)]
    for thread in threads:
        thread.start()
    try:
        yield threads
    finally:
        stop.set()
        for thread in threads:
            thread.join(STUCK_SECONDS)


def calls_after(tally: Tally, count: int) -> None:
    """Wait until ``count`` more calls have ended (or failed) than have so far."""
    with tally.lock:
        target = tally.calls + sum(tally.failures.values()) + count
    deadline = time.monotonic() + STUCK_SECONDS
    while True:
        with tally.lock:
            if tally.calls + sum(tally.failures.values()) >= target:
                return
        assert time.monotonic() < deadline, f"the callers are stuck: {tally}"
        time.sleep(0.005)


def test_broken_flow_edits_under_load_fail_no_request_and_a_good_edit_is_picked_up(
        settings, redis, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    flows = tmp_path / "flows"
    shutil.copytree(FLOWS, flows)
    path = flows / FLOW_FILE
    good = path.read_text()
    app = create_app({"TESTING": True, "STORE": redis, "CLOCK": Clock(OPEN_TIME),
                      "SETTINGS": dataclasses.replace(settings, flows_dir=str(flows))})
    registry = app.extensions["callflow"]["registry"]
    rt = app.extensions["callflow"]["runtime"]
    line = Line(app, TOKEN)
    live = registry.current
    notice = live.flows["respect-phoneline"].notice_text
    original_prompt = live.flows["respect-phoneline"].steps["main-menu"].prompt
    tally = Tally()

    refused = []
    with load(line, notice, tally) as callers:
        for _ in range(ROUNDS):  # every bad edit, again and again, while calls run
            for name, text in broken_versions(good).items():
                path.write_text(text)
                refused.append(f"accepted: {name}" if registry.reload() else name)
                assert registry.current is live, name
                calls_after(tally, 1)  # a call went through after this edit
    assert not [t for t in callers if t.is_alive()]
    assert not [r for r in refused if r.startswith("accepted")], refused
    assert Counter(refused) == Counter({name: ROUNDS for name in broken_versions(good)})
    assert tally.failures == Counter(), tally.failures
    assert tally.calls >= len(refused), tally  # calls went through every edit
    assert tally.requests == 3 * tally.calls
    assert all(original_prompt in prompt for prompt in tally.prompts), tally.prompts

    path.write_text(good_edit(good))
    assert registry.reload()
    assert registry.current is not live
    after = Tally()
    with load(line, notice, after) as callers:
        calls_after(after, CALLERS)
    assert not [t for t in callers if t.is_alive()]
    assert after.failures == Counter(), after.failures
    assert after.calls >= CALLERS
    assert all(NEW_PROMPT in prompt for prompt in after.prompts), after.prompts

    kinds = Counter(e.kind for e in rt.audit.entries())
    assert kinds[AuditKind.FLOW_RELOAD_REFUSED] == len(refused)
    assert kinds[AuditKind.FLOW_RELOADED] == 1
    assert_clean(line.text(), log_text(caplog.records))
