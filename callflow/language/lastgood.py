"""The last flow set proved good, kept where a process that starts later finds it.

A process that starts while the files on disk are broken (a gunicorn worker booting after a
HUP, a crash or a scale-up; a new node; ``callflow runner`` restarting) would otherwise refuse
to start, and gunicorn's master halts when a worker fails to boot: one careless save would take
the web tier down. So every process that proves a set good keeps its sources, and a process
that cannot load the folder starts on them instead, proving them again as it loads them, and
says it is degraded until the folder is fixed.

They are kept in Redis, with each file's SHA-256, rather than in a file beside the flows:

- every process of the deployment (each gunicorn worker, every web node, the job worker)
  already depends on Redis and sees the same copy, so a new node or a fresh container with a
  broken checkout finds the set that another process proved, where a local file would be
  missing, or stale on one node and not another;
- one ``SET`` replaces it whole, so no process ever reads half of one set and half of another;
- with the embedded store (no ``REDIS_URL``) Redis is itself a file beside the store, so the
  one-box setup keeps it on disk all the same;
- nothing is written into the admins' git working tree.

If Redis is unreachable at the very moment a process starts on a broken folder, it refuses to
start, as on a first start: two faults at once, and the processes already running keep serving.
The copy holds flow and team files only: worker names and numbers, as teams.yaml does, never
caller data.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import redis

from callflow.language.flow import FlowSet
from callflow.language.loader import load_files
from callflow.platform import keys
from callflow.platform.errors import CallflowError, FlowSetInvalid

log = logging.getLogger(__name__)
UNREACHABLE = (redis.RedisError, OSError, CallflowError)


@dataclass(frozen=True)
class Snapshot:
    """The sources of a set proved good: file name -> text, with when it was kept."""

    files: dict[str, str]
    saved_at: str


class LastGoodFlows:
    def __init__(self, store: redis.Redis, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def save(self, flowset: FlowSet) -> bool:
        """Keep ``flowset``'s sources as the last good set; False if Redis would not take them."""
        files = {Path(path).name: {"source": text, "sha256": flowset.files[path]}
                 for path, text in flowset.sources.items()}
        record = {"saved_at": self.clock().isoformat(timespec="seconds"), "files": files}
        try:
            self.store.set(keys.last_good_flows(), json.dumps(record, sort_keys=True))
        except UNREACHABLE as exc:
            log.warning("the last good flows could not be kept (%s)", type(exc).__name__,
                        extra={"event": "last_good_unsaved"})
            return False
        return True

    def snapshot(self) -> Snapshot | None:
        """The kept sources, if any are kept and each matches its hash."""
        try:
            raw = self.store.get(keys.last_good_flows())
        except UNREACHABLE as exc:
            log.warning("the last good flows could not be read (%s)", type(exc).__name__,
                        extra={"event": "last_good_unread"})
            return None
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            files = {name: entry["source"] for name, entry in record["files"].items()
                     if hashlib.sha256(entry["source"].encode("utf-8")).hexdigest()
                     == entry["sha256"]}
            if len(files) != len(record["files"]) or not files:
                raise ValueError("a file does not match its hash")
            return Snapshot(files=files, saved_at=str(record["saved_at"]))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.error("the kept last good flows are damaged and cannot be used",
                      extra={"event": "last_good_damaged"})
            return None

    def restore(self, directory: Path) -> tuple[FlowSet, Snapshot] | None:
        """The last good set, loaded and proved again as if its files were in ``directory``."""
        snapshot = self.snapshot()
        if snapshot is None:
            return None
        files = [(directory / name, text.encode("utf-8"))
                 for name, text in sorted(snapshot.files.items())
                 if Path(name).name == name]  # a name, never a path elsewhere
        try:
            return load_files(directory, files), snapshot
        except FlowSetInvalid as exc:
            log.error("the kept last good flows no longer validate: %s", exc.errors[0],
                      extra={"event": "last_good_invalid"})
            return None
