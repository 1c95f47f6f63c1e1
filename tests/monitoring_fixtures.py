"""The monitoring tests' fixtures, loaded by each of their modules with
``pytest_plugins = ("tests.monitoring_fixtures",)``: a bridged app on flows that let a caller
decline monitoring, Twilio's REST API mocked with ``responses``, and two managers and an admin."""

from __future__ import annotations

import dataclasses

import pytest
from flask import Flask

from callflow import runtime
from callflow.platform.config import Settings
from callflow.runtime import Runtime
from callflow.staff.accounts import StaffStore
from tests.bridge_support import ACCOUNT_SID, MOCK_API, TwilioMock, sign_on
from tests.conftest import CANARY_FIELDS
from tests.monitoring_support import add_staff, build_app, opt_out_flows
from webhooks.simulator import TwilioSim


@pytest.fixture
def monitor_settings(settings, tmp_path) -> Settings:
    """A Twilio account (so callers are bridged and managers' phones rung) at the mock base,
    on flows that let a caller decline monitoring."""
    return dataclasses.replace(settings, twilio_account_sid=ACCOUNT_SID, twilio_api_url=MOCK_API,
                               flows_dir=str(opt_out_flows(tmp_path / "flows")))


@pytest.fixture
def rest():
    """Twilio's REST API on ``responses``: every request kept and checked against the spec."""
    with TwilioMock() as mock:
        yield mock


@pytest.fixture
def monitor_app(monitor_settings, redis, clock, rest) -> Flask:
    app = build_app(monitor_settings, redis, clock)
    add_staff(app.extensions["callflow"]["staff"])
    sign_on(app)
    return app


@pytest.fixture
def rt(monitor_app) -> Runtime:
    """The app's runtime, bound for the test as the job runner binds it for each job."""
    with runtime.binding(monitor_app.extensions["callflow"]["runtime"]) as bound:
        yield bound


@pytest.fixture
def staff(monitor_app) -> StaffStore:
    return monitor_app.extensions["callflow"]["staff"]


@pytest.fixture
def sim(monitor_app, rest) -> TwilioSim:
    """Twilio: signed webhooks carrying the canary caller's details."""
    return TwilioSim(monitor_app, extra_fields=CANARY_FIELDS, rest=rest)
