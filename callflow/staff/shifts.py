"""Workers on shift: who is signed on now, and what each is doing.

The team file is the roster (who may work and on which phone); this is the live state, one
small hash per worker in Redis, shared by every web process and job runner. A worker is:

- ``off``: not on shift; never rung.
- ``available``: on shift and free to be offered a caller.
- ``offered``: their phone is ringing for a waiting caller (one offer at a time, ever).
- ``on_call``: talking to a caller.
- ``wrap_up``: after a call, not offered another until the team's ``wrap_up`` time is over.
- ``paused``: on shift but not rung, with a reason (missed offers, or a break), until resumed.

Every change is one Lua script, so two nodes can never offer one worker two callers, and a
late or repeated callback (Twilio retries) names the offer it is about and changes nothing once
that offer is settled. The hash names a worker, never a caller; its TTL is renewed by every
change, so a shift nobody touched for a day ends by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import redis

from callflow.platform import keys
from callflow.platform.store import store_guard

SHIFT_TTL_SECONDS = 24 * 60 * 60
MISSED_REASON = "missed {count} offers in a row"
# After a missed offer a worker is not offered again for this long (Asterisk's "retry").
MISSED_REST_SECONDS = 10


class WorkerState(StrEnum):
    OFF = "off"
    AVAILABLE = "available"
    OFFERED = "offered"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


# Shared by the scripts: a worker wrapping up whose time is over is available again.
# A worker wrapping up whose time is over is available again; so is a worker whose offer
# outlived its time (no leg was ever made, or its callbacks were all lost: a job runner killed
# mid-offer must not leave them "offered" for ever). A worker who just missed an offer rests a
# moment, so the next worker is offered first.
FREE_WORKER = """
local function free(key, now)
  local state = redis.call('HGET', key, 'state')
  if (state == 'wrap_up' or state == 'offered')
     and tonumber(redis.call('HGET', key, 'until') or '0') <= now then
    redis.call('HSET', key, 'state', 'available')
    redis.call('HDEL', key, 'offer', 'team', 'leg')
    state = 'available'
  end
  return state == 'available' and tonumber(redis.call('HGET', key, 'rest') or '0') <= now
end
"""

# KEYS[1] worker; ARGV: now (ISO), now (epoch), ttl. Returns 1 if the shift started.
START = """
local state = redis.call('HGET', KEYS[1], 'state')
if state and state ~= 'off' then return 0 end
if redis.call('HGET', KEYS[1], 'call') then  -- signed off during a call, which goes on
  redis.call('HSET', KEYS[1], 'state', 'on_call', 'since', ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  return 1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'state', 'available', 'since', ARGV[1], 'idle_since', ARGV[2],
           'missed', 0)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# KEYS[1] worker; ARGV: new state, now (ISO), ttl, reason, only-from (a state, or '').
# Returns the state before ('' if none), whether or not it changed.
MOVE = """
local state = redis.call('HGET', KEYS[1], 'state') or ''
if state == '' or state == 'off' then return state end
if ARGV[5] ~= '' and state ~= ARGV[5] then return state end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'since', ARGV[2], 'reason', ARGV[4])
if ARGV[1] == 'available' then redis.call('HSET', KEYS[1], 'missed', 0) end
if ARGV[1] == 'off' and state ~= 'on_call' then redis.call('HDEL', KEYS[1], 'offer', 'team') end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return state
"""

# An offer came to nothing. KEYS[1] worker; ARGV: offer, now (ISO), ttl, missed (1 or 0),
# pause after so many misses in a row, the reason's text with {count}, rest until (epoch).
# Returns the state after ('' if the offer was no longer this worker's).
SETTLE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'offered'
   or redis.call('HGET', KEYS[1], 'offer') ~= ARGV[1] then return '' end
local missed = tonumber(redis.call('HGET', KEYS[1], 'missed') or '0')
local state = 'available'
if ARGV[4] == '1' then
  missed = missed + 1
  redis.call('HSET', KEYS[1], 'rest', ARGV[7])
  if tonumber(ARGV[5]) > 0 and missed >= tonumber(ARGV[5]) then
    state = 'paused'
    redis.call('HSET', KEYS[1], 'reason', (string.gsub(ARGV[6], '{count}', tostring(missed))))
  end
end
redis.call('HSET', KEYS[1], 'state', state, 'since', ARGV[2], 'missed', missed)
redis.call('HDEL', KEYS[1], 'offer', 'team')
redis.call('EXPIRE', KEYS[1], ARGV[3])
return state
"""

# A call ended. KEYS[1] worker; ARGV: offer, now (ISO), now (epoch), ttl, wrap-up seconds,
# and the field the call is named by (``offer``, or ``call`` for its live-call id). A worker
# who signed off during the call stays off. Returns 1 if the call was theirs (and is over now),
# 0 if not (another call's callback, or one settled already).
WRAP_UP = """
local state = redis.call('HGET', KEYS[1], 'state')
if (state ~= 'on_call' and state ~= 'off' and state ~= 'paused')
   or redis.call('HGET', KEYS[1], ARGV[6]) ~= ARGV[1]
   or not redis.call('HGET', KEYS[1], 'call') then return 0 end
local now = tonumber(ARGV[3])
if state == 'on_call' then
  redis.call('HSET', KEYS[1], 'state', 'wrap_up', 'since', ARGV[2], 'until',
             now + tonumber(ARGV[5]))
end
redis.call('HSET', KEYS[1], 'idle_since', now)
redis.call('HDEL', KEYS[1], 'offer', 'team', 'call', 'leg')
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class WorkerStatus:
    """One worker as staff see them: never a phone number, never a caller."""

    name: str
    state: WorkerState
    since: str = ""
    reason: str = ""
    missed: int = 0
    idle_since: float = 0.0  # when their last call ended (or their shift began)
    offer: str = ""  # the offer ringing now, or the one on a call
    team: str = ""  # the team of that offer

    @classmethod
    def from_hash(cls, name: str, data: dict[str, str], now: float) -> WorkerStatus:
        state = WorkerState(data.get("state") or WorkerState.OFF)
        expired = float(data.get("until") or 0) <= now
        if state in (WorkerState.WRAP_UP, WorkerState.OFFERED) and expired:
            state = WorkerState.AVAILABLE
        return cls(name=name, state=state, since=data.get("since", ""),
                   reason=data.get("reason", ""), missed=int(data.get("missed") or 0),
                   idle_since=float(data.get("idle_since") or 0), offer=data.get("offer", ""),
                   team=data.get("team", ""))

    @property
    def on_shift(self) -> bool:
        return self.state is not WorkerState.OFF


class Shifts:
    """The workers' live state. ``clock`` gives the time (a test's own clock, or UTC now)."""

    def __init__(self, client: redis.Redis, clock: Callable[[], datetime]) -> None:
        self.client = client
        self.clock = clock
        self._start = client.register_script(START)
        self._move = client.register_script(MOVE)
        self._settle = client.register_script(SETTLE)
        self._wrap_up = client.register_script(WRAP_UP)

    def _now(self) -> tuple[str, float]:
        moment = self.clock().astimezone(UTC)
        return moment.isoformat(timespec="seconds"), moment.timestamp()

    # -- signing on and off, pausing ------------------------------------------------------

    @store_guard
    def start(self, name: str) -> bool:
        """Sign a worker on; False if they were on shift already."""
        iso, epoch = self._now()
        return bool(self._start(keys=[keys.worker(name)], args=[iso, epoch, SHIFT_TTL_SECONDS]))

    def end(self, name: str) -> WorkerStatus:
        """Sign a worker off, whatever they were doing; returns them as they were (so an offer
        ringing now can be withdrawn). A call in progress goes on: only new offers stop."""
        before = self.status(name)
        self._transition(name, WorkerState.OFF)
        return before

    def pause(self, name: str, reason: str) -> bool:
        """Stop offering a worker callers until resumed; False if they are off shift."""
        return self._transition(name, WorkerState.PAUSED, reason) not in ("", "off")

    def resume(self, name: str) -> bool:
        """A paused worker is offered callers again; False if they were not paused."""
        return self._transition(name, WorkerState.AVAILABLE,
                                only_from=WorkerState.PAUSED) == WorkerState.PAUSED

    @store_guard
    def _transition(self, name: str, state: WorkerState, reason: str = "",
                    only_from: str = "") -> str:
        iso, _ = self._now()
        return self._move(keys=[keys.worker(name)],
                          args=[state.value, iso, SHIFT_TTL_SECONDS, reason, only_from])

    # -- offers and calls (the waiting line's own scripts make the offers) ------------

    @store_guard
    def settle(self, name: str, offer: str, *, missed: bool, autopause_after: int) -> str:
        """An offer came to nothing: declined or unanswered (``missed``: the worker rests a
        moment before the next offer, and is paused after ``autopause_after`` in a row), or
        withdrawn (another worker took the caller, the caller left). Returns the worker's
        state after it, or "" when the offer was already settled."""
        iso, epoch = self._now()
        return self._settle(keys=[keys.worker(name)],
                            args=[offer, iso, SHIFT_TTL_SECONDS, "1" if missed else "0",
                                  autopause_after, MISSED_REASON, epoch + MISSED_REST_SECONDS])

    def call_ended(self, name: str, offer: str, *, wrap_up: int) -> bool:
        """The call the worker accepted with ``offer`` is over (their leg said so): they wrap
        up for ``wrap_up`` seconds before the next offer. False if it was settled already."""
        return self._call_over(name, offer, "offer", wrap_up)

    def call_over(self, name: str, call_id: str, *, wrap_up: int) -> bool:
        """The caller's call ``call_id`` is over (the caller's side said so): the worker who
        had it, if they still do, wraps up, whether or not their own leg's callback comes."""
        return self._call_over(name, call_id, "call", wrap_up)

    @store_guard
    def _call_over(self, name: str, value: str, named_by: str, wrap_up: int) -> bool:
        iso, epoch = self._now()
        return bool(self._wrap_up(keys=[keys.worker(name)],
                                  args=[value, iso, epoch, SHIFT_TTL_SECONDS, wrap_up, named_by]))

    # -- reading ----------------------------------------------------------------------------

    @store_guard
    def status(self, name: str) -> WorkerStatus:
        data = self.client.hgetall(keys.worker(name))
        return WorkerStatus.from_hash(name, data, self._now()[1])

    @store_guard
    def statuses(self, names: Iterable[str]) -> list[WorkerStatus]:
        """Every named worker, in the order given, in one round trip."""
        names = list(names)
        rows = []
        if names:
            with self.client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.hgetall(keys.worker(name))
                rows = pipe.execute()
        epoch = self._now()[1]
        return [WorkerStatus.from_hash(n, row, epoch) for n, row in zip(names, rows, strict=True)]
