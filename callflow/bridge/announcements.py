"""What a waiting caller hears between the hold music: their place, the wait, the team's
messages.

The place is said on joining and every ``position_every`` seconds ("You are number 2 in the
queue."), and above a limit only as "further back than number 5". The expected wait is said
only as a band, and only when it rests on enough recently answered calls: a small team's
estimate is otherwise wildly wrong. The team's announcements are said in turn every
``announce_every`` seconds. What was said when is kept in the caller's live record as seconds
waited (``marks``), so any web process serves the next hold turn.
"""

from __future__ import annotations

from callflow.language.flow import POSITION_LIMIT, Team
from callflow.language.texts import fill

BANDS = ((5 * 60, "less than five minutes"), (10 * 60, "less than ten minutes"),
         (20 * 60, "less than twenty minutes"))
LONGER = "more than twenty minutes"


def spoken_position(position: int) -> str:
    if position > POSITION_LIMIT:
        return f"You are further back than number {POSITION_LIMIT} in the queue."
    return f"You are number {position} in the queue."


def spoken_wait(seconds: float) -> str:
    band = next((words for limit, words in BANDS if seconds < limit), LONGER)
    return f"The wait is expected to be {band}."


def hold_texts(team: Team, *, helpline: str, waited: float, position: int,
               typical_wait: float | None, marks: dict[str, str]) -> tuple[list[str],
                                                                          dict[str, str]]:
    """The texts to say at this hold turn, and the marks to keep for the next one."""
    texts: list[str] = []
    new: dict[str, str] = {}
    said_place = marks.get("said_place")
    if team.position_every and (said_place is None
                                or waited - float(said_place) >= team.position_every):
        texts.append(spoken_position(position))
        if typical_wait is not None:
            texts.append(spoken_wait(typical_wait * position))
        new["said_place"] = str(int(waited))
    said_message = float(marks.get("said_message") or 0)
    if team.announcements and waited - said_message >= team.announce_every:
        turn = int(marks.get("message_turn") or 0)
        texts.append(fill(team.announcements[turn % len(team.announcements)],
                          helpline=helpline))
        new["said_message"] = str(int(waited))
        new["message_turn"] = str(turn + 1)
    return texts, new
