"""Liveness: no sign-in, no caller data. (The public policy page is in webhooks.public.)"""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    flowset = current_app.extensions["callflow"]["registry"].current
    return jsonify(status="ok", flows=sorted(flowset.flows))
