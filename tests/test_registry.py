"""The live flow set: swapped whole on reload, and a bad edit never replaces a good set."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time

import pytest

from callflow.language import registry as registry_module
from callflow.language.lastgood import LastGoodFlows
from callflow.language.registry import FlowRegistry, reload_on_sighup
from callflow.platform import keys
from callflow.platform.errors import FlowSetInvalid
from tests.bridge_support import dead_store
from tests.conftest import FLOWS, OPEN_TIME

PROMPT = "    prompt: >-\n      If you are worried"


@pytest.fixture
def folder(tmp_path):
    for path in FLOWS.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def edit_respect(folder, old: str, new: str) -> None:
    path = folder / "respect-phoneline.yaml"
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_bad_folder_refuses_to_start(folder):
    edit_respect(folder, "kind: notice", "kind: record")
    with pytest.raises(FlowSetInvalid):
        FlowRegistry(folder)


def test_a_bad_edit_keeps_the_last_good_set_and_says_why(folder, caplog):
    seen = []
    registry = FlowRegistry(folder, on_reload=lambda fresh, error: seen.append((fresh, error)))
    good = registry.current
    edit_respect(folder, "start: welcome", "start: main-menu")
    with caplog.at_level(logging.ERROR, logger="callflow.language.registry"):
        assert registry.reload() is False
    assert registry.current is good
    assert "without hearing the confidentiality notice" in caplog.text
    [(fresh, error)] = seen
    assert fresh is None and isinstance(error, FlowSetInvalid)


def test_a_good_edit_is_swapped_in_whole(folder):
    seen = []
    registry = FlowRegistry(folder, on_reload=lambda fresh, error: seen.append((fresh, error)))
    old = registry.current
    edit_respect(folder, PROMPT, "    prompt: >-\n      Press 1 now. If you are worried")
    assert registry.reload() is True
    assert registry.current is not old
    assert registry.current.flows["respect-phoneline"].steps["main-menu"].prompt.startswith(
        "Press 1 now.")
    assert old.flows["respect-phoneline"].steps["main-menu"].prompt.startswith("If you are")
    assert seen == [(registry.current, None)]


def test_reload_if_changed_only_reloads_after_an_edit(folder):
    registry = FlowRegistry(folder)
    current = registry.current
    assert registry.reload_if_changed() is None
    assert registry.current is current
    edit_respect(folder, PROMPT, "    prompt: >-\n      Hello. If you are worried")
    assert registry.reload_if_changed() is True
    assert registry.reload_if_changed() is None


def test_a_bad_edit_is_not_retried_until_the_next_edit(folder):
    registry = FlowRegistry(folder)
    edit_respect(folder, "kind: notice", "kind: nótice")
    assert registry.reload_if_changed() is False
    assert registry.reload_if_changed() is None
    edit_respect(folder, "kind: nótice", "kind: notice")
    assert registry.reload_if_changed() is True


def test_a_removed_flow_file_is_noticed(folder):
    registry = FlowRegistry(folder)
    (folder / "mens-advice-line.yaml").unlink()
    assert registry.reload_if_changed() is True
    assert sorted(registry.current.flows) == ["respect-phoneline"]


# -- a reload never crashes, and the watcher never dies ----------------------------------------

DEEP = "a: " + "[" * 20_000 + "]" * 20_000 + "\n"


def wait_for(condition, what: str, seconds: float = 30.0) -> None:
    """Wait for the watcher's thread to do something (a bound against hangs, not speed)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.05)


def test_the_lock_emacs_leaves_while_a_flow_is_edited_is_no_reload(folder):
    registry = FlowRegistry(folder)
    good = registry.current
    (folder / ".#respect-phoneline.yaml").symlink_to("admin@laptop.4242:1700000000")
    assert registry.reload_if_changed() is None  # an editor's file is not an edit
    assert registry.reload() is True
    assert registry.current.flows == good.flows


@pytest.mark.parametrize("failure", [OSError(5, "Input/output error"), RecursionError(),
                                     MemoryError(), ValueError("a bug")],
                         ids=["OSError", "RecursionError", "MemoryError", "ValueError"])
def test_any_failure_of_a_reload_keeps_the_last_good_set_logs_and_reports_it(
        folder, monkeypatch, caplog, failure):
    seen = []
    registry = FlowRegistry(folder, on_reload=lambda fresh, error: seen.append((fresh, error)))
    good = registry.current

    def fail(directory):
        raise failure

    monkeypatch.setattr(registry_module, "load_flowset", fail)
    with caplog.at_level(logging.ERROR, logger="callflow.language.registry"):
        assert registry.reload() is False
    assert registry.current is good
    [(fresh, refused)] = seen
    assert fresh is None
    assert refused is registry.refused
    [error] = [str(e) for e in refused.errors]
    assert error.startswith(f"{folder}: the flows could not be loaded ({type(failure).__name__}")
    assert "flow reload refused" in caplog.text


def test_a_reload_that_cannot_be_recorded_still_happens(folder):
    def audit_down(fresh, refused):
        raise ConnectionError("the audit log is unreachable")

    registry = FlowRegistry(folder, on_reload=audit_down)
    edit_respect(folder, PROMPT, "    prompt: >-\n      Hello. If you are worried")
    assert registry.reload() is True
    assert registry.current.flows["respect-phoneline"].steps["main-menu"].prompt.startswith(
        "Hello.")


def test_the_watcher_outlives_every_bad_edit_and_then_loads_a_good_one(folder):
    """A real watcher thread, as the service runs it, meets an editor's lock, a dangling link
    named like a flow, a file nested 20,000 deep and a failing audit; a good edit is still
    picked up afterwards."""
    refusals = []

    def record(fresh, refused):
        refusals.append(refused)
        if refused is not None and len(refusals) == 2:
            raise ConnectionError("the audit log is unreachable")

    registry = FlowRegistry(folder, on_reload=record)
    good = registry.current
    watch = registry.watch(0.05)
    try:
        (folder / ".#respect-phoneline.yaml").symlink_to("admin@laptop.4242:1700000000")
        (folder / "broken-link.yaml").symlink_to("nowhere.yaml")
        wait_for(lambda: len(refusals) >= 1, "the dangling link is refused")
        (folder / "broken-link.yaml").unlink()
        (folder / "deep.yaml").write_text(DEEP, encoding="utf-8")
        wait_for(lambda: len(refusals) >= 2, "the deep file is refused")
        assert registry.current is good and watch.thread.is_alive()
        (folder / "deep.yaml").unlink()
        edit_respect(folder, PROMPT, "    prompt: >-\n      Hello. If you are worried")
        wait_for(lambda: registry.current is not good, "the good edit is loaded")
        assert watch.thread.is_alive()
        assert registry.refused is None
        assert [r is not None for r in refusals] == [True, True, False]
        assert "nests deeper than" in str(refusals[1])
    finally:
        watch.stop()


def test_the_watcher_reloads_when_asked_even_with_no_interval(folder):
    registry = FlowRegistry(folder)
    good = registry.current
    watch = registry.watch(0)
    try:
        edit_respect(folder, PROMPT, "    prompt: >-\n      Hello. If you are worried")
        time.sleep(0.5)
        assert registry.current is good  # no interval: the folder is not watched
        registry.ask_reload()
        wait_for(lambda: registry.current is not good, "the asked-for reload")
    finally:
        watch.stop()


def test_sighup_asks_for_a_reload_in_this_process(folder):
    registry = FlowRegistry(folder)
    good = registry.current
    before = signal.getsignal(signal.SIGHUP)
    watch = registry.watch(0)
    try:
        assert reload_on_sighup(registry) is True
        edit_respect(folder, PROMPT, "    prompt: >-\n      Hello. If you are worried")
        os.kill(os.getpid(), signal.SIGHUP)
        wait_for(lambda: registry.current is not good, "the reload SIGHUP asked for")
    finally:
        signal.signal(signal.SIGHUP, before)
        watch.stop()


def test_skipped_editor_files_are_logged_on_a_reload(folder, caplog):
    registry = FlowRegistry(folder)
    (folder / "respect-phoneline.yaml~").write_text("kind: record", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="callflow.language.registry"):
        registry.reload()
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "flow_files_skipped"]
    assert record.getMessage() == (
        "skipped 1 file that is not a flow: respect-phoneline.yaml~ (editors' lock files, "
        "backups and hidden files are never loaded)")


# -- the last good set, for a process that starts while the folder is broken ----------------------

@pytest.fixture
def last_good(redis):
    return LastGoodFlows(redis, lambda: OPEN_TIME)


def break_respect(folder) -> None:
    """A careless save: the respect flow nested 20,000 deep, an editor's lock beside it."""
    (folder / "respect-phoneline.yaml").write_text(DEEP, encoding="utf-8")
    (folder / ".#respect-phoneline.yaml").symlink_to("admin@laptop.4242:1700000000")


def test_a_good_start_keeps_its_sources_as_the_last_good_set(folder, last_good):
    FlowRegistry(folder, last_good=last_good)
    snapshot = last_good.snapshot()
    assert snapshot.files == {p.name: p.read_text(encoding="utf-8")
                              for p in sorted(folder.glob("*.yaml"))}
    assert snapshot.saved_at == OPEN_TIME.isoformat(timespec="seconds")


def test_a_process_that_starts_on_a_broken_folder_serves_the_last_good_set(folder, last_good,
                                                                          caplog):
    good = FlowRegistry(folder, last_good=last_good).current
    break_respect(folder)
    seen = []
    with caplog.at_level(logging.WARNING, logger="callflow.language.registry"):
        registry = FlowRegistry(folder, on_reload=lambda fresh, error: seen.append((fresh, error)),
                                last_good=last_good)
    assert registry.current.flows == good.flows
    assert registry.current.teams == good.teams
    assert registry.current.flows["respect-phoneline"].path == str(folder /
                                                                   "respect-phoneline.yaml")
    assert registry.broken_files == ["respect-phoneline.yaml"]
    assert registry.started_on_last_good == OPEN_TIME.isoformat(timespec="seconds")
    [(fresh, refused)] = seen  # audited as a refused load
    assert fresh is None and "nests deeper than" in str(refused)
    assert "degraded: serving the last good flows" in caplog.text


def test_a_good_edit_after_a_start_on_the_last_good_set_ends_the_degradation(folder,
                                                                            last_good):
    FlowRegistry(folder, last_good=last_good)
    original = (folder / "respect-phoneline.yaml").read_text(encoding="utf-8")
    break_respect(folder)
    registry = FlowRegistry(folder, last_good=last_good)
    (folder / "respect-phoneline.yaml").write_text(original.replace(
        "      If you are worried", "      Hello. If you are worried"), encoding="utf-8")
    assert registry.reload() is True
    assert registry.broken_files == [] and registry.started_on_last_good is None
    assert "Hello. If you are worried" in last_good.snapshot().files["respect-phoneline.yaml"]


def test_the_first_start_on_a_broken_folder_refuses_with_its_errors(folder, last_good):
    break_respect(folder)
    with pytest.raises(FlowSetInvalid) as caught:
        FlowRegistry(folder, last_good=last_good)
    assert "respect-phoneline.yaml:1:23: this nests deeper than" in str(caught.value)


def test_a_damaged_last_good_set_is_not_served(folder, last_good, redis):
    FlowRegistry(folder, last_good=last_good)
    kept = json.loads(redis.get(keys.last_good_flows()))
    kept["files"]["teams.yaml"]["source"] += "# edited in Redis\n"  # its hash no longer fits
    redis.set(keys.last_good_flows(), json.dumps(kept))
    break_respect(folder)
    with pytest.raises(FlowSetInvalid):
        FlowRegistry(folder, last_good=last_good)


def test_a_last_good_set_that_no_longer_validates_is_not_served(folder, last_good, redis):
    FlowRegistry(folder, last_good=last_good)
    kept = json.loads(redis.get(keys.last_good_flows()))
    source = kept["files"]["respect-phoneline.yaml"]["source"].replace("kind: notice",
                                                                       "kind: record")
    kept["files"]["respect-phoneline.yaml"] = {"source": source, "sha256": hashlib.sha256(
        source.encode()).hexdigest()}
    redis.set(keys.last_good_flows(), json.dumps(kept))
    break_respect(folder)
    with pytest.raises(FlowSetInvalid):
        FlowRegistry(folder, last_good=last_good)


def test_a_process_starts_on_a_good_folder_when_redis_cannot_keep_it(folder):
    registry = FlowRegistry(folder, last_good=LastGoodFlows(dead_store(), lambda: OPEN_TIME))
    assert sorted(registry.current.flows) == ["mens-advice-line", "respect-phoneline"]
