"""The baseline for ``bench/webhook.py``: a bare Flask app answering the same webhook URLs.

It does what any Flask app serving Twilio must do at the least (route the request, answer with
TwiML) and nothing else: no signature check, no store, no flow. Its documents are built once,
like the real ones, with ``VoiceResponse`` and of about the same size, and their action URLs
lead the load generator through the same three steps of a call (notice, menu, dial), so both
servers get identical traffic and the difference is what callflow adds.
"""

from __future__ import annotations

import os

from flask import Flask, Response
from twilio.twiml.voice_response import VoiceResponse

from callflow.language.policy import DEFAULT_NOTICE, POLICY_OFFER

FLOW = "respect-phoneline"
HELPLINE = "Respect Phoneline"
HELPLINE_NUMBER = "+441632960001"
WORKERS = ("+447700900101", "+447700900102")
MENU_PROMPT = ("If you are worried about your own behaviour towards a partner or family member "
               "and would like to talk to someone, press 1. To hear about our website and "
               "webchat, press 2.")


def documents(base: str) -> dict[str, str]:
    """The three answers of a call, rendered once: incoming, notice answered, menu answered."""
    voice = {"voice": "Polly.Amy", "language": "en-GB"}
    incoming = VoiceResponse()
    incoming.gather(num_digits=1, timeout=2, action_on_empty_result=True,
                    action=f"{base}/voice/notice?flow={FLOW}&step=welcome").say(
        DEFAULT_NOTICE.format(helpline=HELPLINE) + " " + POLICY_OFFER.format(digit="9"), **voice)
    notice = VoiceResponse()
    notice.gather(num_digits=1, timeout=6, action_on_empty_result=True,
                  action=f"{base}/voice/menu?flow={FLOW}&step=main-menu").say(MENU_PROMPT,
                                                                                **voice)
    menu = VoiceResponse()
    dial = menu.dial(caller_id=HELPLINE_NUMBER, record="do-not-record", timeout=25,
                     action=f"{base}/voice/dial?flow={FLOW}&step=connect", method="POST")
    for number in WORKERS:
        dial.number(number, url=f"{base}/voice/screen?flow={FLOW}&step=connect", method="POST")
    return {"incoming": str(incoming), "notice": str(notice), "menu": str(menu)}


def create_app() -> Flask:
    """Built like the real app (a factory reading ``CALLFLOW_PUBLIC_URL``), served the same way."""
    app = Flask(__name__)
    base = os.environ["CALLFLOW_PUBLIC_URL"].rstrip("/")
    for name, body in documents(base).items():

        def view(body: str = body) -> Response:
            return Response(body, mimetype="text/xml")

        app.add_url_rule(f"/voice/{name}", name, view, methods=["POST", "GET"])
    return app
