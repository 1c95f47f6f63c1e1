"""Liveness and the public confidentiality policy: no sign-in, no caller data."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from callflow.policy import policy_text

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    flowset = current_app.extensions["callflow"]["registry"].current
    return jsonify(status="ok", flows=sorted(flowset.flows))


@bp.get("/policy")
def policy():
    settings = current_app.extensions["callflow"]["settings"]
    return Response(policy_text(settings.policy_file), mimetype="text/plain; charset=utf-8")
