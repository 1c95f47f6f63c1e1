"""Every URL the service gives Twilio is one of the web app's routes: ``Links`` is built from
the app's URL map, and each step kind with a callback has its route made from the registry."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from werkzeug.exceptions import MethodNotAllowed, NotFound

from callflow.language.steps import STEP_KINDS
from callflow.platform.links import CallState, Links, UnknownRoute
from tests.conftest import PUBLIC_URL
from webhooks import routes

STATE = CallState(notice_heard=True, declined=True, tries=2)


def every_link(links: Links) -> dict[str, str]:
    """One URL of each kind ``Links`` builds, with every parameter it can carry."""
    built = {
        "step": links.step("respect-phoneline", "busy", STATE),
        "degraded_dial": links.degraded_dial("respect-phoneline"),
        "screen": links.screen("respect-phoneline", "connect"),
        "screen_answer": links.screen_answer("respect-phoneline", "connect"),
        "hold": links.hold("c0123"),
        "conference": links.conference("c0123"),
        "waiting_left": links.waiting_left("c0123", "respect-phoneline", "connect", STATE),
        "join": links.join("c0123"),
        "worker": links.worker("respect-workers", 1, "ab12.1", "respect-phoneline"),
        "worker_answer": links.worker_answer("respect-workers", 1, "ab12.1",
                                             "respect-phoneline"),
        "worker_status": links.worker_status("respect-workers", 1, "ab12.1",
                                             "respect-phoneline"),
        "monitor_status": links.monitor_status("s0123"),
    }
    for stage in ("pin", "list", "purpose"):
        built[f"manager line {stage}"] = links.manager_line(stage, call="c0123")
    for kind in STEP_KINDS.values():
        if kind.callback:
            built[f"{kind.kind} callback"] = links.answer(kind.callback, "respect-phoneline",
                                                          "x", STATE, call="c0123")
    return built


def test_every_link_is_a_route_twilio_may_post_to(app):
    links = app.extensions["callflow"]["runtime"].links
    adapter = app.url_map.bind("callflow.example.org", url_scheme="https")
    for name, url in every_link(links).items():
        assert url.startswith(f"{PUBLIC_URL}/"), name
        parts = urlsplit(url)
        try:
            adapter.match(parts.path, method="POST", query_args=parts.query)
        except (NotFound, MethodNotAllowed) as exc:  # pragma: no cover - the failure
            pytest.fail(f"{name}: {url} is not a route ({exc})")


def test_each_step_kind_with_a_callback_has_its_route():
    paths = routes()
    for kind in STEP_KINDS.values():
        if kind.callback:
            assert paths[f"voice.{kind.callback}"] == f"/voice/{kind.callback}"
    assert {k.callback for k in STEP_KINDS.values() if k.callback} == {"notice", "menu", "dial"}


def test_a_link_to_no_route_is_refused_by_name():
    with pytest.raises(UnknownRoute, match="voice.nowhere"):
        Links(PUBLIC_URL, routes()).url("voice.nowhere")


def test_the_state_in_a_link_is_short_and_names_nobody():
    url = Links(PUBLIC_URL, routes()).answer("menu", "respect-phoneline", "main-menu", STATE)
    assert url == (f"{PUBLIC_URL}/voice/menu?flow=respect-phoneline&step=main-menu&n=1&d=1&t=2")
    assert CallState.from_query(lambda name: dict(n="1", d="1", t="2").get(name, "")) == STATE
