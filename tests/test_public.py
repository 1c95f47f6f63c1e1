"""The public policy page: no sign-in, the policy from the admins' file, and the helplines'
numbers and opening hours from the live flows."""

from __future__ import annotations

import dataclasses

import pytest

from callflow.language.policy import shipped_policy_text
from tests.conftest import CLOSED_TIME, OPEN_TIME
from webhooks import create_app
from webhooks.public import display_number, policy_blocks


def test_the_policy_is_a_page_anyone_can_read(client):
    response = client.get("/policy")

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "Our confidentiality policy" in page
    assert "We do not use technology to identify callers or call recording equipment." in page
    assert "<h3>Callers who are at risk of domestic violence</h3>" in page
    assert "Respect Phoneline" in page and "Men&#39;s Advice Line" in page


def test_numbers_and_hours_come_from_the_flows(client, clock):
    clock.now = OPEN_TIME
    page = client.get("/policy").get_data(as_text=True)
    assert 'href="tel:+441632960001">01632 960001</a>' in page
    assert 'href="tel:+441632960002">01632 960002</a>' in page
    assert page.count("Open now") == 2
    assert "09:00–17:00" in page and "10:00–20:00" in page
    assert "25 December 2026" in page

    clock.now = CLOSED_TIME
    page = client.get("/policy").get_data(as_text=True)
    assert page.count("Closed now") == 2


def test_no_worker_number_is_on_the_page(client):
    page = client.get("/policy").get_data(as_text=True)
    assert "7700900" not in page and "07700" not in page


def test_plain_text_for_those_who_ask_for_it(client):
    response = client.get("/policy", headers={"Accept": "text/plain"})
    assert response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == shipped_policy_text()


def test_the_admins_own_policy_file(settings, redis, clock, tmp_path):
    path = tmp_path / "policy.txt"
    path.write_text("Our policy\n\nEverything is confidential, always.\n", encoding="utf-8")
    app = create_app({"TESTING": True, "STORE": redis, "CLOCK": clock,
                      "SETTINGS": dataclasses.replace(settings, policy_file=str(path))})
    page = app.test_client().get("/policy").get_data(as_text=True)
    assert "Everything is confidential, always." in page
    assert "Respect Confidentiality Policy" not in page


def test_the_page_carries_the_security_headers(client):
    headers = client.get("/policy").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("number", "shown"), [
    ("+441632960001", "01632 960001"),
    ("+442079460000", "020 7946 0000"),
    ("+448081234567", "0808 123 4567"),
    ("+443001234567", "0300 123 4567"),
    ("+15005550006", "+15005550006"),
    ("+4412345", "+4412345"),
])
def test_numbers_are_written_as_people_write_them(number, shown):
    assert display_number(number) == shown


def test_the_policy_text_becomes_headings_lists_and_footnotes():
    blocks = policy_blocks(shipped_policy_text())
    kinds = [b.kind for b in blocks]
    assert blocks[0].kind == "title"
    assert blocks[0].text.startswith("Respect Confidentiality Policy")
    assert "General principles" in [b.text for b in blocks if b.kind == "heading"]
    listed = next(b for b in blocks if b.kind == "list")
    assert len(listed.items) == 4 and listed.items[0].startswith("a caller has requested")
    assert [b.text[:1] for b in blocks if b.kind == "footnote"] == ["¹", "²"]
    link = blocks[-1]
    assert link.kind == "link" and link.items == ["³"] and link.text.startswith("http://")
    assert kinds.count("para") > 8
