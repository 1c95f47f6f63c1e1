"""Promise 1 where it is kept: behind the edge, no caller field survives anywhere a handler could
read one. A probe route behind the edge reports everything a handler sees (``g``, the form,
the query, the combined values), for webhooks sent as POST and as GET."""

from __future__ import annotations

import json

import pytest
from flask import Blueprint, g, jsonify, request

from tests.conftest import CANARY_FIELDS, CANARY_NUMBER, CANARY_STRINGS, RESPECT, TOKEN
from webhooks import create_app
from webhooks.edge import check_and_strip
from webhooks.simulator import ACCOUNT_SID, TwilioSim, new_call_sid

# The caller-identifying fields Twilio sends, and one a future Twilio might add.
CALLER_FIELDS = ("From", "Caller", *CANARY_FIELDS, "CallerFutureField")
ROUTING = {"flow": "respect-phoneline", "step": "welcome"}


def probe_blueprint() -> Blueprint:
    probe = Blueprint("probe", __name__)
    probe.before_request(check_and_strip)

    @probe.route("/voice/probe", methods=["GET", "POST"])
    def seen():
        return jsonify(g={name: getattr(g, name) for name in vars(g)},
                       form=request.form.to_dict(flat=False),
                       args=request.args.to_dict(flat=False),
                       values=request.values.to_dict(flat=False))

    return probe


@pytest.fixture
def probed(settings, redis, clock) -> TwilioSim:
    app = create_app({"TESTING": True, "SETTINGS": settings, "STORE": redis, "CLOCK": clock})
    app.register_blueprint(probe_blueprint())
    return TwilioSim(app, extra_fields={**CANARY_FIELDS, "CallerFutureField": CANARY_NUMBER})


def webhook() -> dict[str, str]:
    return {"CallSid": new_call_sid(), "AccountSid": ACCOUNT_SID, "From": CANARY_NUMBER,
            "Caller": CANARY_NUMBER, "To": RESPECT, "Called": RESPECT,
            "CallStatus": "ringing", "Direction": "inbound", "ApiVersion": "2010-04-01"}


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_no_caller_field_survives_the_edge(probed, method):
    fields = {**webhook(), **probed.extra_fields}
    response = probed.post("/voice/probe?flow=respect-phoneline&step=welcome", fields,
                           method=method)
    assert response.status_code == 200
    seen = response.get_json()

    for place in ("form", "args", "values"):
        assert not set(CALLER_FIELDS) & set(seen[place]), place
    assert not set(CALLER_FIELDS) & set(seen["g"]["twilio"])
    text = json.dumps(seen)
    for canary in CANARY_STRINGS:
        assert canary not in text, f"caller data {canary!r} reached a handler"
    # What a handler needs is still there, so the probe saw the request's real data.
    assert seen["g"]["twilio"]["CallSid"] == fields["CallSid"]
    assert seen["g"]["twilio"]["To"] == RESPECT
    assert seen["g"]["link"] == ROUTING
    assert seen["args"]["flow"] == ["respect-phoneline"]
    assert seen["values"]["CallSid"] == [fields["CallSid"]]
    kept_in = "form" if method == "POST" else "args"
    assert seen[kept_in]["CallSid"] == [fields["CallSid"]]


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_an_unsigned_request_never_reaches_the_handler(probed, method):
    sender = probed.client.post if method == "POST" else probed.client.get
    response = sender("/voice/probe", data=webhook() if method == "POST" else None,
                      query_string=None if method == "POST" else webhook(),
                      headers={"X-Twilio-Signature": "forged"})
    assert response.status_code == 403
    assert CANARY_NUMBER.lstrip("+") not in response.get_data(as_text=True)
    assert TOKEN not in response.get_data(as_text=True)
