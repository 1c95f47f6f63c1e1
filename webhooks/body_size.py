"""How much of a request the app reads, and what a caller hears when Twilio sends more.

The dashboard and the JSON API take 64 KiB (``MAX_BODY_BYTES``). Twilio's webhooks are a few
kilobytes, except that a number with Add-ons installed gets their results in the call's webhook
(``AddOns``, dropped at the edge like every field not on the allow-list): tens or hundreds of
kilobytes, with no upper bound in Twilio's documentation. So every Twilio-facing path
(``/voice/...``) reads up to 1 MiB, and its signature is checked on all of it as on any webhook.

Past that the body is not read, so its signature cannot be checked, and whatever answers is
answered to anyone. The degraded TwiML would not do: its ``<Dial>`` holds the workers' own phone
numbers. A caller-facing path answers instead with a ``<Redirect>`` to the fallback URL, which
names no flow, number or worker: Twilio follows it with the call's ordinary parameters, signed,
and the fallback gives the apology, the notice and the direct dial as it always does. Should that
request be too large as well (it carries ``?oversized=1``), the caller hears an apology and the
call ends, rather than going round. A callback no caller hears (a status callback, the
conference's, a worker's or a manager's leg) gets the 413.
"""

from __future__ import annotations

import logging

from flask import Response, current_app, request, url_for
from twilio.twiml.voice_response import VoiceResponse
from werkzeug.exceptions import RequestEntityTooLarge

from callflow.language.steps import STEP_KINDS

log = logging.getLogger(__name__)
TWILIO_MAX_BODY_BYTES = 1024 * 1024
TWILIO_PATHS = "/voice/"
# The views whose answer a caller hears, and which may therefore be redirected to the fallback
# (the hold music is a conference's wait URL, where a redirect may not dial).
CALLER_VIEWS = frozenset({"voice.incoming", "voice.step", "voice.degraded_dial",
                          "voice.fallback",
                          *(f"voice.{kind.callback}" for kind in STEP_KINDS.values()
                            if kind.callback)})
OVERSIZED_APOLOGY = ("Sorry, we are having a technical problem and cannot put you through "
                     "right now. Please hang up and call again. If you are in danger, call the "
                     "emergency services.")


def allow_twilio_bodies() -> None:
    """``before_request`` of the app: a Twilio-facing path reads Twilio's largest webhooks."""
    if request.path.startswith(TWILIO_PATHS):
        request.max_content_length = TWILIO_MAX_BODY_BYTES
        request.max_form_memory_size = TWILIO_MAX_BODY_BYTES


def too_large(error: RequestEntityTooLarge):
    """The app's 413 handler: a caller is sent on to the fallback, never left in silence."""
    if request.endpoint not in CALLER_VIEWS:
        return error
    response = VoiceResponse()
    if request.endpoint == "voice.fallback" and request.args.get("oversized"):
        log.error("a caller's fallback request was too large to read; the call was ended",
                  extra={"event": "oversized", "path": request.path})
        flow = current_app.extensions["callflow"]["engine"].registry.current.default_flow
        response.say(OVERSIZED_APOLOGY, voice=flow.voice, language=flow.language)
        response.hangup()
    else:
        log.warning("a caller's webhook was too large to read; redirected to the fallback",
                    extra={"event": "oversized", "path": request.path})
        base = current_app.extensions["callflow"]["settings"].public_url.rstrip("/")
        response.redirect(base + url_for("voice.fallback", oversized=1), method="POST")
    return Response(str(response), mimetype="text/xml")
