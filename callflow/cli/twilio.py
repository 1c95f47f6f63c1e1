"""``callflow twilio sync``: point every helpline number at the service, CNAM off.

Exit codes suit cron and CI: 0 when every number already matches (or now matches), 1 when
something differs (``--dry-run``) or anything went wrong. Nothing is printed that a caller
could be identified by: only the helplines' own numbers and the service's URLs.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click
from twilio.rest import Client

from callflow.language.loader import load_flowset
from callflow.operations import provisioning
from callflow.platform.config import Settings
from callflow.platform.errors import ConfigError, FlowSetInvalid
from callflow.platform.twilio_api import make_client


def table(rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def shown(value: str) -> str:
    return value if value else provisioning.NONE


def require_account(settings: Settings) -> None:
    missing = [name for name, value in (("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                                        ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token))
               if not value]
    if missing:
        raise ConfigError(f"set {' and '.join(missing)} to the account that owns the helpline "
                          "numbers")


def sync_plan(settings: Settings, client: Client | None = None
              ) -> tuple[Client, provisioning.Plan]:
    """The client and the plan, or a CallflowError saying what to fix first."""
    require_account(settings)
    provisioning.check_public_url(settings.public_url)
    flowset = load_flowset(settings.flows_dir)
    client = client or make_client(settings)
    return client, provisioning.plan(client, flowset, settings.public_url,
                                      settings.staff_line)


@click.group()
def twilio() -> None:
    """Configure the Twilio account's helpline numbers."""


@twilio.command()
@click.option("--dry-run", is_flag=True,
              help="Show what differs (number, field, current, wanted); change nothing.")
def sync(dry_run: bool) -> None:
    """Make each helpline and manager-line number call this service, with CNAM off.

    Sets the voice URL (CALLFLOW_PUBLIC_URL/voice/incoming), the fallback URL
    (/voice/fallback) and the status callback (/voice/status), all POST; turns caller-ID
    lookup off; detaches any voice application or SIP trunk. Exit 0 when in sync, 1 when
    anything differs (--dry-run) or failed.
    """
    settings = Settings.from_env()
    try:
        client, plan = sync_plan(settings)
    except FlowSetInvalid as exc:
        for error in exc.errors:
            click.echo(f"error: {error}", err=True)
        click.echo("fix the flows first (`callflow validate`); nothing was changed", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)

    for problem in plan.problems:
        click.echo(f"error: {problem}", err=True)
    if plan.differences:
        click.echo(table([("number", "field", "current", "wanted")]
                         + [(d.number, d.field, shown(d.current), shown(d.wanted))
                            for d in plan.differences]))
    matching = [n.number for n in plan.numbers if not n.differences]
    for number in matching:
        click.echo(f"ok: {number} is configured for this service")

    if dry_run:
        if plan.differences:
            click.echo(f"{len(plan.differences)} setting(s) differ on "
                       f"{sum(1 for n in plan.numbers if n.differences)} number(s); run "
                       "`callflow twilio sync` to change them", err=True)
        sys.exit(0 if plan.in_sync else 1)

    failed = bool(plan.problems)
    for update in provisioning.apply(client, plan):
        if update.error:
            failed = True
            click.echo(f"error: {update.number}: not updated: {update.error}", err=True)
        else:
            click.echo(f"updated: {update.number}: {', '.join(update.fields)}")
    sys.exit(1 if failed else 0)
