"""The live-call registry: what the bridge and the manager's view know about each call.

One small hash per call, keyed by an opaque id that means nothing outside this service: the
helpline, the state, timestamps, the Twilio sids of the conference and its legs, and whether
the call may be monitored. Never the caller's number or anything else about them.

Twilio retries and reorders callbacks, so every change is idempotent: the state only moves
forward (a late 'ringing' never undoes 'connected'), timestamps are set once, and the first
worker to accept is decided atomically in Redis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import redis

from callflow.platform import keys
from callflow.platform.store import store_guard

# A live call can last hours; its entry outlives it briefly so late callbacks find it.
LIVE_TTL_SECONDS = 6 * 60 * 60
ENDED_TTL_SECONDS = 10 * 60
# A call leg's final statuses, as Twilio's status callbacks name them.
LEG_ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


class LiveState(StrEnum):
    WAITING = "waiting"
    RINGING = "ringing"
    CONNECTED = "connected"
    FALLBACK = "fallback"  # taken out of the bridge to the flow's no-answer step
    ENDED = "ended"


RANK = {LiveState.WAITING: 0, LiveState.RINGING: 1, LiveState.CONNECTED: 2,
        LiveState.FALLBACK: 2, LiveState.ENDED: 3}

# Move the state forward only: ARGV = new state, its rank, timestamp field, timestamp.
ADVANCE = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return 0 end
local ranks = {waiting=0, ringing=1, connected=2, fallback=2, ended=3}
if ranks[current] >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1])
redis.call('HSETNX', KEYS[1], ARGV[3], ARGV[4])
return 1
"""

# The first worker to press 1 wins (and keeps winning on a retry): ARGV = leg index, timestamp.
ACCEPT = """
local current = redis.call('HGET', KEYS[1], 'state')
if current == 'connected' and redis.call('HGET', KEYS[1], 'accepted') == ARGV[1] then
  return 1  -- Twilio retrying the winner's keypress: still theirs
end
if current ~= 'waiting' and current ~= 'ringing' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'connected', 'accepted', ARGV[1], 'connected_at', ARGV[2])
return 1
"""


# Open a live call once: ARGV = TTL, call id, start time (score), then field, value, ...
# A caller who left a waiting line and still on the call (a menu's "press 1 to try again")
# opens it anew: a new wait, a new place at the back of the line.
OPEN = """
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'fallback' then return 0 end
if state then redis.call('DEL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
return 1
"""


@dataclass
class LiveCall:
    id: str
    flow: str
    step: str
    helpline_number: str
    team: str
    state: LiveState
    started_at: str
    caller_sid: str = ""
    conference_sid: str = ""
    connected_at: str = ""
    ended_at: str = ""
    accepted: int | None = None
    monitorable: bool = True
    legs: dict[int, str] = field(default_factory=dict)  # roster index -> the leg's call sid
    raw: dict[str, str] = field(default_factory=dict, repr=False)
    fresh: bool = field(default=False, compare=False)  # opened just now, not found open

    @classmethod
    def from_hash(cls, call_id: str, data: dict[str, str]) -> LiveCall:
        legs = {int(name[4:]): value for name, value in data.items() if name.startswith("leg:")}
        return cls(id=call_id, flow=data.get("flow", ""), step=data.get("step", ""),
                   helpline_number=data.get("helpline_number", ""), team=data.get("team", ""),
                   state=LiveState(data.get("state", "ended")),
                   started_at=data.get("started_at", ""), caller_sid=data.get("caller_sid", ""),
                   conference_sid=data.get("conference_sid", ""),
                   connected_at=data.get("connected_at", ""), ended_at=data.get("ended_at", ""),
                   accepted=int(data["accepted"]) if data.get("accepted") else None,
                   monitorable=data.get("monitorable", "1") == "1", legs=legs, raw=data)

    @property
    def live(self) -> bool:
        return self.state not in (LiveState.ENDED, LiveState.FALLBACK)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class LiveCalls:
    """``secret_key`` makes each live call's id from its caller's CallSid (:meth:`id_for`)."""

    def __init__(self, client: redis.Redis, secret_key: str) -> None:
        self.client = client
        self._key = secret_key.encode("utf-8")
        self._advance = client.register_script(ADVANCE)
        self._accept = client.register_script(ACCEPT)
        self._open = client.register_script(OPEN)

    def id_for(self, caller_sid: str) -> str:
        """The opaque id of a caller's live call, made from their CallSid with the secret key:
        the status callback, which names only the CallSid, finds the call without an index,
        and the id says nothing about the CallSid to anyone without the key. Letters and
        digits, starting with a letter: never read as a phone number, accepted wherever a
        call id is named."""
        mac = hmac.new(self._key, f"live-call:{caller_sid}".encode(), hashlib.sha256)
        return "c" + mac.hexdigest()[:20]

    @store_guard
    def open(self, *, flow: str, step: str, team: str, helpline_number: str,
             caller_sid: str, now: datetime, monitorable: bool = True) -> LiveCall:
        """Open the caller's live call, or return it as it is if it is open already (Twilio
        retrying the webhook that put the caller through must not start the call again). A
        caller who left a waiting line, still on the call, is put through anew."""
        call_id = self.id_for(caller_sid)
        data = {"flow": flow, "step": step, "team": team, "helpline_number": helpline_number,
                "caller_sid": caller_sid, "state": LiveState.WAITING.value,
                "started_at": _iso(now), "monitorable": "1" if monitorable else "0"}
        key = keys.live_call(call_id)
        fields = [item for pair in data.items() for item in pair]
        opened = self._open(keys=[key, keys.live_index()],
                            args=[LIVE_TTL_SECONDS, call_id, now.timestamp(), *fields])
        if opened:
            return dataclasses.replace(LiveCall.from_hash(call_id, data), fresh=True)
        return self.get(call_id) or LiveCall.from_hash(call_id, data)

    @store_guard
    def get(self, call_id: str) -> LiveCall | None:
        if not call_id:
            return None
        data = self.client.hgetall(keys.live_call(call_id))
        return LiveCall.from_hash(call_id, data) if data else None

    @store_guard
    def advance(self, call_id: str, state: LiveState, now: datetime) -> bool:
        """Move the call forward to ``state`` (never back); True if it moved."""
        stamp = f"{state.value}_at"
        moved = self._advance(keys=[keys.live_call(call_id)],
                              args=[state.value, RANK[state], stamp, _iso(now)])
        if moved and state == LiveState.ENDED:
            self.retire(call_id)
        elif moved and state == LiveState.FALLBACK:
            # Off the manager's list, but kept whole until the caller has really been moved.
            self.client.zrem(keys.live_index(), call_id)
        return bool(moved)

    @store_guard
    def accept(self, call_id: str, leg: int, now: datetime) -> bool:
        """Atomically give the call to worker leg ``leg`` if nobody has it yet."""
        return bool(self._accept(keys=[keys.live_call(call_id)], args=[leg, _iso(now)]))

    @store_guard
    def note(self, call_id: str, **fields: str) -> None:
        """Set fields once (a retried callback cannot overwrite them)."""
        key = keys.live_call(call_id)
        with self.client.pipeline(transaction=False) as pipe:
            for name, value in fields.items():
                pipe.hsetnx(key, name, value)
            pipe.execute()

    @store_guard
    def reroute(self, call_id: str, target: str) -> None:
        """A call given to a worker who left before the caller reached them: the caller goes
        on to ``target`` (a step of their flow), as one who left the line does."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hset(keys.live_call(call_id), mapping={"state": LiveState.FALLBACK.value,
                                                        "next": target})
            pipe.zrem(keys.live_index(), call_id)
            pipe.execute()

    @store_guard
    def mark(self, call_id: str, **fields: str) -> None:
        """Set fields, overwriting them (what a waiting caller was last told, say)."""
        self.client.hset(keys.live_call(call_id), mapping=fields)

    def set_leg(self, call_id: str, leg: int, sid: str) -> None:
        self.note(call_id, **{f"leg:{leg}": sid})

    @store_guard
    def set_monitorable(self, call_id: str, monitorable: bool) -> None:
        self.client.hset(keys.live_call(call_id), "monitorable", "1" if monitorable else "0")

    @store_guard
    def listing(self) -> list[LiveCall]:
        """Every live call, oldest first; entries that expired are dropped from the index."""
        ids = self.client.zrange(keys.live_index(), 0, -1)
        with self.client.pipeline(transaction=False) as pipe:
            for call_id in ids:
                pipe.hgetall(keys.live_call(call_id))
            rows = pipe.execute()
        gone = [call_id for call_id, row in zip(ids, rows, strict=True) if not row]
        if gone:
            self.client.zrem(keys.live_index(), *gone)
        calls = [LiveCall.from_hash(i, row) for i, row in zip(ids, rows, strict=True) if row]
        return [call for call in calls if call.live]

    @store_guard
    def retire(self, call_id: str) -> None:
        """The call is done with the bridge: off the list, and gone after a short while."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.expire(keys.live_call(call_id), ENDED_TTL_SECONDS)
            pipe.zrem(keys.live_index(), call_id)
            pipe.execute()
