"""Every Redis key the service uses is built here, and only here."""

from __future__ import annotations

PREFIX = "callflow"


def live_call(call_id: str) -> str:
    """One live call on the bridge, by its opaque id (a hash; expires after the call)."""
    return f"{PREFIX}:live:{call_id}"


def live_index() -> str:
    """Live call ids scored by start time, for the manager's list (a sorted set)."""
    return f"{PREFIX}:live-index"


def conference_room(call_id: str) -> str:
    """The Twilio conference name of a live call: opaque, like the id it is made from."""
    return f"room-{call_id}"


def monitor_session(session_id: str) -> str:
    """One listen-in session: manager, call id, purpose, state (a hash with a TTL)."""
    return f"{PREFIX}:monitor:session:{session_id}"


def monitor_sessions() -> str:
    """Open listen-in sessions scored by start time, for the job that closes stale ones."""
    return f"{PREFIX}:monitor:open"


def monitor_active(manager: str) -> str:
    """Held while a manager is listening: never two listens at once."""
    return f"{PREFIX}:monitor:active:{manager}"


def monitor_count(manager: str, day: str) -> str:
    """How many listens a manager has started on one day (expires after two days)."""
    return f"{PREFIX}:monitor:count:{manager}:{day}"


def rest_trouble() -> str:
    """Present (with a TTL) after Twilio's REST API failed, so new callers are dialled directly."""
    return f"{PREFIX}:rest-trouble"


# The audit log's keys share the hash tag ``{audit}`` so the scripts that touch several of them
# at once also work on a Redis Cluster (one slot). None has a TTL: only ``audit purge`` cuts.
def audit_entries() -> str:
    """The audit log's entries, oldest first (a list of canonical JSON strings)."""
    return f"{PREFIX}:{{audit}}:entries"


def audit_head() -> str:
    """The signed seq and hash of the newest audit entry, so a cut tail is detected."""
    return f"{PREFIX}:{{audit}}:head"


def audit_checkpoint() -> str:
    """The signed seq and hash of the last entry removed by a purge, where verifying starts."""
    return f"{PREFIX}:{{audit}}:checkpoint"


def staff(name: str) -> str:
    """One staff account (a hash of role, hashes and flags; no TTL: accounts are kept)."""
    return f"{PREFIX}:staff:{name}"


def session_generation(name: str) -> str:
    """An account's web-session generation: "sign out everywhere" moves it on (no TTL)."""
    return f"{PREFIX}:session-generation:{name}"


def web_session(id_hash: str) -> str:
    """One web session, by the SHA-256 of the id its cookie carries (a hash with a TTL)."""
    return f"{PREFIX}:web-session:{id_hash}"


def staff_names() -> str:
    """The set of every staff account's name, so listing needs no SCAN."""
    return f"{PREFIX}:staff-names"


def lockout_failures(subject: str) -> str:
    """Failed sign-ins for one subject (an account, address or phone line) in the window."""
    return f"{PREFIX}:lockout:failures:{subject}"


def lockout_locked(subject: str) -> str:
    """Present (with a TTL) while a subject is locked out of signing in."""
    return f"{PREFIX}:lockout:locked:{subject}"


def last_good_flows() -> str:
    """The sources of the last flow set proved good, for a process that starts on a broken
    folder (a JSON string; no TTL: it is replaced whole by each good load)."""
    return f"{PREFIX}:flows:last-good"


def lockout_wait(subject: str) -> str:
    """When a slowed-down subject may be tried again (a timestamp, with a TTL)."""
    return f"{PREFIX}:lockout:wait:{subject}"


def lockout_tally(subject: str) -> str:
    """Attempts at a locked or slowed subject refused unchecked in one window (a hash, TTL)."""
    return f"{PREFIX}:lockout:tally:{subject}"


def lockout_tallies() -> str:
    """Subjects with a tally, scored by when its window closes (a sorted set)."""
    return f"{PREFIX}:lockout:tallies"


def sign_in_device(token_hash: str) -> str:
    """A browser an account has signed in from, by its token's SHA-256 (a hash, with a TTL)."""
    return f"{PREFIX}:sign-in-device:{token_hash}"


def staff_numbers() -> str:
    """Staff number -> account name, so each number belongs to one account (a hash)."""
    return f"{PREFIX}:staff-numbers"


def staff_number_next() -> str:
    """The next staff number to give out (a counter)."""
    return f"{PREFIX}:staff-number-next"


def manager_line_call(call_sid: str) -> str:
    """One call to the manager line: the staff number entered, tries, who signed in, the
    calls offered (a hash with a TTL). Never a caller's call."""
    return f"{PREFIX}:manager-line:{call_sid}"


def staff_line_call(call_sid: str) -> str:
    """One call to the staff line: the staff number entered, tries, which worker signed in (a
    hash with a TTL). A worker's own call, never a caller's."""
    return f"{PREFIX}:staff-line:{call_sid}"


def worker(name: str) -> str:
    """One worker's live state on shift: off, available, offered, on a call, wrapping up or
    paused (a hash with a TTL, renewed by every change). Staff data, never a caller's."""
    return f"{PREFIX}:worker:{name}"


def waiting_line(team: str) -> str:
    """The callers waiting for a team: opaque live-call ids scored by when they joined (a
    sorted set with a TTL). Positions are counted from it; nobody is named in it."""
    return f"{PREFIX}:waiting:{team}"


def waiting_line_count(team: str) -> str:
    """How many callers have joined a team's line, to keep the order of those who join in
    the same millisecond (a counter with a TTL)."""
    return f"{PREFIX}:waiting-count:{team}"


def dispatch_pending(team: str) -> str:
    """Present while a dispatch of a team's line is queued and not yet started, so a burst of
    callers queues one dispatch, not one each (a flag with a short TTL)."""
    return f"{PREFIX}:dispatch-pending:{team}"


def round_robin(team: str) -> str:
    """Where a round-robin team stopped: the roster index of the worker offered last."""
    return f"{PREFIX}:round-robin:{team}"


def recent_waits(team: str) -> str:
    """How long the team's last answered callers waited, in seconds, newest first (a capped
    list with a TTL, for the expected-wait band; no ids, no times)."""
    return f"{PREFIX}:recent-waits:{team}"
# Reports' counts (callflow.records.counts): only numbers, per helpline, scope and period;
# never a call id, a caller's detail or a single call's time. Kept for years (no TTL): the
# timed roll-up and retention job removes them.
def counts(helpline: str, scope: str, period: str) -> str:
    """One period's counts for a helpline (a hash of counter -> number). ``scope`` is ``all``,
    ``team:<name>`` or ``worker:<name>``; ``period`` a local hour (``2026-12-01T14``) or,
    once rolled up, a local day (``2026-12-01``)."""
    return f"{PREFIX}:counts:{helpline}:{scope}:{period}"


def counts_index(helpline: str) -> str:
    """A helpline's count hashes, as JSON ``[scope, period]``, scored by the period's start
    (UTC epoch seconds): what a report reads and the roll-up finds (a sorted set)."""
    return f"{PREFIX}:counts-index:{helpline}"


def counts_helplines() -> str:
    """Every helpline (flow id) that has counts (a set)."""
    return f"{PREFIX}:counts-helplines"


def counts_incomplete(helpline: str) -> str:
    """A helpline's local hours whose counts are incomplete (the store was down, or events
    were dropped): hour -> reason (a hash)."""
    return f"{PREFIX}:counts-incomplete:{helpline}"
