"""What the use cases return and take: plain frozen records, no ORM objects."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: uuid.UUID
    email: str


@dataclass(frozen=True, slots=True)
class AuthResult:
    token: str
    user: UserRecord


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: uuid.UUID
    title: str
    description: str | None
    completed: bool
    user_id: uuid.UUID
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user; its id only ever comes from a verified token.

    `account_checked` says the account was seen to exist for this request (`authenticate`);
    a caller from `identify` has only a valid token, and the task use cases look the account
    up themselves on a miss (core/tasks.py, `require_user`).
    """

    user_id: uuid.UUID
    # Not part of identity: one user is one caller.
    account_checked: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True)
class Authentication:
    caller: Caller
    expires_at: datetime  # the token's `exp`


@dataclass(frozen=True, slots=True)
class TaskPosition:
    """A place in the newest-first order; a page `after` it starts strictly past it.

    Keyset, not offset: a position stays meaningful when tasks are added or deleted between
    pages, even when the task it was taken from is gone.
    """

    created_at: datetime
    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: list[TaskRecord]
    has_next_page: bool
