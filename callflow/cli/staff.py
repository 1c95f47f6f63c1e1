"""``callflow manager``: staff accounts from the command line.

Admins run these on the server (or with ``REDIS_URL`` pointing at it). Secrets are read from a
hidden prompt, or from stdin for scripts, never from an argument: arguments end up in shell
history and process listings. Every change is audited as the operating-system user who ran it
(``cli:<user>``, or ``cli``), and a change whose audit entry cannot be written is undone, so
the commands need the service's ``SECRET_KEY`` as well as its Redis.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import redis
from argon2 import PasswordHasher

from callflow.platform import local
from callflow.platform.config import Settings
from callflow.platform.errors import AuditUnavailable, CallflowError, StoreUnavailable
from callflow.platform.store import connect
from callflow.records.audit import AuditLog
from callflow.staff.accounts import Role, StaffMember, StaffStore, check_name
from callflow.staff.sign_in import unlock as lift_limits

log = logging.getLogger(__name__)

HEADERS = ("name", "role", "staff no.", "disabled", "pin", "by phone", "registered phone")


def build_store(settings: Settings, hasher: PasswordHasher | None = None) -> StaffStore:
    """The staff store on the configured Redis, auditing every change to the service's log."""
    client = connect(settings)
    return StaffStore(client, AuditLog.from_settings(client, settings).append, hasher=hasher)


def open_store() -> StaffStore:
    """The staff store as the environment configures it (in local mode the embedded store and
    the local keys ``callflow serve`` uses)."""
    return build_store(local.settings())


def clear_failures(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected failure into a one-line message and exit status 1, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (redis.RedisError, StoreUnavailable) as exc:
            raise click.ClickException(f"the store could not be reached ({exc}); check "
                                       "REDIS_URL and that Redis is running") from None
        except AuditUnavailable as exc:
            raise click.ClickException(f"{exc}; nothing was changed") from None
        except CallflowError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def read_secret(what: str, from_stdin: bool) -> str:
    """A password or PIN: one line of stdin for scripts, else a hidden prompt typed twice."""
    if from_stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
        if not secret:
            raise click.ClickException(f"no {what} on stdin; pipe it in, e.g. from a password "
                                       "manager's command line tool")
        return secret
    return click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=True)


def mask_phone(number: str | None) -> str:
    """Enough of a manager's phone to recognise it (+44••••••0123), not enough to ring it."""
    if not number:
        return "-"
    hidden = len(number) - 7
    if hidden < 5:  # too short to mask: showing seven characters would nearly give it away
        return "set"
    return number[:3] + "•" * hidden + number[-4:]


def row(member: StaffMember) -> tuple[str, ...]:
    pin = ("yes" if member.pin_current else "reset") if member.has_pin else "no"
    by_phone = ("on" if member.phone_monitoring else "off") if member.role is Role.MANAGER \
        else "-"
    phone = (f"{mask_phone(member.phone)} ({member.phone_label})" if member.phone else "-")
    return (member.name, member.role.value, member.staff_number or "-",
            "yes" if member.disabled else "no", pin, by_phone, phone)


@click.group("manager")
def manager() -> None:
    """Staff accounts: managers (who may listen in), admins (flows and staff) and workers
    (who sign on and off for their shift)."""


@manager.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.MANAGER.value,
              show_default=True, help="manager may listen in; admin manages flows and staff; "
              "worker signs on and off (name the account as the team file names them).")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@clear_failures
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add the account NAME (lowercase letters, digits, '.', '-', '_')."""
    check_name(name)  # a name that cannot be used is refused before any password is asked
    store = open_store()
    if store.get(name) is not None:  # say so before asking for a password twice
        raise click.ClickException(f"a staff account '{name}' already exists; choose another "
                                   "name")
    member = store.add(name, read_secret("password", password_stdin), role)
    click.echo(f"added {member.role.value} '{member.name}'")


@manager.command("list")
@clear_failures
def list_staff() -> None:
    """List every account: staff numbers, PINs ("reset": set before PINs needed 6 digits), phones
    masked, secrets never shown."""
    members = open_store().list()
    if not members:
        click.echo("no staff accounts yet; add one with `callflow manager add NAME`")
        return
    rows = [HEADERS, *(row(m) for m in members)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADERS))]
    for r in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True))
                   .rstrip())


def existing_account(name: str) -> StaffStore:
    """The store, once NAME is known to exist: no one is asked for a secret for nobody."""
    store = open_store()
    if store.get(name) is None:
        raise click.ClickException(f"there is no staff account '{name}'; see "
                                   "`callflow manager list`")
    return store


@manager.command("disable")
@click.argument("name")
@clear_failures
def disable(name: str) -> None:
    """Refuse every future sign-in by NAME (web and phone)."""
    open_store().disable(name)
    click.echo(f"disabled '{name}'; they can no longer sign in")


@manager.command("enable")
@click.argument("name")
@clear_failures
def enable(name: str) -> None:
    """Let a disabled account sign in again."""
    open_store().enable(name)
    click.echo(f"enabled '{name}'; they can sign in again")


@manager.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@clear_failures
def set_password(name: str, password_stdin: bool) -> None:
    """Set NAME's web sign-in password (at least 12 characters)."""
    store = existing_account(name)
    store.set_password(name, read_secret("password", password_stdin))
    click.echo(f"password changed for '{name}'")


@manager.command("set-pin")
@click.argument("name")
@click.option("--pin-stdin", is_flag=True, help="Read the PIN from stdin.")
@clear_failures
def set_pin(name: str, pin_stdin: bool) -> None:
    """Set NAME's PIN (6-12 digits): a manager's for the manager phone line (it enables phone
    monitoring), a worker's for the staff line (signing on and off)."""
    store = existing_account(name)
    member = store.set_pin(name, read_secret("PIN", pin_stdin))
    number = member.staff_number or "not set: see set-staff-number"
    if member.role is Role.WORKER:
        click.echo(f"PIN set for '{name}' on the staff line (staff number {number})")
    else:
        click.echo(f"PIN set for '{name}'; phone monitoring is on (staff number {number})")


@manager.command("remove-pin")
@click.argument("name")
@clear_failures
def remove_pin(name: str) -> None:
    """Take away NAME's PIN, and with it listening by phone."""
    open_store().remove_pin(name)
    click.echo(f"PIN removed for '{name}'; phone monitoring is off")


@manager.command("phone-monitoring")
@click.argument("name")
@click.argument("state", type=click.Choice(["on", "off"]))
@clear_failures
def phone_monitoring(name: str, state: str) -> None:
    """Let manager NAME listen by phone (on; needs a PIN), or not (off)."""
    open_store().set_phone_monitoring(name, state == "on")
    click.echo(f"phone monitoring is {state} for '{name}'")


@manager.command("set-staff-number")
@click.argument("name")
@click.argument("number", required=False)
@clear_failures
def set_staff_number(name: str, number: str | None) -> None:
    """Give NAME the staff number NUMBER (4-6 digits), typed before the PIN on a phone line;
    without NUMBER, the next free one."""
    member = open_store().set_staff_number(name, number)
    click.echo(f"'{name}' has staff number {member.staff_number}")


@manager.command("unlock")
@click.argument("name")
@clear_failures
def unlock(name: str) -> None:
    """Let NAME back in: lift every sign-in lock and wait on the account (web and phone)."""
    lift_limits(open_store(), name)
    click.echo(f"every sign-in limit on '{name}' is lifted")


@manager.command("set-phone")
@click.argument("name")
@click.argument("number")
@click.option("--label", help="What the phone is called in the audit log and on the dashboard, "
              "e.g. \"helen's mobile\" (default: NAME's phone).")
@clear_failures
def set_phone(name: str, number: str, label: str | None) -> None:
    """Register manager NAME's own phone (written as +447700900123): the only phone a listen-in
    ever rings. The audit log names it by its label, never by its number."""
    member = open_store().set_phone(name, number, label=label)
    click.echo(f"phone '{member.phone_label}' registered for '{name}'")
