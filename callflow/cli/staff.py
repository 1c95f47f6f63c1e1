"""``callflow manager``: staff accounts from the command line.

Admins run these on the server (or with ``REDIS_URL`` pointing at it). Secrets are read from a
hidden prompt, or from stdin for scripts, never from an argument: arguments end up in shell
history and process listings.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import redis

from callflow.config import Settings
from callflow.errors import CallflowError, StoreUnavailable
from callflow.staff import Role, StaffMember, StaffStore
from callflow.store import connect

log = logging.getLogger(__name__)

HEADERS = ("name", "role", "disabled", "pin", "phone")


def open_store() -> StaffStore:
    """The staff store on the configured Redis (or the embedded one without ``REDIS_URL``)."""
    return StaffStore(connect(Settings.from_env()))


def clear_failures(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn every expected failure into a one-line message and exit status 1, not a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (redis.RedisError, StoreUnavailable) as exc:
            raise click.ClickException(f"the store could not be reached ({exc}); check "
                                       "REDIS_URL and that Redis is running") from None
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
    return (member.name, member.role.value, "yes" if member.disabled else "no",
            "yes" if member.has_pin else "no", mask_phone(member.phone))


@click.group("manager")
def manager() -> None:
    """Staff accounts: managers (who may listen in) and admins (flows and staff)."""


@manager.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=Role.MANAGER.value,
              show_default=True, help="manager may listen in; admin manages flows and staff.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@clear_failures
def add(name: str, role: str, password_stdin: bool) -> None:
    """Add the account NAME (lowercase letters, digits, '.', '-', '_')."""
    store = open_store()
    if store.get(name) is not None:  # say so before asking for a password twice
        raise click.ClickException(f"a staff account '{name}' already exists; choose another "
                                   "name")
    member = store.add(name, read_secret("password", password_stdin), role)
    click.echo(f"added {member.role.value} '{member.name}'")


@manager.command("list")
@clear_failures
def list_staff() -> None:
    """List every account (phones masked, secrets never shown)."""
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
    """Set manager NAME's PIN (6-12 digits) for the manager phone line; enables phone monitoring."""
    store = existing_account(name)
    store.set_pin(name, read_secret("PIN", pin_stdin))
    click.echo(f"PIN set for '{name}'; phone monitoring is on")


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
