"""Commands on the audit log: verify, export, purge.

Exit codes let a cron job or a monitoring check act on them: 0 all is well, 1 the log fails
its checks (tampering), 2 the command could not run (no store, no SECRET_KEY).
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import datetime
from typing import NoReturn

import click

from callflow import local
from callflow.audit import AuditLog, entries_count, utc
from callflow.errors import AuditChainBroken, AuditUnavailable, ConfigError
from callflow.store import connect

log = logging.getLogger(__name__)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def open_log() -> AuditLog:
    """The audit log as the environment configures it (``REDIS_URL``, ``SECRET_KEY``; in
    local mode the embedded store and the local key ``callflow serve`` signs with)."""
    settings = local.settings()
    try:
        return AuditLog.from_settings(connect(settings), settings)
    except ConfigError as exc:
        fail(str(exc))


@click.group()
def audit() -> None:
    """Check, export and purge the tamper-evident audit log."""


@audit.command()
def verify() -> None:
    """Walk the hash chain; exit 1 naming the first edited, removed or reordered entry."""
    try:
        result = open_log().verify()
    except AuditUnavailable as exc:
        fail(str(exc))
    if not result.ok:
        where = f"entry {result.first_bad_seq}" if result.first_bad_seq else "the log"
        fail(f"{where}: {result.problem.value if result.problem else 'bad'}: {result.reason}",
             code=1)
    click.echo(f"ok: {result.reason}")


@audit.command()
@click.option("--since", required=True, type=click.DateTime(DATE_FORMATS),
              help="Export entries written at or after this date or time (UTC).")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write to this file (readable by its owner only) instead of stdout.")
def export(since: datetime, output: str | None) -> None:
    """Write the entries since a date as JSON lines, with their hashes."""
    try:
        lines = open_log().export(since=utc(since))
    except AuditUnavailable as exc:
        fail(str(exc))
    if not output:
        for line in lines:
            click.echo(line, nl=False)
        return
    # Staff activity is not for every account on the machine to read.
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    count = 0
    with open(descriptor, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write(line)
            count += 1
    click.echo(f"exported {entries_count(count)} to {output}", err=True)


@audit.command()
@click.option("--dry-run", is_flag=True, help="Say how many entries are due; remove nothing.")
def purge(dry_run: bool) -> None:
    """Remove entries older than the retention, keeping the rest verifiable."""
    audit_log = open_log()
    cutoff = audit_log.cutoff().isoformat(timespec="seconds")
    try:
        count = audit_log.purge(dry_run=dry_run)
    except AuditChainBroken as exc:
        fail(f"{exc}; nothing was removed (see `callflow audit verify`)", code=1)
    except AuditUnavailable as exc:
        fail(str(exc))
    days = audit_log.retention_days
    if dry_run:
        click.echo(f"{entries_count(count)} older than {days} days (before {cutoff}); "
                   "nothing was removed")
    else:
        click.echo(f"removed {entries_count(count)} older than {days} days (before {cutoff})")
