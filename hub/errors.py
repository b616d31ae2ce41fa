"""Every error the hub raises on purpose derives from `HubError`.

Each subclass keeps its data as attributes and builds its message once, so
callers can both show the message and act on the fields.
"""

from __future__ import annotations

from enum import StrEnum


class HubError(Exception):
    """Root of the hub's own errors."""


class ConfigError(HubError):
    """A setting is unknown or has a bad value."""

    def __init__(self, key: str, value: object, problem: str, suggestion: str | None = None):
        self.key = key
        self.value = value
        self.problem = problem
        self.suggestion = suggestion
        message = f"{key} = {value!r}: {problem}"
        if suggestion:
            message += f" (did you mean {suggestion!r}?)"
        super().__init__(message)


class StoreError(HubError):
    """The store could not carry out an operation; the cause is chained."""

    def __init__(self, operation: str, detail: str):
        self.operation = operation
        self.detail = detail
        super().__init__(f"store {operation} failed: {detail}")


class StoreClosed(StoreError):
    """The store is not open (before the hub started, or as it stops)."""

    def __init__(self, operation: str):
        super().__init__(operation, "the store is not open")


class HubClosing(HubError):
    """The hub is shutting down and takes no new input."""

    def __init__(self) -> None:
        super().__init__("the hub is shutting down")


class HubBusy(HubError):
    """The hub cannot take this now (its queue for the store is full, or the
    store refuses writes): try again shortly. `reason` says which."""

    def __init__(self, retry_after: float, reason: str = "the store is behind"):
        self.retry_after = retry_after
        self.reason = reason
        super().__init__(f"{reason}, retry in {retry_after:g} s")


class AuthFailure(StrEnum):
    """Why a client was refused."""

    NOT_LISTED = "not_listed"  # a device not in [[devices]] under listed enrollment
    WRONG_TOKEN = "wrong_token"  # no token, or another than the one expected
    CLOSED = "closed"  # no token opens it (no auth.admin_token is set)


class AuthError(HubError):
    """A client presented no credentials, or the wrong ones; `kind` says which."""

    def __init__(self, who: str, kind: AuthFailure, reason: str):
        self.who = who
        self.kind = kind
        self.reason = reason
        super().__init__(f"{who}: {reason}")


class QueryError(HubError):
    """A query parameter of the HTTP API is malformed."""

    def __init__(self, parameter: str, value: str, problem: str):
        self.parameter = parameter
        self.value = value
        self.problem = problem
        super().__init__(f"{parameter}={value!r}: {problem}")
