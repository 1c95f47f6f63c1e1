"""The real app for ``bench/webhook.py``, with its clock pinned inside opening hours.

``webhooks.create_app()`` unchanged except for ``CLOCK``: both helplines are open on weekdays
only, and out of hours a call ends after the notice, so a benchmark run at night would measure a
shorter call than one run at noon. Pinning the clock makes every run take the same path
(notice, hours, menu, connect) whatever the time; the cost of asking the clock is the same.
``bench/webhook.py --clock live`` serves ``webhooks:create_app()`` itself instead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask

from webhooks import create_app as create_callflow_app

# A Wednesday at noon in London (GMT): both helplines open, no closure that day.
OPEN_TIME = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def create_app() -> Flask:
    return create_callflow_app({"CLOCK": lambda: OPEN_TIME})
