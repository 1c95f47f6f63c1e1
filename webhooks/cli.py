"""The console script: the domain's commands plus ``serve``, ``simulate`` and ``worker``, which
need the web app (or its routes, which every URL given to Twilio is built from)."""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import click

from callflow import logs, runtime
from callflow.cli import cli
from callflow.config import Settings
from callflow.errors import CallflowError
from callflow.links import Links
from callflow.local_keys import local_signing_key
from callflow.registry import reload_on_sighup
from webhooks.simulator import ACCOUNT_SID, Event, Keypad, TwilioSim
from webhooks.twilio_double import TwilioDouble

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def local_settings(settings: Settings, host: str, port: int) -> Settings:
    """On a loopback address, fill what a first try on a laptop lacks, loudly; never elsewhere."""
    notes = []
    if not settings.public_url:
        settings = replace(settings, public_url=f"http://{host}:{port}")
        notes.append(f"CALLFLOW_PUBLIC_URL is not set: using {settings.public_url}")
    if not settings.secret_key:
        settings = replace(settings, secret_key=local_secret(settings))
        notes.append("SECRET_KEY is not set: using the local key kept beside the embedded "
                     f"store ({Path(settings.embedded_db).parent / 'secret-key'})")
    if not settings.audit_signing_key and not settings.shared_store:
        notes.append("CALLFLOW_AUDIT_SIGNING_KEY is not set: the audit log is signed with the "
                     f"local key kept beside the embedded store ({local_signing_key(settings)})")
    if not settings.twilio_auth_token:
        notes.append("TWILIO_AUTH_TOKEN is not set: every webhook will be refused (403) until "
                     "it is; try a call with `callflow simulate --to +441632960001`")
    for note in notes:
        click.echo(f"local mode: {note}", err=True)
    return settings


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=lambda: int(os.environ.get("PORT", "5000")),
              show_default="PORT or 5000")
def serve(host: str, port: int) -> None:
    """Serve the webhooks (embedded store unless REDIS_URL is set)."""
    from webhooks import create_app
    from webhooks.serving import serve as run

    settings = Settings.from_env()
    if is_loopback(host):
        settings = local_settings(settings, host, port)
    try:
        app = create_app({"SETTINGS": settings, "ALLOW_MISSING_TOKEN": is_loopback(host)})
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    if not settings.shared_store:
        from callflow.worker import start_in_process

        start_in_process(app.extensions["callflow"]["runtime"])
    click.echo(f"callflow listening on http://{host}:{port} (flows: {settings.flows_dir}, "
               f"store: {'Redis' if settings.shared_store else 'embedded, jobs run in-process'})",
               err=True)
    run(app, host, port)


@cli.command()
@click.option("--burst", is_flag=True, help="Run the queued jobs, then stop.")
def worker(burst: bool) -> None:
    """Run the job runner: worker legs, cancellations, fallbacks, Twilio log purges."""
    from callflow.worker import run_worker
    from webhooks import routes

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if not settings.shared_store:
        raise click.ClickException("set REDIS_URL (or REDIS_SENTINELS): without it `callflow "
                                   "serve` runs the jobs itself and no job runner is needed")
    try:
        rt = runtime.build(settings, links=Links(settings.public_url, routes()), worker=True)
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    if not burst:  # teams edited in git reach the jobs too, on an edit or on SIGHUP
        rt.registry.watch(settings.reload_interval)
        reload_on_sighup(rt.registry)
    sys.exit(0 if run_worker(rt, burst=burst) or burst else 1)


class TerminalKeypad(Keypad):
    """Asks at the terminal; a scripted list, when given, answers first."""

    def __init__(self, caller: list[str] | None, worker: list[str] | None):
        super().__init__(caller, worker)
        self.scripted_caller = caller is not None
        self.scripted_worker = worker is not None

    def caller(self, prompt: str) -> str:
        if self.scripted_caller:
            return super().caller(prompt)
        return click.prompt("  your key (Enter for none)", default="", show_default=False)

    def worker(self, name: str, whisper: str) -> str:
        if self.scripted_worker:
            return super().worker(name, whisper)
        return click.prompt(f"  worker {name}: key (1 accepts, Enter = no answer)", default="",
                            show_default=False)


def local_secret(settings: Settings) -> str:
    """A key kept beside the embedded store, so its signed audit log verifies across runs."""
    path = Path(settings.embedded_db).parent / "secret-key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SHOW = {
    "step": lambda e: click.style(f"  · {e.text}", dim=True),
    "say": lambda e: (f"  {e.who} hears: " if e.who == "worker" else "🔊 ") + e.text,
    "play": lambda e: f"♪ plays {e.text}",
    "gather": lambda e: f"  ⌨ pressed {e.text}" if e.text else "  ⌨ (no key)",
    "dial": lambda e: f"☎ dialling workers; they see {e.text}",
    "ring": lambda e: f"☎ worker {e.text} is ringing…",
    "accepted": lambda e: f"  worker {e.text} pressed 1",
    "declined": lambda e: f"  worker {e.text} did not accept",
    "connected": lambda e: click.style(f"✔ connected to {e.text}", bold=True),
    "waiting": lambda e: "⏳ waiting in a private conference room while workers are rung",
    "cancelled": lambda e: "  another worker's phone stops ringing",
    "fallback": lambda e: "  nobody accepted: taken to the flow's no-answer step",
    "hangup": lambda e: "— call ended —",
    "http": lambda e: click.style(f"✘ the service answered HTTP {e.text}", fg="red"),
}


def split_keys(value: str | None) -> list[str] | None:
    return None if value is None else [k.strip() for k in value.split(",")]


@cli.command()
@click.option("--to", "to", required=True, help="The helpline number to ring.")
@click.option("--digits", help="Caller's keys, comma separated ('' = no key), e.g. 1,2")
@click.option("--worker-digits", help="Workers' keys at screening, comma separated (default: "
              "1 when scripted)")
@click.option("--at", "at", help='Pretend it is this local time, e.g. "2026-12-25 14:00"')
def simulate(to: str, digits: str | None, worker_digits: str | None, at: str | None) -> None:
    """Play a call to a helpline in the terminal, through signed webhooks."""
    from webhooks import create_app

    settings = Settings.from_env()
    settings = replace(settings, twilio_account_sid=ACCOUNT_SID,
                       twilio_auth_token=secrets.token_hex(16),
                       secret_key=settings.secret_key or local_secret(settings),
                       public_url="https://simulator.callflow.invalid", reload_interval=0,
                       log_level="WARNING")
    rest = TwilioDouble()
    try:
        app = create_app({"SETTINGS": settings, "TWILIO_HTTP_CLIENT": rest, "SYNC_JOBS": True,
                          "CLOCK": clock_at(at, to, settings) if at else None})
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    scripted = digits is not None
    keypad = TerminalKeypad(split_keys(digits),
                            split_keys(worker_digits) if worker_digits is not None
                            else (["1"] if scripted else None))

    def show(event: Event) -> None:
        click.echo(SHOW.get(event.kind, lambda e: f"{e.kind} {e.text}")(event))

    transcript = TwilioSim(app, on_event=show, rest=rest).call(to, keypad)
    if "http" in transcript.kinds():
        sys.exit(1)


def clock_at(at: str, to: str, settings: Settings):
    from callflow.loader import load_flowset

    flowset = load_flowset(settings.flows_dir)
    flow = flowset.flow_for(to) or flowset.default_flow
    try:
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:  # a local time at the helpline; an explicit offset is kept
            moment = moment.replace(tzinfo=ZoneInfo(flow.timezone))
    except ValueError:
        raise click.BadParameter(f"'{at}' is not a time like \"2026-12-25 14:00\"",
                                 param_hint="--at") from None
    return lambda: moment


def main() -> None:
    cli(prog_name="callflow")
