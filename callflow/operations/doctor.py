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
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests
from twilio.base.exceptions import TwilioException
from twilio.rest import Client

from callflow.language.flow import FlowSet
from callflow.language.lastgood import LastGoodFlows
from callflow.language.loader import load_flowset
from callflow.operations import provisioning
from callflow.platform import local
from callflow.platform.config import Settings
from callflow.platform.errors import CallflowError, ConfigError, FlowSetInvalid
from callflow.platform.local_keys import SIGNING_KEY_FILE, data_dir, default_witness
from callflow.platform.store import connect
from callflow.platform.twilio_api import make_client
from callflow.records.audit_keys import AuditKeys, load_private_key
from callflow.staff.accounts import StaffStore

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
    if local.is_local(settings):
        # Trying the service on one machine: nothing is wrong, but it cannot take calls yet.
        signer = "" if settings.secret_key else " (its audit log signed with the local key)"
        return Check("environment", Status.WARN,
                     f"local mode: the embedded store ({settings.embedded_db}) holds the "
                     f"state{signer}; fine for trying the service on this machine",
                     f"to take real calls set {', '.join(missing)} (docs/configuration.md "
                     "and docs/deployment.md say what each one is)")
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
    if not length and local.is_local(settings):
        path = local.secret_path(settings)
        if path.is_file():
            return Check("secret key", Status.OK, f"local mode: the local key ({path})")
        return Check("secret key", Status.SKIP, f"local mode: no local key yet; `callflow "
                     f"serve` makes one at {path}")
    if not length:
        return Check("secret key", Status.SKIP, "SECRET_KEY is not set (see above)")
    if length < MIN_SECRET_LENGTH:
        return Check("secret key", Status.FAIL,
                     f"SECRET_KEY is {length} characters; it signs manager sessions, so it "
                     f"needs at least {MIN_SECRET_LENGTH}",
                     "generate one with `python -c \"import secrets; "
                     "print(secrets.token_urlsafe(48))\"`; an audit log still signed the old "
                     "way (HMAC, before Ed25519) is checked with SECRET_KEY until its next "
                     "entry is written: write one (any sign-in) before changing it")
    return Check("secret key", Status.OK, f"{length} characters")


def check_audit_key(settings: Settings) -> Check:
    """The Ed25519 key that signs the audit log's head (read, never made: doctor writes
    nothing; local mode makes its key file on the first run)."""
    value = settings.audit_signing_key
    if not value and settings.shared_store:
        return Check("audit signing key", Status.FAIL, "CALLFLOW_AUDIT_SIGNING_KEY is not set: "
                     "the service will not start without it",
                     "`openssl genpkey -algorithm ed25519 -out audit-signing-key.pem`, readable "
                     "by the service's user only, and give its path to the web, worker and CLI "
                     "processes alike (docs/configuration.md)")
    if not value:
        path = data_dir(settings) / SIGNING_KEY_FILE
        if not path.exists():
            return Check("audit signing key", Status.SKIP, f"local mode: {path} is made on "
                         "the first run")
        value = str(path)
    try:
        keys = AuditKeys.signing(load_private_key(value))
    except ConfigError as exc:
        return Check("audit signing key", Status.FAIL, str(exc),
                     "give CALLFLOW_AUDIT_SIGNING_KEY an unencrypted Ed25519 PEM, or its path")
    return Check("audit signing key", Status.OK, f"Ed25519, public key {keys.fingerprint()} "
                 "(`callflow audit public-key` prints it for an auditor)")


def check_audit_witness(settings: Settings) -> Check:
    """Where each signed head is kept outside Redis, so a rollback or a wipe shows."""
    path = Path(settings.audit_witness or default_witness(settings))
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not os.access(existing, os.W_OK):
        return Check("audit witness", Status.FAIL, f"{path} cannot be written by this user: "
                     "a rollback or a wipe of the audit log would show only in the JSON logs",
                     "make the folder writable by the service's user, or point "
                     "CALLFLOW_AUDIT_WITNESS elsewhere")
    if settings.shared_store and not settings.audit_witness:
        return Check("audit witness", Status.WARN, f"CALLFLOW_AUDIT_WITNESS is not set: heads "
                     f"are kept in {path}, beside the working directory",
                     "point it at storage that outlives the process and is backed up apart "
                     "from Redis, and ship the JSON logs (each head's second copy)")
    return Check("audit witness", Status.OK, str(path))


def check_twilio_purge(settings: Settings) -> Check:
    if not settings.purge_twilio_logs:
        return Check("Twilio call log", Status.WARN, "CALLFLOW_PURGE_TWILIO_LOGS is off: "
                     "Twilio keeps every caller's number in the account's call log, and anyone "
                     "with the account's credentials can see who called",
                     "unset CALLFLOW_PURGE_TWILIO_LOGS (the default deletes each finished "
                     "call's records, and a sweep every 15 minutes deletes any missed)")
    return Check("Twilio call log", Status.OK, "finished calls are deleted from Twilio's log, "
                 "and swept every 15 minutes")


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


def check_last_good(settings: Settings, store: redis.Redis | None,
                    failed: Check) -> tuple[Check, FlowSet | None]:
    """With the files on disk broken, what a process that starts now would serve: the last
    good set (degraded), or nothing, since it would refuse to start."""
    try:
        load_flowset(settings.flows_dir)
        return failed, None  # mended since the flows check: it says what it found
    except FlowSetInvalid as exc:
        broken = sorted({Path(error.where.path).name for error in exc.errors})
    folder = Path(settings.flows_dir)
    kept = LastGoodFlows(store, lambda: datetime.now(UTC)).restore(folder) if store else None
    if kept is None:
        return Check("flows", Status.FAIL, f"{failed.detail}; no last good set is kept, so a "
                     "process that starts now refuses to start", failed.fix), None
    flowset, snapshot = kept
    return Check("flows", Status.WARN, f"degraded: serving the last good flows (kept "
                 f"{snapshot.saved_at}); broken: {', '.join(broken)}: {failed.detail}",
                 f"{failed.fix}; the service loads a good edit by itself"), flowset


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
    plan = provisioning.plan(client, flowset, settings.public_url,
                             settings.staff_line)
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


def check_staff_line(settings: Settings, flowset: FlowSet | None) -> Check:
    """The staff line's numbers: well formed, and none of them a helpline's or the manager
    line's (each number is answered by one thing only)."""
    name = "staff line"
    try:
        numbers = settings.staff_line
    except ConfigError as exc:
        return Check(name, Status.FAIL, str(exc), "fix CALLFLOW_STAFF_LINE_NUMBERS")
    if flowset is None:
        return Check(name, Status.SKIP, "the flows do not load (see above)")
    owners = dict(flowset.answered_numbers())
    taken = [f"{n} is {owners[n]}'s" for n in numbers if n in owners]
    if taken:
        return Check(name, Status.FAIL, "; ".join(taken), "give the staff line a number of its "
                     "own in CALLFLOW_STAFF_LINE_NUMBERS")
    return Check(name, Status.OK, f"{', '.join(numbers)}: answered at /voice/incoming with the "
                 "helplines' numbers (callflow twilio sync sets them)")


def run_checks(settings: Settings, *, store: redis.Redis | None = None,
               client: Client | None = None,
               connect_store: Callable[[Settings], redis.Redis] | None = None,
               env: Mapping[str, str] | None = None) -> list[Check]:
    """Every check, in the order they depend on each other."""
    checks = [check_environment(settings), check_public_url(settings),
              check_secret_key(settings)]
    checks += [check_audit_key(settings), check_audit_witness(settings)]
    checks.append(check_twilio_purge(settings))
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
    if flows.status == Status.FAIL:
        flows, flowset = check_last_good(settings, store, flows)
    checks.append(flows)
    if settings.staff_line_numbers.strip():
        checks.append(check_staff_line(settings, flowset))
    if client is None and settings.twilio_account_sid and settings.twilio_auth_token:
        client = make_client(settings)
    account = check_twilio(settings, client)
    checks.append(account)
    url_ok = not is_loopback_url(settings.public_url) and checks[1].status == Status.OK
    checks.append(check_numbers(settings, client, flowset,
                                ready=account.status == Status.OK and url_ok))
    return checks
