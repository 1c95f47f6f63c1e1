"""The console script: the domain's commands plus ``serve``, ``simulate`` and ``worker``, which
need the web app (or its routes, which every URL given to Twilio is built from)."""

from __future__ import annotations

import copy
import ipaddress
import logging
import os
import secrets
import signal
import sys
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import click

from callflow import runtime
from callflow.cli import cli
from callflow.language.registry import reload_on_sighup
from callflow.platform import local, logs
from callflow.platform.config import Settings
from callflow.platform.errors import CallflowError
from callflow.platform.links import Links
from callflow.platform.local_keys import local_signing_key
from callflow.platform.store import stop_embedded
from callflow.staff.shifts import Shifts
from webhooks.simulator import ACCOUNT_SID, Event, Keypad, TwilioSim
from webhooks.twilio_double import TwilioDouble

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def loopback_settings(settings: Settings, host: str, port: int) -> Settings:
    """On a loopback address, fill what a first try on a laptop lacks, loudly; never elsewhere.

    The local key is the one every other command uses in local mode (``callflow.platform.local``),
    so ``callflow audit verify`` checks what this serve wrote.
    """
    notes = []
    if not settings.public_url:
        settings = replace(settings, public_url=f"http://{host}:{port}")
        notes.append(f"CALLFLOW_PUBLIC_URL is not set: using {settings.public_url}")
    if not settings.secret_key and local.is_local(settings):
        settings = local.with_local_key(settings)
        notes.append("SECRET_KEY is not set: using the local key kept beside the embedded "
                     f"store ({local.secret_path(settings)})")
    if not settings.audit_signing_key and not settings.shared_store:
        notes.append("CALLFLOW_AUDIT_SIGNING_KEY is not set: the audit log is signed with the "
                     f"local key kept beside the embedded store ({local_signing_key(settings)})")
    if not settings.twilio_auth_token:
        notes.append("TWILIO_AUTH_TOKEN is not set: every webhook will be refused (403) until "
                     "it is; try a call with `callflow simulate --to +441632960001`")
    for note in notes:
        click.echo(f"local mode: {note}", err=True)
    return settings


def stop_like_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM (``kill``, a service manager) ends ``serve`` the way Ctrl-C does."""
    raise KeyboardInterrupt


@contextmanager
def embedded_store_stopped_at_the_end(app):
    """Whatever ends the block (a normal exit, Ctrl-C, SIGTERM, an error), the embedded
    store's redis-server is stopped with it, its data saved."""
    previous = signal.signal(signal.SIGTERM, stop_like_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        app.extensions["callflow"]["runtime"].counts.flush()  # while the store still runs
        stop_embedded(app.extensions["callflow"]["store"])


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
        settings = loopback_settings(settings, host, port)
    try:
        app = create_app({"SETTINGS": settings, "ALLOW_MISSING_TOKEN": is_loopback(host)})
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    with embedded_store_stopped_at_the_end(app):
        jobs = None
        if not settings.shared_store:
            from callflow.jobs.runner import start_in_process

            jobs = start_in_process(app.extensions["callflow"]["runtime"])
        store = "Redis" if settings.shared_store else "embedded, jobs run in-process"
        click.echo(f"callflow listening on http://{host}:{port} (flows: {settings.flows_dir}, "
                   f"store: {store})", err=True)
        try:
            run(app, host, port)
        finally:
            if jobs is not None:
                jobs.set()


PHONE_KEYS = frozenset("0123456789*#")
KEYS_HINT = ("a phone has the keys 0-9, * and #; give each prompt's keys between commas, "
             "an empty entry for none (e.g. ',1')")


def phone_keys(text: str) -> str:
    """``text`` if a phone could press it, else a ``click.BadParameter`` with the hint."""
    text = text.strip()
    wrong = sorted(set(text) - PHONE_KEYS)
    if wrong:
        raise click.BadParameter(f"{' '.join(repr(k) for k in wrong)} "
                                 f"{'is not a key' if len(wrong) == 1 else 'are not keys'} "
                                 f"on a phone: {KEYS_HINT}")
    return text


def split_keys(value: str | None, option: str) -> list[str] | None:
    if value is None:
        return None
    try:
        return [phone_keys(k) for k in value.split(",")]
    except click.BadParameter as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None


@cli.command("runner")
@click.option("--burst", is_flag=True, help="Run the queued jobs, then stop.")
def runner(burst: bool) -> None:
    """Run the jobs: ringing workers' legs, cancellations, fallbacks, Twilio log purges and
    sweeps, and the timed jobs (with REDIS_URL; `serve` runs them itself without it)."""
    from callflow.jobs.runner import run_process
    from webhooks import routes

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    if not settings.shared_store:
        raise click.ClickException("set REDIS_URL (or REDIS_SENTINELS): without it `callflow "
                                   "serve` runs the jobs itself and no job runner is needed")
    try:
        rt = runtime.build(settings, links=Links(settings.public_url, routes()), runner=True)
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    if not burst:  # teams edited in git reach the jobs too, on an edit or on SIGHUP
        rt.registry.watch(settings.reload_interval)
        reload_on_sighup(rt.registry)
    sys.exit(0 if run_process(rt, burst=burst) or burst else 1)


def hidden_alias(command: click.Command) -> click.Command:
    alias = copy.copy(command)
    alias.hidden = True
    return alias


# The command's first name, kept (out of the help) for deployments whose Procfile says it.
cli.add_command(hidden_alias(runner), "worker")


class TerminalKeypad(Keypad):
    """Asks at the terminal; a scripted list, when given, answers first."""

    def __init__(self, caller: list[str] | None, worker: list[str] | None):
        super().__init__(caller, worker)
        self.scripted_caller = caller is not None
        self.scripted_worker = worker is not None

    def caller(self, prompt: str) -> str:
        if self.scripted_caller:
            return super().caller(prompt)
        return click.prompt("  your key (Enter for none)", default="", show_default=False,
                            value_proc=phone_keys)

    def worker(self, name: str, whisper: str) -> str:
        if self.scripted_worker:
            return super().worker(name, whisper)
        return click.prompt(f"  worker {name}: key (1 accepts, Enter = no answer)", default="",
                            show_default=False, value_proc=phone_keys)


SHOW = {
    "step": lambda e: click.style(f"  · {e.text}", dim=True),
    "say": lambda e: (f"  worker {e.name} hears: " if e.who == "worker" else "🔊 ") + e.text,
    "play": lambda e: f"♪ plays {e.text}",
    "gather": lambda e: f"  ⌨ pressed {e.text}" if e.text else "  ⌨ (no key)",
    "dial": lambda e: f"☎ dialling workers; they see {e.text}",
    "ring": lambda e: f"☎ worker {e.name} is ringing…",
    "accepted": lambda e: f"  worker {e.name} pressed 1",
    "declined": lambda e: f"  worker {e.name} did not accept",
    "connected": lambda e: click.style(f"✔ connected to {e.name}", bold=True),
    "waiting": lambda e: "⏳ waiting in the line while workers on shift are offered the call",
    "cancelled": lambda e: f"  worker {e.name} stops ringing: the call was taken",
    "fallback": lambda e: "  nobody accepted: taken to the flow's no-answer step",
    "hangup": lambda e: "— call ended —",
    "http": lambda e: click.style(f"✘ the service answered HTTP {e.text}", fg="red"),
}


def answered_numbers(flows_dir: str) -> list[tuple[str, str]]:
    """Each number the flows answer, with what answers it, in the order of the files."""
    from callflow.language.loader import load_flowset

    flowset = load_flowset(flows_dir)
    numbers = [(n, flow.helpline) for flow in flowset.flows.values() for n in flow.numbers]
    if flowset.manager_line:
        numbers += [(n, "the manager line") for n in flowset.manager_line.numbers]
    return numbers


class SimulateCommand(click.Command):
    """``simulate --help`` ends with the numbers the flows answer, read when it is asked."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        flows_dir = Settings.from_env().flows_dir
        try:
            rows = answered_numbers(flows_dir)
        except CallflowError as exc:
            rows = [("", f"(the flows in {flows_dir} do not load: {exc})")]
        with formatter.section(f"Numbers answered (flows in {flows_dir})"):
            formatter.write_dl(rows)


@cli.command(cls=SimulateCommand)
@click.option("--to", "to", required=True, help="The number to ring (see below).")
@click.option("--digits", help="The caller's keys at each prompt, comma separated ('' = no "
              "key), e.g. ',1'; without it the call is interactive")
@click.option("--worker-digits", help="Workers' keys at screening, comma separated (default: "
              "1 when scripted)")
@click.option("--at", "at", help='Pretend it is this local time, e.g. "2026-12-25 14:00"')
@click.option("--on-shift", "on_shift", help="Workers on shift for the call, comma separated "
              "('' = nobody; default: every active worker of the roster)")
def simulate(to: str, digits: str | None, worker_digits: str | None, at: str | None,
             on_shift: str | None) -> None:
    """Play a call to a helpline in the terminal, through signed webhooks: the menu, the
    waiting line (its announcements, the offers to the workers on shift), the room."""
    from webhooks import create_app

    settings = local.settings()
    caller_keys = split_keys(digits, "--digits")
    worker_keys = split_keys(worker_digits, "--worker-digits")
    try:
        numbers = answered_numbers(settings.flows_dir)
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    if to not in {number for number, _ in numbers}:
        listed = ", ".join(f"{number} ({what})" for number, what in numbers)
        raise click.BadParameter(f"no flow answers {to}; the numbers answered are: {listed}",
                                 param_hint="--to")
    if not settings.secret_key:
        raise click.ClickException("set SECRET_KEY: the simulator writes to the Redis at "
                                   "REDIS_URL, whose audit log is signed with it (or unset "
                                   "REDIS_URL to simulate on the embedded store)")
    settings = replace(settings, twilio_account_sid=ACCOUNT_SID,
                       twilio_auth_token=secrets.token_hex(16),
                       public_url="https://simulator.callflow.invalid", reload_interval=0,
                       log_level="WARNING")
    clock = clock_at(at, to, settings) if at else None
    rest = TwilioDouble()
    try:
        app = create_app({"SETTINGS": settings, "TWILIO_HTTP_CLIENT": rest, "SYNC_JOBS": True,
                          "CLOCK": clock})
    except CallflowError as exc:
        raise click.ClickException(str(exc)) from None
    keypad = TerminalKeypad(caller_keys, worker_keys if worker_keys is not None
                            else (["1"] if caller_keys is not None else None))

    def show(event: Event) -> None:
        click.echo(SHOW.get(event.kind, lambda e: f"{e.kind} {e.text}")(event))

    with embedded_store_stopped_at_the_end(app), simulated_shifts(app, on_shift):
        transcript = TwilioSim(app, on_event=show, rest=rest).call(to, keypad)
    if "http" in transcript.kinds():
        sys.exit(1)


@contextmanager
def simulated_shifts(app, names: str | None):
    """Sign workers on for the simulated call (every active one unless named), and off
    again after it: only the shifts this simulation started."""
    rt = app.extensions["callflow"]["runtime"]
    roster = {w.name for team in rt.registry.current.teams.values()
              for w in team.active_workers()}
    wanted = roster if names is None else {n.strip() for n in names.split(",") if n.strip()}
    unknown = wanted - roster
    if unknown:
        raise click.BadParameter(f"not an active worker of any team: {', '.join(sorted(unknown))}",
                                 param_hint="--on-shift")
    shifts = Shifts(rt.store, rt.clock)
    started = [name for name in sorted(wanted) if shifts.start(name)]
    try:
        yield
    finally:
        for name in started:
            shifts.end(name)


def clock_at(at: str, to: str, settings: Settings):
    from callflow.language.loader import load_flowset

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
