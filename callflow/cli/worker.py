"""``callflow worker``: the RQ worker process."""

from __future__ import annotations

import sys

import click

from callflow import logs, runtime
from callflow.config import Settings
from callflow.errors import CallflowError
from callflow.registry import reload_on_sighup
from callflow.worker import run_worker


@click.command()
@click.option("--burst", is_flag=True, help="Run the queued jobs, then stop.")
def worker(burst: bool) -> None:
    """Run the jobs: worker legs, cancellations, fallbacks, Twilio log purges."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if not settings.shared_store:
        raise click.ClickException("set REDIS_URL (or REDIS_SENTINELS): without it `callflow "
                                   "serve` runs the jobs itself and no worker process is needed")
    try:
        rt = runtime.install(runtime.build(settings, worker=True))
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    if not burst:  # teams edited in git reach the jobs too, on an edit or on SIGHUP
        rt.registry.watch(settings.reload_interval)
        reload_on_sighup(rt.registry)
    sys.exit(0 if run_worker(rt, burst=burst) or burst else 1)
