"""The package's one exception family.

Every error callflow raises on purpose is a ``CallflowError``; an admin's mistake in a flow
file is a ``FlowError`` that knows the file, line and column it points at.
"""

from __future__ import annotations

from dataclasses import dataclass


class CallflowError(Exception):
    """Base of every error callflow raises on purpose."""


class ConfigError(CallflowError):
    """The service's configuration (environment) is missing or wrong."""


class StoreUnavailable(CallflowError):
    """The shared store (Redis) could not be reached; callers take the degraded path."""


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
