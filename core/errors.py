"""The domain's errors: a stable code and the client-facing message, owned here once.

REST maps each code to a status in one table (rest_facade/errors.py); GraphQL puts the code in
`extensions.code`. Only these errors reach clients with their message; anything else is masked.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    NOT_FOUND = "NOT_FOUND"
    CONFLICT = "CONFLICT"
    RATE_LIMITED = "RATE_LIMITED"
    UNAVAILABLE = "UNAVAILABLE"
    CURSOR_EXPIRED = "CURSOR_EXPIRED"
    INTERNAL = "INTERNAL"
    # GraphQL's persisted documents only (graphql_schema/persisted.py); Apollo's names.
    PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
    PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
    UNTRUSTED_DOCUMENT = "UNTRUSTED_DOCUMENT"


class DomainError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL
    default_message = "Internal server error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class Unauthenticated(DomainError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "Unauthorized"


class InvalidCredentials(Unauthenticated):
    default_message = "Invalid email or password"


class InvalidInput(DomainError):
    code = ErrorCode.BAD_USER_INPUT
    default_message = "Invalid request body"


class NotFound(DomainError):
    code = ErrorCode.NOT_FOUND
    default_message = "Task not found"


class Conflict(DomainError):
    code = ErrorCode.CONFLICT
    default_message = "Email already registered"


class RateLimited(DomainError):
    code = ErrorCode.RATE_LIMITED
    default_message = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class Unavailable(DomainError):
    code = ErrorCode.UNAVAILABLE
    default_message = "Service temporarily unavailable"


class TooManySubscriptions(DomainError):
    """Over a subscription cap (per connection or per account); another must end first."""

    code = ErrorCode.RATE_LIMITED
    default_message = "Too many subscriptions"


class SubscriberTooSlow(DomainError):
    """A subscriber fell too far behind; its subscription ended and it should refetch."""

    code = ErrorCode.UNAVAILABLE
    default_message = "Subscription ended: this client fell too far behind"


class CursorExpired(DomainError):
    """A subscription's `after` names no event still kept (older than the retention, or not
    a cursor at all): the client must refetch, then subscribe without it."""

    code = ErrorCode.CURSOR_EXPIRED
    default_message = "Cursor expired"


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line that names it."""
