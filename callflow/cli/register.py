"""``callflow exception record|list``: the confidentiality exceptions register from a terminal.

The same register as the dashboard and ``POST /manager/api/exceptions``: each entry is an
audit entry, so it sits in the tamper-evident chain with everything else.
"""

from __future__ import annotations

import json

import click

from callflow.cli.audit import fail, open_log
from callflow.platform.errors import AuditUnavailable
from callflow.records.audit import AuditKind
from callflow.records.register import MAX_DETAIL, Agency, Ground, WhyNot, record_exception


@click.group("exception")
def exception() -> None:
    """Record and list confidentiality exceptions (information shared outside the helpline)."""


@exception.command("record")
@click.option("--by", "actor", required=True, help="The worker or manager recording it.")
@click.option("--call", "call_id", required=True, help="The call's opaque id (never a number).")
@click.option("--ground", "grounds", required=True, multiple=True,
              type=click.Choice([g.value for g in Ground]),
              help="The policy's ground for sharing (repeat for several).")
@click.option("--agency", required=True, type=click.Choice([a.value for a in Agency]))
@click.option("--caller-informed/--caller-not-informed", required=True,
              help="Whether the caller was told information would be shared.")
@click.option("--why-not", type=click.Choice([w.value for w in WhyNot]),
              help="Why the caller was not told: not_safe (telling them would put someone at "
                   "risk) or not_possible (the call had ended, they could not be reached).")
@click.option("--detail", help=f"A line about why not (at most {MAX_DETAIL} characters): why, "
                               "never who or where; no names, addresses or numbers.")
def record(actor: str, call_id: str, grounds: tuple[str, ...], agency: str,
           caller_informed: bool, why_not: str | None, detail: str | None) -> None:
    """Record that information about a call was shared, on the policy's grounds."""
    try:
        entry = record_exception(open_log(), actor, call_id, list(grounds), agency,
                                 caller_informed, why_not, detail)
    except ValueError as exc:
        fail(str(exc))
    except AuditUnavailable as exc:
        fail(f"nothing was recorded: {exc}")
    click.echo(f"recorded as audit entry {entry.seq}")


@exception.command("list")
def list_exceptions() -> None:
    """Print every recorded exception as JSON lines, oldest first."""
    try:
        entries = open_log().entries(kind=AuditKind.EXCEPTION_RECORDED)
    except AuditUnavailable as exc:
        fail(str(exc))
    for entry in entries:
        click.echo(json.dumps(entry.to_dict(), sort_keys=True))
