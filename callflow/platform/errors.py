"""The package's one exception family.

Every error callflow raises on purpose is a ``CallflowError``; an admin's mistake in a flow
file is a ``FlowError`` that knows the file, line and column it points at.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CallflowError(Exception):
    """Base of every error callflow raises on purpose."""


class ConfigError(CallflowError):
    """The service's configuration (environment) is missing or wrong."""


class StoreUnavailable(CallflowError):
    """The shared store (Redis) could not be reached; callers take the degraded path."""


class AuditUnavailable(CallflowError):
    """The audit log could not be written or read; anything that needs an audit record refuses.

    Monitoring fails closed on this: no audit write, no listen.
    """


class AuditChainBroken(AuditUnavailable):
    """The stored audit log fails its own checks (a forged head or a broken chain).

    A subclass of ``AuditUnavailable`` so that callers failing closed need catch only one
    error, and so that nothing is appended to, or purged from, a log that cannot be trusted.
    """


@dataclass(frozen=True)
class Where:
    """A place in a flow file, 1-based, as an editor shows it."""

    path: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.line:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


class FlowError(CallflowError):
    """A flow file is wrong: where, what, and how to fix it."""

    def __init__(self, where: Where, message: str, hint: str = "") -> None:
        self.where = where
        self.message = message
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class FlowSetInvalid(CallflowError):
    """A set of flow files failed validation; carries every error found, not just the first."""

    def __init__(self, errors: list[FlowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


class StaffError(CallflowError):
    """A staff account could not be created or changed: the message says what and how to fix it."""


class UnknownStaff(StaffError):
    """No account has this name: for admins managing accounts, never said at sign-in."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"there is no staff account '{name}'; see `callflow manager list`")


class DuplicateStaff(StaffError):
    """An account with this name exists already; names are never reused silently."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"a staff account '{name}' already exists; choose another name")


class SignInRefusal(StrEnum):
    """Why a sign-in was refused: the web form, the phone line and the audit log share these."""

    BAD_CREDENTIALS = "bad_credentials"
    DISABLED = "disabled"
    LOCKED_OUT = "locked_out"


REFUSAL_MESSAGES = {
    # One message for an unknown name and a wrong password: a refusal never says which names exist.
    SignInRefusal.BAD_CREDENTIALS: "unknown name or wrong password",
    SignInRefusal.DISABLED: "this account is disabled; ask an admin",
    SignInRefusal.LOCKED_OUT: "too many failed sign-in attempts; try again later",
}


class SignInRefused(StaffError):
    """A sign-in (web password or phone PIN) was refused, with a ``SignInRefusal`` reason."""

    def __init__(self, reason: SignInRefusal, message: str = "", retry_after: int = 0) -> None:
        self.reason = SignInRefusal(reason)
        self.retry_after = retry_after
        super().__init__(message or REFUSAL_MESSAGES[self.reason])


class LockedOut(SignInRefused):
    """Too many failed sign-ins for an account, an address or the phone line; wait it out."""

    def __init__(self, retry_after: int) -> None:
        minutes = max(1, -(-retry_after // 60))
        super().__init__(SignInRefusal.LOCKED_OUT, "too many failed sign-in attempts; try again in "
                         f"{minutes} minute{'s' if minutes != 1 else ''}", retry_after)
