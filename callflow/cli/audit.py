"""Commands on the audit log: verify (in place, or an export offline), export, purge, and the
public key that checks its signatures.

Exit codes let a cron job or a monitoring check act on them: 0 all is well, 1 the log fails
its checks (tampering), 2 the command could not run (no store, no signing key).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import NoReturn

import click

from callflow.platform import local
from callflow.platform.errors import AuditChainBroken, AuditUnavailable, ConfigError
from callflow.platform.store import connect
from callflow.records.audit import AuditLog, Verification, entries_count, utc
from callflow.records.audit_export import export_lines, verify_export
from callflow.records.audit_keys import AuditKeys, load_public_key
from callflow.records.audit_witness import Witness

log = logging.getLogger(__name__)
DATE_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]


def fail(message: str, code: int = 2) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def open_log(keys: AuditKeys | None = None) -> AuditLog:
    """The audit log as the environment configures it (``REDIS_URL``, the signing key, the
    witness; in local mode the embedded store and the local keys ``callflow serve`` signs
    with); with ``keys``, checked with those instead (a public key only reads)."""
    settings = local.settings()
    try:
        audit_log = AuditLog.from_settings(connect(settings), settings, keys=keys)
    except ConfigError as exc:
        fail(str(exc))
    return audit_log


def configured_keys(public_key: str | None) -> AuditKeys:
    """The public key given, or the configured signing key's."""
    try:
        if public_key:
            return AuditKeys(load_public_key(public_key, f"--public-key {public_key}"))
        return AuditKeys.from_settings(local.settings())
    except ConfigError as exc:
        fail(str(exc))


def report(result: Verification) -> None:
    if not result.ok:
        where = f"entry {result.first_bad_seq}" if result.first_bad_seq else "the log"
        fail(f"{where}: {result.problem.value if result.problem else 'bad'}: {result.reason}",
             code=1)
    click.echo(f"ok: {result.reason}")


@click.group()
def audit() -> None:
    """Check, export and purge the tamper-evident audit log."""


@audit.command()
@click.option("--file", "export", type=click.Path(exists=True, dir_okay=False),
              help="Verify this export offline (no Redis) instead of the log itself.")
@click.option("--public-key", type=click.Path(exists=True, dir_okay=False),
              help="Check signatures with this PEM public key (`callflow audit public-key`) "
                   "instead of the configured signing key.")
@click.option("--witness", "witnesses", multiple=True, type=click.Path(exists=True,
              dir_okay=False), help="Another copy of the witness to hold the log up to: a "
                                    "witness file, or the service's collected JSON logs.")
def verify(export: str | None, public_key: str | None, witnesses: tuple[str, ...]) -> None:
    """Walk the hash chain and compare it with its witness; exit 1 naming the first edited,
    removed or reordered entry, or the entries a rollback or a wipe took away."""
    if export:
        with open(export, encoding="utf-8") as handle:
            report(verify_export(handle.readlines(), configured_keys(public_key)))
        return
    audit_log = open_log(configured_keys(public_key) if public_key else None)
    try:
        result = audit_log.verify([Witness(path) for path in witnesses])
    except AuditUnavailable as exc:
        fail(str(exc))
    report(result)


@audit.command()
@click.option("--since", type=click.DateTime(DATE_FORMATS),
              help="Export from the first entry written at or after this date or time (UTC); "
                   "without it, every entry.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write to this file (readable by its owner only) instead of stdout.")
def export(since: datetime | None, output: str | None) -> None:
    """Write the entries as JSON lines between a signed start and the signed head, so that
    `callflow audit verify --file` can check them with the public key alone."""
    try:
        lines = export_lines(open_log(), since=utc(since) if since else None)
    except AuditChainBroken as exc:
        fail(f"{exc}; nothing was exported (see `callflow audit verify`)", code=1)
    except (AuditUnavailable, ConfigError) as exc:
        fail(str(exc))
    count = json.loads(lines[0])["start"]["count"]
    if not output:
        for line in lines:
            click.echo(line, nl=False)
        return
    # Staff activity is not for every account on the machine to read.
    descriptor = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with open(descriptor, "w", encoding="utf-8") as handle:
        handle.writelines(lines)
    click.echo(f"exported {entries_count(count)} to {output}", err=True)


@audit.command("public-key")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="Write the key to this file instead of stdout.")
def public_key(output: str | None) -> None:
    """Print the public key that checks the audit log's signatures (PEM), for an auditor."""
    keys = configured_keys(None)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(keys.public_pem())
        click.echo(f"public key {keys.fingerprint()} written to {output}", err=True)
        return
    click.echo(keys.public_pem(), nl=False)


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
