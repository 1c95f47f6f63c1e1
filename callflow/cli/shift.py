"""``callflow shift``: helpline workers' shifts from the command line.

For the admin on the server: sign a worker on or off (a forgotten shift, a phone that died),
resume one the waiting line paused, and see who is on now. Workers are named as the team file
names them (in any case). Every change is audited as the operating-system user who ran it,
through the same :class:`callflow.staff.desk.ShiftDesk` the staff line and the web use, so the
waiting line hears of it (its jobs are queued for the job runner).
"""

from __future__ import annotations

import click
from rq import Queue
from rq.serializers import JSONSerializer

from callflow.cli.staff import clear_failures
from callflow.language.loader import load_flowset
from callflow.platform import jobspec, local
from callflow.platform.clock import utc_now
from callflow.platform.config import Settings
from callflow.platform.errors import FlowSetInvalid
from callflow.platform.jobspec import QUEUE_NAME
from callflow.platform.store import connect
from callflow.records.audit import AuditLog
from callflow.runtime import raw_client
from callflow.staff.accounts import default_actor
from callflow.staff.desk import Channel, ShiftDesk
from callflow.staff.shifts import Shifts, WorkerState

HEADERS = ("name", "teams", "state", "since", "reason")


def build_desk(settings: Settings) -> ShiftDesk:
    """The desk on the configured store, roster (the flows folder) and job queue."""
    try:
        teams = load_flowset(settings.flows_dir).teams
    except FlowSetInvalid as exc:
        raise click.ClickException(f"the flows in {settings.flows_dir} do not load "
                                   f"({len(exc.errors)} problem(s)); run `callflow validate "
                                   f"{settings.flows_dir}`") from None
    client = connect(settings)
    queue = Queue(QUEUE_NAME, connection=raw_client(client), serializer=JSONSerializer)

    def enqueue(job, *args, job_id: str) -> None:
        jobspec.enqueue(queue, job, *args, job_id=job_id)

    return ShiftDesk(Shifts(client, utc_now), lambda: teams,
                     AuditLog.from_settings(client, settings).append, enqueue)


def open_desk() -> ShiftDesk:
    """As the environment configures it (in local mode, the embedded store ``serve`` uses)."""
    return build_desk(local.settings())


@click.group("shift")
def shift() -> None:
    """Helpline workers' shifts: sign on, sign off, resume, and who is on now."""


@shift.command("start")
@click.argument("name")
@clear_failures
def start(name: str) -> None:
    """Sign worker NAME on (as the team file names them)."""
    desk = open_desk()
    worker = desk.require(name)
    if desk.start(worker.name, actor=default_actor(), channel=Channel.CLI):
        click.echo(f"{worker.name} is on shift ({', '.join(worker.active_teams)})")
    else:
        click.echo(f"{worker.name} was on shift already "
                   f"({desk.status(worker.name).state.value})")


@shift.command("end")
@click.argument("name")
@clear_failures
def end(name: str) -> None:
    """Sign worker NAME off (a call in progress goes on; no new callers are offered)."""
    desk = open_desk()
    worker = desk.require(name)
    before = desk.end(worker.name, actor=default_actor(), channel=Channel.CLI)
    if before.on_shift:
        click.echo(f"{worker.name}'s shift ended (they were {before.state.value})")
    else:
        click.echo(f"{worker.name} was not on shift")


@shift.command("resume")
@click.argument("name")
@clear_failures
def resume(name: str) -> None:
    """Offer callers again to worker NAME, paused (after missed offers, say)."""
    desk = open_desk()
    worker = desk.require(name)
    if desk.resume(worker.name, actor=default_actor(), channel=Channel.CLI):
        click.echo(f"{worker.name} is available again")
    else:
        raise click.ClickException(f"{worker.name} is not paused "
                                   f"({desk.status(worker.name).state.value})")


@shift.command("list")
@clear_failures
def list_workers() -> None:
    """Every worker in the team file, their teams and their state now (never a number)."""
    rows = [HEADERS]
    for row in open_desk().rows():
        status = row.status
        rows.append((row.worker.name, ",".join(row.worker.teams), status.state.value,
                     status.since or "-",
                     status.reason if status.state is WorkerState.PAUSED else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    for r in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True))
                   .rstrip())
