"""A team's waiting line in Redis: first come, first served across every node.

Callers join a sorted set of opaque live-call ids scored by when they joined; a caller's
position is their rank in it, counted, never named. Workers are offered "the team's next
caller", not one caller: whoever accepts first is given the caller who has waited longest at
that moment, so callers are put through in the order they came, whichever phone is answered
first. Two scripts span the line and the workers' states (:mod:`callflow.staff.shifts`), so
no two nodes can offer one worker twice or give one caller to two workers:

- ``OFFER`` marks free workers as offered, as many as the ring strategy wants;
- ``ACCEPT`` takes the oldest caller still waiting off the line and gives them to the worker
  whose offer it is (or, with nobody left waiting, ends the offer).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from callflow.platform import keys
from callflow.platform.store import store_guard
from callflow.staff.shifts import FREE_WORKER, SHIFT_TTL_SECONDS

# A caller's entry outlives any wait; entries older than this are dropped as stale.
LINE_TTL_SECONDS = 6 * 60 * 60
# The expected wait is only said when it rests on this many recent answered calls.
RECENT_WAITS = 20
ENOUGH_RECENT = 10
RECENT_TTL_SECONDS = 60 * 60

# KEYS[1] line, KEYS[2] the line's counter; ARGV: call id, joined (ms), ttl, stale before
# (ms). The score is the time in ms and a count of arrivals, so callers who join in the same
# millisecond (or by clocks that agree to the second) still keep the order they came in.
# Returns the position.
JOIN = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[4]) * 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  local seq = redis.call('INCR', KEYS[2]) % 1000
  redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) * 1000 + seq, ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return redis.call('ZRANK', KEYS[1], ARGV[1]) + 1
"""

# KEYS[1] line, then every worker of the team, most preferred first.
# ARGV: now (epoch), now (ISO), ttl, team, offer id prefix, all (1: offer every free worker
# while anyone waits; 0: one free worker for each waiting caller not yet being offered), and
# the seconds an offer lasts at most (then the worker is free again, answered or not).
# Returns the indexes (into the workers) of those offered, each followed by its offer id.
OFFER = FREE_WORKER + """
local waiting = redis.call('ZCARD', KEYS[1])
if waiting == 0 then return {} end
local now, outstanding = tonumber(ARGV[1]), 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') == 'offered'
     and redis.call('HGET', KEYS[i], 'team') == ARGV[4]
     and tonumber(redis.call('HGET', KEYS[i], 'until') or '0') > now then
    outstanding = outstanding + 1
  end
end
local wanted = waiting - outstanding
if ARGV[6] == '1' then wanted = #KEYS end
local offered = {}
for i = 2, #KEYS do
  if #offered >= wanted * 2 then break end
  if free(KEYS[i], now) then
    local offer = ARGV[5] .. '.' .. (i - 1)
    redis.call('HSET', KEYS[i], 'state', 'offered', 'since', ARGV[2], 'offer', offer,
               'team', ARGV[4], 'until', now + tonumber(ARGV[7]))
    redis.call('HDEL', KEYS[i], 'leg')
    redis.call('EXPIRE', KEYS[i], ARGV[3])
    table.insert(offered, i - 1)
    table.insert(offered, offer)
  end
end
return offered
"""

# KEYS[1] line, KEYS[2] the worker. ARGV: offer, roster index, worker's leg sid, now (ISO),
# the live-call key prefix, ttl. Returns the call id given to the worker, or false.
ACCEPT = """
local state = redis.call('HGET', KEYS[2], 'state')
local offer = redis.call('HGET', KEYS[2], 'offer')
if offer ~= ARGV[1] then return false end
if state == 'on_call' then return '=' .. redis.call('HGET', KEYS[2], 'call') end  -- a retry
if state ~= 'offered' then return false end
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  if not head then break end
  redis.call('ZREM', KEYS[1], head)
  local live = ARGV[5] .. head
  local current = redis.call('HGET', live, 'state')
  if current == 'waiting' or current == 'ringing' then
    redis.call('HSET', live, 'state', 'connected', 'accepted', ARGV[2],
               'connected_at', ARGV[4])
    if ARGV[3] ~= '' then redis.call('HSET', live, 'leg:' .. ARGV[2], ARGV[3]) end
    redis.call('HSET', KEYS[2], 'state', 'on_call', 'since', ARGV[4], 'call', head,
               'missed', 0)
    redis.call('EXPIRE', KEYS[2], ARGV[6])
    return '+' .. head
  end
end
redis.call('HSET', KEYS[2], 'state', 'available', 'since', ARGV[4])
redis.call('HDEL', KEYS[2], 'offer', 'team', 'leg')
return false
"""


@dataclass(frozen=True)
class Offer:
    worker: str  # the worker's name
    index: int  # their place in the team's roster
    id: str  # the offer's opaque id, carried in the leg's URLs


class WaitingLine:
    """Every method raises ``StoreUnavailable`` when Redis fails (``store_guard``)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._join = client.register_script(JOIN)
        self._offer = client.register_script(OFFER)
        self._accept = client.register_script(ACCEPT)

    @store_guard
    def join(self, team: str, call_id: str, joined: float) -> int:
        """Put a caller at the back of the line (once); returns their position."""
        ms = int(joined * 1000)
        return int(self._join(keys=[keys.waiting_line(team), keys.waiting_line_count(team)],
                              args=[call_id, ms, LINE_TTL_SECONDS,
                                    ms - LINE_TTL_SECONDS * 1000]))

    @store_guard
    def leave(self, team: str, call_id: str) -> bool:
        return bool(self.client.zrem(keys.waiting_line(team), call_id))

    @store_guard
    def position(self, team: str, call_id: str) -> int | None:
        """1 for the caller who has waited longest; None if not in the line."""
        rank = self.client.zrank(keys.waiting_line(team), call_id)
        return None if rank is None else rank + 1

    @store_guard
    def waiting(self, team: str) -> int:
        return int(self.client.zcard(keys.waiting_line(team)))

    @store_guard
    def head(self, team: str) -> str | None:
        found = self.client.zrange(keys.waiting_line(team), 0, 0)
        return found[0] if found else None

    @store_guard
    def offer(self, team: str, workers: list[tuple[int, str]], *, offer_prefix: str,
              every_free: bool, now: tuple[float, str], lasts: int) -> list[Offer]:
        """Offer the team's next caller to free workers among ``workers`` ((roster index,
        name), most preferred first): every free one (``every_free``), or one for each waiting
        caller not yet being offered. An offer lasts ``lasts`` seconds at most."""
        if not workers:
            return []
        epoch, iso = now
        found = self._offer(
            keys=[keys.waiting_line(team), *(keys.worker(name) for _, name in workers)],
            args=[epoch, iso, SHIFT_TTL_SECONDS, team, offer_prefix,
                  "1" if every_free else "0", lasts])
        offers = []
        for i in range(0, len(found), 2):
            index, name = workers[int(found[i]) - 1]
            offers.append(Offer(worker=name, index=index, id=found[i + 1]))
        return offers

    @store_guard
    def accept(self, team: str, worker: str, offer: str, index: int, leg_sid: str,
               now: str) -> tuple[str | None, bool]:
        """The worker pressed 1: the caller who has waited longest is theirs (the same one
        again, not fresh, when Twilio retries the keypress). (None, False) when nobody is
        waiting any more, or the offer is no longer theirs."""
        found = self._accept(
            keys=[keys.waiting_line(team), keys.worker(worker)],
            args=[offer, index, leg_sid, now, keys.live_call(""), SHIFT_TTL_SECONDS])
        if not found:
            return None, False
        return found[1:], found[0] == "+"

    @store_guard
    def note_leg(self, worker: str, offer: str, sid: str) -> None:
        """The Twilio sid of the leg ringing for ``offer``, so it can be cancelled."""
        if self.client.hget(keys.worker(worker), "offer") == offer:
            self.client.hset(keys.worker(worker), "leg", sid)

    @store_guard
    def leg_of(self, worker: str) -> str:
        return self.client.hget(keys.worker(worker), "leg") or ""

    # -- the expected wait ------------------------------------------------------------------

    @store_guard
    def answered_after(self, team: str, waited: float) -> None:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.lpush(keys.recent_waits(team), int(waited))
            pipe.ltrim(keys.recent_waits(team), 0, RECENT_WAITS - 1)
            pipe.expire(keys.recent_waits(team), RECENT_TTL_SECONDS)
            pipe.execute()

    @store_guard
    def typical_wait(self, team: str) -> float | None:
        """The mean wait of the team's recent answered callers, or None when too few calls
        were answered lately for an estimate to mean anything."""
        waits = self.client.lrange(keys.recent_waits(team), 0, -1)
        if len(waits) < ENOUGH_RECENT:
            return None
        return sum(int(w) for w in waits) / len(waits)
