"""A second baseline for ``bench/webhook.py``: the shape of Twilio's own IVR sample.

What Twilio's Python quickstarts do on every webhook, and nothing more: check the signature
with the library's ``RequestValidator.validate`` (which computes the HMAC of the URL with and
without its port) and build the answer with a fresh ``VoiceResponse``. No state, no store, no
flow. Its answers have the same shape and size as the real app's, and their action URLs lead the
load generator through the same three steps of a call, so the difference is what callflow adds
over the way Twilio shows it done.
"""

from __future__ import annotations

import os

from bare_app import FLOW, HELPLINE, HELPLINE_NUMBER, MENU_PROMPT, WORKERS
from flask import Flask, Response, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from callflow.language.policy import DEFAULT_NOTICE, POLICY_OFFER


def create_app() -> Flask:
    app = Flask(__name__)
    base = os.environ["CALLFLOW_PUBLIC_URL"].rstrip("/")
    validator = RequestValidator(os.environ["TWILIO_AUTH_TOKEN"])
    voice = {"voice": "Polly.Amy", "language": "en-GB"}

    @app.before_request
    def signed() -> None:
        url = base + request.full_path.rstrip("?")
        if not validator.validate(url, request.form, request.headers.get("X-Twilio-Signature",
                                                                          "")):
            abort(403)

    def twiml(response: VoiceResponse) -> Response:
        return Response(str(response), mimetype="text/xml")

    @app.post("/voice/incoming")
    def incoming() -> Response:
        response = VoiceResponse()
        response.say(DEFAULT_NOTICE.format(helpline=HELPLINE), **voice)
        gather = response.gather(num_digits=1, timeout=2, action_on_empty_result=True,
                                 finish_on_key="",
                                 action=f"{base}/voice/notice?flow={FLOW}&step=welcome")
        gather.say(POLICY_OFFER.format(digit="9"), **voice)
        return twiml(response)

    @app.post("/voice/notice")
    def notice() -> Response:
        response = VoiceResponse()
        response.gather(num_digits=1, timeout=6, action_on_empty_result=True, finish_on_key="",
                        action=f"{base}/voice/menu?flow={FLOW}&step=main-menu&n=1").say(
            MENU_PROMPT, **voice)
        return twiml(response)

    @app.post("/voice/menu")
    def menu() -> Response:
        response = VoiceResponse()
        dial = response.dial(caller_id=HELPLINE_NUMBER, record="do-not-record", timeout=25,
                             action=f"{base}/voice/dial?flow={FLOW}&step=connect&n=1",
                             method="POST")
        for number in WORKERS:
            dial.number(number, url=f"{base}/voice/screen?flow={FLOW}&step=connect",
                        method="POST")
        return twiml(response)

    return app
