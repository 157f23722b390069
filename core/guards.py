"""What every use case does around its statements: outages become Unavailable, and a miss
checks that the caller's account still exists."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import bindparam, exists, select

from core.errors import DomainError, Unauthenticated, Unavailable
from core.records import Caller
from db.models import User
from db.store import Store, is_outage

log = logging.getLogger("todo.operations")

_USER_EXISTS = select(exists().where(User.id == bindparam("user_id")))


@asynccontextmanager
async def database_errors() -> AsyncIterator[None]:
    """Database outages surface as Unavailable (503), logged with their cause."""
    try:
        yield
    except DomainError:
        raise
    except Exception as exc:
        if is_outage(exc):
            # The cause, not a stack: an outage is expected, and a stack per request would
            # bury the line that says what happened. Unexpected errors (500) keep theirs.
            log.warning("database unavailable: %s: %s", type(exc).__name__, exc)
            raise Unavailable() from exc
        raise


async def require_user(store: Store, caller: Caller) -> None:
    """Unauthenticated when the caller's account no longer exists.

    Task use cases filter by owner, and deleting a user deletes its tasks, so a deleted user's
    request always lands on a miss (no row, empty list, FK violation); only then is the
    account looked up, to tell 401 from 404 or an empty list. The common path costs nothing.
    """
    if caller.account_checked:
        return
    async with database_errors():
        found = await store.scalar(_USER_EXISTS, {"user_id": caller.user_id})
    if not found:
        raise Unauthenticated()
