"""The live flow set: swapped whole on reload, and a bad edit never replaces a good set."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time

import pytest

from callflow import registry as registry_module
from callflow.errors import FlowSetInvalid
from callflow.registry import FlowRegistry, reload_on_sighup
from tests.conftest import FLOWS

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
    with caplog.at_level(logging.ERROR, logger="callflow.registry"):
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
    with caplog.at_level(logging.ERROR, logger="callflow.registry"):
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
    with caplog.at_level(logging.INFO, logger="callflow.registry"):
        registry.reload()
    [record] = [r for r in caplog.records if getattr(r, "event", "") == "flow_files_skipped"]
    assert record.getMessage() == (
        "skipped 1 file that is not a flow: respect-phoneline.yaml~ (editors' lock files, "
        "backups and hidden files are never loaded)")
