"""The path that needs nothing but the flows in memory: promise 6.

Used when the store is down, a webhook cannot be served, the number dialled is unknown, or
Twilio calls the fallback URL. The caller still hears the notice, opening hours still apply,
and in hours the helpline's degraded team is dialled with the same privacy settings.
"""

from __future__ import annotations

from datetime import datetime

from twilio.twiml.voice_response import VoiceResponse

from callflow.language.dialling import dial_team
from callflow.language.flow import Flow, FlowSet
from callflow.language.hours import spoken_opening
from callflow.language.texts import fill
from callflow.platform.links import Links

APOLOGY = ("Sorry, we are having a technical problem. "
           "We will still try to put you through to someone.")
DIAL_TIMEOUT = 30
CONNECTED = frozenset({"completed", "answered"})


def helpline_number(flow: Flow, dialled: str | None) -> str:
    """The number workers see: the one the caller dialled, when it is the helpline's."""
    return dialled if dialled in flow.numbers else flow.numbers[0]


def degraded_response(flowset: FlowSet, flow: Flow, *, dialled: str | None, now: datetime,
                      links: Links, apology: bool) -> VoiceResponse:
    response = VoiceResponse()
    say = {"voice": flow.voice, "language": flow.language}
    if apology:
        response.say(APOLOGY, **say)
    response.say(flow.notice_text, **say)
    if not flow.hours.is_open(now):
        opens = spoken_opening(flow.hours.next_opening(now), now)
        response.say(fill(flow.degraded.closed_message, helpline=flow.helpline,
                          next_open=opens), **say)
        response.hangup()
        return response
    dial_team(response, flowset.teams[flow.degraded.team],
              helpline_number=helpline_number(flow, dialled), timeout=DIAL_TIMEOUT,
              action=links.degraded_dial(flow.id), screen=links.screen(flow.id))
    return response


def degraded_dial_result(flow: Flow, dial_status: str) -> VoiceResponse:
    response = VoiceResponse()
    if dial_status not in CONNECTED:
        response.say(fill(flow.degraded.no_answer_message, helpline=flow.helpline),
                     voice=flow.voice, language=flow.language)
    response.hangup()
    return response
