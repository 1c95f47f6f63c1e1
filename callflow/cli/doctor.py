"""``callflow doctor``: a checklist of the deployment, with what to fix; exit 1 on a failure."""

from __future__ import annotations

import sys

import click

from callflow.operations.doctor import Status, run_checks
from callflow.platform import local
from callflow.platform.config import Settings

MARKS = {Status.OK: "[ok]  ", Status.WARN: "[warn]", Status.FAIL: "[FAIL]",
         Status.SKIP: "[skip]"}
COLOURS = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: None}


@click.command()
def doctor() -> None:
    """Check the configuration, Redis, the flows, Twilio and the numbers; say what to fix.

    Reads the same environment as the service. Changes nothing. Exit 0 when every check
    passes (warnings allowed), 1 when any fails. Without REDIS_URL it checks local mode (the
    embedded store) and says what a deployment would still need.
    """
    settings = Settings.from_env()
    checks = run_checks(settings)
    for check in checks:
        mark = click.style(MARKS[check.status], fg=COLOURS[check.status])
        click.echo(f"{mark} {check.name}: {check.detail}")
        if check.fix and check.status in (Status.FAIL, Status.WARN):
            click.echo(f"       fix: {check.fix}")
    failed = [c.name for c in checks if c.status == Status.FAIL]
    if failed:
        click.echo(f"{len(failed)} check(s) failed: {', '.join(failed)}", err=True)
        sys.exit(1)
    if local.is_local(settings):
        click.echo("all checks passed for local mode; see the environment check for what "
                   "taking real calls needs")
        return
    click.echo("all checks passed")
