"""``callflow report``: the funders' and quality-standard figures, from the counts alone.

The same report as the dashboard's Reports page (:mod:`callflow.records.reports`); days,
weeks and months are the helpline's own (its flow's ``timezone``).
"""

from __future__ import annotations

from datetime import date, tzinfo
from zoneinfo import ZoneInfo

import click
import redis

from callflow.cli.audit import fail
from callflow.language.loader import load_flowset
from callflow.platform import local
from callflow.platform.clock import utc_now
from callflow.platform.errors import AuditUnavailable, ConfigError, FlowSetInvalid
from callflow.platform.store import connect
from callflow.records.audit import AuditLog
from callflow.records.counts import Counts
from callflow.records.reports import By, build

DEFAULT_ZONE = "Europe/London"


def read_day(_ctx, param, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date: write it as 2026-12-01") from None


def helpline_zones(flows_dir: str) -> dict[str, tzinfo]:
    """Each helpline's time zone, from the flow files (none if they cannot be read: the
    default zone is used then)."""
    try:
        flowset = load_flowset(flows_dir)
    except (FlowSetInvalid, OSError):
        return {}
    return {flow_id: flow.hours.zone for flow_id, flow in flowset.flows.items()}


@click.command("report")
@click.option("--from", "start", required=True, callback=read_day,
              help="First day (YYYY-MM-DD), in the helpline's time zone.")
@click.option("--to", "end", required=True, callback=read_day,
              help="Last day (YYYY-MM-DD), included.")
@click.option("--helpline", help="One helpline (its flow id); every helpline if left out.")
@click.option("--by", "by", type=click.Choice([b.value for b in By]), default=By.DAY.value,
              show_default=True, help="One column per day, ISO week or month.")
@click.option("--format", "form", type=click.Choice(["table", "csv", "json"]),
              default="table", show_default=True)
@click.option("--publish", is_flag=True,
              help="Figures fit to publish: weekly or monthly only, every count below 5 "
                   "shown as 'fewer than 5'.")
def report(start: date, end: date, helpline: str | None, by: str, form: str,
           publish: bool) -> None:
    """Calls offered, answered, abandoned, unanswered and out of hours, waits, service
    levels and handle times, from the counts kept as calls happen (no call records)."""
    settings = local.settings()
    zones = helpline_zones(settings.flows_dir)

    def zone_of(name: str) -> tzinfo:
        return zones.get(name) or ZoneInfo(DEFAULT_ZONE)

    try:
        store = connect(settings)
        counts = Counts(store, zone_of=zone_of, clock=utc_now)
        names = [helpline] if helpline else sorted(set(zones) | set(counts.helplines()))
        if helpline and helpline not in zones and helpline not in counts.helplines():
            fail(f"no helpline {helpline!r} has counts or a flow (helplines: "
                 f"{', '.join(names_of(zones, counts)) or 'none'})")
        try:
            audit = AuditLog.from_settings(store, settings)
        except ConfigError:
            audit = None  # no signing key here: the audit figures are left out
        result = build(counts, audit, start=start, end=end, by=By(by), helplines=names,
                       zone_of=zone_of, publish=publish)
    except ValueError as exc:
        fail(str(exc))
    except (redis.RedisError, OSError, AuditUnavailable) as exc:
        fail(f"the counts could not be read: {exc}")
    click.echo(result.render(form), nl=False)


def names_of(zones: dict[str, tzinfo], counts: Counts) -> list[str]:
    return sorted(set(zones) | set(counts.helplines()))
