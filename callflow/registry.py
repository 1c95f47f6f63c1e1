"""The live flow set, swapped atomically on reload; a bad edit never replaces a good set.

Requests read ``registry.current`` once and use that object throughout, so a reload mid-call
can never mix two versions. A reload is triggered by SIGHUP or by the folder changing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from callflow.errors import FlowSetInvalid
from callflow.flow import FlowSet
from callflow.loader import flow_files, load_flowset

log = logging.getLogger(__name__)


class FlowRegistry:
    def __init__(self, directory: str | Path,
                 on_reload: Callable[[FlowSet | None, FlowSetInvalid | None], None] | None = None
                 ) -> None:
        self.directory = Path(directory)
        self.on_reload = on_reload
        self._lock = threading.Lock()
        self._fingerprint = self.fingerprint()
        self.current: FlowSet = load_flowset(self.directory)  # refuse to start on a bad set
        for warning in self.current.warnings:
            log.warning("flow warning: %s", warning, extra={"event": "flow_warning"})

    def fingerprint(self) -> tuple:
        """Cheap summary of the folder (names, sizes, change times) to notice edits."""
        try:
            return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                         for p in flow_files(self.directory))
        except OSError:
            return ()

    def reload(self) -> bool:
        """Load the folder again; keep the last good set if the new one is bad."""
        with self._lock:
            self._fingerprint = self.fingerprint()
            try:
                fresh = load_flowset(self.directory)
            except FlowSetInvalid as exc:
                for error in exc.errors:
                    log.error("flow reload refused: %s", error, extra={"event": "reload_refused"})
                if self.on_reload:
                    self.on_reload(None, exc)
                return False
            self.current = fresh
            log.info("flows reloaded", extra={"event": "reloaded"})
            if self.on_reload:
                self.on_reload(fresh, None)
            return True

    def reload_if_changed(self) -> bool | None:
        if self.fingerprint() == self._fingerprint:
            return None
        return self.reload()

    def watch(self, interval: float) -> threading.Event:
        """Poll the folder in a daemon thread; set the returned event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(interval):
                self.reload_if_changed()

        threading.Thread(target=loop, name="flow-watch", daemon=True).start()
        return stop
