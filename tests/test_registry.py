"""The live flow set: swapped whole on reload, and a bad edit never replaces a good set."""

from __future__ import annotations

import logging
import shutil

import pytest

from callflow.errors import FlowSetInvalid
from callflow.registry import FlowRegistry
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
