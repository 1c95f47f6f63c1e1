"""The live flow set, swapped atomically on reload; a bad edit never replaces a good set.

Requests read ``registry.current`` once and use that object throughout, so a reload mid-call
can never mix two versions. A reload is asked for by SIGHUP or by the folder changing, and
runs in the watcher's thread. Whatever a reload meets (a refused edit, a file that cannot be
read, a document that exhausts memory), the last good set stays live, the refusal is logged
and audited, and the watcher goes on: one careless save must never leave good edits unloaded
until a restart.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from callflow.language.flow import FlowSet
from callflow.language.lastgood import LastGoodFlows
from callflow.language.loader import describe_skipped, flow_files, load_flowset, skipped_files
from callflow.platform.errors import FlowError, FlowSetInvalid, Where

log = logging.getLogger(__name__)
# How often the watcher looks for a reload SIGHUP asked for (the folder: every interval).
POLL_SECONDS = 0.25

OnReload = Callable[[FlowSet | None, FlowSetInvalid | None], None]


def as_refusal(directory: Path, exc: Exception) -> FlowSetInvalid:
    """Why a load failed, as the errors an admin reads, whatever was raised."""
    if isinstance(exc, FlowSetInvalid):
        return exc
    detail = str(exc)[:200]
    return FlowSetInvalid([FlowError(Where(str(directory)), "the flows could not be loaded ("
                                     f"{type(exc).__name__}{': ' + detail if detail else ''})",
                                     "fix the folder; the last good flows stay live until then")])


@dataclass
class Watch:
    """The watcher's thread, and how to stop it."""

    thread: threading.Thread
    stopped: threading.Event

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)


class FlowRegistry:
    def __init__(self, directory: str | Path, on_reload: OnReload | None = None,
                 last_good: LastGoodFlows | None = None) -> None:
        self.directory = Path(directory)
        self.on_reload = on_reload
        self.last_good = last_good
        self._lock = threading.Lock()
        self._reload_asked = False  # set by SIGHUP: a plain flag is all a signal handler may do
        # Why the files on disk are not what is served, while they are not.
        self.refused: FlowSetInvalid | None = None
        # When the set served was kept, if this process started on the last good set.
        self.started_on_last_good: str | None = None
        self._fingerprint = self.fingerprint()
        self._log_skipped()
        self.current: FlowSet = self._first_load()
        for warning in self.current.warnings:
            log.warning("flow warning: %s", warning, extra={"event": "flow_warning"})

    def _first_load(self) -> FlowSet:
        """The folder's set; if it is broken, the last good set, or a refusal to start."""
        try:
            flowset = load_flowset(self.directory)
        except Exception as exc:  # whatever the folder holds, the last good set may serve
            refused = as_refusal(self.directory, exc)
            restored = self.last_good.restore(self.directory) if self.last_good else None
            if restored is None:  # a first start, or nothing kept: refuse, with the errors
                raise refused from None
            flowset, snapshot = restored
            self.refused, self.started_on_last_good = refused, snapshot.saved_at
            for error in refused.errors:
                log.error("flows refused at start: %s", error, extra={"event": "start_refused"})
            log.warning("degraded: serving the last good flows, kept at %s", snapshot.saved_at,
                        extra={"event": "last_good_served"})
            self._tell(None, refused)
            return flowset
        self._keep(flowset)
        return flowset

    def _keep(self, flowset: FlowSet) -> None:
        if self.last_good is not None:
            self.last_good.save(flowset)

    @property
    def broken_files(self) -> list[str]:
        """The names of the files on disk that keep the set served from being theirs."""
        if self.refused is None:
            return []
        return sorted({Path(error.where.path).name for error in self.refused.errors})

    def fingerprint(self) -> tuple:
        """Cheap summary of the folder (names, sizes, change times) to notice edits."""
        try:
            paths = flow_files(self.directory)
        except OSError:
            return ()
        entries = []
        for path in paths:
            try:
                found = path.stat()
                entries.append((path.name, found.st_size, found.st_mtime_ns))
            except OSError:  # a link to nothing, or a file that went away: its name is enough
                entries.append((path.name, None, None))
        return tuple(entries)

    def reload(self) -> bool:
        """Load the folder again; keep the last good set if anything goes wrong."""
        with self._lock:
            self._fingerprint = self.fingerprint()
            self._log_skipped()
            try:
                fresh = load_flowset(self.directory)
            except Exception as exc:  # any failure keeps the last good set
                refused = as_refusal(self.directory, exc)
                self.refused = refused
                for error in refused.errors:
                    log.error("flow reload refused: %s", error, extra={"event": "reload_refused"})
                self._tell(None, refused)
                return False
            self.current = fresh
            self.refused = self.started_on_last_good = None
            log.info("flows reloaded", extra={"event": "reloaded"})
            self._keep(fresh)
            self._tell(fresh, None)
            return True

    def reload_if_changed(self) -> bool | None:
        if self.fingerprint() == self._fingerprint:
            return None
        return self.reload()

    def ask_reload(self) -> None:
        """Ask the watcher to reload now (what SIGHUP does; safe in a signal handler)."""
        self._reload_asked = True

    def watch(self, interval: float) -> Watch:
        """Reload in a daemon thread when asked (SIGHUP) and, every ``interval`` seconds (0:
        never), when the folder has changed. The thread outlives any failure of a reload."""
        stopped = threading.Event()

        def loop() -> None:
            next_look = time.monotonic() + interval
            while not stopped.wait(POLL_SECONDS):
                asked = self._reload_asked
                if not asked and not (interval > 0 and time.monotonic() >= next_look):
                    continue
                self._reload_asked = False
                try:
                    if asked:
                        self.reload()
                    else:
                        self.reload_if_changed()
                except Exception:  # the watcher must outlive anything
                    log.exception("the flow watcher met an error and goes on",
                                  extra={"event": "watch_error"})
                next_look = time.monotonic() + interval

        thread = threading.Thread(target=loop, name="flow-watch", daemon=True)
        thread.start()
        return Watch(thread, stopped)

    def _tell(self, fresh: FlowSet | None, refused: FlowSetInvalid | None) -> None:
        if self.on_reload is None:
            return
        try:
            self.on_reload(fresh, refused)
        except Exception:  # recording a reload must not undo it
            log.exception("a flow reload could not be recorded", extra={"event": "reload_error"})

    def _log_skipped(self) -> None:
        skipped = skipped_files(self.directory)
        if skipped:
            log.info(describe_skipped(skipped), extra={"event": "flow_files_skipped"})


def reload_on_sighup(registry: FlowRegistry) -> bool:
    """Make SIGHUP ask ``registry`` for a reload, whatever the reload interval.

    Python runs signal handlers in the main thread only, so elsewhere (a test's thread) this
    does nothing and says so. The handler only sets a flag: the watcher reloads, so a reload
    that fails can never raise out of the handler into the server's loop and stop it."""
    if threading.current_thread() is not threading.main_thread():
        return False
    signal.signal(signal.SIGHUP, lambda *_: registry.ask_reload())
    return True
