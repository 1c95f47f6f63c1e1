"""The one place that builds a ``<Dial>`` to helpline workers.

Every dial, in a flow or on the degraded path, shows the worker the helpline's own number, is
never recorded, and screens the worker ("press 1 to accept") so a caller can never land on a
worker's voicemail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twilio.twiml.voice_response import VoiceResponse

if TYPE_CHECKING:
    from callflow.language.flow import Team

# Twilio rings at most ten <Number> nouns at once.
MAX_NUMBERS = 10
DO_NOT_RECORD = "do-not-record"


def dial_team(response: VoiceResponse, team: Team, *, helpline_number: str, timeout: int,
              action: str, screen: str) -> None:
    dial = response.dial(caller_id=helpline_number, record=DO_NOT_RECORD, timeout=timeout,
                         action=action, method="POST")
    for worker in team.active_workers()[:MAX_NUMBERS]:
        dial.number(worker.number, url=screen, method="POST")


def screen_worker(response: VoiceResponse, *, whisper: str, action: str, voice: str,
                  language: str) -> None:
    """What a worker hears on answering: accept with 1, or the leg ends (voicemail included)."""
    gather = response.gather(num_digits=1, timeout=8, action=action, method="POST")
    gather.say(whisper, voice=voice, language=language)
    response.hangup()


def accept_or_refuse(response: VoiceResponse, digits: str, *, voice: str, language: str) -> bool:
    """The worker's key: 1 connects them (an empty reply bridges the call); anything else ends."""
    if digits == "1":
        response.say("Connecting you now.", voice=voice, language=language)
        return True
    response.hangup()
    return False
