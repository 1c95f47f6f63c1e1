"""``callflow doctor``: the checks a deployment must pass before callers are sent to it.

Each check says what it found and, when it fails, what to do about it, because the person
reading it is often a charity's one technical volunteer at the moment something broke. A
failure is something that loses calls, exposes callers or breaks a promise; a warning is
something to look at that does not. Nothing here writes anything: not to Redis, not to Twilio.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

import redis
import requests
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from callflow import provisioning
from callflow.config import Settings
from callflow.errors import CallflowError, FlowSetInvalid
from callflow.flow import FlowSet
from callflow.loader import load_flowset
from callflow.staff import StaffStore
from callflow.store import connect
from callflow.twilio_api import make_client

MIN_SECRET_LENGTH = 32
# Where a web process may listen behind a proxy: this machine, or a private network (RFC 1918,
# IPv6 unique local). Anything else, the unspecified 0.0.0.0 and :: included, is reachable.
PRIVATE_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
SHOWN_ERRORS = 5


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"
    SKIP = "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_environment(settings: Settings) -> Check:
    required = [("TWILIO_ACCOUNT_SID", settings.twilio_account_sid),
                ("TWILIO_AUTH_TOKEN", settings.twilio_auth_token),
                ("CALLFLOW_PUBLIC_URL", settings.public_url),
                ("SECRET_KEY", settings.secret_key),
                ("REDIS_URL or REDIS_SENTINELS", settings.shared_store)]
    missing = [name for name, value in required if not value]
    if missing:
        return Check("environment", Status.FAIL, f"not set: {', '.join(missing)}",
                     "set them in the service's environment (docs/configuration.md says what "
                     "each one is)")
    return Check("environment", Status.OK, "every required variable is set")


def check_public_url(settings: Settings) -> Check:
    url = settings.public_url
    if not url:
        return Check("public URL", Status.SKIP, "CALLFLOW_PUBLIC_URL is not set (see above)")
    if is_loopback_url(url):
        return Check("public URL", Status.OK, f"{url} is a loopback address: fine for trying "
                     "the service, but Twilio cannot reach it")
    try:
        provisioning.check_public_url(url)
    except CallflowError as exc:
        return Check("public URL", Status.FAIL, str(exc),
                     "serve the service behind a TLS proxy and set CALLFLOW_PUBLIC_URL to its "
                     "https:// address, exactly as Twilio is given it")
    return Check("public URL", Status.OK, f"{url} (https)")


def check_secret_key(settings: Settings) -> Check:
    length = len(settings.secret_key)
    if not length:
        return Check("secret key", Status.SKIP, "SECRET_KEY is not set (see above)")
    if length < MIN_SECRET_LENGTH:
        return Check("secret key", Status.FAIL,
                     f"SECRET_KEY is {length} characters; it signs manager sessions and the "
                     f"audit log's head, so it needs at least {MIN_SECRET_LENGTH}",
                     "generate one with `python -c \"import secrets; "
                     "print(secrets.token_urlsafe(48))\"`; on a service that already has an "
                     "audit log, `callflow audit export` it first: its head is signed with the "
                     "old key")
    return Check("secret key", Status.OK, f"{length} characters")


def check_redis(settings: Settings, store: redis.Redis | None) -> Check:
    """Reachable, and persistent: the audit log and staff accounts live only in Redis."""
    if store is None:
        return Check("Redis", Status.SKIP, "no REDIS_URL or REDIS_SENTINELS (see above); the "
                     "embedded store serves one process on one machine only")
    try:
        store.ping()
    except (redis.RedisError, CallflowError) as exc:
        return Check("Redis", Status.FAIL, f"cannot reach Redis ({type(exc).__name__}); "
                     "callers would be served by the degraded path and monitoring is off",
                     "check REDIS_URL (or REDIS_SENTINELS and REDIS_SENTINEL_MASTER), the "
                     "network and the Redis server")
    try:
        aof = store.config_get("appendonly").get("appendonly", "")
        save = store.config_get("save").get("save", "")
    except redis.RedisError:
        return Check("Redis", Status.WARN, "reachable; its persistence could not be read "
                     "(CONFIG is disabled or renamed, as on many managed services)",
                     "make sure the provider keeps AOF persistence on (appendonly yes): the "
                     "audit log and staff accounts live only in Redis")
    if aof == "yes":
        return Check("Redis", Status.OK, "reachable; AOF persistence on")
    if save.strip():
        return Check("Redis", Status.WARN, f"reachable; RDB snapshots only (save {save!r}): "
                     "entries written since the last snapshot are lost in a crash",
                     "turn AOF on: `appendonly yes` and `appendfsync everysec` in redis.conf")
    return Check("Redis", Status.FAIL, "reachable but not persistent (no AOF, no RDB): a "
                 "restart loses the audit log and every staff account",
                 "set `appendonly yes` and `appendfsync everysec` in redis.conf (or "
                 "`CONFIG SET appendonly yes` then `CONFIG REWRITE`)")


def check_flows(settings: Settings) -> tuple[Check, FlowSet | None]:
    try:
        flowset = load_flowset(settings.flows_dir)
    except FlowSetInvalid as exc:
        shown = "; ".join(str(e) for e in exc.errors[:SHOWN_ERRORS])
        more = len(exc.errors) - SHOWN_ERRORS
        return Check("flows", Status.FAIL, shown + (f"; and {more} more" if more > 0 else ""),
                     f"run `callflow validate {settings.flows_dir}` and fix each error"), None
    lines = ", ".join(f"{f.helpline} ({', '.join(f.numbers)})" for f in flowset.flows.values())
    return Check("flows", Status.OK, f"{settings.flows_dir}: {lines}"), flowset


def check_twilio(settings: Settings, client: Client | None) -> Check:
    if client is None:
        return Check("Twilio account", Status.SKIP,
                     "TWILIO_ACCOUNT_SID or TWILIO_AUTH_TOKEN is not set (see above)")
    try:
        account = client.api.v2010.accounts(settings.twilio_account_sid).fetch()
    except (TwilioException, requests.RequestException) as exc:
        return Check("Twilio account", Status.FAIL,
                     provisioning.describe_error(exc, settings.twilio_account_sid),
                     "copy the Account SID and Auth Token from the Twilio Console")
    if account.status != "active":
        return Check("Twilio account", Status.FAIL, f"account {account.sid} is {account.status}",
                     "reactivate the account in the Twilio Console: calls are not answered")
    return Check("Twilio account", Status.OK, f"{account.sid} is active")


def check_numbers(settings: Settings, client: Client | None, flowset: FlowSet | None,
                  ready: bool) -> Check:
    if client is None or flowset is None or not ready:
        return Check("numbers", Status.SKIP, "needs working flows, Twilio credentials and an "
                     "https public URL (see above)")
    plan = provisioning.plan(client, flowset, settings.public_url)
    if plan.problems:
        return Check("numbers", Status.FAIL, "; ".join(plan.problems),
                     "fix the flows' numbers or the account, then `callflow twilio sync`")
    if plan.differences:
        fields = sorted({d.field for d in plan.differences})
        numbers = sorted({d.number for d in plan.differences})
        return Check("numbers", Status.FAIL, f"{', '.join(numbers)}: {', '.join(fields)} "
                     "not as the service needs", "`callflow twilio sync --dry-run` shows the "
                     "difference, `callflow twilio sync` fixes it")
    return Check("numbers", Status.OK, f"{len(plan.numbers)} number(s) point at "
                 f"{settings.public_url.rstrip('/')}/voice/incoming, CNAM off")


def gunicorn_binds(env: Mapping[str, str]) -> list[str]:
    """Where gunicorn listens: ``GUNICORN_CMD_ARGS``' binds, else gunicorn.conf.py's default."""
    words = shlex.split(env.get("GUNICORN_CMD_ARGS", ""))
    binds = []
    for index, word in enumerate(words):
        if word in ("-b", "--bind") and index + 1 < len(words):
            binds.append(words[index + 1])
        elif word.startswith("--bind="):
            binds.append(word.split("=", 1)[1])
        elif word.startswith("-b") and len(word) > 2:
            binds.append(word[2:])
    return binds or [f"0.0.0.0:{env.get('PORT', '5000')}"]


def _reach(bind: str) -> str:
    """"private" (only this machine or its private network), "public", or "unknown"."""
    if bind.startswith(("unix:", "fd://")):
        return "private"
    host = bind.rsplit(":", 1)[0] if ":" in bind else bind
    host = host.strip("[]")
    if host == "localhost":
        return "private"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "unknown"
    if address.is_loopback or any(address in net for net in PRIVATE_NETWORKS
                                  if net.version == address.version):
        return "private"
    return "public"


def check_proxy_binding(settings: Settings, env: Mapping[str, str]) -> Check:
    """Behind trusted proxies, the client's address is the X-Forwarded-For they set; anyone who
    reaches gunicorn without them could write it, and choose the address every sign-in limit
    counts. So gunicorn must listen where only the proxy reaches it."""
    name = "proxy binding"
    if not settings.trusted_proxies:
        return Check(name, Status.SKIP, "CALLFLOW_TRUSTED_PROXIES is 0: X-Forwarded-For is not "
                     "trusted")
    binds = gunicorn_binds(env)
    reach = {bind: _reach(bind) for bind in binds}
    fix = ("bind gunicorn where only the proxy reaches it: GUNICORN_CMD_ARGS=\"--bind "
           "127.0.0.1:5000\" with the proxy on this machine, or a private address and a "
           "firewall that admits the proxy alone (docs/deployment.md)")
    public = [bind for bind, where in reach.items() if where == "public"]
    if public:
        return Check(name, Status.FAIL, f"gunicorn listens on {', '.join(public)}, reachable "
                     "without the proxy: anyone there can write X-Forwarded-For and pick the "
                     "address sign-in limits count", fix)
    unknown = [bind for bind, where in reach.items() if where == "unknown"]
    if unknown:
        return Check(name, Status.WARN, f"gunicorn listens on {', '.join(unknown)}: make sure "
                     "only the proxy can reach it, or anyone can write X-Forwarded-For", fix)
    return Check(name, Status.OK, f"gunicorn listens on {', '.join(binds)} only (make sure "
                 "only the proxy can reach a private address)")


def check_staff(store: redis.Redis) -> Check:
    """Accounts made before PINs needed six digits, or before accounts had staff numbers."""
    name = "staff accounts"
    try:
        members = StaffStore(store).list()
    except CallflowError as exc:
        return Check(name, Status.SKIP, f"the staff accounts could not be read ({exc})")
    old_pins = [m.name for m in members if m.has_pin and not m.pin_current]
    unnumbered = [m.name for m in members if not m.staff_number]
    problems, fixes = [], []
    if old_pins:
        problems.append(f"PINs set before PINs needed 6 digits (refused on the manager line "
                        f"if shorter): {', '.join(old_pins)}")
        fixes += [f"callflow manager set-pin {n}" for n in old_pins]
    if unnumbered:
        problems.append(f"no staff number, so no sign-in by phone: {', '.join(unnumbered)}")
        fixes += [f"callflow manager set-staff-number {n}" for n in unnumbered]
    if problems:
        return Check(name, Status.WARN, "; ".join(problems), "run " + "; ".join(
            f"`{f}`" for f in fixes))
    return Check(name, Status.OK, f"{len(members)} account(s), each with a staff number; every "
                 "PIN meets the six-digit rule")


def run_checks(settings: Settings, *, store: redis.Redis | None = None,
               client: Client | None = None,
               connect_store: Callable[[Settings], redis.Redis] | None = None,
               env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order they depend on each other."""
    checks = [check_environment(settings), check_public_url(settings),
              check_secret_key(settings)]
    if store is None and settings.shared_store:
        try:
            store = (connect_store or connect)(settings)
        except CallflowError as exc:
            checks.append(Check("Redis", Status.FAIL, str(exc), "fix REDIS_SENTINELS"))
    if not any(c.name == "Redis" for c in checks):
        checks.append(check_redis(settings, store))
    if settings.trusted_proxies:
        checks.append(check_proxy_binding(settings, os.environ if env is None else env))
    if isinstance(store, redis.Redis) and checks[-1].status in (Status.OK, Status.WARN):
        checks.append(check_staff(store))
    flows, flowset = check_flows(settings)
    checks.append(flows)
    if client is None and settings.twilio_account_sid and settings.twilio_auth_token:
        client = make_client(settings)
    account = check_twilio(settings, client)
    checks.append(account)
    url_ok = not is_loopback_url(settings.public_url) and checks[1].status == Status.OK
    checks.append(check_numbers(settings, client, flowset,
                                ready=account.status == Status.OK and url_ok))
    return checks
