"""Counts for the reports: numbers only, per helpline, team and worker, per hour of the
helpline's own time zone. No call record, no call id, nothing about the caller, and no
single call's moment: a count or a sum of seconds says "so many, so long, in this hour" (an
hour with one call holds its wait and talk time, never when in the hour it came, or whose).

Counting never costs a webhook a Redis round trip: each process counts into a buffer of its
own (:class:`Counts`, owned by the :class:`~callflow.runtime.Runtime`, ``rt.counts``) and
writes it in one ``MULTI`` of ``HINCRBY``\\ s when it is due: after a request that talks to Redis
anyway (never a menu webhook), after each job in the job runner, and at exit. With Redis down
the buffer is kept (up to ``CALLFLOW_COUNTS_BUFFER_LIMIT`` counters; beyond that new events are
dropped) and, once Redis answers again, every hour whose write failed or whose events were
dropped is marked incomplete, so a report says so instead of showing a figure it cannot vouch
for.

The API, one line per event (``helpline`` is the flow id, ``team`` and ``worker`` the names
in ``teams.yaml``; ``wait`` and ``seconds`` are seconds; every method also takes ``at=``, the
moment the event is filed under (its local hour): give the time the call was queued, when
known, so a call's outcome lands in the hour it was queued; it defaults to now)::

    counts.offered(helpline)                     # reached /voice/incoming with a flow
    counts.notice_heard(helpline)                # a turn in which the caller finished the notice
    counts.ended(helpline, Outcome.X, notice_heard=True, team="")  # an end of the flow (ENDS)
    counts.fallback(helpline)                    # Twilio's fallback URL answered
    counts.dialled(helpline, team, answered)     # a direct dial's result
    counts.queued(helpline, team)                # joined the waiting line
    counts.answered(helpline, team, wait, worker="")  # with worker: their accept too
    counts.abandoned(helpline, team, wait)       # under 10 s also counted apart
    counts.max_wait(helpline, team, wait)        # ended at on_max_wait
    counts.no_workers(helpline, team, wait=0)    # ended at on_no_workers
    counts.no_answer(helpline, team, wait)       # ended at on_no_answer
    counts.offer(helpline, team, worker)         # a worker's phone was rung for a call
    counts.accept(helpline, team, worker)        # ... and they took it (or answered(worker=))
    counts.missed(helpline, team, worker)        # ... and they did not
    counts.talk(helpline, team, worker, seconds) # a call a worker took ended after so long
    counts.flush() / counts.flush_if_due()       # write the buffer (never raises)

Each takes the wait and talk times into fixed histogram buckets (:data:`WAIT_BUCKETS`,
:data:`TALK_BUCKETS`) and a running sum, so service levels, average waits and handle times
are computed from counts (:mod:`callflow.records.reports`).

"Hung up in the menu" is not observed (no status callback knows where the caller was, and no
per-call state is kept before the bridge): it is derived as calls offered minus calls that
reached a counted end (out of hours, closure date, degraded path, queued, dialled directly),
before and after the notice from the count of turns in which the notice was heard.

Keys (:mod:`callflow.platform.keys`): a hash per helpline, scope (``all``, ``team:<name>``,
``worker:<name>``) and local hour; an index per helpline scored by the hour's start; a hash of
incomplete hours. After ``CALLFLOW_COUNTS_HOURLY_DAYS`` the timed job folds hours into days
(:meth:`Counts.roll_up`); after ``CALLFLOW_COUNTS_KEEP_DAYS`` it deletes them.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from enum import StrEnum

import redis

from callflow.platform import keys

log = logging.getLogger(__name__)
ALL = "all"
HOUR_FORMAT = "%Y-%m-%dT%H"
DAY_FORMAT = "%Y-%m-%d"
SHORT_ABANDON_SECONDS = 10
# Upper bounds (exclusive) of the wait buckets; 10, 20 and 60 are the edges reports need.
WAIT_BUCKETS = (10, 20, 30, 60, 120, 300, 600)
TALK_BUCKETS = (60, 300, 600, 1200, 1800, 3600)
# Incomplete-hour reasons.
STORE_DOWN = "store_unavailable"
DROPPED = "events_dropped"


class Outcome(StrEnum):
    """What is counted for a call (helpline and, where a team is known, team scope)."""

    OFFERED = "offered"
    NOTICE_HEARD = "notice_heard"
    ENDS_BEFORE_NOTICE = "ends_before_notice"  # counted ends the caller reached unheard
    OUT_OF_HOURS = "out_of_hours"
    CLOSURE = "closure"
    DEGRADED = "degraded"  # an offered call answered by the degraded path
    FALLBACK = "fallback"  # Twilio's fallback URL answered (the web service failed it)
    QUEUED = "queued"
    DIRECT = "direct"  # put through by a direct dial, not the waiting line
    DIAL_ANSWERED = "dial_answered"  # a direct dial (any cause) a worker answered
    DIAL_UNANSWERED = "dial_unanswered"
    ANSWERED = "answered"
    ABANDONED = "abandoned"
    ABANDONED_SHORT = "abandoned_short"  # abandoned within SHORT_ABANDON_SECONDS
    MAX_WAIT = "max_wait"
    NO_WORKERS = "no_workers"
    NO_ANSWER = "no_answer"


# The outcomes that end a call's way through the flow (for "hung up in the menu").
ENDS = (Outcome.OUT_OF_HOURS, Outcome.CLOSURE, Outcome.DEGRADED, Outcome.QUEUED,
        Outcome.DIRECT)
WAITED = (Outcome.ANSWERED, Outcome.ABANDONED, Outcome.MAX_WAIT, Outcome.NO_WORKERS,
          Outcome.NO_ANSWER)


class WorkerCount(StrEnum):
    OFFER = "offer"
    ACCEPT = "accept"
    MISSED = "missed"


def bucket_names(bounds: tuple[int, ...]) -> list[str]:
    lows = (0, *bounds)
    return [f"{lo}-{hi}" for lo, hi in zip(lows, bounds, strict=False)] + [f"{bounds[-1]}+"]


def bucket_of(seconds: float, bounds: tuple[int, ...]) -> str:
    names = bucket_names(bounds)
    for index, bound in enumerate(bounds):
        if seconds < bound:
            return names[index]
    return names[-1]


def wait_field(outcome: Outcome, bucket: str) -> str:
    return f"wait:{outcome.value}:{bucket}"


def wait_sum_field(outcome: Outcome) -> str:
    return f"wait:{outcome.value}:sum"


TALK_CALLS = "talk:calls"
TALK_SUM = "talk:sum"


def talk_field(bucket: str) -> str:
    return f"talk:{bucket}"


@dataclass(frozen=True)
class Period:
    """One stored hash of counts: a scope's hour (``2026-12-01T14``) or rolled-up day."""

    helpline: str
    scope: str
    period: str
    counts: dict[str, int]

    @property
    def hourly(self) -> bool:
        return "T" in self.period

    @property
    def day(self) -> date:
        return date.fromisoformat(self.period[:10])

    @property
    def hour(self) -> int | None:
        return int(self.period[11:13]) if self.hourly else None


class Counts:
    """The process's buffer of counts, and the store they are written to and read from."""

    def __init__(self, store: redis.Redis, *, zone_of: Callable[[str], tzinfo],
                 clock: Callable[[], datetime], flush_seconds: float = 5.0,
                 limit: int = 20000) -> None:
        self.store = store
        self.zone_of = zone_of
        self.clock = clock
        self.flush_seconds = flush_seconds
        self.limit = limit
        self._lock = threading.Lock()
        self._buffer: dict[tuple[str, str, str], dict[str, int]] = {}
        self._scores: dict[tuple[str, str], int] = {}  # (helpline, hour) -> its start (epoch)
        self._size = 0
        self._since: float | None = None  # monotonic time of the oldest unwritten event
        self._failed_at: float | None = None
        self._marks: dict[tuple[str, str], str] = {}  # (helpline, hour) -> why incomplete

    # -- counting (in process: no Redis) -------------------------------------------------

    def offered(self, helpline: str, *, at: datetime | None = None) -> None:
        self._add(helpline, [(ALL, Outcome.OFFERED.value, 1)], at)

    def notice_heard(self, helpline: str, *, at: datetime | None = None) -> None:
        self._add(helpline, [(ALL, Outcome.NOTICE_HEARD.value, 1)], at)

    def fallback(self, helpline: str, *, at: datetime | None = None) -> None:
        self._add(helpline, [(ALL, Outcome.FALLBACK.value, 1)], at)

    def ended(self, helpline: str, outcome: Outcome, *, notice_heard: bool = True,
              team: str = "", at: datetime | None = None) -> None:
        """An end of the way through the flow (one of :data:`ENDS`), or any outcome."""
        outcome = Outcome(outcome)
        rows = [(ALL, outcome.value, 1)]
        if not notice_heard:
            rows.append((ALL, Outcome.ENDS_BEFORE_NOTICE.value, 1))
        if team:
            rows.append((f"team:{team}", outcome.value, 1))
        self._add(helpline, rows, at)

    def queued(self, helpline: str, team: str, *, at: datetime | None = None) -> None:
        self.ended(helpline, Outcome.QUEUED, team=team, at=at)

    def dialled(self, helpline: str, team: str, answered: bool, *,
                at: datetime | None = None) -> None:
        """A direct dial's result (the waiting line was not used)."""
        outcome = Outcome.DIAL_ANSWERED if answered else Outcome.DIAL_UNANSWERED
        self._add(helpline, _scoped(team, [(outcome.value, 1)]), at)

    def waited(self, helpline: str, team: str, outcome: Outcome, wait: float, *,
               worker: str = "", at: datetime | None = None) -> None:
        """A call left the waiting line (one of :data:`WAITED`) after ``wait`` seconds."""
        outcome = Outcome(outcome)
        wait = max(0.0, float(wait))
        rows = [(outcome.value, 1), (wait_field(outcome, bucket_of(wait, WAIT_BUCKETS)), 1),
                (wait_sum_field(outcome), round(wait))]
        if outcome is Outcome.ABANDONED and wait < SHORT_ABANDON_SECONDS:
            rows.append((Outcome.ABANDONED_SHORT.value, 1))
        scoped = _scoped(team, rows)
        if worker and outcome is Outcome.ANSWERED:
            scoped.append((f"worker:{worker}", WorkerCount.ACCEPT.value, 1))
        self._add(helpline, scoped, at)

    def answered(self, helpline: str, team: str, wait: float, *, worker: str = "",
                 at: datetime | None = None) -> None:
        """Answered by a worker after ``wait`` s; with ``worker``, also their accept."""
        self.waited(helpline, team, Outcome.ANSWERED, wait, worker=worker, at=at)

    def abandoned(self, helpline: str, team: str, wait: float, *,
                  at: datetime | None = None) -> None:
        self.waited(helpline, team, Outcome.ABANDONED, wait, at=at)

    def max_wait(self, helpline: str, team: str, wait: float, *,
                 at: datetime | None = None) -> None:
        self.waited(helpline, team, Outcome.MAX_WAIT, wait, at=at)

    def no_workers(self, helpline: str, team: str, wait: float = 0, *,
                   at: datetime | None = None) -> None:
        self.waited(helpline, team, Outcome.NO_WORKERS, wait, at=at)

    def no_answer(self, helpline: str, team: str, wait: float, *,
                  at: datetime | None = None) -> None:
        self.waited(helpline, team, Outcome.NO_ANSWER, wait, at=at)

    def offer(self, helpline: str, team: str, worker: str, *,
              at: datetime | None = None) -> None:
        self._worker(helpline, worker, WorkerCount.OFFER, at)

    def accept(self, helpline: str, team: str, worker: str, *,
               at: datetime | None = None) -> None:
        """A worker took a call (use :meth:`answered` with ``worker`` to count both)."""
        self._worker(helpline, worker, WorkerCount.ACCEPT, at)

    def missed(self, helpline: str, team: str, worker: str, *,
               at: datetime | None = None) -> None:
        self._worker(helpline, worker, WorkerCount.MISSED, at)

    def talk(self, helpline: str, team: str, worker: str, seconds: float, *,
             at: datetime | None = None) -> None:
        """A call a worker took has ended, ``seconds`` after they took it."""
        seconds = max(0.0, float(seconds))
        rows = [(talk_field(bucket_of(seconds, TALK_BUCKETS)), 1), (TALK_CALLS, 1),
                (TALK_SUM, round(seconds))]
        scoped = _scoped(team, rows)
        if worker:
            scoped += [(f"worker:{worker}", name, n) for name, n in rows]
        self._add(helpline, scoped, at)

    def _worker(self, helpline: str, worker: str, what: WorkerCount,
                at: datetime | None) -> None:
        if worker:
            self._add(helpline, [(f"worker:{worker}", what.value, 1)], at)

    def _add(self, helpline: str, rows: Iterable[tuple[str, str, int]],
             at: datetime | None = None) -> None:
        """Count in the buffer; never raises (a count must never cost a caller their call)."""
        try:
            hour, score = self._hour(helpline, at or self.clock())
            with self._lock:
                self._scores[(helpline, hour)] = score
                for scope, name, n in rows:
                    fields = self._buffer.setdefault((helpline, scope, hour), {})
                    if name not in fields:
                        if self._size >= self.limit:
                            self._marks[(helpline, hour)] = DROPPED
                            continue
                        self._size += 1
                    fields[name] = fields.get(name, 0) + n
                if self._since is None:
                    self._since = time.monotonic()
        except Exception as exc:
            log.warning("a count could not be kept", extra={"event": "count_failed",
                                                           "error": type(exc).__name__})

    def _hour(self, helpline: str, at: datetime) -> tuple[str, int]:
        local = at.astimezone(self.zone_of(helpline))
        start = local.replace(minute=0, second=0, microsecond=0)
        return local.strftime(HOUR_FORMAT), int(start.timestamp())

    # -- writing ---------------------------------------------------------------------------

    def pending(self) -> int:
        """Counters not yet written (for tests and the health of the buffer)."""
        with self._lock:
            return self._size

    def due(self) -> bool:
        with self._lock:
            if self._since is None and not self._marks:
                return False
            now = time.monotonic()
            if self._failed_at is not None and now - self._failed_at < self.flush_seconds:
                return False
            return (self._size >= self.limit // 2 or self._since is None
                    or now - self._since >= self.flush_seconds)

    def flush_if_due(self) -> bool:
        """Write the buffer if it is old or large enough (never raises)."""
        return self.flush() if self.due() else False

    def flush(self) -> bool:
        """Write every buffered count in one transaction; keep them if Redis is down.

        Returns whether the store took them. Never raises."""
        with self._lock:
            buffer, scores, marks = self._buffer, self._scores, dict(self._marks)
            self._buffer, self._scores, self._size, self._since = {}, {}, 0, None
        if not buffer and not marks:
            return True
        try:
            pipe = self.store.pipeline(transaction=True)
            for (helpline, scope, hour), fields in buffer.items():
                key = keys.counts(helpline, scope, hour)
                for name, n in fields.items():
                    pipe.hincrby(key, name, n)
                pipe.zadd(keys.counts_index(helpline),
                          {json.dumps([scope, hour]): scores[(helpline, hour)]}, nx=True)
            for helpline in {h for h, _, _ in buffer} | {h for h, _ in marks}:
                pipe.sadd(keys.counts_helplines(), helpline)
            for (helpline, hour), reason in marks.items():
                pipe.hset(keys.counts_incomplete(helpline), hour, reason)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._put_back(buffer, scores)
            log.warning("counts could not be written; kept in the process",
                        extra={"event": "counts_unwritten", "error": type(exc).__name__})
            return False
        except Exception:
            self._put_back(buffer, scores)
            log.exception("counts could not be written", extra={"event": "counts_unwritten"})
            return False
        with self._lock:
            for mark in marks:
                if self._marks.get(mark) == marks[mark]:
                    del self._marks[mark]
            self._failed_at = None
        return True

    def _put_back(self, buffer, scores) -> None:
        """A failed write: the counts go back in the buffer (its bound still holds), and
        each of their hours is marked incomplete when the store answers again (the write may
        have been half-applied, and other processes' counts of it may be lost)."""
        with self._lock:
            self._failed_at = time.monotonic()
            for (helpline, scope, hour), fields in buffer.items():
                self._marks.setdefault((helpline, hour), STORE_DOWN)
                self._scores.setdefault((helpline, hour), scores[(helpline, hour)])
                mine = self._buffer.setdefault((helpline, scope, hour), {})
                for name, n in fields.items():
                    if name not in mine:
                        if self._size >= self.limit:
                            self._marks[(helpline, hour)] = DROPPED
                            continue
                        self._size += 1
                    mine[name] = mine.get(name, 0) + n
            if self._since is None and self._size:
                self._since = time.monotonic()

    # -- reading ---------------------------------------------------------------------------

    def helplines(self) -> list[str]:
        return sorted(self.store.smembers(keys.counts_helplines()))

    def read(self, helpline: str, start: datetime, end: datetime) -> list[Period]:
        """Every stored hash of ``helpline`` whose period starts in [start, end)."""
        index = keys.counts_index(helpline)
        members = self.store.zrangebyscore(index, int(start.timestamp()),
                                           f"({int(end.timestamp())}")
        pipe = self.store.pipeline(transaction=False)
        wanted = []
        for member in members:
            scope, period = json.loads(member)
            wanted.append((scope, period))
            pipe.hgetall(keys.counts(helpline, scope, period))
        found = pipe.execute() if wanted else []
        return [Period(helpline, scope, period, {k: int(v) for k, v in fields.items()})
                for (scope, period), fields in zip(wanted, found, strict=True) if fields]

    def incomplete(self, helpline: str) -> dict[str, str]:
        """Local hour -> why its counts are incomplete."""
        return dict(self.store.hgetall(keys.counts_incomplete(helpline)))

    # -- retention (the timed job) ---------------------------------------------------------

    def roll_up(self, before: datetime) -> int:
        """Fold every hour that started before ``before`` into its local day. Returns how
        many hours were folded."""
        folded = 0
        for helpline in self.helplines():
            zone = self.zone_of(helpline)
            index = keys.counts_index(helpline)
            for member in self.store.zrangebyscore(index, "-inf",
                                                   f"({int(before.timestamp())}"):
                scope, period = json.loads(member)
                if "T" not in period:
                    continue
                day = period[:10]
                day_start = datetime.combine(date.fromisoformat(day), datetime.min.time(),
                                             tzinfo=zone)
                if self._fold(helpline, scope, period, day, int(day_start.timestamp()),
                              member):
                    folded += 1
        return folded

    def _fold(self, helpline: str, scope: str, hour: str, day: str, day_score: int,
              member: str) -> bool:
        hourly = keys.counts(helpline, scope, hour)
        daily = keys.counts(helpline, scope, day)
        index = keys.counts_index(helpline)
        with self.store.pipeline(transaction=True) as pipe:
            try:
                pipe.watch(hourly)
                fields = pipe.hgetall(hourly)
                pipe.multi()
                for name, n in fields.items():
                    pipe.hincrby(daily, name, int(n))
                if fields:
                    pipe.zadd(index, {json.dumps([scope, day]): day_score}, nx=True)
                pipe.delete(hourly)
                pipe.zrem(index, member)
                pipe.execute()
            except redis.WatchError:  # counts arrived for that hour meanwhile: next run
                return False
        return True

    def purge(self, before: datetime) -> int:
        """Delete every count (hour or day) that started before ``before``, and the marks
        of incomplete hours before it. Returns how many hashes were deleted."""
        removed = 0
        for helpline in self.helplines():
            index = keys.counts_index(helpline)
            members = self.store.zrangebyscore(index, "-inf", f"({int(before.timestamp())}")
            for member in members:
                scope, period = json.loads(member)
                pipe = self.store.pipeline(transaction=True)
                pipe.delete(keys.counts(helpline, scope, period))
                pipe.zrem(index, member)
                pipe.execute()
                removed += 1
            cutoff = before.astimezone(self.zone_of(helpline)).strftime(DAY_FORMAT)
            marks = self.store.hkeys(keys.counts_incomplete(helpline))
            old = [hour for hour in marks if hour[:10] < cutoff]
            if old:
                self.store.hdel(keys.counts_incomplete(helpline), *old)
        return removed

    def apply_retention(self, hourly_days: int, keep_days: int) -> tuple[int, int]:
        """Roll hours older than ``hourly_days`` into days; delete counts older than
        ``keep_days``. Returns (hours folded, hashes deleted)."""
        now = self.clock().astimezone(UTC)
        folded = self.roll_up(now - timedelta(days=hourly_days))
        removed = self.purge(now - timedelta(days=keep_days))
        return folded, removed


def _scoped(team: str, rows: list[tuple[str, int]]) -> list[tuple[str, str, int]]:
    """The helpline's own counts, and the team's when a team is known."""
    scoped = [(ALL, name, n) for name, n in rows]
    if team:
        scoped += [(f"team:{team}", name, n) for name, n in rows]
    return scoped
