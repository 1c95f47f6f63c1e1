"""The audit log's witness: every signed head, kept outside Redis as it is written.

A hash chain and a signed head show an edit, a removal or a cut; they cannot show that the
whole log was put back as it was an hour ago (saved keys restored after more entries were
written), or deleted. The witness can: each time an entry is written, its signed head (seq, hash,
time) is appended to a file (``CALLFLOW_AUDIT_WITNESS``) and written to the structured log as
a second copy, which a log shipper carries off the machine. ``callflow audit verify`` then
fails when the log is behind what the witness saw, or holds other entries at a seq it saw.

The file is append-only (``O_APPEND``, one line per head, as several processes on a machine
write it); lines may come out of order, and each is checked on its own signature. In the
structured log the head travels hex-encoded (``audit witness <hex>``), so the log's redaction
of anything phone-like can never change a digit of it; both forms are read back alike, so a
collected log can be given to ``audit verify --witness`` as it is.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from callflow.records.audit_keys import SIGNATURE, AuditKeys, canonical

log = logging.getLogger(__name__)
HEAD_FIELDS = ("seq", "hash", "at")
LOG_TOKEN = re.compile(r"audit witness ([0-9a-f]{64,4096})")
# The dashboard reads only the end of the file for the newest head.
TAIL_BYTES = 16 * 1024


@dataclass(frozen=True)
class Witnessed:
    """One head the witness holds, and where it was read (file and line). Its signature is
    checked only where it matters (:meth:`signed_by`): a head that says what the verified chain
    itself says adds nothing, whoever wrote it."""

    seq: int
    hash: str
    at: str
    where: str
    record: dict = field(repr=False, compare=False)

    def signed_by(self, keys: AuditKeys) -> bool:
        return keys.open("head", self.record, HEAD_FIELDS) is not None


@dataclass(frozen=True)
class Reading:
    """What a witness holds: the heads in it, and lines that carry something in a head's
    place that is not one (someone wrote to the witness)."""

    heads: list[Witnessed]
    malformed: list[str]

    def newest(self, keys: AuditKeys) -> Witnessed | None:
        """The newest head rightly signed."""
        for head in sorted(self.heads, key=lambda h: h.seq, reverse=True):
            if head.signed_by(keys):
                return head
        return None


def _head_of(line: str) -> dict | str | None:
    """The head a line carries (a witness line or a structured log line), or None."""
    line = line.strip()
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict) and set(record) == {"head"}:
            return record["head"]
    token = LOG_TOKEN.search(line)
    if token is None:
        return None
    try:
        return json.loads(bytes.fromhex(token.group(1)).decode("utf-8"))
    except ValueError:
        return line


def _well_formed(record: object) -> bool:
    return (isinstance(record, dict) and set(record) == {*HEAD_FIELDS, SIGNATURE}
            and isinstance(record["seq"], int) and not isinstance(record["seq"], bool)
            and all(isinstance(record[name], str) for name in ("hash", "at", SIGNATURE)))


def read(lines: Iterable[str], source: str) -> Reading:
    heads: list[Witnessed] = []
    malformed: list[str] = []
    for number, line in enumerate(lines, start=1):
        carried = _head_of(line)
        if carried is None:
            continue  # another log line, or a line cut short by a crash
        where = f"{source}:{number}"
        if _well_formed(carried):
            heads.append(Witnessed(carried["seq"], carried["hash"], carried["at"], where,
                                   carried))
        else:
            malformed.append(where)
    return Reading(heads, malformed)


class Witness:
    """The witness file (and the structured log, its second copy)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def record(self, head: str) -> None:
        """Keep one signed head. A file that cannot be written is logged loudly, not raised:
        the entry is already in Redis, and the log line above carries the same head."""
        log.info(f"audit witness {head.encode('utf-8').hex()}", extra={"event": "audit_witness"})
        line = (canonical({"head": json.loads(head)}) + "\n").encode("utf-8")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(descriptor, line)
            finally:
                os.close(descriptor)
        except OSError as exc:
            log.error("the audit witness could not be written", extra={
                "event": "witness_failed", "error": type(exc).__name__, "file": str(self.path)})

    def read(self) -> Reading:
        """Every head in the file (none if there is no file yet)."""
        try:
            with self.path.open(encoding="utf-8", errors="replace") as handle:
                return read(handle, str(self.path))
        except FileNotFoundError:
            return Reading([], [])

    def newest(self, keys: AuditKeys) -> Witnessed | None:
        """The newest head among the last lines of the file, without reading all of it."""
        try:
            with self.path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - TAIL_BYTES))
                tail = handle.read().decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return None
        if size > TAIL_BYTES:
            tail = tail[1:]  # the first line read is only the end of a line
        return read(tail, f"{self.path} (its end)").newest(keys)
